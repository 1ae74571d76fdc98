// SipHash against the published SipHash-2-4 reference vectors and the oracle's SipHash-1-3 vectors.
#include <gtest/gtest.h>

#include "core/ordering.h"
#include "test_util.h"

using namespace understudy;
using namespace understudy::test;

TEST(SipHash, Reference24Vectors)
{
    const auto &cases = vectors().at("siphash24");
    ASSERT_EQ(cases.size(), 64u);
    for (const auto &c : cases) {
        auto msg = unhex(c["msg"]);
        EXPECT_EQ(siphash24(secret_of(c["key"]), msg), u64_of(c["hash"])) << "length " << msg.size();
    }
}

TEST(SipHash, FirstReferenceVectorByHand)
{
    // From the SipHash paper's reference code: key 00..0f, empty message.
    Secret key{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    EXPECT_EQ(siphash24(key, std::span<const uint8_t>{}), 0x726fdb47dd0e0e31ULL);
}

TEST(SipHash, OneThreeVectors)
{
    const auto &cases = vectors().at("siphash13");
    ASSERT_GE(cases.size(), 10u);
    for (const auto &c : cases) {
        auto msg = unhex(c["msg"]);
        EXPECT_EQ(siphash13(secret_of(c["key"]), msg), u64_of(c["hash"])) << "length " << msg.size();
    }
}

TEST(SipHash, BucketHasherMatchesPlainHash)
{
    Secret key{9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4, 5, 6};
    for (uint32_t bucket : {0u, 1u, 12345u, (1u << 20) - 1, (1u << 24) - 1}) {
        BucketHasher h(key, bucket);
        std::vector<uint32_t> ids;
        for (uint32_t i = 0; i < 37; i++)  // not a multiple of the vector width
            ids.push_back(i * 2654435761u + 1);
        ids.push_back(0xfffffffeu);
        std::vector<uint64_t> many(ids.size());
        h.hash_many(ids.data(), many.data(), ids.size());
        for (size_t i = 0; i < ids.size(); i++) {
            uint64_t plain = server_hash(key, bucket, ids[i]);
            EXPECT_EQ(h.hash(ids[i]), plain);
            EXPECT_EQ(many[i], plain) << "lane " << i;
        }
    }
}

TEST(SipHash, BucketRangeHashMatchesPlainHash)
{
    Secret key{3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3};
    for (uint32_t id : {1u, 77u, 0xfffffffeu}) {
        std::vector<uint64_t> out(45);  // not a multiple of the vector width
        server_hash_buckets(key, id, 1000, out.size(), out.data());
        for (size_t i = 0; i < out.size(); i++)
            EXPECT_EQ(out[i], server_hash(key, 1000 + i, id)) << "bucket " << 1000 + i;
    }
}
