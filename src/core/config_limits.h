// What the balancer's data plane and the agent's BPF maps can hold, declared once: the data plane and the
// agent refuse more when a config is applied, and validate_config() / validate_for_agent() refuse it first,
// when the file is checked (docs/configuration.md, "Limits"). No DPDK here; the BPF map sizes are those of
// src/common/us_bpf_maps.h.
#pragma once

#include <cstddef>
#include <cstdint>

#include "us_bpf_maps.h"

namespace understudy {

// Data plane (src/dataplane/snapshot.cpp): per-VIP counters and the VIP hash are sized for this many VIPs.
inline constexpr size_t kMaxDataplaneVips = 1024;
// A data-plane VIP names its pool by a 16-bit index.
inline constexpr size_t kMaxDataplanePools = 65536;
// [dataplane] mtu: IPv6's minimum link MTU up to what DPDK calls a jumbo frame (16128 bytes) less the
// Ethernet header and two VLAN tags. mbuf_data_room: what an mbuf's 16-bit data room holds past DPDK's
// 128-byte headroom. icmp_rate: ICMP messages per second per worker.
inline constexpr int64_t kMinMtu = 1280, kMaxMtu = 16106, kMaxDataRoom = 65535 - 128, kMaxIcmpRate = 1000000;
// DPDK as Debian builds it (RTE_MAX_ETHPORTS, RTE_MAX_LCORE; src/dataplane asserts they match): every port
// and every exception tap is an ethdev, and worker lcore numbers are below the lcore limit.
inline constexpr size_t kMaxEthdevs = 32;
inline constexpr unsigned kMaxLcore = 128;
// A VIP's conn_idle_timeout_s: connection-table ages are 31-bit counts of 1/1024 s ticks (the top bit of
// last_seen marks a confirmed flow, src/dataplane/conn_table.h), so about 24 days at most.
inline constexpr uint32_t kMaxConnIdleTimeoutS = ((uint32_t(1) << 31) - 1) / 1024;
// Interface names (exception taps, [agent] interface): IFNAMSIZ less the terminating NUL.
inline constexpr size_t kMaxIfaceName = 15;
// [agent] tunnel_sources entries the reader accepts.
inline constexpr size_t kMaxTunnelSources = 4096;

// understudy-agent (bpf/us_backend.bpf.c): us_pools and us_tables hold this many pools, us_backends this
// many backends per pool (table slots), us_vips one entry per VIP and one per VIP address and protocol (the
// fragments' entry), us_backend_ids one entry per backend over all pools, us_tunnel_sources the balancers'
// outer sources, every backend's address and [agent] tunnel_sources.
inline constexpr size_t kMaxAgentPools = US_BPF_MAX_POOLS;
inline constexpr size_t kMaxAgentBackendsPerPool = US_BPF_MAX_SLOTS;
inline constexpr size_t kMaxAgentVipEntries = US_BPF_MAX_VIPS;
inline constexpr size_t kMaxAgentBackendIds = US_BPF_MAX_IDS;
inline constexpr size_t kMaxAgentTunnelSources = US_BPF_MAX_SOURCES;

// The balancer's AF_XDP steering map (us_steer_vips) takes the same two entries per data-plane VIP.
static_assert(2 * kMaxDataplaneVips <= US_BPF_MAX_VIPS, "us_steer_vips must hold every data-plane VIP");
// us_vip_value.pool and us_bpf_pool slots are 16-bit.
static_assert(US_BPF_MAX_POOLS <= 65536 && US_BPF_MAX_SLOTS <= 65535, "16-bit pool and slot indices");

}  // namespace understudy
