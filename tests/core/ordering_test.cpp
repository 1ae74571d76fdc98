// The ordering contract against the independent oracle's vectors, and its properties.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <map>
#include <random>

#include "core/ordering.h"
#include "test_util.h"

using namespace understudy;
using namespace understudy::test;

TEST(SessionKey, MatchesOracle)
{
    const auto &cases = vectors().at("session_keys");
    ASSERT_GE(cases.size(), 20u);
    for (const auto &c : cases) {
        auto src = Address::parse(c["src"].get<std::string>());
        auto dst = Address::parse(c["dst"].get<std::string>());
        ASSERT_TRUE(src && dst);
        Affinity aff = c["affinity"] == "client" ? Affinity::client : Affinity::flow;
        us_session_key key = make_session_key(*src, c["sport"], *dst, c["dport"], c["proto"], aff);
        auto want = unhex(c["key"]);
        ASSERT_EQ(want.size(), size_t(US_KEY_LEN));
        EXPECT_EQ(std::vector<uint8_t>((uint8_t *)&key, (uint8_t *)&key + US_KEY_LEN), want) << c.dump();
        uint64_t h = session_hash(secret_of(c["secret"]), key);
        EXPECT_EQ(h, u64_of(c["session_hash"])) << c.dump();
        // The data plane's two-at-a-time form, with this key in either lane beside another one.
        us_session_key other = key;
        other.src[15] ^= 0x5a;
        uint64_t h2[2];
        Secret secret = secret_of(c["secret"]);
        us_session_hash_x2(secret.data(), (const uint8_t *)&key, (const uint8_t *)&other, &h2[0], &h2[1]);
        EXPECT_EQ(h2[0], u64_of(c["session_hash"])) << c.dump();
        EXPECT_EQ(h2[1], session_hash(secret, other));
        us_session_hash_x2(secret.data(), (const uint8_t *)&other, (const uint8_t *)&key, &h2[0], &h2[1]);
        EXPECT_EQ(h2[1], u64_of(c["session_hash"])) << c.dump();
        EXPECT_EQ(us_bucket_of(h, c["table_bits"]), c["bucket"].get<uint32_t>()) << c.dump();
    }
}

TEST(SessionKey, LayoutIs37PackedBytes)
{
    static_assert(sizeof(us_session_key) == 37);
    static_assert(offsetof(us_session_key, dst) == 16);
    static_assert(offsetof(us_session_key, sport) == 32);
    static_assert(offsetof(us_session_key, dport) == 34);
    static_assert(offsetof(us_session_key, proto) == 36);
}

TEST(Score, MatchesOracle)
{
    const auto &cases = vectors().at("scores");
    ASSERT_GE(cases.size(), 10u);
    for (const auto &c : cases) {
        uint64_t u = server_hash(secret_of(c["secret"]), c["bucket"], c["id"]);
        EXPECT_EQ(u, u64_of(c["u"])) << c.dump();
        // Bit for bit, as the contract says (not within 4 ulp): JSON numbers written by Python's repr
        // read back to the same double.
        double want = c["score"].get<double>();
        EXPECT_EQ(std::bit_cast<uint64_t>(server_score(u, c["weight"])), std::bit_cast<uint64_t>(want)) << c.dump();
    }
}

TEST(Ordering, MatchesOracle)
{
    const auto &cases = vectors().at("orderings");
    ASSERT_GE(cases.size(), 20u);
    for (const auto &c : cases) {
        std::vector<ServerRef> servers;
        for (const auto &s : c["servers"])
            servers.push_back(ServerRef{s["id"], s["weight"]});
        std::vector<uint32_t> got;
        for (uint32_t pos : ordering(secret_of(c["secret"]), c["bucket"], servers))
            got.push_back(servers[pos].id);
        EXPECT_EQ(got, c["ordering"].get<std::vector<uint32_t>>()) << c.dump();
    }
}

static const Secret kSecret{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

TEST(Ordering, DeterministicAndIndependentOfListOrder)
{
    std::vector<ServerRef> a{{1, 100}, {2, 50}, {3, 0}, {4, 100}, {5, 7}};
    std::vector<ServerRef> b(a.rbegin(), a.rend());
    for (uint32_t bucket = 0; bucket < 2000; bucket++) {
        std::vector<uint32_t> ia, ib;
        for (auto p : ordering(kSecret, bucket, a))
            ia.push_back(a[p].id);
        for (auto p : ordering(kSecret, bucket, b))
            ib.push_back(b[p].id);
        ASSERT_EQ(ia, ib);
        EXPECT_EQ(ia.back(), 3u) << "weight 0 sorts after every weighted server";
    }
}

// Over many buckets each server is primary in proportion to its weight: counts are binomial, so each
// must fall within 5 standard deviations of weight/total.
TEST(Ordering, WeightsRespected)
{
    std::vector<ServerRef> servers;
    uint32_t total = 0;
    for (uint32_t id = 1; id <= 10; id++) {
        servers.push_back(ServerRef{id * 7, id * 10});
        total += id * 10;
    }
    const uint32_t n = 1 << 16;
    std::map<uint32_t, uint32_t> count;
    for (uint32_t bucket = 0; bucket < n; bucket++)
        count[servers[ordering(kSecret, bucket, servers)[0]].id]++;
    for (const auto &s : servers) {
        double p = double(s.weight) / total;
        double mean = n * p, sigma = std::sqrt(n * p * (1 - p));
        EXPECT_NEAR(count[s.id], mean, 5 * sigma) << "server " << s.id;
    }
}

// Removing a server from the ordering leaves the relative order of the others unchanged: the heart of
// minimal disruption.
TEST(Ordering, RemovingAServerKeepsTheRestInOrder)
{
    std::vector<ServerRef> all{{11, 100}, {12, 100}, {13, 200}, {14, 50}, {15, 100}, {16, 0}};
    std::vector<ServerRef> without(all);
    without.erase(without.begin() + 2);
    for (uint32_t bucket = 0; bucket < 3000; bucket++) {
        std::vector<uint32_t> with_ids, without_ids;
        for (auto p : ordering(kSecret, bucket, all))
            if (all[p].id != 13)
                with_ids.push_back(all[p].id);
        for (auto p : ordering(kSecret, bucket, without))
            without_ids.push_back(without[p].id);
        ASSERT_EQ(with_ids, without_ids) << "bucket " << bucket;
    }
}

// x rounds to 1.0 for the top 2^11 values of u: the contract defines the score as +infinity (weight 0: 0).
TEST(Score, TopOfRangeIsInfinite)
{
    EXPECT_EQ(server_score(0xffffffffffffffffULL, 100), HUGE_VAL);
    EXPECT_EQ(server_score(0xfffffffffffff800ULL, 1), HUGE_VAL);
    EXPECT_EQ(server_score(0xffffffffffffffffULL, 0), 0.0);
    EXPECT_GT(server_score(0xfffffffffffff7ffULL, 1), 1e15);
    EXPECT_LT(server_score(0xfffffffffffff7ffULL, 1), HUGE_VAL);
}
