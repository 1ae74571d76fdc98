// The per-lcore connection table: remembers which server an established flow started on, so that a pool
// growing or a weight changing does not move it. Set-associative, fixed size, allocated once; a full set
// replaces its stalest entry. Only the owning worker touches it: no locks, no atomics.
#pragma once

#include <rte_common.h>

#include <cstdint>

namespace understudy::dp {

struct ConnEntry {
    uint64_t tag;        // session hash mixed with the VIP's identity (conn_tag); 0 = empty
    uint32_t last_seen;  // connection-table ticks (~1 ms)
    uint16_t slot;       // backend slot in the VIP's pool
    uint16_t id_check;   // low 16 bits of that backend's ID: a reused slot does not match
};

constexpr int kConnWays = 4;  // one 64-byte cache line per set

struct alignas(RTE_CACHE_LINE_SIZE) ConnSet {
    ConnEntry way[kConnWays];
};

struct ConnTable {
    ConnSet *sets = nullptr;
    uint64_t set_mask = 0;
};

// Allocates from hugepages on the given NUMA socket; entries rounded up to a power of two.
bool conn_table_create(ConnTable &table, uint32_t entries, int socket);
void conn_table_free(ConnTable &table);
uint64_t conn_table_occupancy(const ConnTable &table, uint32_t now, uint32_t max_idle);

// vip_key is the VIP's stable identity (Vip::conn_key), never its position in the configuration: a flow
// keeps its entry when other VIPs come, go or move.
inline uint64_t conn_tag(uint64_t session_hash, uint64_t vip_key)
{
    uint64_t tag = session_hash ^ vip_key;
    return tag ? tag : 1;
}

inline ConnSet &conn_set(ConnTable &t, uint64_t tag) { return t.sets[(tag >> 32) & t.set_mask]; }

// The live entry for tag, or nullptr.
inline ConnEntry *conn_find(ConnSet &set, uint64_t tag, uint32_t now, uint32_t idle)
{
    for (auto &e : set.way)
        if (e.tag == tag)
            return now - e.last_seen <= idle ? &e : nullptr;
    return nullptr;
}

// Inserts or refreshes tag; returns true when a live entry of another flow had to be evicted.
inline bool conn_insert(ConnSet &set, uint64_t tag, uint16_t slot, uint16_t id_check, uint32_t now, uint32_t idle)
{
    ConnEntry *victim = &set.way[0];
    for (auto &e : set.way) {
        if (e.tag == tag || e.tag == 0) {
            victim = &e;
            break;
        }
        if (now - e.last_seen > now - victim->last_seen)
            victim = &e;
    }
    bool evicted = victim->tag != 0 && victim->tag != tag && now - victim->last_seen <= idle;
    *victim = ConnEntry{tag, now, slot, id_check};
    return evicted;
}

}  // namespace understudy::dp
