// What every us_parse_packet result must satisfy whatever the input bytes: checked by the fuzzer on each input
// and by the unit tests on every parse they make (including each saved crash), so both hold the parser to one
// list.
#pragma once

#include <cstddef>
#include <cstdint>

#include "us_parse.h"

namespace understudy::fuzz {

// The drop reasons us_parse_packet itself can give; the others are counted later by the data plane.
inline constexpr int kParserReasons[] = {
    US_DROP_truncated_l2, US_DROP_vlan_too_deep,  US_DROP_truncated_l3, US_DROP_bad_ip_version,
    US_DROP_bad_ihl,      US_DROP_bad_ip_length,  US_DROP_truncated_frame, US_DROP_bad_ext_header,
    US_DROP_truncated_l4, US_DROP_bad_l4_header,  US_DROP_bad_icmp_quote,
};

inline bool is_parser_reason(int reason)
{
    for (int r : kParserReasons)
        if (r == reason)
            return true;
    return false;
}

inline bool is_v4_mapped(const uint8_t a[16])
{
    for (int i = 0; i < 10; i++)
        if (a[i] != 0)
            return false;
    return a[10] == 0xff && a[11] == 0xff;
}

// nullptr when the result of parsing [data, data + len) is consistent, else which property broke.
// p is expected to be poisoned (not zeroed) before the parse, so a field left unset shows up.
inline const char *parse_violation(const uint8_t *data, size_t len, int verdict, const us_parsed &p, int reason)
{
    if (verdict == US_PARSE_DROP) {
        if (reason < 0 || reason >= US_DROP_MAX)
            return "DROP: reason out of range";
        if (!is_parser_reason(reason))
            return "DROP: a reason the parser never gives";
        return nullptr;
    }
    if (verdict == US_PARSE_NOT_IP)
        return len < US_ETH_HLEN ? "NOT_IP: shorter than an Ethernet header" : nullptr;
    if (verdict != US_PARSE_OK)
        return "verdict is none of OK, NOT_IP, DROP";

    if (p.ip_version != 4 && p.ip_version != 6)
        return "OK: ip_version is neither 4 nor 6";
    if (p.vlan_count > US_MAX_VLANS)
        return "OK: more VLAN tags than allowed";
    if (p.l3_offset != US_ETH_HLEN + 4 * p.vlan_count)
        return "OK: l3_offset is not right after Ethernet and the VLAN tags";
    if (p.l3_offset >= p.l4_offset)
        return "OK: l4_offset not after l3_offset";
    if (p.l4_offset > len)
        return "OK: l4_offset past the frame";
    if (size_t(p.l3_offset) + p.l3_len > len)
        return "OK: l3_offset + l3_len past the frame";
    if (p.l4_offset > size_t(p.l3_offset) + p.l3_len)
        return "OK: L4 starts past the end of the IP packet";
    const uint8_t *ip = data + p.l3_offset;
    if ((ip[0] >> 4) != p.ip_version)
        return "OK: ip_version disagrees with the IP header";
    if (p.ip_version == 4 && p.l4_offset - p.l3_offset != (ip[0] & 0x0f) * 4)
        return "OK: IPv4 l4_offset is not l3_offset + IHL";
    if (p.ip_version == 6 && p.l4_offset - p.l3_offset < 40)
        return "OK: IPv6 l4_offset inside the fixed header";
    if (p.fragment > 1 || p.icmp_error > 1)
        return "OK: fragment or icmp_error is not 0 or 1";
    bool has_ports = p.sport[0] | p.sport[1] | p.dport[0] | p.dport[1];
    if (p.fragment && (has_ports || p.icmp_error))
        return "OK: a fragment with ports or taken as an ICMP error";
    if (has_ports && p.proto != US_IPPROTO_TCP && p.proto != US_IPPROTO_UDP)
        return "OK: ports for a protocol without ports";
    if (p.ip_version == 4 && !p.icmp_error && !(is_v4_mapped(p.src) && is_v4_mapped(p.dst)))
        return "OK: IPv4 addresses not IPv4-mapped";
    return nullptr;
}

} // namespace understudy::fuzz
