// The table builder: for one pool, the immutable per-bucket entries the fast path reads (primary, serving,
// previous serving), built in parallel at start-up and patched incrementally when one backend changes.
//
// Per bucket it keeps the best kTop servers of the ordering with their scores. serving is the first
// operational one of those; only when all of them are down does a bucket need its full ordering again.
// A weight change or a new backend costs one hash per bucket; a health change costs work on the buckets
// that list that server in their cache only (found through a per-server index).
#pragma once

#include <cstdint>
#include <cstring>
#include <set>
#include <span>
#include <vector>

#include "config.h"
#include "huge_pages.h"
#include "ordering.h"
#include "us_key.h"

namespace understudy {

struct Member {
    uint32_t id = 0;
    uint32_t weight = 0;       // effective weight: 0 while draining
    bool operational = false;  // health up and not disabled
    bool present = false;      // false for a free slot
};

// The members of a config pool, slot = position in the config: effective weight 0 while draining,
// operational unless disabled or listed in down.
std::vector<Member> members_of(const Pool &pool, const std::set<uint32_t> &down);

// The bucket's serving server becomes `next`; its history (previous, previous2) keeps the last two distinct
// servers that served it before, most recent first.
void push_history(us_bucket_entry &e, uint16_t next);

class PoolTable {
  public:
    static constexpr int kTop = 4;

    PoolTable(const Secret &secret, uint32_t table_bits);

    // Full build; the members' positions become their slots (the indices the entries hold).
    // threads = 0 uses every CPU.
    void build(std::vector<Member> members, unsigned threads = 0);

    // Incremental changes. Each returns the buckets whose entry changed (for patching a published copy).
    const std::vector<uint32_t> &set_operational(uint32_t slot, bool operational);
    const std::vector<uint32_t> &set_weight(uint32_t slot, uint32_t weight);
    const std::vector<uint32_t> &remove(uint32_t slot);
    // Returns the slot given to the new member; the changed buckets are in last_changes().
    uint32_t add(const Member &member);

    // After a full build of the same pool (a reload): each bucket's history continues from `before`, the
    // table this one replaces, matched by server ID; a bucket whose serving server changed pushes the old
    // one onto its history. Nothing when the table sizes differ (the buckets are not the same sessions).
    void inherit_history(const PoolTable &before);

    const std::vector<uint32_t> &last_changes() const { return changed_; }
    // Buckets whose serving server is the member in slot (US_NO_SERVER: buckets with none), kept current by
    // every change, so that status and metrics never walk the buckets.
    uint64_t buckets_served(uint32_t slot) const
    {
        return slot == US_NO_SERVER ? unserved_ : slot < served_.size() ? served_[slot] : 0;
    }
    std::span<const us_bucket_entry> entries() const { return entries_; }
    const std::vector<Member> &members() const { return members_; }
    uint32_t table_bits() const { return table_bits_; }
    uint32_t buckets() const { return 1u << table_bits_; }
    size_t memory_bytes() const;

  private:
    struct Candidate {
        double score;
        uint64_t u;
        uint32_t slot;
    };
    struct Scratch {
        std::vector<uint64_t> u;
        std::vector<uint32_t> candidates;
        double last_kth = 0;  // the last score in the previous bucket's cache, for a first guess
    };

    struct Choice {
        uint16_t primary;
        uint16_t serving;
    };
    Choice compute_bucket(uint32_t bucket, Scratch &scratch);
    void compute_range(uint32_t first, uint32_t last);
    uint16_t serving_from_top(uint32_t bucket, Scratch &scratch);
    uint16_t serving_by_scan(uint32_t bucket, Scratch &scratch);
    void refresh_dense();
    void update_member_score(uint32_t slot, uint32_t weight, bool was_present);
    void commit(uint32_t bucket, uint16_t primary, uint16_t serving);
    Rank rank_of(uint32_t bucket, uint32_t k) const;
    bool overflowed(uint32_t bucket) const;
    // Calls f(bucket) for each bucket marked overflowed (rare: all of its cache down), 8 marks at a time.
    template <typename F>
    void for_each_overflowed(F f)
    {
        if (overflow_count_ == 0)
            return;
        uint32_t b = 0;
        for (; b + 8 <= buckets(); b += 8) {
            uint64_t word;
            std::memcpy(&word, &overflow_[b], 8);  // marks are 0 or 1: one bit per byte
            for (; word; word &= word - 1)
                f(b + uint32_t(__builtin_ctzll(word)) / 8);
        }
        for (; b < buckets(); b++)
            if (overflow_[b])
                f(b);
    }
    void note_listed(uint16_t slot, uint32_t bucket);
    void rebuild_index();
    void compact_index();

    Secret secret_;
    uint32_t table_bits_;
    std::vector<Member> members_;
    std::vector<uint32_t> dense_ids_;    // ids of present members, for whole-bucket scans
    std::vector<uint16_t> dense_slots_;  // their slots
    std::vector<double> dense_weights_;  // their weights, for the vectorised pruning
    HugeVector<us_bucket_entry> entries_;
    HugeVector<double> top_score_;       // kTop per bucket, best first
    HugeVector<uint16_t> top_slot_;      // US_NO_SERVER past the end when fewer than kTop members
    HugeVector<uint8_t> overflow_;       // per bucket: 1 when its serving server lies past the cache
    size_t overflow_count_ = 0;
    // Per slot, the buckets whose cache listed it at some point: appended to when a member enters a cache,
    // never trimmed one by one, so an entry may be stale or repeated and is checked against the cache
    // before use; rebuilt from the caches once it holds twice as many entries. A health change then
    // touches that server's buckets instead of scanning every cache (megabytes per pool).
    std::vector<std::vector<uint32_t>> listed_;
    size_t listed_total_ = 0;
    bool indexing_ = false;  // off during the parallel full build, which rebuilds the index after
    std::vector<uint32_t> changed_;
    void count_served(uint16_t slot, int64_t delta);
    std::vector<uint64_t> served_;  // buckets served, per slot
    uint64_t unserved_ = 0;
};

}  // namespace understudy
