// IP addresses as the session key stores them: 16 bytes, IPv4 written as IPv4-mapped IPv6.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "result.h"

namespace understudy {

struct Address {
    std::array<uint8_t, 16> bytes{};

    bool is_v4() const;  // an IPv4-mapped address (::ffff:a.b.c.d)
    uint32_t v4_host_order() const;
    std::string str() const;  // dotted quad for IPv4, RFC 5952 text for IPv6
    static Result<Address> parse(std::string_view text);
    static Address from_v4(uint32_t host_order);

    auto operator<=>(const Address &) const = default;
};

// "ADDR:PORT" or "[V6ADDR]:PORT".
struct Endpoint {
    Address address;
    uint16_t port = 0;
    static Result<Endpoint> parse(std::string_view text);
    std::string str() const;
};

Result<std::array<uint8_t, 16>> parse_secret_hex(std::string_view text);  // exactly 32 hex digits
Result<std::array<uint8_t, 6>> parse_mac(std::string_view text);          // aa:bb:cc:dd:ee:ff
std::string format_mac(const std::array<uint8_t, 6> &mac);

}  // namespace understudy
