// A worker lcore: run to completion over one RX queue. Hot code lives in worker.cpp only.
#pragma once

#include <rte_mbuf.h>
#include <rte_rcu_qsbr.h>

#include <atomic>
#include <cstdint>

#include "conn_table.h"
#include "core/config.h"
#include "snapshot.h"
#include "stats.h"

namespace understudy::dp {

constexpr uint16_t kBurst = 32;
constexpr uint16_t kNoPort = 0xffff;

struct WorkerConfig {
    uint16_t port = 0;      // polls RX queue `queue` of this port
    uint16_t queue = 0;
    uint16_t tx_port = 0;   // forwards by TX queue `tx_queue` of this port (the same port, or its tx_port)
    uint16_t tx_queue = 0;
    uint16_t tap_port = kNoPort;  // exception path: TX queue `tx_queue` of the tap; RX by the port's first worker
    rte_ether_addr mac{};   // the RX port's own: unicast frames to any other address are not for this host
    bool poll_tap = false;
    unsigned rcu_id = 0;
    NonVipPolicy non_vip = NonVipPolicy::kernel;
    uint64_t stop_after_rx = 0;   // replay: return after this many packets (0 = until stopped)
};

struct Worker {
    WorkerConfig cfg;
    rte_rcu_qsbr *rcu = nullptr;
    const std::atomic<const Snapshot *> *snapshot = nullptr;
    const std::atomic<bool> *stop = nullptr;
    uint64_t tick_hz = 1024;      // connection-table ticks per second
    uint64_t tsc_per_tick = 1;
    // Outer IPv4 identification while outer_df = false: worker i sends i + 1, i + 1 + n, ... (n workers), so
    // that two workers' packets to one backend do not share an ID until the counters wrap.
    uint16_t ip_id = 1;
    uint16_t ip_id_stride = 1;
    // ICMP "too big" token bucket: saved credit in TSC cycles, and when it was last topped up.
    uint64_t icmp_credit = 0;
    uint64_t icmp_last_tsc = 0;
    ConnTable conn;
    // The first packet handled under each new snapshot, for the table-update latency figure.
    std::atomic<uint64_t> seen_generation{0};
    std::atomic<uint64_t> first_packet_tsc{0};
    LcoreStats stats;
};

// rte_eal_remote_launch entry point; arg is a Worker.
int worker_main(void *arg);

// One burst through the pipeline: parse, look up, rewrite. Packets to transmit go to out.tx, packets for
// the kernel to out.exc, ICMP answers to packets too big for the MTU (to go back out of the port they came
// in by) to out.icmp; everything else is freed and counted. It takes at most kBurst packets and returns how
// many it took: the caller still owns pkts[returned..n). Exposed for tests and benchmarks.
struct BurstOut {
    rte_mbuf *tx[kBurst];
    rte_mbuf *exc[kBurst];
    rte_mbuf *icmp[kBurst];
    uint16_t n_tx = 0;
    uint16_t n_exc = 0;
    uint16_t n_icmp = 0;
};
uint16_t process_burst(Worker &w, const Snapshot &s, rte_mbuf **pkts, uint16_t n, uint32_t now, BurstOut &out);

}  // namespace understudy::dp
