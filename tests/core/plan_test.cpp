// understudyctl plan's core against expectations worked out by hand from the contract, and against a brute
// force over the plain ordering() of every bucket (never against the table builder plan_change uses).
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <optional>
#include <random>

#include "core/ordering.h"
#include "core/plan.h"
#include "json/results.h"

using namespace understudy;

namespace {

const Secret kSecret{0x5e, 0xc7, 0xe7, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13};
using Down = std::set<std::pair<std::string, uint32_t>>;

Backend backend(uint32_t id, uint32_t weight = 100, AdminState state = AdminState::enabled)
{
    Backend b;
    b.id = id;
    b.address = Address::from_v4(0x0a000000u + id);
    b.weight = weight;
    b.state = state;
    return b;
}

Pool pool(const std::string &name, uint32_t table_bits, std::vector<Backend> backends)
{
    Pool p;
    p.name = name;
    p.table_bits = table_bits;
    p.backends = std::move(backends);
    return p;
}

Pool equal_pool(const std::string &name, uint32_t table_bits, uint32_t n)
{
    std::vector<Backend> bs;
    for (uint32_t id = 1; id <= n; id++)
        bs.push_back(backend(id));
    return pool(name, table_bits, bs);
}

Config config(std::vector<Pool> pools, const Secret &secret = kSecret)
{
    Config c;
    c.secret = secret;
    c.pools = std::move(pools);
    return c;
}

// The contract, plainly: per bucket, the first server of the ordering that is operational (nullopt: none).
using Serving = std::vector<std::optional<uint32_t>>;
Serving brute(const Secret &secret, const Pool &p, const std::set<uint32_t> &down = {})
{
    std::vector<ServerRef> refs;
    for (const Backend &b : p.backends)
        refs.push_back(ServerRef{b.id, b.state == AdminState::drain ? 0u : b.weight});
    auto operational = [&](uint32_t id) {
        for (const Backend &b : p.backends)
            if (b.id == id)
                return b.state != AdminState::disabled && !down.count(id);
        return false;
    };
    Serving out(size_t(1) << p.table_bits);
    for (uint32_t bucket = 0; bucket < out.size(); bucket++)
        for (uint32_t i : ordering(secret, bucket, refs))
            if (operational(refs[i].id)) {
                out[bucket] = refs[i].id;
                break;
            }
    return out;
}

uint32_t changed(const Serving &a, const Serving &b)
{
    uint32_t n = 0;
    for (size_t i = 0; i < a.size(); i++)
        n += a[i] != b[i];
    return n;
}

struct Counts {
    std::map<uint32_t, uint32_t> before, after, away, in;
};
Counts counts(const Serving &a, const Serving &b)
{
    Counts c;
    for (size_t i = 0; i < a.size(); i++) {
        if (a[i])
            c.before[*a[i]]++;
        if (b[i])
            c.after[*b[i]]++;
        if (a[i] != b[i]) {
            if (a[i])
                c.away[*a[i]]++;
            if (b[i])
                c.in[*b[i]]++;
        }
    }
    return c;
}

PlanResult plan(const Config &a, const Config &b, const Down &down = {})
{
    auto r = plan_change(a, b, down);
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error());
    return r.ok() ? *r : PlanResult{};
}

const PlanBackend &backend_of(const PlanResult &r, const std::string &pool, uint32_t id)
{
    for (const PlanBackend &b : r.backends)
        if (b.pool == pool && b.id == id)
            return b;
    throw std::runtime_error("no backend " + std::to_string(id) + " in plan");
}

const PlanPool &pool_of(const PlanResult &r, const std::string &name)
{
    for (const PlanPool &p : r.pools)
        if (p.name == name)
            return p;
    throw std::runtime_error("no pool " + name + " in plan");
}

// Every per-backend figure of one pool equals the brute force's, bucket for bucket.
void expect_backends_match(const PlanResult &r, const Pool &before, const Serving &a, const Serving &b)
{
    Counts c = counts(a, b);
    const double n = double(a.size());
    std::set<uint32_t> seen;
    for (const PlanBackend &pb : r.backends) {
        if (pb.pool != before.name)
            continue;
        seen.insert(pb.id);
        EXPECT_EQ(pb.share_before, c.before[pb.id] / n) << "backend " << pb.id;
        EXPECT_EQ(pb.share_after, c.after[pb.id] / n) << "backend " << pb.id;
        EXPECT_EQ(pb.moved_away, c.away[pb.id] / n) << "backend " << pb.id;
        EXPECT_EQ(pb.moved_in, c.in[pb.id] / n) << "backend " << pb.id;
    }
    for (auto &[id, count] : c.before)
        EXPECT_TRUE(seen.count(id)) << "backend " << id << " serves " << count << " buckets but is not listed";
}

// Binomial sampling: the measured fraction of a set of buckets of expected fraction p.
void expect_within_5_sigma(double got, double p, uint32_t buckets)
{
    double sigma = std::sqrt(p * (1 - p) / buckets);
    EXPECT_NEAR(got, p, 5 * sigma);
}

}  // namespace

TEST(Plan, NoChangeMovesNothing)
{
    Config c = config({equal_pool("web", 10, 5), pool("dns", 8, {backend(1, 300), backend(9, 100, AdminState::drain)})});
    PlanResult r = plan(c, c);
    EXPECT_EQ(r.moved, 0.0);
    EXPECT_EQ(r.ideal, 0.0);
    EXPECT_EQ(r.moved_buckets, 0u);
    EXPECT_EQ(r.buckets, 1024u + 256u);
    ASSERT_EQ(r.pools.size(), 2u);
    Serving web = brute(kSecret, c.pools[0]);
    expect_backends_match(r, c.pools[0], web, web);
    for (const PlanBackend &b : r.backends) {
        EXPECT_EQ(b.share_before, b.share_after);
        EXPECT_EQ(b.note, b.pool == "dns" && b.id == 9 ? "drain" : "");
    }
    EXPECT_EQ(backend_of(r, "dns", 9).share_before, 0.0) << "a draining server serves nothing while others can";
    EXPECT_EQ(backend_of(r, "dns", 1).share_before, 1.0);
}

TEST(Plan, DisablingOneOfNMovesExactlyItsShare)
{
    const uint32_t n = 8, bits = 12;
    Config a = config({equal_pool("web", bits, n)});
    Config b = a;
    b.pools[0].backends[2].state = AdminState::disabled;  // id 3
    Serving sa = brute(kSecret, a.pools[0]), sb = brute(kSecret, b.pools[0]);

    PlanResult r = plan(a, b);
    const uint32_t served_by_3 = uint32_t(std::count(sa.begin(), sa.end(), std::optional<uint32_t>(3)));
    EXPECT_EQ(r.moved_buckets, served_by_3);
    EXPECT_EQ(r.moved_buckets, changed(sa, sb));
    EXPECT_EQ(r.moved, backend_of(r, "web", 3).share_before);
    EXPECT_EQ(r.ideal, 1.0 / n);  // 1/8 before -> 0 after; the others 1/8 -> 1/7
    expect_within_5_sigma(r.moved, 1.0 / n, 1u << bits);
    // Every moved bucket was served by the disabled backend: it alone moves away.
    for (const PlanBackend &pb : r.backends)
        EXPECT_EQ(pb.moved_away, pb.id == 3 ? r.moved : 0.0) << pb.id;
    EXPECT_EQ(backend_of(r, "web", 3).share_after, 0.0);
    EXPECT_EQ(backend_of(r, "web", 3).note, "enabled -> disabled");
    expect_backends_match(r, a.pools[0], sa, sb);
}

TEST(Plan, AddingOneToNMovesAboutOneInNPlusOne)
{
    const uint32_t n = 10, bits = 16;
    Config a = config({equal_pool("web", bits, n)});
    Config b = config({equal_pool("web", bits, n + 1)});
    Serving sa = brute(kSecret, a.pools[0]), sb = brute(kSecret, b.pools[0]);

    PlanResult r = plan(a, b);
    EXPECT_EQ(r.moved_buckets, changed(sa, sb));
    EXPECT_EQ(r.ideal, 1.0 / (n + 1));
    expect_within_5_sigma(r.moved, 1.0 / (n + 1), 1u << bits);
    const PlanBackend &added = backend_of(r, "web", n + 1);
    EXPECT_EQ(added.note, "added");
    EXPECT_EQ(added.share_before, 0.0);
    EXPECT_EQ(added.moved_in, r.moved) << "rendezvous: buckets move only to the new server";
    expect_backends_match(r, a.pools[0], sa, sb);
}

TEST(Plan, WeightChange)
{
    Config a = config({equal_pool("web", 12, 4)});
    Config b = a;
    b.pools[0].backends[1].weight = 300;  // id 2: 1/4 -> 1/2, the others 1/4 -> 1/6
    Serving sa = brute(kSecret, a.pools[0]), sb = brute(kSecret, b.pools[0]);

    PlanResult r = plan(a, b);
    EXPECT_EQ(r.moved_buckets, changed(sa, sb));
    EXPECT_EQ(r.ideal, 0.25);  // 3 x (1/4 - 1/6)
    expect_within_5_sigma(r.moved, 0.25, 1u << 12);
    EXPECT_EQ(backend_of(r, "web", 2).moved_in, r.moved);
    EXPECT_EQ(backend_of(r, "web", 2).note, "weight 100 -> 300");
    expect_backends_match(r, a.pools[0], sa, sb);
}

TEST(Plan, DrainMovesItsShareAndIdealCountsItAsZero)
{
    Config a = config({equal_pool("web", 12, 5)});
    Config b = a;
    b.pools[0].backends[4].state = AdminState::drain;  // id 5
    Serving sa = brute(kSecret, a.pools[0]), sb = brute(kSecret, b.pools[0]);

    PlanResult r = plan(a, b);
    EXPECT_EQ(r.moved_buckets, changed(sa, sb));
    EXPECT_EQ(r.moved, backend_of(r, "web", 5).share_before);
    EXPECT_EQ(backend_of(r, "web", 5).share_after, 0.0);
    EXPECT_EQ(r.ideal, 0.2);
    expect_backends_match(r, a.pools[0], sa, sb);
}

TEST(Plan, DrainingEveryServerMovesNothing)
{
    // Equal weights rank by u, as weight 0 does: the same order, and the ideal is equal shares both times.
    Config a = config({equal_pool("web", 10, 3)});
    Config b = a;
    for (Backend &bk : b.pools[0].backends)
        bk.state = AdminState::drain;
    PlanResult r = plan(a, b);
    EXPECT_EQ(changed(brute(kSecret, a.pools[0]), brute(kSecret, b.pools[0])), 0u);
    EXPECT_EQ(r.moved_buckets, 0u);
    EXPECT_EQ(r.ideal, 0.0);
}

TEST(Plan, NoOperationalServerLeft)
{
    Config a = config({equal_pool("web", 10, 3)});
    Config b = a;
    for (Backend &bk : b.pools[0].backends)
        bk.state = AdminState::disabled;
    PlanResult r = plan(a, b);
    EXPECT_EQ(r.moved, 1.0);
    EXPECT_EQ(r.ideal, 1.0);
    EXPECT_EQ(r.pools[0].unserved_before, 0.0);
    EXPECT_EQ(r.pools[0].unserved_after, 1.0);
    EXPECT_NE(r.pools[0].note.find("no operational server after the change for 1024 buckets"), std::string::npos);
}

TEST(Plan, PoolAddedAndRemoved)
{
    Pool web = equal_pool("web", 10, 4);
    Config a = config({web, equal_pool("old", 8, 2)});
    Config b = a;
    b.pools[0].backends[0].state = AdminState::disabled;
    b.pools[1] = equal_pool("new", 12, 3);
    Serving sa = brute(kSecret, a.pools[0]), sb = brute(kSecret, b.pools[0]);

    PlanResult r = plan(a, b);
    ASSERT_EQ(r.pools.size(), 3u);
    const PlanPool &old = pool_of(r, "old"), &added = pool_of(r, "new"), &w = pool_of(r, "web");
    EXPECT_EQ(old.moved, 1.0);
    EXPECT_EQ(old.ideal, 1.0);
    EXPECT_EQ(old.buckets, 256u);
    EXPECT_EQ(old.table_bits_after, 0u);
    EXPECT_NE(old.note.find("removed"), std::string::npos);
    EXPECT_EQ(added.moved, 0.0);
    EXPECT_EQ(added.ideal, 0.0);
    EXPECT_EQ(added.buckets, 0u) << "an added pool has no sessions: not in the totals";
    EXPECT_EQ(added.buckets_after, 4096u);
    EXPECT_NE(added.note.find("added"), std::string::npos);
    EXPECT_EQ(w.moved_buckets, changed(sa, sb));
    EXPECT_EQ(w.ideal, 0.25);

    // Totals over the current config's 1024 + 256 buckets.
    EXPECT_EQ(r.buckets, 1280u);
    EXPECT_EQ(r.moved_buckets, changed(sa, sb) + 256u);
    EXPECT_EQ(r.moved, (changed(sa, sb) + 256.0) / 1280.0);
    EXPECT_DOUBLE_EQ(r.ideal, (0.25 * 1024 + 256) / 1280.0);

    EXPECT_EQ(backend_of(r, "old", 1).moved_away, backend_of(r, "old", 1).share_before);
    EXPECT_EQ(backend_of(r, "old", 1).note, "removed");
    double shares = 0;
    for (uint32_t id = 1; id <= 3; id++) {
        EXPECT_EQ(backend_of(r, "new", id).moved_in, 0.0);
        shares += backend_of(r, "new", id).share_after;
    }
    EXPECT_DOUBLE_EQ(shares, 1.0);
}

TEST(Plan, TableBitsChangeRemapsEverySession)
{
    Config a = config({equal_pool("web", 10, 4)});
    Config b = a;
    b.pools[0].table_bits = 12;
    PlanResult r = plan(a, b);
    EXPECT_EQ(r.moved, 1.0);
    EXPECT_EQ(r.moved_buckets, 1024u);
    EXPECT_EQ(r.ideal, 0.0) << "the membership did not change";
    EXPECT_NE(r.pools[0].note.find("table_bits 10 -> 12: every session remaps"), std::string::npos);
    Serving sb = brute(kSecret, b.pools[0]);
    Counts c = counts(sb, sb);
    for (uint32_t id = 1; id <= 4; id++) {
        EXPECT_EQ(backend_of(r, "web", id).share_after, c.after[id] / 4096.0);
        EXPECT_EQ(backend_of(r, "web", id).moved_in, c.after[id] / 4096.0);
        EXPECT_EQ(backend_of(r, "web", id).moved_away, backend_of(r, "web", id).share_before);
    }
}

TEST(Plan, SecretChangeRemapsEverySession)
{
    Config a = config({equal_pool("web", 10, 4)});
    Secret other = kSecret;
    other[0] ^= 1;
    Config b = config(a.pools, other);
    PlanResult r = plan(a, b);
    EXPECT_EQ(r.moved, 1.0);
    EXPECT_EQ(r.ideal, 0.0);
    EXPECT_NE(r.pools[0].note.find("cluster secret changed"), std::string::npos);
}

TEST(Plan, DownServersStayDown)
{
    Config a = config({equal_pool("web", 12, 6), equal_pool("dns", 10, 3)});
    Config b = a;
    b.pools[0].backends[3].state = AdminState::disabled;  // id 4
    const Down down{{"web", 2}};
    Serving sa = brute(kSecret, a.pools[0], {2}), sb = brute(kSecret, b.pools[0], {2});

    PlanResult r = plan(a, b, down);
    const PlanPool &w = pool_of(r, "web");
    EXPECT_EQ(w.moved_buckets, changed(sa, sb));
    EXPECT_EQ(w.ideal, 0.2);  // 5 operational (1/5) -> 4 (1/4)
    EXPECT_EQ(backend_of(r, "web", 2).share_before, 0.0);
    EXPECT_EQ(backend_of(r, "web", 2).share_after, 0.0);
    EXPECT_EQ(backend_of(r, "web", 2).note, "down");
    expect_backends_match(r, a.pools[0], sa, sb);
    // Only web's server 2 is down: dns's server 2 still serves.
    EXPECT_GT(backend_of(r, "dns", 2).share_before, 0.0);

    // Without the down list the answer differs: the input is really used.
    Serving ua = brute(kSecret, a.pools[0]), ub = brute(kSecret, b.pools[0]);
    ASSERT_NE(changed(ua, ub), changed(sa, sb));
    EXPECT_EQ(pool_of(plan(a, b), "web").moved_buckets, changed(ua, ub));
    EXPECT_EQ(pool_of(plan(a, b), "web").ideal, 1.0 / 6);
}

// Random changes of every kind, few (the table is patched) and many (rebuilt), against the brute force.
TEST(Plan, RandomChangesMatchBruteForce)
{
    std::mt19937 rng(11);
    for (int round = 0; round < 12; round++) {
        const uint32_t n = 6 + rng() % 20;
        std::vector<Backend> bs;
        for (uint32_t i = 0; i < n; i++)
            bs.push_back(backend(1 + rng() % 1000, 1 + rng() % 300,
                                 rng() % 6 == 0 ? AdminState::drain : AdminState::enabled));
        std::sort(bs.begin(), bs.end(), [](auto &x, auto &y) { return x.id < y.id; });
        bs.erase(std::unique(bs.begin(), bs.end(), [](auto &x, auto &y) { return x.id == y.id; }), bs.end());
        Config a = config({pool("p", 10, bs)});
        Config b = a;
        auto &nb = b.pools[0].backends;
        const int changes = round % 2 ? 1 + int(rng() % 2) : int(nb.size());
        for (int k = 0; k < changes; k++) {
            switch (rng() % 5) {
            case 0: nb.erase(nb.begin() + rng() % nb.size()); break;
            case 1: nb.push_back(backend(2000 + rng() % 1000, 1 + rng() % 300)); break;
            case 2: nb[rng() % nb.size()].weight = rng() % 400; break;
            case 3: nb[rng() % nb.size()].state = AdminState::disabled; break;
            default: nb[rng() % nb.size()].state = AdminState::drain; break;
            }
        }
        Down down;
        std::set<uint32_t> down_ids;
        if (round % 3 == 0) {
            down_ids.insert(bs[0].id);
            down.emplace("p", bs[0].id);
        }
        Serving sa = brute(kSecret, a.pools[0], down_ids), sb = brute(kSecret, b.pools[0], down_ids);
        PlanResult r = plan(a, b, down);
        SCOPED_TRACE("round " + std::to_string(round));
        EXPECT_EQ(r.moved_buckets, changed(sa, sb));
        expect_backends_match(r, a.pools[0], sa, sb);
    }
}

TEST(Plan, JsonAndText)
{
    Config a = config({equal_pool("web", 10, 4)});
    Config b = a;
    b.pools[0].backends.push_back(backend(5));
    PlanResult r = plan(a, b);
    auto j = to_json(r);
    for (const char *key : {"moved", "ideal", "pools", "backends"})
        EXPECT_TRUE(j.contains(key)) << key;
    EXPECT_EQ(j["moved"].get<double>(), r.moved);
    EXPECT_EQ(j["pools"].size(), 1u);
    EXPECT_EQ(j["backends"].size(), 5u);
    EXPECT_EQ(j["backends"][4]["address"], "10.0.0.5");
    std::string text = plan_text(r);
    char totals[64];
    std::snprintf(totals, sizeof totals, "moved %.2f%% of buckets (ideal 20.00%%)\n", r.moved * 100);
    EXPECT_NE(text.find(totals), std::string::npos) << text;
    EXPECT_NE(text.find("10.0.0.5"), std::string::npos);
}
