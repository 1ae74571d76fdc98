// Per-lcore counters: one cache-aligned block per worker, written only by it, summed by the control thread on
// demand. Every access is a relaxed atomic one (count() and read() below): no data race, and on x86-64 the
// same plain loads and stores as before. Names come from the X-macro lists in us_wire.h.
#pragma once

#include <rte_common.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

#include "snapshot.h"
#include "us_wire.h"

namespace understudy::dp {

struct alignas(RTE_CACHE_LINE_SIZE) LcoreStats {
    uint64_t counters[US_CTR_MAX];
    uint64_t drops[US_DROP_MAX];
    uint64_t vip_packets[kMaxVips];
    uint64_t vip_bytes[kMaxVips];
    uint64_t vip_quic[kMaxVips][US_QUIC_MAX];  // QUIC VIPs' routing outcomes (quic.h)
    uint64_t backend_packets[kMaxBackendStats];
    uint64_t backend_bytes[kMaxBackendStats];
};

// The one writer adds n (a relaxed load and store, not a locked add: nobody else writes the counter).
inline void count(uint64_t &counter, uint64_t n = 1)
{
    std::atomic_ref<uint64_t> c(counter);
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

// Any thread reads it.
inline uint64_t read(const uint64_t &counter)
{
    return std::atomic_ref<uint64_t>(const_cast<uint64_t &>(counter)).load(std::memory_order_relaxed);
}

// A sum over lcores (or a copy of one).
struct StatsTotal {
    std::array<uint64_t, US_CTR_MAX> counters{};
    std::array<uint64_t, US_DROP_MAX> drops{};
    std::array<uint64_t, kMaxVips> vip_packets{}, vip_bytes{};
    std::array<std::array<uint64_t, US_QUIC_MAX>, kMaxVips> vip_quic{};
    std::array<uint64_t, kMaxBackendStats> backend_packets{}, backend_bytes{};

    void add(const LcoreStats &s);
    uint64_t total_drops() const;
};

// A port's own counters as its driver keeps them (rte_eth_stats_get), read by the control thread: what
// the NIC received but could not hand over (missed: RX ring full; nombuf: mbuf pool empty; errors) and what
// it failed to send, besides the workers' counters above.
struct PortStats {
    std::string name;
    uint64_t rx_packets = 0, rx_bytes = 0, rx_missed = 0, rx_errors = 0, rx_nombuf = 0;
    uint64_t tx_packets = 0, tx_bytes = 0, tx_errors = 0;
};

std::string_view counter_name(int counter);
std::string_view counter_help(int counter);
std::string_view drop_name(int reason);
std::string_view drop_help(int reason);
std::string_view quic_counter_name(int counter);
std::string_view quic_counter_help(int counter);

}  // namespace understudy::dp
