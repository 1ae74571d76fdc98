// Address, endpoint, secret and MAC parsing shared by the config loader, the CLI and the daemon.
#include "address.h"

#include <arpa/inet.h>

#include <cstring>

namespace understudy {

bool Address::is_v4() const
{
    static constexpr uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return std::memcmp(bytes.data(), prefix, sizeof prefix) == 0;
}

uint32_t Address::v4_host_order() const
{
    return uint32_t(bytes[12]) << 24 | uint32_t(bytes[13]) << 16 | uint32_t(bytes[14]) << 8 | bytes[15];
}

Address Address::from_v4(uint32_t host_order)
{
    Address a;
    a.bytes[10] = a.bytes[11] = 0xff;
    a.bytes[12] = uint8_t(host_order >> 24);
    a.bytes[13] = uint8_t(host_order >> 16);
    a.bytes[14] = uint8_t(host_order >> 8);
    a.bytes[15] = uint8_t(host_order);
    return a;
}

std::string Address::str() const
{
    char buf[INET6_ADDRSTRLEN];
    if (is_v4())
        inet_ntop(AF_INET, bytes.data() + 12, buf, sizeof buf);
    else
        inet_ntop(AF_INET6, bytes.data(), buf, sizeof buf);
    return buf;
}

Result<Address> Address::parse(std::string_view text)
{
    std::string s(text);
    if (s.find('\0') != std::string::npos)  // inet_pton would read only up to it
        return Error{"an address holds a NUL character"};
    Address a;
    uint8_t v4[4];
    if (inet_pton(AF_INET, s.c_str(), v4) == 1) {
        a.bytes[10] = a.bytes[11] = 0xff;
        std::memcpy(a.bytes.data() + 12, v4, 4);
        return a;
    }
    if (s.find(':') != std::string::npos && inet_pton(AF_INET6, s.c_str(), a.bytes.data()) == 1)
        return a;
    return Error{"'" + s + "' is not an IPv4 or IPv6 address"};
}

Result<Endpoint> Endpoint::parse(std::string_view text)
{
    std::string_view host, port;
    if (!text.empty() && text.front() == '[') {
        auto close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
            return Error{"'" + std::string(text) + "' is not [IPV6]:PORT"};
        host = text.substr(1, close - 1);
        port = text.substr(close + 2);
    } else {
        auto colon = text.rfind(':');
        if (colon == std::string_view::npos || text.find(':') != colon)
            return Error{"'" + std::string(text) + "' is not ADDR:PORT (write IPv6 as [ADDR]:PORT)"};
        host = text.substr(0, colon);
        port = text.substr(colon + 1);
    }
    auto addr = Address::parse(host);
    if (!addr)
        return Error{addr.error()};
    if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string_view::npos)
        return Error{"'" + std::string(port) + "' is not a port number"};
    unsigned long p = std::stoul(std::string(port));
    if (p > 65535)
        return Error{"port " + std::string(port) + " is out of range 0-65535"};
    return Endpoint{*addr, uint16_t(p)};
}

std::string Endpoint::str() const
{
    return address.is_v4() ? address.str() + ":" + std::to_string(port)
                           : "[" + address.str() + "]:" + std::to_string(port);
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

Result<std::array<uint8_t, 16>> parse_secret_hex(std::string_view text)
{
    if (text.size() != 32)
        return Error{"must be 32 hex digits (16 bytes), got " + std::to_string(text.size()) + " characters"};
    std::array<uint8_t, 16> out{};
    for (size_t i = 0; i < 16; i++) {
        int hi = hex_value(text[2 * i]), lo = hex_value(text[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return Error{"must be hex digits only (0-9, a-f)"};
        out[i] = uint8_t(hi << 4 | lo);
    }
    return out;
}

Result<std::array<uint8_t, 6>> parse_mac(std::string_view text)
{
    std::array<uint8_t, 6> out{};
    if (text.size() != 17)
        return Error{"'" + std::string(text) + "' is not a MAC address (aa:bb:cc:dd:ee:ff)"};
    for (size_t i = 0; i < 6; i++) {
        int hi = hex_value(text[3 * i]), lo = hex_value(text[3 * i + 1]);
        if (hi < 0 || lo < 0 || (i < 5 && text[3 * i + 2] != ':'))
            return Error{"'" + std::string(text) + "' is not a MAC address (aa:bb:cc:dd:ee:ff)"};
        out[i] = uint8_t(hi << 4 | lo);
    }
    return out;
}

std::string format_mac(const std::array<uint8_t, 6> &mac)
{
    char buf[18];
    snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
    return buf;
}

}  // namespace understudy
