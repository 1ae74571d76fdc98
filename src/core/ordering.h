// The ordering contract of docs/ordering.md: session keys, session hash, buckets and the weighted
// rendezvous ordering of a pool's servers for a bucket. This is the plain statement of the contract;
// table.h builds the same answers fast for whole pools.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "address.h"
#include "config.h"
#include "siphash.h"
#include "us_key.h"

namespace understudy {

us_session_key make_session_key(const Address &src, uint16_t sport, const Address &dst, uint16_t dport,
                                 uint8_t proto, Affinity affinity);
uint64_t session_hash(const Secret &secret, const us_session_key &key);

// u = SipHash-1-3(secret, le64(bucket) || le32(id))
uint64_t server_hash(const Secret &secret, uint64_t bucket, uint32_t id);
// out[i] = server_hash(secret, first_bucket + i, id), vectorised where the CPU allows.
void server_hash_buckets(const Secret &secret, uint32_t id, uint32_t first_bucket, size_t n, uint64_t *out);
// score = weight / -ln(x), x = ((u >> 11) + 0.5) / 2^53
double server_score(uint64_t u, uint32_t weight);

// Hashes many server IDs for one bucket: the bucket word is absorbed once.
class BucketHasher {
  public:
    BucketHasher(const Secret &secret, uint32_t bucket);
    uint64_t hash(uint32_t id) const;
    // out[i] = hash(ids[i]); vectorised where the CPU allows
    void hash_many(const uint32_t *ids, uint64_t *out, size_t n) const;

  private:
    us_sip_state after_bucket_;
};

struct ServerRef {
    uint32_t id;
    uint32_t weight;  // effective: 0 for a draining server
};

struct Rank {
    double score;
    uint64_t u;
    uint32_t id;
};

// The contract's sort order: higher score, then higher u, then lower id.
inline bool ranks_before(const Rank &a, const Rank &b)
{
    if (a.score != b.score)
        return a.score > b.score;
    if (a.u != b.u)
        return a.u > b.u;
    return a.id < b.id;
}

// A pool's membership and effective weights, as GUE packets carry it so that receivers can tell when
// their view differs: SipHash-1-3 over le32(id) || le32(weight) for each server in ascending id order,
// low 32 bits.
uint32_t pool_digest(const Secret &secret, std::span<const ServerRef> servers);

// Positions into servers, best first.
std::vector<uint32_t> ordering(const Secret &secret, uint32_t bucket, std::span<const ServerRef> servers);

}  // namespace understudy
