// The per-lcore connection table: remembers which server an established flow started on, so that a pool
// growing or a weight changing does not move it. Set-associative, fixed size, allocated once. Only the
// owning worker touches it: no locks, no atomics.
//
// Insertion and eviction (docs/dataplane.md, "Server choice and the connection table"): a new flow's entry
// starts unconfirmed; a later packet of the flow that is not a TCP SYN confirms it (for TCP the handshake's
// ACK: the SYNs of a flood from random sources never send one). A new flow takes an empty or expired way,
// else the stalest unconfirmed one, and evicts a live confirmed entry (the stalest) only when all four are
// confirmed, and never with a SYN: a flood of one-packet flows cycles through the unconfirmed ways and
// leaves established flows their pins.
#pragma once

#include <rte_common.h>

#include <cstdint>

namespace understudy::dp {

struct ConnEntry {
    uint64_t tag;        // session hash mixed with the VIP's identity (conn_tag); 0 = empty
    uint32_t last_seen;  // bits 0-30: connection-table ticks (~1 ms) mod 2^31; bit 31: confirmed
    uint16_t slot;       // backend slot in the VIP's pool
    uint16_t id_check;   // low 16 bits of that backend's ID: a reused slot does not match
};
static_assert(sizeof(ConnEntry) == 16);

constexpr int kConnWays = 4;  // one 64-byte cache line per set
constexpr uint32_t kConnConfirmed = 1u << 31;
constexpr uint32_t kConnTicks = kConnConfirmed - 1;  // ages are taken mod 2^31 ticks (~24 days)

struct alignas(RTE_CACHE_LINE_SIZE) ConnSet {
    ConnEntry way[kConnWays];
};
static_assert(sizeof(ConnSet) == RTE_CACHE_LINE_SIZE);

struct ConnTable {
    ConnSet *sets = nullptr;
    uint64_t set_mask = 0;
};

// Allocates from hugepages on the given NUMA socket; entries rounded up to a power of two.
bool conn_table_create(ConnTable &table, uint32_t entries, int socket);
void conn_table_free(ConnTable &table);

// Live entries: idle for at most max_idle ticks.
uint64_t conn_table_occupancy(const ConnTable &table, uint32_t now, uint32_t max_idle);

// vip_key is the VIP's stable identity (Vip::conn_key), never its position in the configuration: a flow
// keeps its entry when other VIPs come, go or move.
inline uint64_t conn_tag(uint64_t session_hash, uint64_t vip_key)
{
    uint64_t tag = session_hash ^ vip_key;
    return tag ? tag : 1;
}

inline ConnSet &conn_set(ConnTable &t, uint64_t tag) { return t.sets[(tag >> 32) & t.set_mask]; }

inline uint32_t conn_age(const ConnEntry &e, uint32_t now) { return (now - e.last_seen) & kConnTicks; }
inline bool conn_confirmed(const ConnEntry &e) { return e.last_seen & kConnConfirmed; }
inline uint32_t conn_stamp(uint32_t now, bool confirmed)
{
    return (now & kConnTicks) | (confirmed ? kConnConfirmed : 0);
}

// The live entry for tag, or nullptr.
inline ConnEntry *conn_find(ConnSet &set, uint64_t tag, uint32_t now, uint32_t idle)
{
    for (auto &e : set.way)
        if (e.tag == tag)
            return conn_age(e, now) <= idle ? &e : nullptr;
    return nullptr;
}

// A packet of the flow of a live entry: refreshes it, and confirms it when the packet confirms.
inline void conn_touch(ConnEntry &e, uint32_t now, bool confirms)
{
    e.last_seen = conn_stamp(now, confirms || conn_confirmed(e));
}

// What conn_insert did: took an empty or expired way (or tag's own), evicted a live entry of another flow
// (unconfirmed or confirmed), or left the set as it was.
enum class ConnInsert : uint8_t { added, evicted_unconfirmed, evicted_confirmed, refused };

// Inserts tag (or rewrites its own entry) with the given confirmation. The way it takes: tag's own or an
// empty one, else an expired one, else the stalest unconfirmed, else the stalest confirmed; ties go to the
// lower way. A SYN (syn: the packet opens a TCP flow) never evicts a confirmed entry: where only confirmed
// ways are left it is refused, and the flow gets its entry with its next packet, which is no SYN.
inline ConnInsert conn_insert(ConnSet &set, uint64_t tag, uint16_t slot, uint16_t id_check, uint32_t now,
                              uint32_t idle, bool confirmed, bool syn)
{
    ConnEntry *victim = &set.way[0];
    uint64_t worst = 0;  // rank << 32 | age: rank 2 expired (or free), 1 live unconfirmed, 0 live confirmed
    for (auto &e : set.way) {
        if (e.tag == tag || e.tag == 0) {
            victim = &e;
            worst = 2ull << 32;
            break;
        }
        // Without branches (conditional moves): which way is the stalest is data, and a branch on it is
        // mispredicted about once per insertion, which cost a flood ~10 % of its rate.
        uint32_t age = conn_age(e, now);
        uint64_t expired = age > idle;
        uint64_t rank = expired << 1 | (~expired & (~e.last_seen >> 31));
        uint64_t key = rank << 32 | age;
        bool staler = key > worst;
        victim = staler ? &e : victim;
        worst = staler ? key : worst;
    }
    ConnInsert done = ConnInsert::added;
    if (worst >> 32 == 1) {
        done = ConnInsert::evicted_unconfirmed;
    } else if (worst >> 32 == 0) {
        if (syn)
            return ConnInsert::refused;
        done = ConnInsert::evicted_confirmed;
    }
    *victim = ConnEntry{tag, conn_stamp(now, confirmed), slot, id_check};
    return done;
}

}  // namespace understudy::dp
