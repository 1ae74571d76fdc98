// The ordering contract, written plainly. The table builder uses BucketHasher and ranks_before from here
// so that there is one definition of the score and of its tie rules.
#include "ordering.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

namespace understudy {

us_session_key make_session_key(const Address &src, uint16_t sport, const Address &dst, uint16_t dport,
                                 uint8_t proto, Affinity affinity)
{
    us_session_key key;
    std::memcpy(key.src, src.bytes.data(), 16);
    std::memcpy(key.dst, dst.bytes.data(), 16);
    if (affinity == Affinity::client)
        sport = dport = 0;
    key.sport[0] = uint8_t(sport >> 8);
    key.sport[1] = uint8_t(sport);
    key.dport[0] = uint8_t(dport >> 8);
    key.dport[1] = uint8_t(dport);
    key.proto = proto;
    return key;
}

uint64_t session_hash(const Secret &secret, const us_session_key &key)
{
    return us_session_hash(secret.data(), &key);
}

uint64_t server_hash(const Secret &secret, uint64_t bucket, uint32_t id)
{
    uint8_t msg[12];
    for (int i = 0; i < 8; i++)
        msg[i] = uint8_t(bucket >> (8 * i));
    for (int i = 0; i < 4; i++)
        msg[8 + i] = uint8_t(id >> (8 * i));
    return siphash13(secret, msg);
}

double server_score(uint64_t u, uint32_t weight)
{
    if (weight == 0)
        return 0.0;
    double x = (double(u >> 11) + 0.5) / 9007199254740992.0;  // 2^53
    double e = -std::log(x);
    // x rounds to 1.0 for the top 2^11 values of u: the contract defines the score as +infinity there.
    return e > 0 ? double(weight) / e : HUGE_VAL;
}

BucketHasher::BucketHasher(const Secret &secret, uint32_t bucket)
{
    us_sip_init(&after_bucket_, us_load_le64(secret.data()), us_load_le64(secret.data() + 8));
    us_sip_absorb(&after_bucket_, uint64_t(bucket), US_SESSION_C);
}

// The last word of the 12-byte message: le32(id), then the length in the top byte.
static constexpr uint64_t kTail = uint64_t(12) << 56;

uint64_t BucketHasher::hash(uint32_t id) const
{
    us_sip_state s = after_bucket_;
    us_sip_absorb(&s, uint64_t(id) | kTail, US_SESSION_C);
    return us_sip_finish(&s, US_SESSION_D);
}

// Eight lanes of SipHash-1-3 at once with GCC vector types; target_clones picks AVX-512 or AVX2 at run time
// and the compiler splits the lanes as the target allows. It runs billions of times in a full table build.
typedef uint64_t u64x8 __attribute__((vector_size(64)));

#define US_VROTL(x, b) (((x) << (b)) | ((x) >> (64 - (b))))
#define US_VROUND(v0, v1, v2, v3)                                                                          \
    do {                                                                                                   \
        v0 += v1; v1 = US_VROTL(v1, 13); v1 ^= v0; v0 = US_VROTL(v0, 32);                                  \
        v2 += v3; v3 = US_VROTL(v3, 16); v3 ^= v2;                                                         \
        v0 += v3; v3 = US_VROTL(v3, 21); v3 ^= v0;                                                         \
        v2 += v1; v1 = US_VROTL(v1, 17); v1 ^= v2; v2 = US_VROTL(v2, 32);                                  \
    } while (0)

__attribute__((target_clones("avx512f", "avx2", "default"))) static void
hash_lanes(const us_sip_state &st, const uint32_t *ids, uint64_t *out, size_t n)
{
    static_assert(US_SESSION_C == 1 && US_SESSION_D == 3, "hash_lanes unrolls SipHash-1-3");
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        u64x8 m;
        for (int l = 0; l < 8; l++)
            m[l] = uint64_t(ids[i + l]) | kTail;
        u64x8 v0 = st.v0 - (u64x8){}, v1 = st.v1 - (u64x8){}, v2 = st.v2 - (u64x8){}, v3 = st.v3 - (u64x8){};
        v3 ^= m;
        US_VROUND(v0, v1, v2, v3);
        v0 ^= m;
        v2 ^= 0xff;
        US_VROUND(v0, v1, v2, v3);
        US_VROUND(v0, v1, v2, v3);
        US_VROUND(v0, v1, v2, v3);
        u64x8 r = v0 ^ v1 ^ v2 ^ v3;
        std::memcpy(out + i, &r, sizeof r);
    }
    for (; i < n; i++) {
        us_sip_state s = st;
        us_sip_absorb(&s, uint64_t(ids[i]) | kTail, US_SESSION_C);
        out[i] = us_sip_finish(&s, US_SESSION_D);
    }
}

// The other direction: one server over consecutive buckets (a weight change, a server joining).
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
hash_buckets_lanes(uint64_t k0, uint64_t k1, uint32_t id, uint32_t first, uint64_t *out, size_t n)
{
    const uint64_t tail = uint64_t(id) | kTail;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        u64x8 m0;
        for (int l = 0; l < 8; l++)
            m0[l] = uint64_t(first + i + l);
        u64x8 v0 = (k0 ^ 0x736f6d6570736575ULL) - (u64x8){}, v1 = (k1 ^ 0x646f72616e646f6dULL) - (u64x8){};
        u64x8 v2 = (k0 ^ 0x6c7967656e657261ULL) - (u64x8){}, v3 = (k1 ^ 0x7465646279746573ULL) - (u64x8){};
        v3 ^= m0;
        US_VROUND(v0, v1, v2, v3);
        v0 ^= m0;
        v3 ^= tail;
        US_VROUND(v0, v1, v2, v3);
        v0 ^= tail;
        v2 ^= 0xff;
        US_VROUND(v0, v1, v2, v3);
        US_VROUND(v0, v1, v2, v3);
        US_VROUND(v0, v1, v2, v3);
        u64x8 r = v0 ^ v1 ^ v2 ^ v3;
        std::memcpy(out + i, &r, sizeof r);
    }
    for (; i < n; i++) {
        us_sip_state s;
        us_sip_init(&s, k0, k1);
        us_sip_absorb(&s, uint64_t(first + i), US_SESSION_C);
        us_sip_absorb(&s, tail, US_SESSION_C);
        out[i] = us_sip_finish(&s, US_SESSION_D);
    }
}

void server_hash_buckets(const Secret &secret, uint32_t id, uint32_t first_bucket, size_t n, uint64_t *out)
{
    hash_buckets_lanes(us_load_le64(secret.data()), us_load_le64(secret.data() + 8), id, first_bucket, out, n);
}

void BucketHasher::hash_many(const uint32_t *ids, uint64_t *out, size_t n) const
{
    hash_lanes(after_bucket_, ids, out, n);
}

uint32_t pool_digest(const Secret &secret, std::span<const ServerRef> servers)
{
    std::vector<ServerRef> sorted(servers.begin(), servers.end());
    std::sort(sorted.begin(), sorted.end(), [](const ServerRef &a, const ServerRef &b) { return a.id < b.id; });
    std::vector<uint8_t> bytes;
    for (const ServerRef &s : sorted)
        for (uint32_t v : {s.id, s.weight})
            for (int i = 0; i < 4; i++)
                bytes.push_back(uint8_t(v >> (8 * i)));
    return uint32_t(siphash13(secret, bytes));
}

std::vector<uint32_t> ordering(const Secret &secret, uint32_t bucket, std::span<const ServerRef> servers)
{
    std::vector<Rank> ranks(servers.size());
    for (size_t i = 0; i < servers.size(); i++) {
        uint64_t u = server_hash(secret, bucket, servers[i].id);
        ranks[i] = Rank{server_score(u, servers[i].weight), u, servers[i].id};
    }
    std::vector<uint32_t> order(servers.size());
    std::iota(order.begin(), order.end(), 0u);
    std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return ranks_before(ranks[a], ranks[b]); });
    return order;
}

}  // namespace understudy
