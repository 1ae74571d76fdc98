// Table builder: see table.h. Every comparison goes through ranks_before() and every score through
// server_score(), so the cache of best servers can never disagree with the plain ordering.
#include "table.h"

#include <algorithm>
#include <stdexcept>
#include <thread>

namespace understudy {

std::vector<Member> members_of(const Pool &pool, const std::set<uint32_t> &down)
{
    std::vector<Member> members;
    for (const Backend &b : pool.backends) {
        members.push_back(Member{b.id, b.state == AdminState::drain ? 0u : b.weight,
                                 b.state != AdminState::disabled && !down.count(b.id), true});
    }
    return members;
}

PoolTable::PoolTable(const Secret &secret, uint32_t table_bits) : secret_(secret), table_bits_(table_bits) {}

size_t PoolTable::memory_bytes() const
{
    return entries_.capacity() * sizeof(us_bucket_entry) + top_score_.capacity() * sizeof(double) +
           top_slot_.capacity() * sizeof(uint16_t) + members_.capacity() * sizeof(Member);
}

void PoolTable::refresh_dense()
{
    dense_ids_.clear();
    dense_slots_.clear();
    for (size_t s = 0; s < members_.size(); s++) {
        if (members_[s].present) {
            dense_ids_.push_back(members_[s].id);
            dense_slots_.push_back(uint16_t(s));
        }
    }
}

Rank PoolTable::rank_of(uint32_t bucket, uint32_t k) const
{
    size_t i = size_t(bucket) * kTop + k;
    const Member &m = members_[top_slot_[i]];
    return Rank{top_score_[i], server_hash(secret_, bucket, m.id), m.id};
}

// Scores are almost never equal, so u is only computed for the tie rules when they are.
static bool before(const Rank &a, const Rank &b) { return ranks_before(a, b); }

// score = w / -ln(x) <= w / (1 - x), because -ln(x) >= 1 - x: a cheap test that rules out most servers
// without a logarithm. The margin keeps rounding from ever ruling out a server that could tie.
static inline bool cannot_reach(uint64_t u, uint32_t weight, double threshold)
{
    if (weight == 0)
        return threshold > 0;
    double x = (double(u >> 11) + 0.5) / 9007199254740992.0;
    return double(weight) < threshold * (1.0 - x) * (1.0 - 1e-9);
}

PoolTable::Choice PoolTable::compute_bucket(uint32_t bucket, Scratch &scratch)
{
    size_t n = dense_ids_.size();
    scratch.u.resize(n);
    BucketHasher(secret_, bucket).hash_many(dense_ids_.data(), scratch.u.data(), n);

    Rank top[kTop];
    uint16_t slots[kTop];
    int count = 0;
    for (size_t i = 0; i < n; i++) {
        uint16_t slot = dense_slots_[i];
        uint32_t w = members_[slot].weight;
        uint64_t u = scratch.u[i];
        if (count == kTop && cannot_reach(u, w, top[kTop - 1].score))
            continue;
        Rank r{server_score(u, w), u, members_[slot].id};
        if (count == kTop && !before(r, top[kTop - 1]))
            continue;
        int pos = count < kTop ? count++ : kTop - 1;
        while (pos > 0 && before(r, top[pos - 1])) {
            top[pos] = top[pos - 1];
            slots[pos] = slots[pos - 1];
            pos--;
        }
        top[pos] = r;
        slots[pos] = slot;
    }

    size_t base = size_t(bucket) * kTop;
    for (int k = 0; k < kTop; k++) {
        top_score_[base + k] = k < count ? top[k].score : 0.0;
        top_slot_[base + k] = k < count ? slots[k] : uint16_t(US_NO_SERVER);
    }
    uint16_t primary = count ? slots[0] : uint16_t(US_NO_SERVER);
    return Choice{primary, serving_from_top(bucket, scratch)};
}

uint16_t PoolTable::serving_from_top(uint32_t bucket, Scratch &scratch)
{
    size_t base = size_t(bucket) * kTop;
    for (int k = 0; k < kTop; k++) {
        uint16_t slot = top_slot_[base + k];
        if (slot == US_NO_SERVER)
            return US_NO_SERVER;  // every member is in the cache and none is operational
        if (members_[slot].operational)
            return slot;
    }
    return serving_by_scan(bucket, scratch);
}

// All of the best kTop are down: walk the whole ordering for the best operational server.
uint16_t PoolTable::serving_by_scan(uint32_t bucket, Scratch &scratch)
{
    size_t n = dense_ids_.size();
    scratch.u.resize(n);
    BucketHasher(secret_, bucket).hash_many(dense_ids_.data(), scratch.u.data(), n);
    uint16_t best_slot = US_NO_SERVER;
    Rank best{};
    for (size_t i = 0; i < n; i++) {
        uint16_t slot = dense_slots_[i];
        const Member &m = members_[slot];
        if (!m.operational)
            continue;
        if (best_slot != US_NO_SERVER && cannot_reach(scratch.u[i], m.weight, best.score))
            continue;
        Rank r{server_score(scratch.u[i], m.weight), scratch.u[i], m.id};
        if (best_slot == US_NO_SERVER || before(r, best)) {
            best = r;
            best_slot = slot;
        }
    }
    return best_slot;
}

void PoolTable::commit(uint32_t bucket, uint16_t primary, uint16_t serving)
{
    us_bucket_entry &e = entries_[bucket];
    if (e.primary == primary && e.serving == serving)
        return;
    if (e.serving != serving)
        e.previous = e.serving;
    e.primary = primary;
    e.serving = serving;
    changed_.push_back(bucket);
}

// Full build of a range of buckets: no previous state, so previous = serving and nothing is recorded.
void PoolTable::compute_range(uint32_t first, uint32_t last)
{
    Scratch scratch;
    for (uint32_t b = first; b < last; b++) {
        Choice c = compute_bucket(b, scratch);
        entries_[b] = us_bucket_entry{c.primary, c.serving, c.serving, 0};
    }
}

void PoolTable::build(std::vector<Member> members, unsigned threads)
{
    if (members.size() >= US_NO_SERVER)
        throw std::length_error("a pool holds at most 65534 backends");
    members_ = std::move(members);
    refresh_dense();
    entries_.assign(buckets(), us_bucket_entry{US_NO_SERVER, US_NO_SERVER, US_NO_SERVER, 0});
    top_score_.assign(size_t(buckets()) * kTop, 0.0);
    top_slot_.assign(size_t(buckets()) * kTop, uint16_t(US_NO_SERVER));

    if (threads == 0)
        threads = std::max(1u, std::thread::hardware_concurrency());
    threads = std::min<unsigned>(threads, buckets() / 256 + 1);
    // Threads write disjoint ranges of buckets.
    std::vector<std::thread> pool;
    uint32_t chunk = (buckets() + threads - 1) / threads;
    for (unsigned t = 1; t < threads; t++)
        pool.emplace_back([this, t, chunk] { compute_range(t * chunk, std::min(buckets(), (t + 1) * chunk)); });
    compute_range(0, std::min(buckets(), chunk));
    for (auto &th : pool)
        th.join();
    changed_.clear();
}

static int position_in_top(const uint16_t *slots, uint32_t slot)
{
    for (int k = 0; k < PoolTable::kTop; k++)
        if (slots[k] == slot)
            return k;
    return -1;
}

// True when every server in the bucket's cache is down, so its serving server came from a full scan.
bool PoolTable::overflowed(uint32_t bucket) const
{
    uint16_t serving = entries_[bucket].serving;
    return serving == US_NO_SERVER || position_in_top(&top_slot_[size_t(bucket) * kTop], serving) < 0;
}

const std::vector<uint32_t> &PoolTable::set_operational(uint32_t slot, bool operational)
{
    changed_.clear();
    if (members_.at(slot).operational == operational)
        return changed_;
    members_[slot].operational = operational;
    Scratch scratch;
    for (uint32_t b = 0; b < buckets(); b++) {
        // Only buckets that list the server among their best, or whose serving server lies past the
        // cache (all of the best are down), can change.
        if (position_in_top(&top_slot_[size_t(b) * kTop], slot) >= 0 || overflowed(b))
            commit(b, entries_[b].primary, serving_from_top(b, scratch));
    }
    return changed_;
}

// The score of one member changed (new weight, or it just joined): each bucket either keeps its cache,
// slots the member in, or, when the member fell out of a full cache, recomputes that bucket whole.
void PoolTable::update_member_score(uint32_t slot, uint32_t weight, bool was_present)
{
    Scratch scratch;
    const uint32_t id = members_[slot].id;
    const bool everyone_fits = dense_ids_.size() <= size_t(kTop);
    for (uint32_t b = 0; b < buckets(); b++) {
        size_t base = size_t(b) * kTop;
        uint16_t *top = &top_slot_[base];
        double *score = &top_score_[base];
        int count = 0;
        while (count < kTop && top[count] != US_NO_SERVER)
            count++;
        int pos = was_present ? position_in_top(top, slot) : -1;
        uint64_t u = server_hash(secret_, b, id);

        // Still outside the cache: only a bucket whose serving server lies past the cache can change.
        auto outside = [&] {
            if (overflowed(b))
                commit(b, top[0], serving_by_scan(b, scratch));
        };
        if (pos < 0 && count == kTop && cannot_reach(u, weight, score[kTop - 1])) {
            outside();
            continue;
        }
        Rank r{server_score(u, weight), u, id};
        if (pos < 0 && count == kTop && !before(r, rank_of(b, kTop - 1))) {
            outside();
            continue;
        }

        if (pos >= 0) {
            Rank old_last = rank_of(b, uint32_t(count - 1));  // scores in the cache are still the old ones
            for (int k = pos; k + 1 < count; k++) {
                top[k] = top[k + 1];
                score[k] = score[k + 1];
            }
            count--;
            top[count] = US_NO_SERVER;
            // Members outside the cache all rank after the old last entry; if the member now ranks
            // after it too, one of them may be better: recompute the bucket.
            if (!everyone_fits && before(old_last, r)) {
                Choice c = compute_bucket(b, scratch);
                commit(b, c.primary, c.serving);
                continue;
            }
        }
        int at = count < kTop ? count++ : kTop - 1;
        while (at > 0 && before(r, rank_of(b, uint32_t(at - 1)))) {
            top[at] = top[at - 1];
            score[at] = score[at - 1];
            at--;
        }
        top[at] = uint16_t(slot);
        score[at] = r.score;
        commit(b, top[0], serving_from_top(b, scratch));
    }
}

const std::vector<uint32_t> &PoolTable::set_weight(uint32_t slot, uint32_t weight)
{
    changed_.clear();
    if (members_.at(slot).weight == weight)
        return changed_;
    members_[slot].weight = weight;
    update_member_score(slot, weight, true);
    return changed_;
}

uint32_t PoolTable::add(const Member &member)
{
    changed_.clear();
    uint32_t slot = 0;
    while (slot < members_.size() && members_[slot].present)
        slot++;
    if (slot >= US_NO_SERVER)
        throw std::length_error("a pool holds at most 65534 backends");
    if (slot == members_.size())
        members_.push_back(member);
    else
        members_[slot] = member;
    members_[slot].present = true;
    refresh_dense();
    update_member_score(slot, member.weight, false);
    return slot;
}

const std::vector<uint32_t> &PoolTable::remove(uint32_t slot)
{
    changed_.clear();
    if (!members_.at(slot).present)
        return changed_;
    members_[slot] = Member{};
    refresh_dense();
    Scratch scratch;
    for (uint32_t b = 0; b < buckets(); b++) {
        if (position_in_top(&top_slot_[size_t(b) * kTop], slot) >= 0 || overflowed(b)) {
            Choice c = compute_bucket(b, scratch);
            commit(b, c.primary, c.serving);
        }
    }
    return changed_;
}

}  // namespace understudy
