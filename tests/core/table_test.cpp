// The table builder against the plain ordering: full builds, every kind of incremental change, and the
// disruption properties of the contract.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <algorithm>
#include <map>
#include <random>
#include <set>

#include "core/table.h"

using namespace understudy;

static const Secret kSecret{0xde, 0xad, 0xbe, 0xef, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

// The plain contract over the present members: (primary slot, serving slot).
static std::pair<uint16_t, uint16_t> plain(uint32_t bucket, const std::vector<Member> &members)
{
    std::vector<ServerRef> refs;
    std::vector<uint16_t> slots;
    for (size_t s = 0; s < members.size(); s++) {
        if (members[s].present) {
            refs.push_back(ServerRef{members[s].id, members[s].weight});
            slots.push_back(uint16_t(s));
        }
    }
    if (refs.empty())
        return {US_NO_SERVER, US_NO_SERVER};
    auto order = ordering(kSecret, bucket, refs);
    uint16_t serving = US_NO_SERVER;
    for (uint32_t p : order) {
        if (members[slots[p]].operational) {
            serving = slots[p];
            break;
        }
    }
    return {slots[order[0]], serving};
}

static void expect_matches_plain(const PoolTable &t, const std::string &what)
{
    for (uint32_t b = 0; b < t.buckets(); b++) {
        auto [primary, serving] = plain(b, t.members());
        ASSERT_EQ(t.entries()[b].primary, primary) << what << " bucket " << b;
        ASSERT_EQ(t.entries()[b].serving, serving) << what << " bucket " << b;
    }
}

static std::vector<Member> random_members(std::mt19937 &rng, size_t n)
{
    std::vector<Member> m;
    for (size_t i = 0; i < n; i++) {
        uint32_t w = rng() % 5 == 0 ? 0 : 1 + rng() % 300;
        m.push_back(Member{uint32_t(rng() % 100000 + 1), w, rng() % 4 != 0, true});
    }
    return m;
}

TEST(PoolTable, BuildMatchesPlainOrdering)
{
    std::mt19937 rng(7);
    for (size_t n : {0, 1, 2, 3, 4, 5, 9, 40}) {
        PoolTable t(kSecret, 10);
        t.build(random_members(rng, n), 2);
        expect_matches_plain(t, "n=" + std::to_string(n));
        for (uint32_t b = 0; b < t.buckets(); b++) {
            ASSERT_EQ(t.entries()[b].previous, US_NO_SERVER) << "a new table has no history";
            ASSERT_EQ(t.entries()[b].previous2, US_NO_SERVER);
        }
    }
}

// The history rule of us_key.h, written out plainly: the servers that served the bucket, newest first,
// without repeats, without the current serving server, at most two.
static std::vector<uint16_t> history_after(const us_bucket_entry &before, uint16_t serving_now)
{
    std::vector<uint16_t> h;
    for (uint16_t s : {before.serving, before.previous, before.previous2})
        if (s != US_NO_SERVER && s != serving_now && std::find(h.begin(), h.end(), s) == h.end())
            h.push_back(s);
    h.resize(std::min<size_t>(h.size(), 2));
    return h;
}

static std::vector<uint16_t> history_of(const us_bucket_entry &e)
{
    std::vector<uint16_t> h;
    for (uint16_t s : {e.previous, e.previous2})
        if (s != US_NO_SERVER)
            h.push_back(s);
    return h;
}

TEST(PoolTable, EveryServerDownMeansNoServing)
{
    std::vector<Member> m{{1, 100, false, true}, {2, 100, false, true}, {3, 0, false, true}};
    PoolTable t(kSecret, 8);
    t.build(m, 1);
    for (auto e : t.entries()) {
        EXPECT_NE(e.primary, US_NO_SERVER);
        EXPECT_EQ(e.serving, US_NO_SERVER);
    }
}

// Random changes, each checked against the plain ordering, with the change list and the previous
// serving server checked against a snapshot taken before the change.
TEST(PoolTable, IncrementalChangesMatchPlainOrdering)
{
    std::mt19937 rng(42);
    for (size_t n : {3, 6, 30}) {
        PoolTable t(kSecret, 9);
        t.build(random_members(rng, n), 1);
        for (int step = 0; step < 60; step++) {
            std::vector<us_bucket_entry> before(t.entries().begin(), t.entries().end());
            std::vector<uint32_t> present;
            for (size_t s = 0; s < t.members().size(); s++)
                if (t.members()[s].present)
                    present.push_back(uint32_t(s));
            int op = present.size() < 2 ? 2 : int(rng() % 5);
            uint32_t slot = present.empty() ? 0 : present[rng() % present.size()];
            std::string what = "n=" + std::to_string(n) + " step " + std::to_string(step) + " op " + std::to_string(op);
            std::vector<uint32_t> changed;
            switch (op) {
            case 0:
            case 1:
                changed = t.set_operational(slot, !t.members()[slot].operational);
                break;
            case 2:
                t.add(Member{uint32_t(200000 + step), rng() % 3 == 0 ? 0u : uint32_t(1 + rng() % 300), rng() % 2 == 0, true});
                changed = t.last_changes();
                break;
            case 3:
                changed = t.set_weight(slot, rng() % 4 == 0 ? 0 : 1 + rng() % 300);
                break;
            case 4:
                changed = t.remove(slot);
                break;
            }
            expect_matches_plain(t, what);
            std::set<uint32_t> listed(changed.begin(), changed.end());
            ASSERT_EQ(listed.size(), changed.size()) << what << ": a bucket listed twice";
            for (uint32_t b = 0; b < t.buckets(); b++) {
                const auto &now = t.entries()[b];
                std::vector<uint16_t> want = now.serving != before[b].serving ? history_after(before[b], now.serving)
                                                                             : history_of(before[b]);
                if (op == 4)  // a removed server's slot may be given to another: it leaves every history
                    std::erase(want, uint16_t(slot));
                ASSERT_EQ(history_of(now), want) << what << " bucket " << b;
                ASSERT_TRUE(now.previous != US_NO_SERVER || now.previous2 == US_NO_SERVER) << what << ": a gap";
                bool differs = now.primary != before[b].primary || now.serving != before[b].serving ||
                               now.previous != before[b].previous || now.previous2 != before[b].previous2;
                ASSERT_EQ(differs, listed.count(b) == 1) << what << " bucket " << b;
            }
            // The per-server counts kept along the way equal a count over the entries.
            std::map<uint16_t, uint64_t> counted;
            for (const auto &e : t.entries())
                counted[e.serving]++;
            for (uint32_t s = 0; s < t.members().size(); s++)
                ASSERT_EQ(t.buckets_served(s), counted[uint16_t(s)]) << what << " slot " << s;
            ASSERT_EQ(t.buckets_served(US_NO_SERVER), counted[US_NO_SERVER]) << what;
        }
    }
}

// Health changes find their buckets through a per-server index that weight changes and additions append
// to and that is rebuilt when it grows: after enough changes to rebuild it several times, every health
// change still gives exactly the plain ordering, and the index stays bounded.
TEST(PoolTable, HealthChangesStayExactAcrossIndexRebuilds)
{
    std::mt19937 rng(5);
    PoolTable t(kSecret, 8);
    t.build(random_members(rng, 40), 1);
    size_t memory_after_build = t.memory_bytes();
    for (int step = 0; step < 3000; step++) {
        uint32_t slot = uint32_t(rng() % t.members().size());
        if (!t.members()[slot].present)
            continue;
        if (step % 3 == 0) {
            t.set_operational(slot, !t.members()[slot].operational);
            if (step % 30 == 0)
                expect_matches_plain(t, "step " + std::to_string(step));
        } else {
            t.set_weight(slot, 1 + uint32_t(rng() % 300));
        }
    }
    for (uint32_t slot = 0; slot < t.members().size(); slot++) {
        t.set_operational(slot, !t.members()[slot].operational);
        expect_matches_plain(t, "final toggle of slot " + std::to_string(slot));
    }
    EXPECT_LT(t.memory_bytes(), memory_after_build + 4 * 2 * t.buckets() * PoolTable::kTop * sizeof(uint32_t) + 65536);
}

// Two changes back: a bucket that moved A -> B -> C remembers B then A, and one that moves back to A keeps
// B and drops A from its history (A serves it again).
TEST(PoolTable, HistoryKeepsTwoServersBack)
{
    std::vector<Member> m;
    for (uint32_t i = 0; i < 8; i++)
        m.push_back(Member{i + 1, 100, true, true});
    PoolTable t(kSecret, 10);
    t.build(m, 1);
    std::vector<us_bucket_entry> first(t.entries().begin(), t.entries().end());
    t.set_operational(first[0].serving, false);
    uint16_t a = first[0].serving, b = t.entries()[0].serving;
    t.set_operational(b, false);
    uint16_t c = t.entries()[0].serving;
    ASSERT_NE(c, a);
    ASSERT_NE(c, b);
    EXPECT_EQ(t.entries()[0].previous, b);
    EXPECT_EQ(t.entries()[0].previous2, a);
    t.set_operational(a, true);
    EXPECT_EQ(t.entries()[0].serving, a);
    EXPECT_EQ(t.entries()[0].previous, c);
    EXPECT_EQ(t.entries()[0].previous2, b);
}

// A reload rebuilds a pool whole: the new table continues each bucket's history from the old one by server
// ID, whatever slots the servers have now; servers that left the pool leave the history.
TEST(PoolTable, HistoryCarriesAcrossARebuild)
{
    std::mt19937 rng(11);
    std::vector<Member> old_members = random_members(rng, 12);
    for (auto &m : old_members)
        m.operational = true;
    PoolTable old_table(kSecret, 10);
    old_table.build(old_members, 1);
    for (int i = 0; i < 4; i++)  // some history first
        old_table.set_operational(uint32_t(rng() % old_members.size()), false);

    // The new pool: one server gone, two joined, the rest in another order (other slots).
    std::vector<Member> new_members(old_members.begin() + 1, old_members.end());
    std::shuffle(new_members.begin(), new_members.end(), rng);
    new_members.push_back(Member{900001, 150, true, true});
    new_members.push_back(Member{900002, 80, true, true});
    for (auto &m : new_members)
        for (const auto &o : old_table.members())
            if (o.id == m.id)
                m.operational = o.operational;
    PoolTable t(kSecret, 10);
    t.build(new_members, 1);
    t.inherit_history(old_table);

    auto id_of = [](const PoolTable &table, uint16_t slot) {
        return slot == US_NO_SERVER ? uint32_t(0) : table.members()[slot].id;
    };
    uint32_t gone = old_members[0].id;
    size_t moved = 0;
    for (uint32_t b = 0; b < t.buckets(); b++) {
        const us_bucket_entry &o = old_table.entries()[b], &e = t.entries()[b];
        std::vector<uint32_t> want;
        for (uint16_t s : {o.serving, o.previous, o.previous2}) {
            uint32_t id = id_of(old_table, s);
            if (id && id != gone && id != id_of(t, e.serving) && std::find(want.begin(), want.end(), id) == want.end())
                want.push_back(id);
        }
        want.resize(std::min<size_t>(want.size(), 2));
        std::vector<uint32_t> got;
        for (uint16_t s : {e.previous, e.previous2})
            if (s != US_NO_SERVER)
                got.push_back(id_of(t, s));
        ASSERT_EQ(got, want) << "bucket " << b;
        moved += id_of(t, e.serving) != id_of(old_table, o.serving);
    }
    EXPECT_GT(moved, 0u) << "the joined servers took buckets";

    PoolTable other_size(kSecret, 11);
    other_size.build(new_members, 1);
    other_size.inherit_history(old_table);
    for (uint32_t b = 0; b < other_size.buckets(); b++)
        ASSERT_EQ(other_size.entries()[b].previous, US_NO_SERVER) << "another table size: other sessions";
}

// Taking one of N servers down moves exactly the buckets it served, and bringing it back restores them.
TEST(PoolTable, FailureMovesOnlyTheFailedServersBuckets)
{
    std::vector<Member> m;
    for (uint32_t i = 0; i < 20; i++)
        m.push_back(Member{i + 1, 100, true, true});
    PoolTable t(kSecret, 14);
    t.build(m, 2);
    std::vector<us_bucket_entry> before(t.entries().begin(), t.entries().end());
    size_t served = 0;
    for (auto e : before)
        served += e.serving == 5;
    t.set_operational(5, false);
    size_t moved = 0;
    for (uint32_t b = 0; b < t.buckets(); b++) {
        if (before[b].serving == 5) {
            EXPECT_NE(t.entries()[b].serving, 5);
            EXPECT_EQ(t.entries()[b].previous, 5);
            moved++;
        } else {
            EXPECT_EQ(t.entries()[b].serving, before[b].serving);
        }
        EXPECT_EQ(t.entries()[b].primary, before[b].primary) << "primary ignores health";
    }
    EXPECT_EQ(moved, served);
    t.set_operational(5, true);
    for (uint32_t b = 0; b < t.buckets(); b++)
        EXPECT_EQ(t.entries()[b].serving, before[b].serving);
}

// Adding an (N+1)th server of equal weight moves about 1/(N+1) of the buckets, every one of them to it.
TEST(PoolTable, GrowthMovesOnlyToTheNewServer)
{
    const uint32_t n = 16;
    std::vector<Member> m;
    for (uint32_t i = 0; i < n; i++)
        m.push_back(Member{100 + i, 100, true, true});
    PoolTable t(kSecret, 16);
    t.build(m, 2);
    std::vector<us_bucket_entry> before(t.entries().begin(), t.entries().end());
    uint32_t slot = t.add(Member{999, 100, true, true});
    size_t moved = 0;
    for (uint32_t b = 0; b < t.buckets(); b++) {
        if (t.entries()[b].serving != before[b].serving) {
            EXPECT_EQ(t.entries()[b].serving, slot);
            moved++;
        }
    }
    double p = 1.0 / (n + 1), mean = t.buckets() * p, sigma = std::sqrt(t.buckets() * p * (1 - p));
    EXPECT_NEAR(double(moved), mean, 5 * sigma);
    EXPECT_EQ(moved, t.last_changes().size());
}

// The sizes the issue names: 1,000 backends on 2^20 buckets. The fast builder is checked against the
// plain ordering on a sample of buckets; the times are printed for the record, not asserted.
TEST(PoolTable, LargePoolBuildAndOneChange)
{
    std::vector<Member> m;
    for (uint32_t i = 0; i < 1000; i++)
        m.push_back(Member{i + 1, 50 + (i % 4) * 50, true, true});
    PoolTable t(kSecret, 20);
    auto t0 = std::chrono::steady_clock::now();
    t.build(m, 0);
    auto t1 = std::chrono::steady_clock::now();
    size_t changed = t.set_operational(123, false).size();
    auto t2 = std::chrono::steady_clock::now();
    t.set_weight(456, 10);
    auto t3 = std::chrono::steady_clock::now();
    auto ms = [](auto a, auto b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
    std::printf("[ figures  ] 1000 backends, 2^20 buckets: full build %.0f ms, one health change %.2f ms "
                "(%zu buckets), one weight change %.1f ms, %.1f MiB\n",
                ms(t0, t1), ms(t1, t2), changed, ms(t2, t3), t.memory_bytes() / 1048576.0);
    std::mt19937 rng(3);
    for (int i = 0; i < 300; i++) {
        uint32_t b = rng() % t.buckets();
        auto [primary, serving] = plain(b, t.members());
        ASSERT_EQ(t.entries()[b].primary, primary) << b;
        ASSERT_EQ(t.entries()[b].serving, serving) << b;
    }
}
