// The tunnel path of the shared parser as the backend program (bpf/us_backend.bpf.c) walks it, in C: the outer
// frame with us_parse_packet, then the inner packet of a GUE or IP-in-IP encapsulation with us_parse_ip,
// bounded by the UDP length or the outer IP length (end) inside a longer buffer (buf_end). fuzz_tunnel checks
// the inner parses; bpf_parse_diff predicts from it what the XDP program must do with each frame.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "us_parse.h"

namespace understudy::fuzz {

constexpr uint16_t kGuePort = 6080;   // the balancer's default [dataplane] gue_port
constexpr uint32_t kMaxOuterL4 = 256; // US_MAX_OUTER_L4 of us_backend.bpf.c: further in, not looked at

enum class Tunnel {
    none,       // not GUE on kGuePort nor IP-in-IP, or a malformed frame, fragment or ICMP error
    gue_bad,    // on kGuePort but no GUE variant 0 with understudy's private data
    gue,        // GUE with private data: inner_* below
    ipip,       // outer protocol 4 or 41: inner_* below
    too_deep,   // a tunnel whose outer L4 starts past kMaxOuterL4
};

struct TunnelView {
    int outer_verdict = -1;
    int outer_reason = 0;
    us_parsed outer{};
    Tunnel kind = Tunnel::none;
    // GUE private data
    uint8_t gue_flags = 0, hop_budget = 0, inner_version_gue = 0;
    uint32_t pool_digest = 0;
    // the inner packet
    uint32_t inner_offset = 0;  // from the start of the frame
    uint32_t inner_end = 0;     // where the encapsulation says it ends (UDP length, outer IP length)
    int inner_version = 0;
    int inner_verdict = -1;
    int inner_reason = 0;
    us_parsed inner{};
};

inline uint16_t rd16(const uint8_t *p) { return uint16_t(p[0] << 8 | p[1]); }
inline uint32_t rd32(const uint8_t *p) { return uint32_t(rd16(p)) << 16 | rd16(p + 2); }

// Fills v for the frame [data, data + len). data must not be null.
inline void tunnel_parse(const uint8_t *data, size_t len, TunnelView &v)
{
    const uint8_t *end = data + len;
    std::memset(&v.outer, 0xa5, sizeof v.outer);
    std::memset(&v.inner, 0xa5, sizeof v.inner);
    v.outer_verdict = us_parse_packet(data, end, &v.outer, &v.outer_reason);
    v.kind = Tunnel::none;
    if (v.outer_verdict != US_PARSE_OK || v.outer.fragment || v.outer.icmp_error)
        return;
    const us_parsed &o = v.outer;
    uint16_t dport = uint16_t(o.dport[0] << 8 | o.dport[1]);
    const uint32_t l4 = o.l4_offset;
    if (o.proto == US_IPPROTO_UDP && dport == kGuePort) {
        if (l4 > kMaxOuterL4 || l4 + 8 > len) {
            v.kind = Tunnel::gue_bad;
            return;
        }
        const uint8_t *udp = data + l4;
        const uint32_t udp_end = l4 + rd16(udp + 4);  // within the outer packet: the parser checked it
        const uint8_t *gue = udp + 8;
        if (l4 + 8 + US_GUE_HDR_LEN > len || l4 + 8 + US_GUE_HDR_LEN > udp_end || gue[0] != US_GUE_HLEN_WORDS ||
            (gue[1] != US_IPPROTO_IPIP && gue[1] != US_IPPROTO_IPV6) || gue[2] || gue[3] ||
            rd16(gue + 4) != US_GUE_PD_MAGIC || gue[6] != US_GUE_PD_VERSION) {
            v.kind = Tunnel::gue_bad;
            return;
        }
        v.kind = Tunnel::gue;
        v.gue_flags = gue[7];
        v.pool_digest = rd32(gue + 4 + 16);
        v.hop_budget = gue[4 + 20];
        v.inner_version = gue[1] == US_IPPROTO_IPIP ? 4 : 6;
        v.inner_offset = l4 + 8 + US_GUE_HDR_LEN;
        v.inner_end = udp_end;
    } else if (o.proto == US_IPPROTO_IPIP || o.proto == US_IPPROTO_IPV6) {
        if (l4 > kMaxOuterL4) {
            v.kind = Tunnel::too_deep;
            return;
        }
        v.kind = Tunnel::ipip;
        v.inner_version = o.proto == US_IPPROTO_IPIP ? 4 : 6;
        v.inner_offset = l4;
        v.inner_end = uint32_t(o.l3_offset) + o.l3_len;
    } else {
        return;
    }
    v.inner.vlan_count = 0;
    v.inner_verdict = us_parse_ip(data, data + v.inner_offset, data + v.inner_end, end, v.inner_version, &v.inner,
                                  &v.inner_reason);
}

}  // namespace understudy::fuzz
