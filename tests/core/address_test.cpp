// Address, endpoint, secret and MAC parsing.
#include <gtest/gtest.h>

#include "core/address.h"

using namespace understudy;

TEST(Address, V4IsMapped)
{
    auto a = Address::parse("192.0.2.10");
    ASSERT_TRUE(a);
    EXPECT_TRUE(a->is_v4());
    std::array<uint8_t, 16> want{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 10};
    EXPECT_EQ(a->bytes, want);
    EXPECT_EQ(a->str(), "192.0.2.10");
    EXPECT_EQ(a->v4_host_order(), 0xc000020au);
    EXPECT_EQ(Address::from_v4(0xc000020au), *a);
}

TEST(Address, V6)
{
    auto a = Address::parse("2001:db8::1");
    ASSERT_TRUE(a);
    EXPECT_FALSE(a->is_v4());
    EXPECT_EQ(a->bytes[0], 0x20);
    EXPECT_EQ(a->bytes[15], 1);
    EXPECT_EQ(a->str(), "2001:db8::1");
}

TEST(Address, Rejects)
{
    for (const char *bad : {"", "1.2.3", "1.2.3.256", "host.example", "2001:db8::g", "::ffff:1.2.3.4.5"})
        EXPECT_FALSE(Address::parse(bad)) << bad;
}

TEST(Endpoint, Parse)
{
    auto e = Endpoint::parse("198.51.100.7:40000");
    ASSERT_TRUE(e);
    EXPECT_EQ(e->port, 40000);
    auto e6 = Endpoint::parse("[2001:db8::7]:443");
    ASSERT_TRUE(e6);
    EXPECT_EQ(e6->port, 443);
    EXPECT_EQ(e6->str(), "[2001:db8::7]:443");
    for (const char *bad : {"1.2.3.4", "1.2.3.4:", "1.2.3.4:65536", "2001:db8::1:80", "[2001:db8::1]80", "1.2.3.4:x"})
        EXPECT_FALSE(Endpoint::parse(bad)) << bad;
}

TEST(Secret, Hex)
{
    auto s = parse_secret_hex("000102030405060708090a0b0c0d0e0f");
    ASSERT_TRUE(s);
    EXPECT_EQ((*s)[15], 15);
    EXPECT_FALSE(parse_secret_hex("000102"));
    EXPECT_FALSE(parse_secret_hex("000102030405060708090a0b0c0d0e0g"));
    EXPECT_FALSE(parse_secret_hex("000102030405060708090a0b0c0d0e0f00"));
}

TEST(Mac, ParseAndFormat)
{
    auto m = parse_mac("02:00:5e:10:00:0A");
    ASSERT_TRUE(m);
    EXPECT_EQ(format_mac(*m), "02:00:5e:10:00:0a");
    EXPECT_FALSE(parse_mac("02:00:5e:10:00"));
    EXPECT_FALSE(parse_mac("02-00-5e-10-00-0a"));
}
