/* SipHash, generic over its round counts (c compression rounds, d finalisation rounds).
 * One definition for the DPDK data plane, the control code and the BPF programs: the session hash is
 * SipHash-1-3 and the reference vectors are SipHash-2-4. C11, no DPDK or kernel includes. */
#ifndef US_SIPHASH_H
#define US_SIPHASH_H

#ifdef __BPF__
#include <linux/types.h>
typedef __u8 uint8_t;
typedef __u32 uint32_t;
typedef __u64 uint64_t;
#else
#include <stddef.h>
#include <stdint.h>
#endif

#define US_ROTL64(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

struct us_sip_state {
    uint64_t v0, v1, v2, v3;
};

static inline void us_sip_round(struct us_sip_state *s)
{
    s->v0 += s->v1; s->v1 = US_ROTL64(s->v1, 13); s->v1 ^= s->v0; s->v0 = US_ROTL64(s->v0, 32);
    s->v2 += s->v3; s->v3 = US_ROTL64(s->v3, 16); s->v3 ^= s->v2;
    s->v0 += s->v3; s->v3 = US_ROTL64(s->v3, 21); s->v3 ^= s->v0;
    s->v2 += s->v1; s->v1 = US_ROTL64(s->v1, 17); s->v1 ^= s->v2; s->v2 = US_ROTL64(s->v2, 32);
}

static inline uint64_t us_load_le64(const uint8_t *p)
{
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
           (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
}

static inline void us_sip_init(struct us_sip_state *s, uint64_t k0, uint64_t k1)
{
    s->v0 = k0 ^ 0x736f6d6570736575ULL;
    s->v1 = k1 ^ 0x646f72616e646f6dULL;
    s->v2 = k0 ^ 0x6c7967656e657261ULL;
    s->v3 = k1 ^ 0x7465646279746573ULL;
}

/* Absorb one 8-byte little-endian message word with c compression rounds. */
static inline void us_sip_absorb(struct us_sip_state *s, uint64_t m, int c)
{
    s->v3 ^= m;
    for (int i = 0; i < c; i++)
        us_sip_round(s);
    s->v0 ^= m;
}

static inline uint64_t us_sip_finish(struct us_sip_state *s, int d)
{
    s->v2 ^= 0xff;
    for (int i = 0; i < d; i++)
        us_sip_round(s);
    return s->v0 ^ s->v1 ^ s->v2 ^ s->v3;
}

/* SipHash-c-d of len bytes at data under the 16-byte key. */
static inline uint64_t us_siphash(const uint8_t key[16], const uint8_t *data, uint32_t len, int c, int d)
{
    struct us_sip_state s;
    uint32_t full = len & ~7u;
    uint64_t last = (uint64_t)(len & 0xff) << 56;

    us_sip_init(&s, us_load_le64(key), us_load_le64(key + 8));
    for (uint32_t off = 0; off < full; off += 8)
        us_sip_absorb(&s, us_load_le64(data + off), c);
    for (uint32_t i = 0; i < (len & 7u); i++)
        last |= (uint64_t)data[full + i] << (8 * i);
    us_sip_absorb(&s, last, c);
    return us_sip_finish(&s, d);
}

/* The contract's two uses. */
#define US_SESSION_C 1
#define US_SESSION_D 3

#endif /* US_SIPHASH_H */
