// [[vip.quic_lb]] read into the model, server IDs explicit and derived, and the checks of a model built in
// code (as the control API builds one). The diagnostics of files are tested as understudyctl check does them,
// in quic_lb_ref_test.py.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/config.h"

using namespace understudy;

namespace {

const char *kConfig = R"(
[cluster]
secret = "00112233445566778899aabbccddeeff"

[[pool]]
name = "p"
  [[pool.backend]]
  id = 1
  address = "10.1.0.1"
  [[pool.backend]]
  id = 300
  address = "10.1.0.3"

[[vip]]
address = "192.0.2.1"
port = 443
protocol = "udp"
pool = "p"
  [[vip.quic_lb]]
  codepoint = 3
  server_id_len = 2
  nonce_len = 14
  key = "8f95f09245765f80256934e50c66207f"
  encode_length = true
  [[vip.quic_lb]]
  codepoint = 0
  server_id_len = 1
  nonce_len = 4
  server_ids = { 300 = "ab" }

[[vip]]
address = "192.0.2.1"
port = 80
pool = "p"
)";

TEST(QuicLbConfig, ReadIntoTheModel)
{
    auto config = parse_config(kConfig, "t.toml");
    ASSERT_TRUE(config) << config.error();
    ASSERT_EQ(config->vips.size(), 2u);
    EXPECT_TRUE(config->vips[1].quic_lb.empty());  // no [[vip.quic_lb]]: nothing changes
    const auto &q = config->vips[0].quic_lb;
    ASSERT_EQ(q.size(), 2u);
    EXPECT_EQ(q[0].codepoint, 3);
    EXPECT_EQ(q[0].server_id_len, 2);
    EXPECT_EQ(q[0].nonce_len, 14);
    ASSERT_TRUE(q[0].key);
    EXPECT_EQ((*q[0].key)[0], 0x8f);
    EXPECT_EQ((*q[0].key)[15], 0x7f);
    EXPECT_TRUE(q[0].encode_length);
    EXPECT_TRUE(q[0].server_ids.empty());
    EXPECT_EQ(q[1].codepoint, 0);
    EXPECT_FALSE(q[1].key);
    EXPECT_FALSE(q[1].encode_length);
    ASSERT_EQ(q[1].server_ids.size(), 1u);
    EXPECT_EQ(q[1].server_ids.at(300), std::vector<uint8_t>{0xab});
    EXPECT_GT(q[0].line, 0);
}

TEST(QuicLbConfig, ServerIds)
{
    QuicLbConfig q;
    q.server_id_len = 2;
    EXPECT_EQ(quic_server_id(q, 300), (std::vector<uint8_t>{0x01, 0x2c}));
    EXPECT_EQ(quic_server_id(q, 65535), (std::vector<uint8_t>{0xff, 0xff}));
    EXPECT_TRUE(quic_server_id(q, 65536).empty());
    q.server_id_len = 1;
    EXPECT_TRUE(quic_server_id(q, 300).empty());
    q.server_ids[300] = {0x07};
    EXPECT_EQ(quic_server_id(q, 300), std::vector<uint8_t>{0x07});
    q.server_id_len = 6;
    EXPECT_EQ(quic_server_id(q, 0xfffffffe), (std::vector<uint8_t>{0, 0, 0xff, 0xff, 0xff, 0xfe}));
    q.server_id_len = 4;
    EXPECT_EQ(quic_server_id(q, 0x01020304), (std::vector<uint8_t>{1, 2, 3, 4}));
}

TEST(QuicLbConfig, ModelBuiltInCodeIsChecked)
{
    auto config = parse_config(kConfig, "t.toml");
    ASSERT_TRUE(config) << config.error();
    Config c = *config;
    c.vips[0].quic_lb[1].codepoint = 3;        // the same as quic_lb[0]
    c.vips[0].quic_lb[1].server_ids[1] = {0xab};  // the same as backend 300's
    QuicLbConfig added;                        // added in code: no line of its own
    added.codepoint = 7;
    added.server_id_len = 16;
    added.nonce_len = 4;
    c.vips[1].quic_lb.push_back(added);        // on a TCP VIP
    Status s = validate_config(c);
    ASSERT_FALSE(s);
    const std::string &e = s.error();
    EXPECT_NE(e.find("vip[0].quic_lb[1].codepoint: duplicate codepoint 3, also used by vip[0].quic_lb[0] at line"),
              std::string::npos) << e;
    EXPECT_NE(e.find("vip[0].quic_lb[1].server_ids.300: server ID ab of backend 300 is also that of backend 1"),
              std::string::npos) << e;
    EXPECT_NE(e.find("vip[1].quic_lb: QUIC-LB needs protocol = \"udp\""), std::string::npos) << e;
    EXPECT_NE(e.find("vip[1].quic_lb[0].codepoint: codepoint 7 is reserved"), std::string::npos) << e;
    EXPECT_NE(e.find("vip[1].quic_lb[0].server_id_len: must be 1-15, not 16"), std::string::npos) << e;

    c = *config;
    c.vips[0].quic_lb.resize(8, c.vips[0].quic_lb[1]);
    s = validate_config(c);
    ASSERT_FALSE(s);
    EXPECT_NE(s.error().find("vip[0].quic_lb: 8 configurations; at most 7"), std::string::npos) << s.error();
}

}  // namespace
