// libFuzzer target for the parser's tunnel path: us_parse_ip on the inner packet of a GUE or IP-in-IP frame,
// where the packet ends (the UDP length, the outer IP length) before the buffer does (end != buf_end), as the
// backend program parses it (tunnel_model.h). Any frame: no read outside the buffer (ASan), no undefined
// behaviour (UBSan), and for every inner parse:
//  - the result holds what parse_invariants.h asks of a parse, within [inner start, end) instead of the frame;
//  - it does not depend on a byte at or past end: the same parse over a buffer that stops at end (an exact
//    heap copy, so reading past it is an ASan error) gives the same verdict, reason and fields.
// Built with clang++ by tests/fuzz/meson.build, run for a bounded time by the fuzz-tunnel test; its corpus
// (tests/fuzz/tunnel_corpus) is also what bpf_parse_diff runs through the XDP program.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "parse_invariants.h"
#include "tunnel_model.h"

namespace {

using namespace understudy::fuzz;

[[noreturn]] void fail(const char *why, const TunnelView &v, size_t size)
{
    std::fprintf(stderr, "tunnel parse invariant broken: %s (inner at %u, end %u, version %d, verdict %d, reason %d, "
                         "%zu bytes)\n",
                 why, v.inner_offset, v.inner_end, v.inner_version, v.inner_verdict, v.inner_reason, size);
    std::abort();
}

// What parse_violation() checks of a frame, for an inner packet at [l3, end) (offsets from the frame).
const char *inner_violation(const uint8_t *base, const TunnelView &v)
{
    const us_parsed &p = v.inner;
    if (v.inner_verdict == US_PARSE_DROP)
        return is_parser_reason(v.inner_reason) ? nullptr : "DROP: a reason the parser never gives";
    if (v.inner_verdict != US_PARSE_OK)
        return "verdict is neither OK nor DROP";
    if (p.ip_version != v.inner_version)
        return "OK: ip_version is not the one asked for";
    if (p.vlan_count != 0)
        return "OK: vlan_count (the caller's) changed";
    if (p.l3_offset != v.inner_offset)
        return "OK: l3_offset is not where the inner packet starts";
    if (p.l4_offset <= p.l3_offset)
        return "OK: l4_offset not after l3_offset";
    if (uint32_t(p.l3_offset) + p.l3_len > v.inner_end)
        return "OK: the inner packet runs past the end the encapsulation gives";
    if (p.l4_offset > uint32_t(p.l3_offset) + p.l3_len)
        return "OK: L4 starts past the end of the inner packet";
    const uint8_t *ip = base + p.l3_offset;
    if ((ip[0] >> 4) != p.ip_version)
        return "OK: ip_version disagrees with the inner IP header";
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

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    // An exactly-sized heap copy: the first byte past the frame is a redzone.
    std::unique_ptr<uint8_t[]> frame(new uint8_t[size ? size : 1]);
    if (size)
        std::memcpy(frame.get(), data, size);
    TunnelView v;
    tunnel_parse(frame.get(), size, v);
    if (v.kind != Tunnel::gue && v.kind != Tunnel::ipip)
        return 0;
    if (v.inner_end > size || v.inner_offset > v.inner_end)
        fail("the encapsulation's end is past the frame (the outer parse let it through)", v, size);
    if (const char *why = inner_violation(frame.get(), v))
        fail(why, v, size);

    // The same parse over a buffer that stops at end: nothing at or past end may count.
    std::unique_ptr<uint8_t[]> cut(new uint8_t[v.inner_end ? v.inner_end : 1]);
    std::memcpy(cut.get(), frame.get(), v.inner_end);
    us_parsed q;
    std::memset(&q, 0xa5, sizeof q);
    q.vlan_count = 0;
    int reason = 0;
    int verdict = us_parse_ip(cut.get(), cut.get() + v.inner_offset, cut.get() + v.inner_end, cut.get() + v.inner_end,
                              v.inner_version, &q, &reason);
    if (verdict != v.inner_verdict || (verdict == US_PARSE_DROP && reason != v.inner_reason) ||
        (verdict == US_PARSE_OK && std::memcmp(&q, &v.inner, sizeof q) != 0))
        fail("the parse depends on bytes past the end the encapsulation gives", v, size);
    return 0;
}
