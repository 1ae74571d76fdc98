// Table builder: see table.h. Every comparison goes through ranks_before() and every score through
// server_score(), so the cache of best servers can never disagree with the plain ordering.
#include "table.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <thread>
#include <unordered_map>

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
    size_t listed = 0;
    for (const auto &l : listed_)
        listed += l.capacity() * sizeof(uint32_t);
    return entries_.capacity() * sizeof(us_bucket_entry) + top_score_.capacity() * sizeof(double) +
           top_slot_.capacity() * sizeof(uint16_t) + members_.capacity() * sizeof(Member) + listed;
}

void PoolTable::note_listed(uint16_t slot, uint32_t bucket)
{
    if (!indexing_)
        return;
    if (slot >= listed_.size())
        listed_.resize(size_t(slot) + 1);
    listed_[slot].push_back(bucket);
    listed_total_++;
}

void PoolTable::rebuild_index()
{
    std::vector<uint32_t> count(members_.size(), 0);
    for (uint16_t slot : top_slot_)
        if (slot != US_NO_SERVER)
            count[slot]++;
    listed_.assign(members_.size(), {});
    for (size_t s = 0; s < members_.size(); s++)
        listed_[s].reserve(count[s] + count[s] / 8 + 16);  // room to grow before a vector doubles
    listed_total_ = 0;
    for (size_t i = 0; i < top_slot_.size(); i++) {
        uint16_t slot = top_slot_[i];
        if (slot != US_NO_SERVER) {
            listed_[slot].push_back(uint32_t(i / kTop));
            listed_total_++;
        }
    }
    indexing_ = true;
}

// Called at the end of each change: stale entries cost memory and time, bounded to as many as live ones.
void PoolTable::compact_index()
{
    if (listed_total_ > 2 * top_slot_.size() + 4096)
        rebuild_index();
}

void PoolTable::refresh_dense()
{
    dense_ids_.clear();
    dense_slots_.clear();
    dense_weights_.clear();
    for (size_t s = 0; s < members_.size(); s++) {
        if (members_[s].present) {
            dense_ids_.push_back(members_[s].id);
            dense_slots_.push_back(uint16_t(s));
            dense_weights_.push_back(double(members_[s].weight));
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

// The servers of one bucket that may still enter its cache: those not ruled out by cannot_reach() against
// threshold, which only grows, so this is conservative. This loop and the hashing are nearly all of a
// full build, so it compares eight or four servers at once where the CPU can. The vector forms use
// x' = ((u >> 12) + 1) / 2^52 >= x, which only lets more servers through, never fewer.
static size_t prune_scalar(const uint64_t *u, const double *weight, size_t first, size_t n, double limit, uint32_t *out)
{
    size_t k = 0;
    for (size_t i = first; i < n; i++) {
        double x = (double(u[i] >> 11) + 0.5) / 9007199254740992.0;
        out[k] = uint32_t(i);
        k += weight[i] >= limit * (1.0 - x);
    }
    return k;
}

// GCC 12's own AVX-512 headers trip -Wmaybe-uninitialized (_mm512_undefined_epi32).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
__attribute__((target("avx512f"))) static size_t prune_avx512(const uint64_t *u, const double *weight, size_t first,
                                                              size_t n, double limit, uint32_t *out)
{
    const __m512i magic = _mm512_set1_epi64(0x4330000000000000LL);  // 2^52 as a double
    const __m512d two52 = _mm512_set1_pd(4503599627370496.0), one = _mm512_set1_pd(1.0);
    const __m512d scale = _mm512_set1_pd(1.0 / 4503599627370496.0), lim = _mm512_set1_pd(limit);
    size_t k = 0, i = first;
    for (; i + 8 <= n; i += 8) {
        __m512i v = _mm512_or_si512(_mm512_srli_epi64(_mm512_loadu_si512(u + i), 12), magic);
        __m512d x = _mm512_mul_pd(_mm512_add_pd(_mm512_sub_pd(_mm512_castsi512_pd(v), two52), one), scale);
        __mmask8 keep = _mm512_cmp_pd_mask(_mm512_loadu_pd(weight + i), _mm512_mul_pd(lim, _mm512_sub_pd(one, x)),
                                           _CMP_GE_OQ);
        for (unsigned m = keep; m; m &= m - 1)
            out[k++] = uint32_t(i + unsigned(__builtin_ctz(m)));
    }
    return k + prune_scalar(u, weight, i, n, limit, out + k);
}
#pragma GCC diagnostic pop

__attribute__((target("avx2"))) static size_t prune_avx2(const uint64_t *u, const double *weight, size_t first,
                                                         size_t n, double limit, uint32_t *out)
{
    const __m256i magic = _mm256_set1_epi64x(0x4330000000000000LL);
    const __m256d two52 = _mm256_set1_pd(4503599627370496.0), one = _mm256_set1_pd(1.0);
    const __m256d scale = _mm256_set1_pd(1.0 / 4503599627370496.0), lim = _mm256_set1_pd(limit);
    size_t k = 0, i = first;
    for (; i + 4 <= n; i += 4) {
        __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(u + i));
        __m256i v = _mm256_or_si256(_mm256_srli_epi64(raw, 12), magic);
        __m256d x = _mm256_mul_pd(_mm256_add_pd(_mm256_sub_pd(_mm256_castsi256_pd(v), two52), one), scale);
        __m256d rhs = _mm256_mul_pd(lim, _mm256_sub_pd(one, x));
        int keep = _mm256_movemask_pd(_mm256_cmp_pd(_mm256_loadu_pd(weight + i), rhs, _CMP_GE_OQ));
        for (unsigned m = unsigned(keep); m; m &= m - 1)
            out[k++] = uint32_t(i + unsigned(__builtin_ctz(m)));
    }
    return k + prune_scalar(u, weight, i, n, limit, out + k);
}

using PruneFn = size_t (*)(const uint64_t *, const double *, size_t, size_t, double, uint32_t *);

static PruneFn pick_prune()
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        return prune_avx512;
    if (__builtin_cpu_supports("avx2"))
        return prune_avx2;
    return prune_scalar;
}

static size_t prune(const uint64_t *u, const double *weight, size_t first, size_t n, double threshold, uint32_t *out)
{
    static const PruneFn fn = pick_prune();
    return fn(u, weight, first, n, threshold * (1.0 - 1e-9), out);
}

PoolTable::Choice PoolTable::compute_bucket(uint32_t bucket, Scratch &scratch)
{
    size_t n = dense_ids_.size();
    scratch.u.resize(n);
    scratch.candidates.resize(n);
    BucketHasher(secret_, bucket).hash_many(dense_ids_.data(), scratch.u.data(), n);

    Rank top[kTop];
    uint16_t slots[kTop];
    int count = 0;
    auto consider = [&](size_t i) {
        uint16_t slot = dense_slots_[i];
        uint64_t u = scratch.u[i];
        if (count == kTop && cannot_reach(u, uint32_t(dense_weights_[i]), top[kTop - 1].score))
            return;
        Rank r{server_score(u, uint32_t(dense_weights_[i])), u, dense_ids_[i]};
        if (count == kTop && !before(r, top[kTop - 1]))
            return;
        int pos = count < kTop ? count++ : kTop - 1;
        while (pos > 0 && before(r, top[pos - 1])) {
            top[pos] = top[pos - 1];
            slots[pos] = slots[pos - 1];
            pos--;
        }
        top[pos] = r;
        slots[pos] = slot;
    };
    // Buckets are alike: guess that this one's cache ends near half of the last one's, keep only the servers
    // that could beat that, and check the guess afterwards (every server left out scores below it, so a
    // full cache whose last score reaches the guess is exact). A wrong guess costs a full pass.
    double guess = scratch.last_kth * 0.5;
    bool guessed = false;
    if (guess > 0 && n > size_t(4 * kTop)) {
        size_t m = prune(scratch.u.data(), dense_weights_.data(), 0, n, guess, scratch.candidates.data());
        for (size_t c = 0; c < m; c++)
            consider(scratch.candidates[c]);
        guessed = count == kTop && top[kTop - 1].score >= guess;
        if (!guessed)
            count = 0;
    }
    // Without a usable guess: a few servers exactly, then block by block only the survivors of the vector
    // test, the threshold rising as the cache fills with better servers.
    if (!guessed) {
        size_t head = std::min<size_t>(n, 8);
        for (size_t i = 0; i < head; i++)
            consider(i);
        for (size_t first = head; first < n; first += 64) {
            size_t last = std::min(n, first + 64);
            double threshold = count == kTop ? top[kTop - 1].score : -1.0;
            size_t m = prune(scratch.u.data(), dense_weights_.data(), first, last, threshold, scratch.candidates.data());
            for (size_t c = 0; c < m; c++)
                consider(scratch.candidates[c]);
        }
    }
    scratch.last_kth = count == kTop ? top[kTop - 1].score : 0.0;

    size_t base = size_t(bucket) * kTop;
    for (int k = 0; k < kTop; k++) {
        top_score_[base + k] = k < count ? top[k].score : 0.0;
        top_slot_[base + k] = k < count ? slots[k] : uint16_t(US_NO_SERVER);
        if (k < count)
            note_listed(slots[k], bucket);
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
    if (e.primary != primary || e.serving != serving) {
        if (e.serving != serving) {
            count_served(e.serving, -1);
            count_served(serving, +1);
            push_history(e, serving);
        }
        e.primary = primary;
        e.serving = serving;
        changed_.push_back(bucket);
    }
    // Callers commit after every change to a bucket's cache too, so the overflow mark follows both.
    uint8_t now = overflowed(bucket);
    if (now != overflow_[bucket]) {
        overflow_[bucket] = now;
        overflow_count_ += now ? 1 : -1;
    }
}

void PoolTable::count_served(uint16_t slot, int64_t delta)
{
    if (slot == US_NO_SERVER) {
        unserved_ += uint64_t(delta);
        return;
    }
    if (slot >= served_.size())
        served_.resize(size_t(slot) + 1, 0);
    served_[slot] += uint64_t(delta);
}

// The bucket's serving server becomes `next`: the one it replaces heads the history, which stays a list of
// distinct servers other than the serving one (a server that comes back leaves it).
void push_history(us_bucket_entry &e, uint16_t next)
{
    uint16_t was[3] = {e.serving, e.previous, e.previous2};
    uint16_t kept[2] = {US_NO_SERVER, US_NO_SERVER};
    int n = 0;
    for (uint16_t s : was)
        if (s != US_NO_SERVER && s != next && n < 2 && (n == 0 || kept[0] != s))
            kept[n++] = s;
    e.serving = next;
    e.previous = kept[0];
    e.previous2 = kept[1];
}

// Full build of a range of buckets: no history, and nothing is recorded.
void PoolTable::compute_range(uint32_t first, uint32_t last)
{
    Scratch scratch;
    for (uint32_t b = first; b < last; b++) {
        Choice c = compute_bucket(b, scratch);
        entries_[b] = us_bucket_entry{c.primary, c.serving, US_NO_SERVER, US_NO_SERVER};
        overflow_[b] = overflowed(b);  // a byte per bucket: threads never share one
    }
}

void PoolTable::build(std::vector<Member> members, unsigned threads)
{
    if (members.size() >= US_NO_SERVER)
        throw std::length_error("a pool holds at most 65534 backends");
    members_ = std::move(members);
    refresh_dense();
    entries_.assign(buckets(), us_bucket_entry{US_NO_SERVER, US_NO_SERVER, US_NO_SERVER, US_NO_SERVER});
    top_score_.assign(size_t(buckets()) * kTop, 0.0);
    top_slot_.assign(size_t(buckets()) * kTop, uint16_t(US_NO_SERVER));
    overflow_.assign(buckets(), 0);
    indexing_ = false;  // threads share the index: it is built from the caches afterwards

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
    overflow_count_ = size_t(std::count(overflow_.begin(), overflow_.end(), uint8_t(1)));
    served_.assign(members_.size(), 0);
    unserved_ = 0;
    for (const us_bucket_entry &e : entries_)
        count_served(e.serving, +1);
    rebuild_index();
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
    // Only buckets that list the server among their best, or whose serving server lies past the cache
    // (all of the best are down), can change. Neither path adds to the index.
    if (slot < listed_.size())
        for (uint32_t b : listed_[slot])
            if (position_in_top(&top_slot_[size_t(b) * kTop], slot) >= 0)
                commit(b, entries_[b].primary, serving_from_top(b, scratch));
    for_each_overflowed([&](uint32_t b) { commit(b, entries_[b].primary, serving_from_top(b, scratch)); });
    std::sort(changed_.begin(), changed_.end());
    return changed_;
}

// The score of one member changed (new weight, or it just joined): each bucket either keeps its cache,
// slots the member in, or, when the member fell out of a full cache, recomputes that bucket whole.
void PoolTable::update_member_score(uint32_t slot, uint32_t weight, bool was_present)
{
    Scratch scratch;
    const uint32_t id = members_[slot].id;
    const bool everyone_fits = dense_ids_.size() <= size_t(kTop);
    constexpr uint32_t kChunk = 4096;
    uint64_t hashes[kChunk];
    for (uint32_t b = 0; b < buckets(); b++) {
        if (b % kChunk == 0)
            server_hash_buckets(secret_, id, b, std::min(kChunk, buckets() - b), hashes);
        size_t base = size_t(b) * kTop;
        uint16_t *top = &top_slot_[base];
        double *score = &top_score_[base];
        int count = 0;
        while (count < kTop && top[count] != US_NO_SERVER)
            count++;
        int pos = was_present ? position_in_top(top, slot) : -1;
        uint64_t u = hashes[b % kChunk];

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
        note_listed(uint16_t(slot), b);
        commit(b, top[0], serving_from_top(b, scratch));
    }
}

const std::vector<uint32_t> &PoolTable::set_weight(uint32_t slot, uint32_t weight)
{
    changed_.clear();
    if (members_.at(slot).weight == weight)
        return changed_;
    members_[slot].weight = weight;
    refresh_dense();
    update_member_score(slot, weight, true);
    compact_index();
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
    compact_index();
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
    // Its buckets (through the index; recomputing adds the others that enter those caches to it), and
    // those whose serving server lies past the cache.
    std::vector<uint32_t> mine;
    if (slot < listed_.size()) {
        mine.swap(listed_[slot]);
        listed_total_ -= mine.size();
    }
    for (uint32_t b : mine) {
        if (position_in_top(&top_slot_[size_t(b) * kTop], slot) >= 0) {
            Choice c = compute_bucket(b, scratch);
            commit(b, c.primary, c.serving);
        }
    }
    for_each_overflowed([&](uint32_t b) {
        Choice c = compute_bucket(b, scratch);
        commit(b, c.primary, c.serving);
    });
    // A free slot may be given to another server: no bucket's history may name it any more.
    for (uint32_t b = 0; b < buckets(); b++) {
        us_bucket_entry &e = entries_[b];
        if (e.previous != slot && e.previous2 != slot)
            continue;
        if (e.previous == slot) {
            e.previous = e.previous2;
        }
        e.previous2 = US_NO_SERVER;
        changed_.push_back(b);
    }
    std::sort(changed_.begin(), changed_.end());
    changed_.erase(std::unique(changed_.begin(), changed_.end()), changed_.end());
    compact_index();
    return changed_;
}

void PoolTable::inherit_history(const PoolTable &before)
{
    if (before.table_bits_ != table_bits_ || before.entries_.size() != entries_.size())
        return;
    // Old slot -> new slot, through the servers' IDs; a server no longer in the pool leaves the history.
    std::unordered_map<uint32_t, uint16_t> now_by_id;
    for (size_t now = 0; now < members_.size(); now++)
        if (members_[now].present)
            now_by_id[members_[now].id] = uint16_t(now);
    std::vector<uint16_t> slot_of(before.members_.size(), uint16_t(US_NO_SERVER));
    for (size_t old = 0; old < before.members_.size(); old++)
        if (auto it = now_by_id.find(before.members_[old].id); before.members_[old].present && it != now_by_id.end())
            slot_of[old] = it->second;
    auto map = [&](uint16_t old) { return old < slot_of.size() ? slot_of[old] : uint16_t(US_NO_SERVER); };
    for (uint32_t b = 0; b < buckets(); b++) {
        // The servers that served the bucket, newest first, in the new slots; the new serving server and
        // the ones that are gone leave the list. When the serving server changed, the old one heads it.
        const us_bucket_entry &o = before.entries_[b];
        us_bucket_entry &e = entries_[b];
        uint16_t kept[2] = {US_NO_SERVER, US_NO_SERVER};
        int n = 0;
        for (uint16_t old : {o.serving, o.previous, o.previous2}) {
            uint16_t s = map(old);
            if (s != US_NO_SERVER && s != e.serving && n < 2 && (n == 0 || kept[0] != s))
                kept[n++] = s;
        }
        e.previous = kept[0];
        e.previous2 = kept[1];
    }
}

}  // namespace understudy
