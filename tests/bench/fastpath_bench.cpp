// Micro-benchmarks of the fast path, 32 packets per iteration (the worker's burst), reported per packet:
// parsing, the session hash, the bucket-entry read, connection-table lookups, each encapsulation on an
// mbuf, and the whole per-packet pipeline (process_burst) without the PMDs' receive and transmit.
#include <rte_mbuf.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench_env.h"
#include "core/config.h"
#include "core/table.h"
#include "dataplane/conn_table.h"
#include "dataplane/encap.h"
#include "dataplane/snapshot.h"
#include "dataplane/worker.h"
#include "us_parse.h"

namespace understudy::bench {
namespace {

const Secret kSecret = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

std::string flows_label(uint32_t flows)
{
    if (flows >= 1000000 && flows % 1000000 == 0)
        return std::to_string(flows / 1000000) + "M";
    if (flows >= 1000 && flows % 1000 == 0)
        return std::to_string(flows / 1000) + "k";
    return std::to_string(flows);
}

us_session_key key_of(const us_parsed &p)
{
    us_session_key k;
    std::memcpy(k.src, p.src, 16);
    std::memcpy(k.dst, p.dst, 16);
    std::memcpy(k.sport, p.sport, 2);
    std::memcpy(k.dport, p.dport, 2);
    k.proto = p.proto;
    return k;
}

// The session hashes of flows 0..n-1 of the benchmark traffic.
std::vector<uint64_t> flow_hashes(bool v6, uint32_t n)
{
    std::vector<uint64_t> h(n);
    std::vector<uint8_t> f = make_frame(v6, 0);
    for (uint32_t i = 0; i < n; i++) {
        set_flow(f.data(), v6, i);
        us_parsed p{};
        int reason = 0;
        us_parse_packet(f.data(), f.data() + f.size(), &p, &reason);
        us_session_key k = key_of(p);
        h[i] = us_session_hash(kSecret.data(), &k);
    }
    return h;
}

void parse(benchmark::State &state, bool v6)
{
    std::vector<std::vector<uint8_t>> frames;
    for (uint32_t i = 0; i < kBurst; i++)
        frames.push_back(make_frame(v6, i));
    for (auto _ : state) {
        for (auto &f : frames) {
            us_parsed p{};
            int reason = 0;
            int verdict = us_parse_packet(f.data(), f.data() + f.size(), &p, &reason);
            benchmark::DoNotOptimize(verdict);
            benchmark::DoNotOptimize(p);
        }
    }
    per_packet(state);
}

void session_hash(benchmark::State &state)
{
    std::vector<us_session_key> keys;
    for (uint32_t i = 0; i < kBurst; i++) {
        std::vector<uint8_t> f = make_frame(false, i);
        us_parsed p{};
        int reason = 0;
        us_parse_packet(f.data(), f.data() + f.size(), &p, &reason);
        keys.push_back(key_of(p));
    }
    for (auto _ : state) {
        for (auto &k : keys) {
            uint64_t h = us_session_hash(kSecret.data(), &k);
            benchmark::DoNotOptimize(h);
        }
    }
    per_packet(state);
}

// pool.entries[hash & mask] for the flows' hashes, cycling over `flows`. Independent: the 32 reads of a
// burst can overlap (what a batched lookup with prefetches gets); dependent: each read's address waits for
// the previous read, as when packets are handled one after another with the read on the critical path.
// Templated so that the independent form has no data dependency at all (a runtime flag becomes a cmov).
template <bool Dependent>
void bucket_read(benchmark::State &state, uint32_t bits, uint32_t flows)
{
    std::vector<us_bucket_entry> entries(size_t(1) << bits);
    std::mt19937_64 rng(1);
    for (auto &e : entries)
        e = us_bucket_entry{uint16_t(rng() & 15), uint16_t(rng() & 15), 0, 0};
    const std::vector<uint64_t> hashes = flow_hashes(false, flows);
    const uint32_t mask = (1u << bits) - 1;
    uint32_t next = 0;
    uint64_t chain = 0, sum = 0;
    for (auto _ : state) {
        for (uint16_t i = 0; i < kBurst; i++) {
            uint64_t h = hashes[next];
            if constexpr (Dependent)
                h ^= chain;
            next = next + 1 == flows ? 0 : next + 1;
            const us_bucket_entry &e = entries[h & mask];
            if constexpr (Dependent)
                chain = e.serving & 1;  // 0 or 1: makes the next address wait without moving it far
            sum += e.serving;
        }
        benchmark::DoNotOptimize(sum);
    }
    per_packet(state);
}

// conn_set + conn_find over a 2^20-entry table (the daemon's default conn_table_size) holding `flows`
// flows. hit: the flows looked up are in the table (some may have been evicted when flows approach the
// capacity: see hit_ratio); miss: flows that were never inserted.
void conn_lookup(benchmark::State &state, uint32_t flows, bool hit)
{
    dp::ConnTable table;
    if (!dp::conn_table_create(table, 1u << 20, SOCKET_ID_ANY)) {
        state.SkipWithError("cannot allocate the connection table (EAL -m too small?)");
        return;
    }
    const std::vector<uint64_t> hashes = flow_hashes(false, flows);
    for (uint64_t h : hashes)
        dp::conn_insert(dp::conn_set(table, dp::conn_tag(h, 0)), dp::conn_tag(h, 0), 1, 1, 1, 1u << 30, true,
                        false);
    std::vector<uint64_t> probes(flows);
    std::mt19937_64 rng(2);
    for (uint32_t i = 0; i < flows; i++)
        probes[i] = dp::conn_tag(hit ? hashes[i] : rng(), 0);
    uint32_t next = 0;
    uint64_t found = 0, looked = 0;
    for (auto _ : state) {
        for (uint16_t i = 0; i < kBurst; i++) {
            uint64_t tag = probes[next];
            next = next + 1 == flows ? 0 : next + 1;
            dp::ConnEntry *e = dp::conn_find(dp::conn_set(table, tag), tag, 2, 1u << 30);
            found += e != nullptr;
            benchmark::DoNotOptimize(e);
        }
        looked += kBurst;
    }
    state.counters["hit_ratio"] = looked ? double(found) / double(looked) : 0;
    per_packet(state);
    dp::conn_table_free(table);
}

// 32 mbufs holding frames of 32 flows, and their parse results; reset() puts a frame back as received.
struct MbufBurst {
    rte_mbuf *m[kBurst] = {};
    us_parsed parsed[kBurst] = {};
    std::vector<uint8_t> frame[kBurst];
    bool ok = false;

    explicit MbufBurst(bool v6)
    {
        if (rte_pktmbuf_alloc_bulk(mbuf_pool(), m, kBurst) != 0)
            return;
        for (uint16_t i = 0; i < kBurst; i++) {
            frame[i] = make_frame(v6, i);
            reset(i);
            int reason = 0;
            const uint8_t *d = rte_pktmbuf_mtod(m[i], const uint8_t *);
            us_parse_packet(d, d + frame[i].size(), &parsed[i], &reason);
        }
        ok = true;
    }
    ~MbufBurst()
    {
        if (ok)
            rte_pktmbuf_free_bulk(m, kBurst);
    }
    // The encapsulations leave the inner IP packet in place and write over the Ethernet header: restoring
    // that header and the offsets is enough.
    void reset(uint16_t i)
    {
        rte_mbuf *b = m[i];
        b->data_off = RTE_PKTMBUF_HEADROOM;
        b->data_len = uint16_t(frame[i].size());
        b->pkt_len = uint32_t(frame[i].size());
        std::memcpy(rte_pktmbuf_mtod(b, uint8_t *), frame[i].data(), frame[i].size());
    }
    void reset_header(uint16_t i)
    {
        rte_mbuf *b = m[i];
        b->data_off = RTE_PKTMBUF_HEADROOM;
        b->data_len = uint16_t(frame[i].size());
        b->pkt_len = uint32_t(frame[i].size());
        std::memcpy(rte_pktmbuf_mtod(b, uint8_t *), frame[i].data(), 14);
    }
};

// method: 0 gue, 1 ipip, 2 l2dsr (understudy::Method); -1: only the per-packet reset, the baseline to
// subtract from the others.
void encap(benchmark::State &state, int method, bool v6)
{
    MbufBurst burst(v6);
    if (!burst.ok) {
        state.SkipWithError("cannot allocate mbufs");
        return;
    }
    dp::Backend b{};
    b.id = 7;
    b.ip_version = v6 ? 6 : 4;
    b.operational = 1;
    b.mac_known = 1;
    const uint8_t v4addr[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 0, 7};
    const uint8_t v6addr[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7};
    std::memcpy(b.addr, v6 ? v6addr : v4addr, 16);
    b.mac = dp::default_backend_mac(7);
    dp::Source src{};
    const uint8_t s4[4] = {198, 18, 0, 1};
    std::memcpy(src.v4, s4, 4);
    src.v6[0] = 0x20;
    src.v6[1] = 0x01;
    src.v6[15] = 1;
    src.gue_port = rte_cpu_to_be_16(6080);
    src.hop_budget = 2;
    for (auto _ : state) {
        for (uint16_t i = 0; i < kBurst; i++) {
            burst.reset_header(i);
            if (method >= 0) {
                dp::EncapInfo info{0x0123456789abcdefULL + i, 7, 0x11223344, 0, 2, 0};
                int err = dp::kEncap[method](burst.m[i], burst.parsed[i], b, src, info);
                benchmark::DoNotOptimize(err);
            }
        }
        benchmark::ClobberMemory();
    }
    per_packet(state);
}

// The whole pipeline of one worker over one burst: parse, VIP lookup, session hash, bucket, connection
// table, encapsulation, counters (process_burst). Each iteration first rewrites 32 mbufs with the next 32
// flows' frames (the receive side's copy, which "pipeline/reset_only" measures alone).
struct PipelineSpec {
    bool v6 = false;
    uint32_t flows = 1;
    bool conn = true;
    std::string method = "gue";
    uint32_t backends = 16;
    bool primary_down = false;  // backend 1 disabled: about 1/backends of sessions fail over
    std::string key() const
    {
        return std::to_string(v6) + "/" + std::to_string(flows) + "/" + std::to_string(conn) + "/" + method + "/" +
               std::to_string(backends) + "/" + std::to_string(primary_down);
    }
};

struct PipelineEnv {
    std::string key;
    std::unique_ptr<PoolTable> table;
    std::unique_ptr<dp::Snapshot> snapshot;
    std::unique_ptr<dp::Worker> worker;
    dp::StatIndex stat_index;
    std::vector<uint8_t> frame;
    rte_mbuf *m[kBurst] = {};
    bool own_mbufs = false;
    uint32_t next_flow = 0;
    std::string error;

    ~PipelineEnv()
    {
        if (own_mbufs)
            rte_pktmbuf_free_bulk(m, kBurst);
        if (worker)
            dp::conn_table_free(worker->conn);
    }
};

std::unique_ptr<PipelineEnv> g_env;  // the last one built: benchmarks of one spec run back to back

// Refills the burst with the next flows' frames; returns false if a packet was dropped (its mbuf is gone).
bool run_burst(PipelineEnv &env, const PipelineSpec &spec, uint32_t now)
{
    const uint16_t len = uint16_t(env.frame.size());
    for (uint16_t i = 0; i < kBurst; i++) {
        rte_mbuf *b = env.m[i];
        b->data_off = RTE_PKTMBUF_HEADROOM;
        b->data_len = len;
        b->pkt_len = len;
        uint8_t *d = rte_pktmbuf_mtod(b, uint8_t *);
        std::memcpy(d, env.frame.data(), len);
        set_flow(d, spec.v6, env.next_flow);
        env.next_flow = env.next_flow + 1 == spec.flows ? 0 : env.next_flow + 1;
    }
    dp::BurstOut out;
    dp::process_burst(*env.worker, *env.snapshot, env.m, kBurst, now, out);
    return out.n_tx == kBurst;
}

PipelineEnv &pipeline_env(const PipelineSpec &spec)
{
    if (g_env && g_env->key == spec.key())
        return *g_env;
    g_env.reset();
    auto env = std::make_unique<PipelineEnv>();
    env->key = spec.key();
    auto config = parse_config(bench_config(spec.v6, spec.backends, 20, spec.method, spec.conn), "bench");
    if (!config) {
        env->error = config.error();
        g_env = std::move(env);
        return *g_env;
    }
    std::set<uint32_t> down;
    if (spec.primary_down)
        down.insert(1);
    env->table = std::make_unique<PoolTable>(config->secret, 20);
    env->table->build(members_of(config->pools[0], down));
    dp::SnapshotOptions options;
    options.stat_index = &env->stat_index;
    options.port_mac = rte_ether_addr{{2, 0, 0, 0, 0, 1}};
    auto snapshot = dp::build_snapshot(*config, {env->table.get()}, options, 1);
    if (!snapshot) {
        env->error = snapshot.error();
        g_env = std::move(env);
        return *g_env;
    }
    env->snapshot = std::move(*snapshot);
    env->worker = std::make_unique<dp::Worker>();
    std::memset(&env->worker->stats, 0, sizeof env->worker->stats);
    // Sized as docs/configuration.md recommends: at least four times the flows, the default 2^20 at least.
    uint32_t conn_entries = 1u << 20;
    while (conn_entries < 4 * spec.flows)
        conn_entries *= 2;
    if (!dp::conn_table_create(env->worker->conn, conn_entries, SOCKET_ID_ANY)) {
        env->error = "cannot allocate the connection table";
        g_env = std::move(env);
        return *g_env;
    }
    env->frame = make_frame(spec.v6, 0);
    std::memcpy(env->worker->cfg.mac.addr_bytes, env->frame.data(), 6);  // the frames are for this port
    if (rte_pktmbuf_alloc_bulk(mbuf_pool(), env->m, kBurst) != 0) {
        env->error = "cannot allocate mbufs";
        g_env = std::move(env);
        return *g_env;
    }
    env->own_mbufs = true;
    // One pass over every flow first, so that the connection table holds what it holds in steady state.
    for (uint32_t done = 0; done < spec.flows; done += kBurst) {
        if (!run_burst(*env, spec, 1)) {
            env->own_mbufs = false;
            env->error = "a packet was dropped: check the benchmark config";
            break;
        }
    }
    g_env = std::move(env);
    return *g_env;
}

void pipeline(benchmark::State &state, PipelineSpec spec)
{
    PipelineEnv &env = pipeline_env(spec);
    if (!env.error.empty()) {
        state.SkipWithError(env.error.c_str());
        return;
    }
    const uint64_t *c = env.worker->stats.counters;
    uint64_t hits0 = c[US_CTR_conn_hits], misses0 = c[US_CTR_conn_misses], fail0 = c[US_CTR_failovers];
    uint64_t rx0 = c[US_CTR_rx_packets];
    for (auto _ : state) {
        if (!run_burst(env, spec, 1)) {
            env.own_mbufs = false;
            env.error = "a packet was dropped: check the benchmark config";
            state.SkipWithError(env.error.c_str());
            break;
        }
    }
    uint64_t hits = c[US_CTR_conn_hits] - hits0, misses = c[US_CTR_conn_misses] - misses0;
    if (spec.conn)
        state.counters["conn_hit_ratio"] = hits + misses ? double(hits) / double(hits + misses) : 0;
    state.counters["failover_ratio"] =
        c[US_CTR_rx_packets] > rx0 ? double(c[US_CTR_failovers] - fail0) / double(c[US_CTR_rx_packets] - rx0) : 0;
    per_packet(state);
}

// The frame rewrite run_burst() does before process_burst, alone.
void pipeline_reset_only(benchmark::State &state)
{
    MbufBurst burst(false);
    if (!burst.ok) {
        state.SkipWithError("cannot allocate mbufs");
        return;
    }
    uint32_t flow = 0;
    for (auto _ : state) {
        for (uint16_t i = 0; i < kBurst; i++) {
            burst.reset(i);
            set_flow(rte_pktmbuf_mtod(burst.m[i], uint8_t *), false, flow++ & 0xfffff);
        }
        benchmark::ClobberMemory();
    }
    per_packet(state);
}

std::string pipeline_name(const PipelineSpec &s)
{
    return std::string("pipeline/") + (s.v6 ? "ipv6_udp" : "ipv4_tcp") + "/flows:" + flows_label(s.flows) +
           "/conn:" + (s.conn ? "on" : "off") + "/" + s.method + "/backends:" + std::to_string(s.backends) +
           (s.primary_down ? "/primary_down" : "");
}

int register_all()
{
    benchmark::RegisterBenchmark("parse/ipv4_tcp", parse, false);
    benchmark::RegisterBenchmark("parse/ipv6_udp", parse, true);
    benchmark::RegisterBenchmark("session_hash", session_hash);
    for (uint32_t bits : {16u, 20u})
        for (uint32_t flows : {10000u, 1000000u})
            for (bool dep : {false, true})
                benchmark::RegisterBenchmark(("bucket_read/bits:" + std::to_string(bits) + "/flows:" + flows_label(flows) +
                                              (dep ? "/dependent" : "/independent")).c_str(),
                                             dep ? bucket_read<true> : bucket_read<false>, bits, flows);
    for (uint32_t flows : {10000u, 500000u}) {
        benchmark::RegisterBenchmark(("conn_lookup/hit/flows:" + flows_label(flows)).c_str(), conn_lookup, flows, true);
        benchmark::RegisterBenchmark(("conn_lookup/miss/flows:" + flows_label(flows)).c_str(), conn_lookup, flows, false);
    }
    benchmark::RegisterBenchmark("encap/reset_only", encap, -1, false);
    benchmark::RegisterBenchmark("encap/gue/ipv4", encap, 0, false);
    benchmark::RegisterBenchmark("encap/gue/ipv6", encap, 0, true);
    benchmark::RegisterBenchmark("encap/ipip/ipv4", encap, 1, false);
    benchmark::RegisterBenchmark("encap/ipip/ipv6", encap, 1, true);
    benchmark::RegisterBenchmark("encap/l2dsr/ipv4", encap, 2, false);

    benchmark::RegisterBenchmark("pipeline/reset_only", pipeline_reset_only);
    // The headline (IPv4 TCP, 10^6 flows, connection table, gue, 16 backends) and one axis at a time.
    const PipelineSpec head{false, 1000000, true, "gue", 16, false};
    std::vector<PipelineSpec> specs{head};
    for (uint32_t flows : {1u, 10000u}) {
        PipelineSpec s = head;
        s.flows = flows;
        specs.push_back(s);
    }
    PipelineSpec off = head;
    off.conn = false;
    specs.push_back(off);
    for (const char *m : {"ipip", "l2dsr"}) {
        PipelineSpec s = head;
        s.method = m;
        specs.push_back(s);
    }
    for (uint32_t n : {256u, 4096u}) {
        PipelineSpec s = head;
        s.backends = n;
        specs.push_back(s);
    }
    PipelineSpec down = head;
    down.primary_down = true;
    specs.push_back(down);
    PipelineSpec v6 = head;
    v6.v6 = true;
    specs.push_back(v6);
    for (const PipelineSpec &s : specs)
        benchmark::RegisterBenchmark(pipeline_name(s).c_str(), pipeline, s);
    return 0;
}

const int registered = register_all();

}  // namespace

void release_fastpath_state() { g_env.reset(); }

}  // namespace understudy::bench
