// The names of the configuration's enums: one table per enum serves to_string, parse_* and the "allowed
// values" of messages (config.cpp, config_read.cpp).
#pragma once

#include <string>
#include <string_view>

#include "config.h"
#include "config_diagnostics.h"

namespace understudy::config_detail {

template <class E>
struct EnumName {
    E value;
    std::string_view name;
};

inline constexpr EnumName<AdminState> kAdminStates[] = {
    {AdminState::enabled, "enabled"}, {AdminState::drain, "drain"}, {AdminState::disabled, "disabled"}};
inline constexpr EnumName<Method> kMethods[] = {{Method::gue, "gue"}, {Method::ipip, "ipip"}, {Method::l2dsr, "l2dsr"}};
inline constexpr EnumName<Affinity> kAffinities[] = {{Affinity::flow, "flow"}, {Affinity::client, "client"}};
inline constexpr EnumName<Protocol> kProtocols[] = {{Protocol::tcp, "tcp"}, {Protocol::udp, "udp"}};
inline constexpr EnumName<ProbeKind> kProbeKinds[] = {
    {ProbeKind::none, "none"}, {ProbeKind::tcp, "tcp"}, {ProbeKind::http, "http"}, {ProbeKind::udp, "udp"}};
inline constexpr EnumName<NonVipPolicy> kNonVipPolicies[] = {{NonVipPolicy::kernel, "kernel"},
                                                             {NonVipPolicy::drop, "drop"}};

template <class E, size_t N>
std::string_view name_of(const EnumName<E> (&names)[N], E value)
{
    for (const auto &n : names)
        if (n.value == value)
            return n.name;
    return "?";
}

template <class E, size_t N>
Result<E> parse_enum(const EnumName<E> (&names)[N], std::string_view text)
{
    std::string allowed;
    for (const auto &n : names) {
        if (n.name == text)
            return n.value;
        allowed += (allowed.empty() ? "" : ", ") + std::string(n.name);
    }
    return Error{quote(text) + " is not one of: " + allowed};
}

}  // namespace understudy::config_detail
