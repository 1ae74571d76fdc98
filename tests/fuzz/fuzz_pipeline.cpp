// libFuzzer target for the worker's whole burst pipeline (dp::process_burst) on real mbufs, under EAL without
// hugepages. An input is a burst of up to 40 frames, each with a small header saying how its mbuf is laid out
// (headroom, segments); the burst runs twice, under two snapshots of one world (every method, both families,
// a pool with nothing operational, a backend whose MAC is unknown), the second with the connection table the
// first left. Checked on every input: no mbuf is lost, every packet is accounted for exactly once, and every
// frame that leaves is what docs/wire.md says, byte for byte where the document fixes the bytes.
// Built with clang++ by tests/fuzz/meson.build, run for a bounded time by the fuzz-pipeline test.
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unistd.h>
#include <vector>

#include "core/config.h"
#include "core/table.h"
#include "dataplane/conn_table.h"
#include "dataplane/snapshot.h"
#include "dataplane/stats.h"
#include "dataplane/worker.h"
#include "us_key.h"
#include "us_parse.h"

#include "pipeline_world.h"

namespace {

using namespace understudy;

// The frame header of the input format (see pipeline_world.h): 2 bytes, big-endian.
constexpr uint16_t kLenMask = 0x0fff;
constexpr int kMaxFrames = dp::kBurst + 8;  // more than a burst: the rest must stay the caller's
constexpr uint16_t kHeadrooms[4] = {RTE_PKTMBUF_HEADROOM, 64, 20, 0};
constexpr uint16_t kMtu = 1500;

[[noreturn]] void fail(const char *what, int frame, const char *detail = "")
{
    std::fprintf(stderr, "pipeline invariant broken: %s (frame %d) %s\n", what, frame, detail);
    std::abort();
}
#define CHECK(cond, frame)                                                                                          \
    do {                                                                                                             \
        if (!(cond))                                                                                                 \
            fail(#cond, frame);                                                                                      \
    } while (0)

struct World {
    Config config;
    std::vector<std::unique_ptr<PoolTable>> tables[2];
    std::unique_ptr<dp::Snapshot> snapshot[2];
    dp::StatIndex stats;
};

rte_mempool *g_pool;
World *g_world;
dp::Worker *g_worker;
const rte_ether_addr kPortMac{{0x02, 0x70, 0x63, 0x61, 0x70, 0x00}};

bool build_world()
{
    auto config = parse_config(fuzz::kPipelineConfig, "fuzz_pipeline.toml");
    if (!config) {
        std::fprintf(stderr, "fuzz_pipeline: bad config: %s\n", config.error().c_str());
        return false;
    }
    g_world = new World;
    World &w = *g_world;
    w.config = std::move(*config);
    for (int v = 0; v < 2; v++) {
        std::vector<const PoolTable *> tables;
        for (const understudy::Pool &p : w.config.pools) {
            std::set<uint32_t> down;
            for (uint32_t id : fuzz::kDown[v])
                for (const understudy::Backend &b : p.backends)
                    if (b.id == id)
                        down.insert(id);
            w.tables[v].push_back(std::make_unique<PoolTable>(w.config.secret, p.table_bits));
            w.tables[v].back()->build(members_of(p, down));
            tables.push_back(w.tables[v].back().get());
        }
        dp::SnapshotOptions options;
        options.port_mac = kPortMac;
        options.stat_index = &w.stats;
        // One backend has no neighbour entry: its packets must be dropped (no_next_hop), never misdirected.
        options.resolve_mac = [](const Address &a) -> std::optional<rte_ether_addr> {
            if (a == *Address::parse(fuzz::kNoMacBackend))
                return std::nullopt;
            return dp::default_backend_mac(uint32_t(a.bytes[15]) | 0xbe00);
        };
        auto s = dp::build_snapshot(w.config, tables, options, uint64_t(v + 1));
        if (!s) {
            std::fprintf(stderr, "fuzz_pipeline: build_snapshot: %s\n", s.error().c_str());
            return false;
        }
        w.snapshot[v] = std::move(*s);
    }
    return true;
}

// One's complement sum of n bytes, big-endian words (an independent implementation, not DPDK's).
uint32_t sum16(const uint8_t *p, size_t n, uint32_t sum = 0)
{
    for (size_t i = 0; i + 1 < n; i += 2)
        sum += uint32_t(p[i]) << 8 | p[i + 1];
    if (n & 1)
        sum += uint32_t(p[n - 1]) << 8;
    return sum;
}
uint16_t fold(uint32_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return uint16_t(sum);
}
uint16_t be16(const uint8_t *p) { return uint16_t(p[0] << 8 | p[1]); }
uint32_t be32(const uint8_t *p) { return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3]; }
uint64_t be64(const uint8_t *p) { return uint64_t(be32(p)) << 32 | be32(p + 4); }

// Checksum of an IPv6 upper-layer packet with its pseudo-header: 0xffff (folded) when it is right.
uint16_t v6_upper_sum(const uint8_t *ip6, const uint8_t *l4, uint32_t len, uint8_t nh)
{
    uint32_t s = sum16(ip6 + 8, 32);
    s += len >> 16;
    s += len & 0xffff;
    s += nh;
    return fold(sum16(l4, len, s));
}

// What the caller knows of each input frame: its bytes as sent, and its parse.
struct Sent {
    std::vector<uint8_t> frame;
    bool parsed_ok = false;
    us_parsed p{};
};

// An mbuf chain holding frame, laid out as the header says; nullptr when the pool is empty.
rte_mbuf *make_mbuf(const uint8_t *frame, uint16_t len, uint16_t header)
{
    uint16_t headroom = kHeadrooms[(header >> 12) & 3];
    int segs = ((header >> 14) & 3) == 3 ? 1 : ((header >> 14) & 3) + 1;
    uint16_t room = uint16_t(RTE_MBUF_DEFAULT_BUF_SIZE - headroom);
    // Enough segments for the frame whatever the header asked (a frame longer than one buffer is chained).
    while (segs * room < len)
        segs++;
    rte_mbuf *head = nullptr, *last = nullptr;
    uint16_t done = 0;
    for (int i = 0; i < segs; i++) {
        rte_mbuf *m = rte_pktmbuf_alloc(g_pool);
        if (!m) {
            rte_pktmbuf_free(head);
            return nullptr;
        }
        m->data_off = headroom;
        uint16_t chunk = i + 1 == segs ? uint16_t(len - done) : std::min<uint16_t>(room, uint16_t(len / segs));
        if (chunk)
            std::memcpy(rte_pktmbuf_mtod(m, uint8_t *), frame + done, chunk);
        m->data_len = chunk;
        done = uint16_t(done + chunk);
        if (!head) {
            head = m;
        } else {
            last->next = m;
            head->nb_segs++;
        }
        last = m;
    }
    head->pkt_len = len;
    return head;
}

void check_lengths(const rte_mbuf *m, int frame)
{
    uint32_t sum = 0;
    uint16_t segs = 0;
    for (const rte_mbuf *s = m; s; s = s->next) {
        sum += s->data_len;
        segs++;
        CHECK(uint32_t(s->data_off) + s->data_len <= s->buf_len, frame);
    }
    CHECK(sum == m->pkt_len, frame);
    CHECK(segs == m->nb_segs, frame);
}

const dp::Vip *vip_of(const dp::Snapshot &s, const us_parsed &p)
{
    uint64_t a0, a1;
    std::memcpy(&a0, p.dst, 8);
    std::memcpy(&a1, p.dst + 8, 8);
    uint16_t port;
    std::memcpy(&port, p.dport, 2);
    int32_t i = dp::vip_find(s.vip_slots, s.vip_slot_mask, a0, a1, dp::vip_port_proto(p.fragment ? 0 : port, p.proto));
    return i < 0 ? nullptr : &s.vips[i];
}

// Outer IPv4 header as docs/wire.md says; returns its payload length.
void check_outer_v4(const uint8_t *ip, uint32_t ip_len, uint8_t proto, uint8_t inner_tos, const dp::Backend &b,
                    int frame)
{
    CHECK(ip[0] == 0x45, frame);
    CHECK(ip[1] == inner_tos, frame);
    CHECK(be16(ip + 2) == ip_len, frame);
    CHECK(be16(ip + 4) == 0, frame);       // identification 0 with DF (outer_df = true, the default)
    CHECK(be16(ip + 6) == 0x4000, frame);  // DF, offset 0
    CHECK(ip[8] == 64, frame);
    CHECK(ip[9] == proto, frame);
    CHECK(fold(sum16(ip, 20)) == 0xffff, frame);
    const uint8_t src[4] = {198, 18, 0, 1};
    CHECK(std::memcmp(ip + 12, src, 4) == 0, frame);
    CHECK(std::memcmp(ip + 16, b.addr + 12, 4) == 0, frame);
    CHECK(b.ip_version == 4, frame);
}

void check_outer_v6(const uint8_t *ip, uint32_t payload, uint8_t nh, uint8_t inner_tos, uint32_t flow_label,
                    const dp::Backend &b, int frame)
{
    CHECK(be32(ip) == (6u << 28 | uint32_t(inner_tos) << 20 | (flow_label & 0xfffff)), frame);
    CHECK(be16(ip + 4) == payload, frame);
    CHECK(ip[6] == nh, frame);
    CHECK(ip[7] == 64, frame);
    auto src = Address::parse(kDefaultSourceV6);
    CHECK(std::memcmp(ip + 8, src->bytes.data(), 16) == 0, frame);
    CHECK(std::memcmp(ip + 24, b.addr, 16) == 0, frame);
    CHECK(b.ip_version == 6, frame);
}

uint8_t tos_of(const uint8_t *ip) { return (ip[0] >> 4) == 4 ? ip[1] : uint8_t((ip[0] << 4) | (ip[1] >> 4)); }

// The backend of a pool whose address is at addr (16 bytes, IPv4-mapped for IPv4), or nullptr.
const dp::Backend *backend_at(const dp::Pool &pool, const uint8_t *addr16, uint16_t &slot)
{
    for (slot = 0; slot < pool.n_backends; slot++)
        if (pool.backends[slot].ip_version && std::memcmp(pool.backends[slot].addr, addr16, 16) == 0)
            return &pool.backends[slot];
    return nullptr;
}

// A forwarded frame: docs/wire.md for the VIP's method. pass 0 runs with an empty connection table, so
// every packet goes to its bucket's serving server; pass 1 may keep a flow on the server pass 0 chose.
void check_tx(const dp::Snapshot &s, const rte_mbuf *m, const Sent &in, int pass, int frame)
{
    CHECK(in.parsed_ok, frame);
    const us_parsed &p = in.p;
    const dp::Vip *vip = vip_of(s, p);
    CHECK(vip != nullptr, frame);
    CHECK(m->nb_segs == 1, frame);
    const uint8_t *d = rte_pktmbuf_mtod(m, const uint8_t *);
    const uint32_t len = m->pkt_len;
    const uint8_t *inner = in.frame.data() + p.l3_offset;
    const uint32_t inner_len = p.l3_len;
    const dp::Pool &pool = s.pools[vip->pool];
    CHECK(std::memcmp(d + 6, kPortMac.addr_bytes, 6) == 0, frame);

    // The session: hashed as docs/ordering.md says (ports zeroed for client affinity and fragments).
    us_session_key key{};
    std::memcpy(key.src, p.src, 16);
    std::memcpy(key.dst, p.dst, 16);
    if (vip->affinity != uint8_t(Affinity::client)) {
        std::memcpy(key.sport, p.sport, 2);
        std::memcpy(key.dport, p.dport, 2);
    }
    key.proto = p.proto;
    const uint64_t hash = us_session_hash(s.secret.data(), &key);
    const us_bucket_entry &e = pool.entries[hash & pool.mask];
    CHECK(e.serving != US_NO_SERVER, frame);
    const uint32_t primary_id = pool.backends[e.primary].id;

    uint32_t outer = 14;
    const dp::Backend *b = nullptr;
    uint16_t slot = 0;
    uint8_t flags = 0;
    const uint16_t ether_type = be16(d + 12);
    if (vip->method == uint8_t(Method::l2dsr)) {
        CHECK(ether_type == (p.ip_version == 4 ? 0x0800 : 0x86dd), frame);
        for (slot = 0; slot < pool.n_backends; slot++)
            if (pool.backends[slot].ip_version &&
                std::memcmp(pool.backends[slot].mac.addr_bytes, d, 6) == 0 &&
                (slot == e.serving || pass == 1))
                break;
        CHECK(slot < pool.n_backends, frame);
        b = &pool.backends[slot];
    } else {
        const bool v6 = ether_type == 0x86dd;
        CHECK(v6 || ether_type == 0x0800, frame);
        const uint8_t *ip = d + 14;
        CHECK(len >= 14u + (v6 ? 40 : 20), frame);
        uint8_t dst16[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        std::memcpy(v6 ? dst16 : dst16 + 12, ip + (v6 ? 24 : 16), v6 ? 16 : 4);
        b = backend_at(pool, dst16, slot);
        CHECK(b != nullptr, frame);
        CHECK(std::memcmp(d, b->mac.addr_bytes, 6) == 0, frame);
        const uint8_t inner_proto = p.ip_version == 4 ? 4 : 41;
        const uint32_t ip_hdr = v6 ? 40 : 20;
        if (vip->method == uint8_t(Method::gue)) {
            outer = 14 + ip_hdr + 8 + US_GUE_HDR_LEN;
            CHECK(len == outer + inner_len, frame);
            const uint8_t *udp = ip + ip_hdr;
            const uint8_t *gue = udp + 8;
            const uint8_t *pd = gue + 4;
            if (v6)
                check_outer_v6(ip, len - 54, 17, tos_of(inner), uint32_t(hash), *b, frame);
            else
                check_outer_v4(ip, len - 14, 17, tos_of(inner), *b, frame);
            CHECK(be16(udp) == (0xc000 | ((hash >> 32) & 0x3fff)), frame);
            CHECK(be16(udp + 2) == 6080, frame);
            CHECK(be16(udp + 4) == len - 14 - ip_hdr, frame);
            if (v6)
                CHECK(be16(udp + 6) != 0 && v6_upper_sum(ip, udp, len - 54, 17) == 0xffff, frame);
            else
                CHECK(be16(udp + 6) == 0, frame);
            CHECK(gue[0] == 0x06, frame);
            CHECK(gue[1] == inner_proto, frame);
            CHECK(gue[2] == 0 && gue[3] == 0, frame);
            CHECK(be16(pd) == 0x5553, frame);
            CHECK(pd[2] == 1, frame);
            flags = pd[3];
            CHECK((flags & ~(US_GUE_F_PINNED | US_GUE_F_FAILOVER)) == 0, frame);
            CHECK(be32(pd + 4) == primary_id, frame);
            CHECK(be64(pd + 8) == hash, frame);
            CHECK(be32(pd + 16) == pool.digest, frame);
            CHECK(pd[20] == 3, frame);  // [dataplane] hop_budget, default 3
            CHECK(pd[21] == 0 && pd[22] == 0 && pd[23] == 0, frame);
            CHECK(((flags & US_GUE_F_FAILOVER) != 0) == (b->id != primary_id), frame);
            CHECK(((flags & US_GUE_F_PINNED) != 0) == (slot != e.serving), frame);
        } else {
            CHECK(vip->method == uint8_t(Method::ipip), frame);
            outer = 14 + ip_hdr;
            CHECK(len == outer + inner_len, frame);
            if (v6)
                check_outer_v6(ip, len - 54, inner_proto, tos_of(inner), uint32_t(hash), *b, frame);
            else
                check_outer_v4(ip, len - 14, inner_proto, tos_of(inner), *b, frame);
        }
        CHECK(len - 14 <= kMtu, frame);
    }
    // The inner packet is the client's, unchanged, padding and L2 header cut.
    CHECK(len == outer + inner_len, frame);
    CHECK(std::memcmp(d + outer, inner, inner_len) == 0, frame);
    // The server: operational, with a known MAC; the bucket's serving server unless pass 1 kept a pin.
    CHECK(b->operational && b->mac_known, frame);
    CHECK(slot == e.serving || pass == 1, frame);
}

// An ICMP "too big" answer (docs/wire.md).
void check_icmp(const rte_mbuf *m, const Sent &in, int frame)
{
    CHECK(in.parsed_ok, frame);
    CHECK(m->nb_segs == 1, frame);
    const us_parsed &p = in.p;
    const uint8_t *d = rte_pktmbuf_mtod(m, const uint8_t *);
    const uint32_t len = m->pkt_len;
    const uint8_t *orig_ip = in.frame.data() + p.l3_offset;
    CHECK(std::memcmp(d, in.frame.data() + 6, 6) == 0, frame);
    CHECK(std::memcmp(d + 6, kPortMac.addr_bytes, 6) == 0, frame);
    const uint8_t *ip = d + 14;
    if (p.ip_version == 4) {
        CHECK(be16(d + 12) == 0x0800, frame);
        CHECK(len >= 14 + 28 && len - 14 <= 576, frame);
        CHECK(ip[0] == 0x45 && ip[1] == 0, frame);
        CHECK(be16(ip + 2) == len - 14, frame);
        CHECK(be16(ip + 6) == 0x4000 && ip[8] == 64 && ip[9] == 1, frame);
        CHECK(fold(sum16(ip, 20)) == 0xffff, frame);
        CHECK(std::memcmp(ip + 12, orig_ip + 16, 4) == 0 && std::memcmp(ip + 16, orig_ip + 12, 4) == 0, frame);
        const uint8_t *icmp = ip + 20;
        CHECK(icmp[0] == 3 && icmp[1] == 4, frame);
        CHECK(fold(sum16(icmp, len - 34)) == 0xffff, frame);
        uint32_t quote = len - 42;
        CHECK(quote == std::min<uint32_t>(p.l3_len, 548), frame);
        CHECK(std::memcmp(icmp + 8, orig_ip, quote) == 0, frame);
    } else {
        CHECK(be16(d + 12) == 0x86dd, frame);
        CHECK(len >= 14 + 48 && len - 14 <= 1280, frame);
        CHECK(be32(ip) == 6u << 28, frame);
        CHECK(be16(ip + 4) == len - 54 && ip[6] == 58 && ip[7] == 64, frame);
        CHECK(std::memcmp(ip + 8, orig_ip + 24, 16) == 0 && std::memcmp(ip + 24, orig_ip + 8, 16) == 0, frame);
        const uint8_t *icmp = ip + 40;
        CHECK(icmp[0] == 2 && icmp[1] == 0, frame);
        CHECK(be32(icmp + 4) >= 1280, frame);
        CHECK(v6_upper_sum(ip, icmp, len - 54, 58) == 0xffff, frame);
        uint32_t quote = len - 62;
        CHECK(quote == std::min<uint32_t>(p.l3_len, 1232), frame);
        CHECK(std::memcmp(icmp + 8, orig_ip, quote) == 0, frame);
    }
}

// One run of the burst under snapshot s; frames[i] are what the mbufs hold.
void run_pass(const dp::Snapshot &s, const std::vector<Sent> &sent, const std::vector<uint16_t> &headers, int pass)
{
    dp::Worker &w = *g_worker;
    const unsigned before = rte_mempool_avail_count(g_pool);
    const int n = int(sent.size());
    rte_mbuf *pkts[kMaxFrames];
    std::map<const rte_mbuf *, int> index;
    for (int i = 0; i < n; i++) {
        pkts[i] = make_mbuf(sent[i].frame.data(), uint16_t(sent[i].frame.size()), headers[i]);
        if (!pkts[i])
            fail("mbuf pool exhausted", i);
        index[pkts[i]] = i;
    }
    w.icmp_credit = s.source.icmp_full;  // every answer allowed: the result does not depend on time
    w.icmp_last_tsc = rte_rdtsc();
    uint64_t drops_before[US_DROP_MAX], rx_before = w.stats.counters[US_CTR_rx_packets];
    std::memcpy(drops_before, w.stats.drops, sizeof drops_before);

    dp::BurstOut out;
    const uint16_t taken = dp::process_burst(w, s, pkts, uint16_t(n), uint32_t(1000 + pass), out);
    CHECK(taken == std::min(n, int(dp::kBurst)), -1);
    CHECK(uint32_t(out.n_tx) + out.n_exc + out.n_icmp <= taken, -1);

    // Every packet taken is in exactly one place: an output, or a drop counted under one reason.
    uint64_t drops = 0;
    for (int r = 0; r < US_DROP_MAX; r++)
        drops += w.stats.drops[r] - drops_before[r];
    const uint64_t too_big = w.stats.drops[US_DROP_too_big] - drops_before[US_DROP_too_big];
    CHECK(too_big == out.n_icmp, -1);
    CHECK(drops - too_big + out.n_tx + out.n_exc + out.n_icmp == taken, -1);
    CHECK(w.stats.counters[US_CTR_rx_packets] - rx_before == taken, -1);

    std::vector<bool> seen(n, false);
    auto mark = [&](const rte_mbuf *m) {
        auto it = index.find(m);
        if (it == index.end())
            fail("an output that is none of the input mbufs", -1);
        if (it->second >= taken || seen[it->second])
            fail("an output given twice, or not taken", it->second);
        seen[it->second] = true;
        check_lengths(m, it->second);
        return it->second;
    };
    for (uint16_t i = 0; i < out.n_tx; i++) {
        int f = mark(out.tx[i]);
        check_tx(s, out.tx[i], sent[f], pass, f);
    }
    for (uint16_t i = 0; i < out.n_icmp; i++) {
        int f = mark(out.icmp[i]);
        check_icmp(out.icmp[i], sent[f], f);
    }
    for (uint16_t i = 0; i < out.n_exc; i++) {
        int f = mark(out.exc[i]);
        // The kernel gets the frame as it came.
        CHECK(out.exc[i]->pkt_len == sent[f].frame.size(), f);
        std::vector<uint8_t> copy(sent[f].frame.size());
        CHECK(rte_pktmbuf_read(out.exc[i], 0, uint32_t(copy.size()), copy.data()) != nullptr, f);
        CHECK(std::memcmp(rte_pktmbuf_read(out.exc[i], 0, uint32_t(copy.size()), copy.data()),
                          sent[f].frame.data(), copy.size()) == 0, f);
    }
    for (uint16_t i = 0; i < out.n_tx; i++)
        rte_pktmbuf_free(out.tx[i]);
    for (uint16_t i = 0; i < out.n_icmp; i++)
        rte_pktmbuf_free(out.icmp[i]);
    for (uint16_t i = 0; i < out.n_exc; i++)
        rte_pktmbuf_free(out.exc[i]);
    for (int i = taken; i < n; i++)  // not taken: still ours
        rte_pktmbuf_free(pkts[i]);
    CHECK(rte_mempool_avail_count(g_pool) == before, -1);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***)
{
    std::vector<std::string> args{"fuzz_pipeline", "--no-huge", "--no-shconf", "--no-pci", "--no-telemetry",
                                  "-m", "256", "-l", "0", "--log-level=lib.*:error",
                                  "--file-prefix=fuzz-pipeline-" + std::to_string(getpid())};
    std::vector<char *> argv;
    for (auto &a : args)
        argv.push_back(a.data());
    if (rte_eal_init(int(argv.size()), argv.data()) < 0) {
        std::fprintf(stderr, "fuzz_pipeline: EAL initialisation failed: %s\n", rte_strerror(rte_errno));
        std::exit(1);
    }
    // Nothing in it with --no-shconf, but EAL leaves it behind: gone at exit, however libFuzzer ends.
    static std::string runtime_dir = rte_eal_get_runtime_dir();
    std::atexit([] { rmdir(runtime_dir.c_str()); });
    g_pool = rte_pktmbuf_pool_create("fuzz_mbufs", 2047, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
    if (!g_pool) {
        std::fprintf(stderr, "fuzz_pipeline: cannot create the mbuf pool: %s\n", rte_strerror(rte_errno));
        std::exit(1);
    }
    if (!build_world())
        std::exit(1);
    g_worker = new dp::Worker;
    std::memset(&g_worker->stats, 0, sizeof g_worker->stats);
    g_worker->cfg.mac = kPortMac;
    g_worker->cfg.non_vip = NonVipPolicy::kernel;
    if (!dp::conn_table_create(g_worker->conn, 1024, SOCKET_ID_ANY)) {
        std::fprintf(stderr, "fuzz_pipeline: cannot allocate the connection table\n");
        std::exit(1);
    }
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    // First byte: the non-VIP policy (bit 0); then frames, each a 2-byte header and its bytes.
    g_worker->cfg.non_vip = (data[0] & 1) ? NonVipPolicy::drop : NonVipPolicy::kernel;
    std::vector<Sent> sent;
    std::vector<uint16_t> headers;
    size_t at = 1;
    while (at + 2 <= size && sent.size() < size_t(kMaxFrames)) {
        uint16_t header = be16(data + at);
        at += 2;
        size_t len = std::min<size_t>(header & kLenMask, size - at);
        Sent &s = sent.emplace_back();
        s.frame.assign(data + at, data + at + len);
        at += len;
        headers.push_back(header);
        int reason = 0;
        // (an empty vector's data() may be null: the parser is never given a null frame)
        s.parsed_ok = len && us_parse_packet(s.frame.data(), s.frame.data() + len, &s.p, &reason) == US_PARSE_OK;
    }
    if (sent.empty())
        return 0;
    // A fresh connection table for every input, so that each input replays alone.
    std::memset(g_worker->conn.sets, 0, (g_worker->conn.set_mask + 1) * sizeof(dp::ConnSet));
    run_pass(*g_world->snapshot[0], sent, headers, 0);
    run_pass(*g_world->snapshot[1], sent, headers, 1);
    return 0;
}
