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
 * lookup is one load. previous and previous2 are the bucket's history: the last two distinct servers that
 * served it before the current one, most recent first, US_NO_SERVER where there is none. A backend's
 * program forwards an established TCP flow it holds no socket for along serving, previous, previous2,
 * primary (bpf/README.md). */
struct us_bucket_entry {
    uint16_t primary;
    uint16_t serving;
    uint16_t previous;
    uint16_t previous2;
};

static inline uint64_t us_session_hash(const uint8_t secret[16], const struct us_session_key *key)
{
    return us_siphash(secret, (const uint8_t *)key, US_KEY_LEN, US_SESSION_C, US_SESSION_D);
}

/* Two session hashes at once, over keys laid out as us_session_key. SipHash is one long chain of dependent
 * steps; two independent chains side by side keep the core's ALUs busy where one leaves them waiting (the
 * data plane hashes a burst two by two). Same results as us_session_hash. */
static inline void us_session_hash_x2(const uint8_t secret[16], const uint8_t *a, const uint8_t *b, uint64_t *ha,
                                      uint64_t *hb)
{
    struct us_sip_state sa, sb;
    uint64_t k0 = us_load_le64(secret), k1 = us_load_le64(secret + 8);
    us_sip_init(&sa, k0, k1);
    us_sip_init(&sb, k0, k1);
    for (uint32_t off = 0; off < 32; off += 8) {
        us_sip_absorb(&sa, us_load_le64(a + off), US_SESSION_C);
        us_sip_absorb(&sb, us_load_le64(b + off), US_SESSION_C);
    }
    uint64_t la = (uint64_t)US_KEY_LEN << 56, lb = la;
    for (uint32_t i = 0; i < US_KEY_LEN - 32; i++) {
        la |= (uint64_t)a[32 + i] << (8 * i);
        lb |= (uint64_t)b[32 + i] << (8 * i);
    }
    us_sip_absorb(&sa, la, US_SESSION_C);
    us_sip_absorb(&sb, lb, US_SESSION_C);
    *ha = us_sip_finish(&sa, US_SESSION_D);
    *hb = us_sip_finish(&sb, US_SESSION_D);
}

static inline uint32_t us_bucket_of(uint64_t session_hash, uint32_t table_bits)
{
    return (uint32_t)(session_hash & ((1ULL << table_bits) - 1));
}

#endif /* US_KEY_H */
