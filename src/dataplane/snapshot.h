// What workers read: an immutable snapshot of VIPs, pools, backends and bucket tables, built by the
// control thread and published by pointer swap (reclaimed after an rte_rcu_qsbr grace period).
#pragma once

#include <rte_ether.h>
#include <rte_hash.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <memory>
#include <vector>

#include "core/config.h"
#include "core/table.h"
#include "us_wire.h"

namespace understudy::dp {

constexpr uint32_t kMaxVips = 1024;
constexpr uint32_t kMaxBackendStats = 16384;  // backends over all pools that get their own counters

struct Backend {
    uint32_t id;
    uint8_t ip_version;  // of its address: the outer header's family
    uint8_t operational;
    uint8_t mac_known;   // 0 while the neighbour table has no entry: packets are dropped, not misdirected
    uint8_t pad;
    uint16_t stat_index;
    uint8_t addr[16];
    rte_ether_addr mac;  // next hop towards it: its own (l2dsr, same segment) or the gateway's
};

struct Pool {
    const us_bucket_entry *entries;
    uint32_t mask;
    uint32_t digest;     // this node's view: membership and weights (see docs/wire.md)
    const Backend *backends;  // indexed by table slot
    uint16_t n_backends;
};

struct Vip {
    uint16_t pool;
    uint8_t method;      // understudy::Method
    uint8_t affinity;
    uint8_t conn_table;
    uint8_t ip_version;
    uint16_t stat_index;
    uint32_t idle_ticks; // conn_idle_timeout_s in connection-table ticks
};

// rte_hash key of a VIP: port 0 is the entry fragments use (they carry no ports).
struct VipKey {
    uint8_t addr[16];
    uint16_t port;       // network byte order
    uint8_t proto;
    uint8_t pad;
};

struct Source {
    uint8_t v4[4];
    uint8_t v6[16];
    rte_ether_addr port_mac;
    uint16_t gue_port;   // network byte order
    uint8_t hop_budget;
};

struct Snapshot {
    Secret secret{};
    rte_hash *vip_hash = nullptr;
    std::vector<Vip> vips;
    std::vector<Pool> pools;
    std::vector<std::vector<Backend>> backends;          // per pool, by slot
    std::vector<std::vector<us_bucket_entry>> entries;   // per pool; workers see .data()
    Source source{};
    uint64_t generation = 0;

    ~Snapshot();
};

struct SnapshotOptions {
    rte_ether_addr port_mac{};
    // Next-hop MAC of an address from the kernel's neighbour table, when the daemon has one.
    std::function<std::optional<rte_ether_addr>(const Address &)> resolve_mac;
    // Without a resolver (replay), an unknown MAC becomes default_backend_mac() instead of a drop.
};

// The outer source addresses used when [dataplane] names none (documented in docs/dataplane.md).
constexpr const char *kDefaultSourceV4 = "198.18.0.1";
constexpr const char *kDefaultSourceV6 = "2001:db8:ffff::1";
// A backend with no MAC from config or neighbour table gets 02:00:xx:xx:xx:xx built from its ID.
rte_ether_addr default_backend_mac(uint32_t id);

// Builds a snapshot from a config and one table per pool (same order as config.pools).
Result<std::unique_ptr<Snapshot>> build_snapshot(const Config &config, const std::vector<const PoolTable *> &tables,
                                                 const SnapshotOptions &options, uint64_t generation);

}  // namespace understudy::dp
