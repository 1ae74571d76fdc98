// Shared by the micro-benchmarks: the EAL and mbuf pool that main() sets up, the benchmark traffic's frames
// (the same shape tools/benchlib/gen_pcap.py writes) and the per-packet counter every fast-path benchmark reports.
#pragma once

#include <benchmark/benchmark.h>
#include <rte_mbuf.h>

#include <cstdint>
#include <string>
#include <vector>

namespace understudy::bench {

constexpr uint16_t kBurst = 32;  // the worker's burst: every fast-path benchmark handles 32 packets per iteration
constexpr uint16_t kVipPort = 80;

// Created by main() after rte_eal_init (no hugepages needed).
rte_mempool *mbuf_pool();
// Frees what the fast-path benchmarks keep between runs (mbufs, connection table): main() calls it before
// the EAL goes away.
void release_fastpath_state();

// A minimum-size frame of flow f towards the benchmark VIP: IPv4 TCP 192.0.2.10:80 (60 captured bytes, a
// 64-byte frame on the wire) or IPv6 UDP [2001:db8::10]:80 (74 bytes, 78 on the wire). Flow f comes from
// source 10.0.0.0 + f (2001:db8:1:: + f), port 1024 + (f * 7919) % 64000, as in gen_pcap.py.
std::vector<uint8_t> make_frame(bool v6, uint32_t flow);
// Rewrites the source address and port of a frame made by make_frame() to flow f's (checksums are left
// stale: nothing on the fast path verifies them).
void set_flow(uint8_t *frame, bool v6, uint32_t flow);

// A config with one VIP over one pool of `backends` servers (IPv4 10.1.x.y, or IPv6 2001:db8:2::x for an
// IPv6 VIP), table_bits, forwarding method "gue" | "ipip" | "l2dsr", connection table on or off.
std::string bench_config(bool v6, uint32_t backends, uint32_t table_bits, const std::string &method, bool conn_table);

// Reports the time per packet (iteration time / kBurst) as the counter "per_pkt" (seconds; shown as ns).
inline void per_packet(benchmark::State &state)
{
    state.SetItemsProcessed(int64_t(state.iterations()) * kBurst);
    state.counters["per_pkt"] =
        benchmark::Counter(kBurst, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

}  // namespace understudy::bench
