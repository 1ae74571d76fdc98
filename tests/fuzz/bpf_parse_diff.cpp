// The shared parser compiled twice, compared: every frame of the given corpus directories, and mutants of each
// (a fixed-seed PRNG: the same runs every time), goes through the C parser (tunnel_model.h, host build) and
// through the backend XDP program (us_backend, BPF build) by BPF_PROG_TEST_RUN, and they must agree exactly.
//
// The comparison. The program's maps hold a world where every decision the parser leads to shows in what the
// program returns: the VIPs of tests/dataplane's world, all in pool 0, which has a backend (n_backends 1)
// but no bucket table, so a GUE packet for a VIP is always served with `no_table`; outer sources trusted
// only when they are the balancer's default ones (198.18.0.1, 2001:db8:ffff::1). From the C parse alone the
// model then says, for each frame: the return code (XDP_PASS or XDP_DROP), exactly which counters move and by
// how much (passed, bad_gue, bad_inner, no_vip, untrusted_source, no_table or ipip_decap, plus
// digest_mismatch and hop_clamped), and the output frame byte for byte (untouched, or the received L2 header,
// its last EtherType the inner family's, then the inner packet from where the C parser says it starts). A
// difference in any verdict, drop reason, offset or length of the two parsers shows as one of these.
//
//   bpf_parse_diff [--mutants N] DIR...      (needs root: BPF_PROG_TEST_RUN)
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "bpfhost/maps.h"
#include "tunnel_model.h"

namespace {

using namespace understudy;
using namespace understudy::fuzz;
using namespace understudy::bpf;
using Bytes = std::vector<uint8_t>;

constexpr uint32_t kDigest = 0x5eed1e55;
constexpr uint8_t kMaxHops = 3;
// VIPs (address, port, protocol) of tests/dataplane/test_replay.py's world; port 0 for fragments.
const struct {
    const char *addr;
    uint16_t port;
    uint8_t proto;
} kVips[] = {
    {"192.0.2.10", 80, 6},  {"192.0.2.10", 443, 6}, {"192.0.2.10", 53, 17}, {"2001:db8::10", 80, 6},
    {"2001:db8::10", 53, 17}, {"192.0.2.20", 80, 6}, {"2001:db8::20", 80, 6}, {"192.0.2.30", 80, 6},
    {"2001:db8::30", 80, 6}, {"2001:db8::40", 80, 6}, {"192.0.2.40", 80, 6},  {"192.0.2.50", 80, 6},
    {"192.0.2.60", 8080, 17}, {"192.0.2.70", 80, 6},
};
const char *kTrusted[] = {"198.18.0.1", "2001:db8:ffff::1"};

std::array<uint8_t, 16> addr16(const char *text)
{
    std::array<uint8_t, 16> a{};
    if (inet_pton(AF_INET6, text, a.data()) == 1)
        return a;
    a[10] = a[11] = 0xff;
    if (inet_pton(AF_INET, text, a.data() + 12) != 1) {
        std::fprintf(stderr, "bad address %s\n", text);
        std::exit(2);
    }
    return a;
}

void must(const Status &s, const char *what)
{
    if (!s) {
        std::fprintf(stderr, "FAIL: %s: %s\n", what, s.error().c_str());
        std::exit(1);
    }
}

struct Expected {
    uint32_t retval = XDP_PASS;
    std::vector<std::pair<int, uint64_t>> counters;  // (counter, increment); every other counter stays
    Bytes out;
};

std::set<std::pair<std::array<uint8_t, 16>, uint32_t>> g_vips;  // (addr, port << 8 | proto)

bool is_vip(const us_parsed &in)
{
    std::array<uint8_t, 16> a;
    std::memcpy(a.data(), in.dst, 16);
    uint16_t port = in.fragment ? 0 : uint16_t(in.dport[0] << 8 | in.dport[1]);
    return g_vips.count({a, uint32_t(port) << 8 | in.proto}) != 0;
}

bool trusted(const us_parsed &outer)
{
    for (const char *t : kTrusted)
        if (std::memcmp(addr16(t).data(), outer.src, 16) == 0)
            return true;
    return false;
}

// What us_backend must do with frame in the world above, from the C parse.
Expected model(const Bytes &frame)
{
    Expected e;
    e.out = frame;
    TunnelView v;
    tunnel_parse(frame.data(), frame.size(), v);
    auto passed = [&](int counter) {
        e.counters = {{counter, 1}};
        return e;
    };
    if (v.outer_verdict != US_PARSE_OK || v.outer.fragment || v.outer.icmp_error)
        return passed(US_BCTR_passed);
    bool tunnel = (v.outer.proto == US_IPPROTO_UDP && (v.outer.dport[0] << 8 | v.outer.dport[1]) == kGuePort) ||
                  v.outer.proto == US_IPPROTO_IPIP || v.outer.proto == US_IPPROTO_IPV6;
    if (!tunnel)
        return passed(US_BCTR_passed);
    if (!trusted(v.outer)) {
        e.retval = XDP_DROP;
        e.counters = {{US_BCTR_untrusted_source, 1}};
        return e;
    }
    switch (v.kind) {
    case Tunnel::too_deep: return passed(US_BCTR_passed);
    case Tunnel::gue_bad: return passed(US_BCTR_bad_gue);
    case Tunnel::none: return passed(US_BCTR_passed);  // not reached: a tunnel is one of the others
    case Tunnel::gue:
    case Tunnel::ipip: break;
    }
    if (v.inner_verdict != US_PARSE_OK)
        return passed(US_BCTR_bad_inner);
    if (!is_vip(v.inner))
        return passed(US_BCTR_no_vip);
    if (v.kind == Tunnel::gue) {
        if (v.pool_digest != kDigest)
            e.counters.push_back({US_BCTR_digest_mismatch, 1});
        if (v.hop_budget > kMaxHops)
            e.counters.push_back({US_BCTR_hop_clamped, 1});
        e.counters.push_back({US_BCTR_no_table, 1});
    } else {
        e.counters.push_back({US_BCTR_ipip_decap, 1});
    }
    // Served: the L2 header as received, its last EtherType the inner family's, then the inner packet.
    const uint32_t l3 = v.outer.l3_offset;
    e.out.assign(frame.begin(), frame.begin() + l3);
    e.out[l3 - 2] = v.inner.ip_version == 4 ? 0x08 : 0x86;
    e.out[l3 - 1] = v.inner.ip_version == 4 ? 0x00 : 0xdd;
    e.out.insert(e.out.end(), frame.begin() + v.inner_offset, frame.end());
    return e;
}

struct Run {
    int err = 0;
    uint32_t retval = 0;
    Bytes out;
};

Run test_run(int prog_fd, const Bytes &frame)
{
    Run r;
    r.out.resize(frame.size() + 256);
    bpf_test_run_opts opts{};
    opts.sz = sizeof(opts);
    opts.data_in = frame.data();
    opts.data_size_in = uint32_t(frame.size());
    opts.data_out = r.out.data();
    opts.data_size_out = uint32_t(r.out.size());
    opts.repeat = 1;
    r.err = bpf_prog_test_run_opts(prog_fd, &opts);
    r.retval = opts.retval;
    r.out.resize(opts.data_size_out);
    return r;
}

std::string hex(const Bytes &b)
{
    std::string s;
    char buf[4];
    for (uint8_t c : b) {
        std::snprintf(buf, sizeof buf, "%02x", c);
        s += buf;
    }
    return s;
}

const char *counter_name(int c)
{
    static const char *names[] = {
#define US_X(name, help) #name,
        US_BACKEND_COUNTERS(US_X)
#undef US_X
    };
    return c >= 0 && c < US_BCTR_MAX ? names[c] : "?";
}

// Byte-level mutants of a frame: a few changed bytes, a cut, or bytes added at the end.
Bytes mutate(const Bytes &in, std::mt19937 &rng)
{
    Bytes b = in;
    switch (rng() % 4) {
    case 0:
    case 1:
        for (int k = 1 + int(rng() % 3); k > 0 && !b.empty(); k--)
            b[rng() % b.size()] = uint8_t(rng());
        break;
    case 2:
        if (!b.empty())
            b.resize(rng() % b.size());
        break;
    case 3:
        for (int k = 1 + int(rng() % 16); k > 0; k--)
            b.push_back(uint8_t(rng()));
        break;
    }
    return b;
}

}  // namespace

int main(int argc, char **argv)
{
    using namespace understudy;
    int mutants = 0;
    std::vector<std::string> dirs;
    for (int i = 1; i < argc; i++) {
        if (std::strcmp(argv[i], "--mutants") == 0 && i + 1 < argc)
            mutants = std::atoi(argv[++i]);
        else
            dirs.push_back(argv[i]);
    }
    if (dirs.empty()) {
        std::fprintf(stderr, "usage: bpf_parse_diff [--mutants N] DIR...\n");
        return 2;
    }
    if (geteuid() != 0) {
        std::fprintf(stderr, "FAIL: bpf_parse_diff needs root (BPF_PROG_TEST_RUN of an XDP program)\n");
        return 1;
    }
    auto loaded = bpf::BackendProgram::load();
    if (!loaded) {
        std::fprintf(stderr, "FAIL: loading us_backend: %s\n", loaded.error().c_str());
        return 1;
    }
    bpf::BackendProgram &prog = **loaded;
    us_bpf_config cfg{};
    auto own4 = addr16("10.0.1.11"), own6 = addr16("2001:db8:1::1");
    std::memcpy(cfg.own_v4, own4.data() + 12, 4);
    std::memcpy(cfg.own_v6, own6.data(), 16);
    cfg.gue_port = htons(kGuePort);
    cfg.max_hops = kMaxHops;
    must(prog.set_config(cfg), "config");
    for (const char *t : kTrusted)
        must(prog.put_tunnel_source(addr16(t).data(), 128), "tunnel source");
    us_bpf_pool pool{};
    pool.pool_digest = kDigest;
    pool.my_slot = 0;
    pool.n_backends = 1;
    pool.table_bits = 8;
    must(prog.put_pool(0, pool), "pool");
    for (const auto &v : kVips) {
        auto a = addr16(v.addr);
        for (uint16_t port : {v.port, uint16_t(0)}) {
            must(prog.put_vip(bpf::vip_key(a.data(), port, v.proto), 0), "vip");
            g_vips.insert({a, uint32_t(port) << 8 | v.proto});
        }
    }

    std::vector<std::pair<std::string, Bytes>> inputs;
    for (const std::string &d : dirs) {
        std::error_code ec;
        for (const auto &f : std::filesystem::directory_iterator(d, ec)) {
            if (!f.is_regular_file())
                continue;
            std::ifstream in(f.path(), std::ios::binary);
            inputs.push_back({f.path().string(), Bytes(std::istreambuf_iterator<char>(in), {})});
        }
        if (ec) {
            std::fprintf(stderr, "FAIL: reading %s: %s\n", d.c_str(), ec.message().c_str());
            return 1;
        }
    }
    std::sort(inputs.begin(), inputs.end());
    if (inputs.empty()) {
        std::fprintf(stderr, "FAIL: no input in the directories given\n");
        return 1;
    }

    std::mt19937 rng(1);
    uint64_t runs = 0, refused = 0, failures = 0;
    uint64_t by_counter[US_BCTR_MAX] = {};
    auto before = prog.counters();
    if (!before) {
        std::fprintf(stderr, "FAIL: reading counters: %s\n", before.error().c_str());
        return 1;
    }
    bpf::BackendCounters last = *before;
    for (const auto &[name, seed] : inputs) {
        for (int m = 0; m <= mutants; m++) {
            Bytes frame = m == 0 ? seed : mutate(seed, rng);
            // BPF_PROG_TEST_RUN takes an XDP frame of an Ethernet header up to a page less head- and tailroom.
            if (frame.size() < 14 || frame.size() > 3000) {
                refused++;
                continue;
            }
            Expected e = model(frame);
            Run r = test_run(prog.prog_fd(), frame);
            runs++;
            auto now = prog.counters();
            if (r.err || !now) {
                std::fprintf(stderr, "FAIL: %s (mutant %d): test run error %d\n", name.c_str(), m, r.err);
                return 1;
            }
            bpf::BackendCounters expect = last;
            for (auto [c, n] : e.counters)
                expect[c] += n;
            bool same = r.retval == e.retval && *now == expect && (e.retval == XDP_DROP || r.out == e.out);
            if (!same) {
                failures++;
                std::fprintf(stderr, "DIFF %s (mutant %d): frame %s\n  C model: retval %u, counters", name.c_str(),
                             m, hex(frame).c_str(), e.retval);
                for (auto [c, n] : e.counters)
                    std::fprintf(stderr, " %s+%lu", counter_name(c), (unsigned long)n);
                std::fprintf(stderr, "\n  XDP:     retval %u, counters", r.retval);
                for (int c = 0; c < US_BCTR_MAX; c++)
                    if ((*now)[c] != last[c])
                        std::fprintf(stderr, " %s+%lu", counter_name(c), (unsigned long)((*now)[c] - last[c]));
                std::fprintf(stderr, "\n  output %s\n", r.out == e.out ? "as expected" : "differs");
                if (failures >= 20)
                    break;
            }
            for (auto [c, n] : e.counters)
                by_counter[c] += n;
            last = *now;
        }
    }
    std::printf("bpf_parse_diff: %zu inputs, %lu runs (%d mutants each), %lu refused by the kernel's size limits, "
                "%lu differences\n",
                inputs.size(), (unsigned long)runs, mutants, (unsigned long)refused, (unsigned long)failures);
    std::printf("  verdicts:");
    for (int c = 0; c < US_BCTR_MAX; c++)
        if (by_counter[c])
            std::printf(" %s %lu", counter_name(c), (unsigned long)by_counter[c]);
    std::printf("\n");
    return failures ? 1 : 0;
}
