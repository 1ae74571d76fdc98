// What workers read: an immutable snapshot of VIPs, pools, backends and bucket tables, built by the
// control thread and published by pointer swap (reclaimed after an rte_rcu_qsbr grace period).
#pragma once

#include <rte_ether.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <tuple>
#include <unordered_map>
#include <optional>
#include <span>
#include <memory>
#include <utility>
#include <vector>

#include "core/config.h"
#include "core/config_limits.h"
#include "core/table.h"
#include "quic.h"
#include "us_wire.h"

namespace understudy::dp {

constexpr uint32_t kMaxVips = uint32_t(understudy::kMaxDataplaneVips);  // checked by validate_config
constexpr uint32_t kMaxBackendStats = 16384;  // backends over all pools that get their own counters

constexpr uint8_t kOuterTtl = 64;  // of the headers the balancer adds
constexpr int kMethods = 3;        // understudy::Method: gue, ipip, l2dsr

struct Backend {
    uint32_t id;
    uint8_t ip_version;  // of its address: the outer header's family
    uint8_t operational;
    uint8_t mac_known;   // 0 while the neighbour table has no entry: packets are dropped, not misdirected
    uint8_t pad;
    uint16_t stat_index;
    uint16_t ip4_sum;    // IPv4 backends: one's-complement sum of the outer header's fixed fields (encap.h)
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
    // The VIP's identity in the connection table, mixed into its tags: a hash of address, port, protocol
    // and pool, so that adding, removing or reordering other VIPs keeps this one's pinned flows.
    uint64_t conn_key;
    uint16_t pool;
    uint8_t method;      // understudy::Method
    uint8_t affinity;
    uint8_t conn_table;
    uint8_t ip_version;
    uint16_t stat_index;
    uint32_t idle_ticks; // conn_idle_timeout_s in connection-table ticks
};

// One slot of the VIP table: address, port and protocol as the fast path compares them. Port 0 is the
// entry that fragments use (they carry no ports).
struct alignas(32) VipSlot {
    uint64_t addr[2];     // the 16 address bytes (IPv4-mapped for IPv4) as two words, in memory order
    uint32_t port_proto;  // vip_port_proto(); kVipSlotEmpty marks a free slot
    uint32_t vip;         // index into VipTable::vips
};

constexpr uint32_t kVipSlotEmpty = 0xffffffff;  // no key has bits 24-31 set

inline uint32_t vip_port_proto(uint16_t port_be, uint8_t proto) { return port_be | uint32_t(proto) << 16; }

inline uint64_t vip_slot_hash(uint64_t a0, uint64_t a1, uint32_t port_proto)
{
    return ((a0 ^ (a1 * 0x9e3779b97f4a7c15ULL) ^ port_proto) * 0xc2b2ae3d27d4eb4fULL) >> 32;
}

// Open addressing with linear probing in a table at most a quarter full: the index of the slot holding the
// key, or of the free slot where the scan stopped. A packet to no VIP costs a few compares whatever it
// carries (the clusters are made by the configured VIPs only).
inline uint32_t vip_probe(const VipSlot *slots, uint32_t mask, uint64_t a0, uint64_t a1, uint32_t port_proto)
{
    for (uint32_t i = uint32_t(vip_slot_hash(a0, a1, port_proto)) & mask;; i = (i + 1) & mask) {
        const VipSlot &v = slots[i];
        if ((v.addr[0] == a0 && v.addr[1] == a1 && v.port_proto == port_proto) || v.port_proto == kVipSlotEmpty)
            return i;
    }
}

// The VIP of a packet, or -1.
inline int32_t vip_find(const VipSlot *slots, uint32_t mask, uint64_t a0, uint64_t a1, uint32_t port_proto)
{
    const VipSlot &v = slots[vip_probe(slots, mask, a0, a1, port_proto)];
    return v.port_proto == kVipSlotEmpty ? -1 : int32_t(v.vip);
}

// What the outer headers and the "too big" answers are made of ([dataplane] settings).
struct Source {
    uint8_t v4[4];
    uint8_t v6[16];
    rte_ether_addr port_mac;
    uint16_t gue_port;   // network byte order
    uint8_t hop_budget;
    uint16_t outer_frag;   // outer IPv4 flags and offset, network byte order: DF, or 0 (outer_df = false)
    uint16_t ip_id_mask;   // 0 with DF (identification 0, RFC 6864), else 0xffff: the worker's counter
    // The largest inner IP packet that fits the MTU once encapsulated, by method and outer family (0: IPv4,
    // 1: IPv6): mtu less the outer headers. A larger one is answered with ICMP (worker.cpp).
    uint16_t max_inner[kMethods][2];
    // ICMP token bucket, in TSC cycles: the cost of one message and the most a worker may save up.
    uint64_t icmp_interval;
    uint64_t icmp_full;
};

// The VIP lookup: rebuilt only when VIPs change, shared by the snapshots in between.
struct VipTable {
    std::vector<VipSlot> slots;  // a power of two, at least 4 slots per key
    std::vector<Vip> vips;
};

// Stable counter slots: a backend or VIP keeps its statistics index across publications.
class StatIndex {
  public:
    uint16_t backend(const std::string &pool, uint32_t id);
    uint16_t vip(const Address &address, uint16_t port, Protocol protocol);
    void forget_backend(const std::string &pool, uint32_t id);
    // Backend slots given again to another backend since the last call: their counters still hold the
    // previous owner's totals, which the reader subtracts (workers write the counters, so they are not reset).
    std::vector<uint16_t> take_recycled() { return std::exchange(recycled_, {}); }

  private:
    // pool -> backend ID -> index: looked up for every backend of a pool on every publication
    std::map<std::string, std::unordered_map<uint32_t, uint16_t>, std::less<>> backends_;
    size_t backend_count_ = 0;
    std::vector<uint16_t> free_backends_;
    std::vector<uint16_t> recycled_;
    std::map<std::tuple<Address, uint16_t, uint8_t>, uint16_t> vips_;
};

struct Snapshot {
    Secret secret{};
    std::shared_ptr<const VipTable> vip_table;
    const VipSlot *vip_slots = nullptr;  // vip_table's, for the fast path
    uint32_t vip_slot_mask = 0;
    const Vip *vips = nullptr;
    std::vector<Pool> pools;
    std::vector<std::vector<Backend>> backends;         // per pool, by slot; Pool::backends points here
    std::vector<std::vector<us_bucket_entry>> owned;    // entries this snapshot owns (replay); may be empty
    // QUIC VIPs (those with [[vip.quic_lb]]): their codec configurations and server-ID maps, built against
    // this snapshot's backend slots; quic_by_vip holds one pointer per VIP, nullptr for the others.
    std::vector<QuicVip> quic;
    std::vector<const QuicVip *> quic_by_vip;
    Source source{};
    uint64_t generation = 0;
};

// A copy of a pool's bucket entries for the workers to read. In hugepage memory when EAL has enough: a
// 2^20-bucket table spread over 4 KiB pages costs a TLB miss and a page walk per packet with many flows.
// Otherwise in ordinary memory (slower, not wrong).
class EntryArray {
  public:
    EntryArray() = default;
    explicit EntryArray(std::span<const us_bucket_entry> from);
    ~EntryArray();
    EntryArray(const EntryArray &) = delete;
    EntryArray &operator=(const EntryArray &) = delete;

    us_bucket_entry &operator[](size_t i) { return data_[i]; }
    const us_bucket_entry *data() const { return data_; }
    bool in_hugepages() const { return huge_; }

  private:
    us_bucket_entry *data_ = nullptr;
    bool huge_ = false;
};

struct SnapshotOptions {
    rte_ether_addr port_mac{};
    uint64_t tsc_hz = 0;  // for the ICMP rate (0: rte_get_tsc_hz())
    // Next-hop MAC of an address from the kernel's neighbour table, when the daemon has one.
    // Without a resolver (replay), an unknown MAC becomes default_backend_mac() instead of a drop.
    std::function<std::optional<rte_ether_addr>(const Address &)> resolve_mac;
    StatIndex *stat_index = nullptr;  // required
};

// A backend with no MAC from config or neighbour table gets 02:00:xx:xx:xx:xx built from its ID.
rte_ether_addr default_backend_mac(uint32_t id);

// Bytes an encapsulation adds in front of the inner IP packet (outer IP, UDP, GUE), by method and family.
uint16_t encap_overhead(Method method, bool outer_v6);

// The VIP's connection-table identity (Vip::conn_key).
uint64_t vip_conn_key(const Secret &secret, const understudy::Vip &vip);

Result<std::shared_ptr<VipTable>> build_vip_table(const Config &config, StatIndex &stat_index);

// The backends of one pool by table slot, with operational state from the table.
std::vector<Backend> build_backends(const Config &config, const understudy::Pool &pool, const PoolTable &table,
                                    const SnapshotOptions &options);

// A QUIC VIP's prepared configurations and, per configuration, the server ID of each backend present in
// the pool's table -> its slot (a backend removed from the pool is absent).
Status build_quic_vip(QuicVip &out, const understudy::Vip &vip, const understudy::Pool &pool,
                            const PoolTable &table);

// A snapshot whose pools point at the given entry arrays (one per config pool, 2^table_bits each).
// The caller keeps the arrays alive and unchanged while the snapshot may be in use.
Result<std::unique_ptr<Snapshot>> build_snapshot(const Config &config, std::shared_ptr<const VipTable> vips,
                                                 const std::vector<const PoolTable *> &tables,
                                                 const std::vector<const us_bucket_entry *> &entries,
                                                 const SnapshotOptions &options, uint64_t generation);

// Replay's one-shot form: the snapshot owns copies of the tables' entries.
Result<std::unique_ptr<Snapshot>> build_snapshot(const Config &config, const std::vector<const PoolTable *> &tables,
                                                 const SnapshotOptions &options, uint64_t generation);

}  // namespace understudy::dp
