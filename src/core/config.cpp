// The configuration model: enum names and lookups. Reading a file is config_read.cpp, checking a model
// config_check.cpp, formatting problems config_diagnostics.cpp.
#include "config.h"
#include "config_names.h"

namespace understudy {

using namespace config_detail;

std::string_view to_string(AdminState v) { return name_of(kAdminStates, v); }
std::string_view to_string(Method v) { return name_of(kMethods, v); }
std::string_view to_string(Affinity v) { return name_of(kAffinities, v); }
std::string_view to_string(Protocol v) { return name_of(kProtocols, v); }
std::string_view to_string(ProbeKind v) { return name_of(kProbeKinds, v); }
Result<AdminState> parse_admin_state(std::string_view s) { return parse_enum(kAdminStates, s); }
Result<Method> parse_method(std::string_view s) { return parse_enum(kMethods, s); }
Result<Affinity> parse_affinity(std::string_view s) { return parse_enum(kAffinities, s); }
Result<Protocol> parse_protocol(std::string_view s) { return parse_enum(kProtocols, s); }
Result<ProbeKind> parse_probe_kind(std::string_view s) { return parse_enum(kProbeKinds, s); }

const Pool *Config::find_pool(std::string_view name) const
{
    for (const auto &p : pools)
        if (p.name == name)
            return &p;
    return nullptr;
}

const Vip *Config::find_vip(const Address &address, uint16_t port, Protocol protocol) const
{
    for (const auto &v : vips)
        if (v.address == address && v.port == port && v.protocol == protocol)
            return &v;
    return nullptr;
}

}  // namespace understudy
