/* The canonical session key and the per-bucket table entry: the layouts that the DPDK data plane, the
 * control code and the BPF programs all read. C11, no DPDK or kernel includes; see docs/ordering.md. */
#ifndef US_KEY_H
#define US_KEY_H

#include "us_siphash.h"

#define US_KEY_LEN 37
#define US_DEFAULT_TABLE_BITS 20
#define US_NO_SERVER 0xffffu /* table index meaning "nobody is operational" */

/* 37 bytes, no padding: addresses as IPv6 (IPv4 written ::ffff:a.b.c.d), ports and addresses in network
 * byte order. A VIP with client affinity zeroes both ports. */
struct us_session_key {
    uint8_t src[16];
    uint8_t dst[16];
    uint8_t sport[2];
    uint8_t dport[2];
    uint8_t proto;
} __attribute__((packed));

/* What the fast path reads per bucket: indices into the pool's backend array (not server IDs), so a
 * lookup is one load. previous is the serving server before the last change (second chance for TCP). */
struct us_bucket_entry {
    uint16_t primary;
    uint16_t serving;
    uint16_t previous;
    uint16_t reserved;
};

static inline uint64_t us_session_hash(const uint8_t secret[16], const struct us_session_key *key)
{
    return us_siphash(secret, (const uint8_t *)key, US_KEY_LEN, US_SESSION_C, US_SESSION_D);
}

static inline uint32_t us_bucket_of(uint64_t session_hash, uint32_t table_bits)
{
    return (uint32_t)(session_hash & ((1ULL << table_bits) - 1));
}

#endif /* US_KEY_H */
