// Config loading and validation: values, defaults, layered health overrides, and the exact
// "FILE:LINE: FIELD: message" of every kind of problem. Each test's TOML is written one line per string
// with the line number in a comment, so expected lines can be read off the test itself.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <sstream>
#include <string>
#include <vector>

#include <csignal>
#include <chrono>
#include <cstdio>
#include <thread>

#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"
#include "core/config_diagnostics.h"

using namespace understudy;

namespace {

std::string doc(std::initializer_list<const char *> lines)
{
    std::string out;
    for (const char *l : lines)
        out += std::string(l) + "\n";
    return out;
}

std::vector<std::string> split_lines(const std::string &text)
{
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);)
        out.push_back(line);
    return out;
}

// Every problem parse_config() reports for `text` (empty when the config is valid).
std::vector<std::string> problems(const std::string &text)
{
    auto config = parse_config(text, "t.toml");
    return config ? std::vector<std::string>{} : split_lines(config.error());
}

std::string show(const std::vector<std::string> &ps)
{
    std::string out;
    for (const auto &p : ps)
        out += "\n  " + p;
    return ps.empty() ? " (none)" : out;
}

// A problem starting with `prefix` ("t.toml:LINE: FIELD: ") whose message contains `words`.
testing::AssertionResult has_problem(const std::vector<std::string> &ps, const std::string &prefix,
                                     const std::string &words = "")
{
    for (const auto &p : ps)
        if (p.rfind(prefix, 0) == 0 && p.find(words, prefix.size()) != std::string::npos)
            return testing::AssertionSuccess();
    return testing::AssertionFailure() << "no problem '" << prefix << "...' containing '" << words
                                       << "'; problems:" << show(ps);
}

// The only problem reported is `prefix` + something containing `words`.
testing::AssertionResult only_problem(const std::string &text, const std::string &prefix,
                                      const std::string &words = "")
{
    auto ps = problems(text);
    if (ps.size() != 1)
        return testing::AssertionFailure() << "expected exactly one problem '" << prefix << "', got:" << show(ps);
    return has_problem(ps, prefix, words);
}

constexpr const char *kSecretLine = "secret = \"000102030405060708090a0b0c0d0e0f\"";

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// Valid configurations

TEST(ConfigParse, FullConfigWithLayeredHealth)
{
    std::string text = doc({
        /*  1 */ "[cluster]",
        /*  2 */ "secret = \"000102030405060708090A0B0C0D0E0F\"",
        /*  3 */ "[health]",
        /*  4 */ "kind = \"tcp\"",
        /*  5 */ "port = 81",
        /*  6 */ "path = \"/global\"",
        /*  7 */ "expect = \"200-399\"",
        /*  8 */ "payload = \"hello\"",
        /*  9 */ "reply = \"world\"",
        /* 10 */ "interval_ms = 2000",
        /* 11 */ "timeout_ms = 700",
        /* 12 */ "rise = 4",
        /* 13 */ "fall = 5",
        /* 14 */ "source = \"10.0.0.1\"",
        /* 15 */ "[[pool]]",
        /* 16 */ "name = \"web\"",
        /* 17 */ "table_bits = 16",
        /* 18 */ "  [pool.health]",
        /* 19 */ "  kind = \"http\"",
        /* 20 */ "  path = \"/healthz\"",
        /* 21 */ "  expect = \"200-299\"",
        /* 22 */ "  [[pool.backend]]",
        /* 23 */ "  id = 1",
        /* 24 */ "  address = \"10.0.1.11\"",
        /* 25 */ "  weight = 100",
        /* 26 */ "  state = \"enabled\"",
        /* 27 */ "  mac = \"02:00:00:00:01:0b\"",
        /* 28 */ "    [pool.backend.health]",
        /* 29 */ "    port = 8080",
        /* 30 */ "    rise = 1",
        /* 31 */ "  [[pool.backend]]",
        /* 32 */ "  id = 7",
        /* 33 */ "  address = \"10.0.1.12\"",
        /* 34 */ "  weight = 0",
        /* 35 */ "  state = \"drain\"",
        /* 36 */ "  [[pool.backend]]",
        /* 37 */ "  id = 4294967294",
        /* 38 */ "  address = \"10.0.1.13\"",
        /* 39 */ "  weight = 65535",
        /* 40 */ "  state = \"disabled\"",
        /* 41 */ "[[pool]]",
        /* 42 */ "name = \"dns\"",
        /* 43 */ "  [pool.health]",
        /* 44 */ "  kind = \"udp\"",
        /* 45 */ "  source = \"fd00::1\"",
        /* 46 */ "  [[pool.backend]]",
        /* 47 */ "  id = 1",
        /* 48 */ "  address = \"fd00:1::53\"",
        /* 49 */ "[[vip]]",
        /* 50 */ "address = \"192.0.2.10\"",
        /* 51 */ "port = 80",
        /* 52 */ "protocol = \"tcp\"",
        /* 53 */ "pool = \"web\"",
        /* 54 */ "method = \"gue\"",
        /* 55 */ "affinity = \"flow\"",
        /* 56 */ "conn_table = true",
        /* 57 */ "conn_idle_timeout_s = 300",
        /* 58 */ "[[vip]]",
        /* 59 */ "address = \"2001:db8::53\"",
        /* 60 */ "port = 53",
        /* 61 */ "protocol = \"udp\"",
        /* 62 */ "pool = \"dns\"",
        /* 63 */ "method = \"l2dsr\"",
        /* 64 */ "affinity = \"client\"",
        /* 65 */ "conn_table = false",
        /* 66 */ "conn_idle_timeout_s = 30",
        /* 67 */ "[dataplane]",
        /* 68 */ "eal_args = [\"--in-memory\", \"-l\", \"0-2\"]",
        /* 69 */ "workers = [1, 2]",
        /* 70 */ "source_v4 = \"10.0.0.2\"",
        /* 71 */ "source_v6 = \"fd00::2\"",
        /* 72 */ "gateway_mac = \"02:00:00:00:00:01\"",
        /* 73 */ "non_vip = \"drop\"",
        /* 74 */ "exception_iface = \"us0\"",
        /* 75 */ "conn_table_size = 4096",
        /* 76 */ "hop_budget = 15",
        /* 77 */ "mbufs = 65536",
        /* 78 */ "  [[dataplane.port]]",
        /* 79 */ "  name = \"p0\"",
        /* 80 */ "  devargs = \"net_af_packet0,iface=veth0\"",
        /* 81 */ "  rx_queues = 2",
        /* 82 */ "[control]",
        /* 83 */ "socket = \"/tmp/us.sock\"",
        /* 84 */ "socket_group = \"wheel\"",
        /* 85 */ "metrics = \"[::1]:9999\"",
    });
    auto config = parse_config(text, "full.toml");
    ASSERT_TRUE(config) << config.error();
    const Config &c = *config;
    EXPECT_EQ(c.path, "full.toml");
    for (size_t i = 0; i < 16; i++)
        EXPECT_EQ(c.secret[i], i);

    EXPECT_EQ(c.health.kind, ProbeKind::tcp);
    EXPECT_EQ(c.health.port, 81);
    EXPECT_EQ(c.health.http_path, "/global");
    EXPECT_EQ(c.health.http_status_min, 200);
    EXPECT_EQ(c.health.http_status_max, 399);
    EXPECT_EQ(c.health.udp_payload, "hello");
    EXPECT_EQ(c.health.udp_expect, "world");
    EXPECT_EQ(c.health.interval_ms, 2000u);
    EXPECT_EQ(c.health.timeout_ms, 700u);
    EXPECT_EQ(c.health.rise, 4u);
    EXPECT_EQ(c.health.fall, 5u);
    ASSERT_TRUE(c.health.source);
    EXPECT_EQ(c.health.source->str(), "10.0.0.1");

    ASSERT_EQ(c.pools.size(), 2u);
    const Pool &web = c.pools[0];
    EXPECT_EQ(web.name, "web");
    EXPECT_EQ(web.table_bits, 16u);
    EXPECT_EQ(web.line, 15);
    // Pool level: its own three keys, the rest from [health].
    EXPECT_EQ(web.health.kind, ProbeKind::http);
    EXPECT_EQ(web.health.http_path, "/healthz");
    EXPECT_EQ(web.health.http_status_min, 200);
    EXPECT_EQ(web.health.http_status_max, 299);
    EXPECT_EQ(web.health.port, 81);
    EXPECT_EQ(web.health.interval_ms, 2000u);
    EXPECT_EQ(web.health.timeout_ms, 700u);
    EXPECT_EQ(web.health.rise, 4u);
    EXPECT_EQ(web.health.fall, 5u);
    EXPECT_EQ(web.health.udp_payload, "hello");
    EXPECT_EQ(web.health.source->str(), "10.0.0.1");

    ASSERT_EQ(web.backends.size(), 3u);
    const Backend &b1 = web.backends[0];
    EXPECT_EQ(b1.id, 1u);
    EXPECT_EQ(b1.address.str(), "10.0.1.11");
    EXPECT_EQ(b1.weight, 100u);
    EXPECT_EQ(b1.state, AdminState::enabled);
    ASSERT_TRUE(b1.mac);
    EXPECT_EQ(format_mac(*b1.mac), "02:00:00:00:01:0b");
    EXPECT_EQ(b1.line, 22);
    // Backend level: port and rise from its own table, the rest from the pool, then [health].
    EXPECT_EQ(b1.health.port, 8080);
    EXPECT_EQ(b1.health.rise, 1u);
    EXPECT_EQ(b1.health.kind, ProbeKind::http);
    EXPECT_EQ(b1.health.http_path, "/healthz");
    EXPECT_EQ(b1.health.http_status_max, 299);
    EXPECT_EQ(b1.health.fall, 5u);
    EXPECT_EQ(b1.health.interval_ms, 2000u);

    const Backend &b2 = web.backends[1];
    EXPECT_EQ(b2.id, 7u);
    EXPECT_EQ(b2.weight, 0u);
    EXPECT_EQ(b2.state, AdminState::drain);
    EXPECT_FALSE(b2.mac);
    EXPECT_EQ(b2.health.port, 81);  // no override: the pool's effective settings
    EXPECT_EQ(b2.health.rise, 4u);
    EXPECT_EQ(b2.health.kind, ProbeKind::http);
    EXPECT_EQ(web.backends[2].id, 4294967294u);
    EXPECT_EQ(web.backends[2].weight, 65535u);
    EXPECT_EQ(web.backends[2].state, AdminState::disabled);

    const Pool &dns = c.pools[1];
    EXPECT_EQ(dns.table_bits, 20u);
    EXPECT_EQ(dns.health.kind, ProbeKind::udp);
    EXPECT_EQ(dns.health.source->str(), "fd00::1");
    EXPECT_EQ(dns.health.http_path, "/global");
    EXPECT_EQ(dns.backends[0].health.kind, ProbeKind::udp);
    EXPECT_EQ(dns.backends[0].address.str(), "fd00:1::53");

    ASSERT_EQ(c.vips.size(), 2u);
    EXPECT_EQ(c.vips[0].address.str(), "192.0.2.10");
    EXPECT_EQ(c.vips[0].port, 80);
    EXPECT_EQ(c.vips[0].protocol, Protocol::tcp);
    EXPECT_EQ(c.vips[0].pool, "web");
    EXPECT_EQ(c.vips[0].method, Method::gue);
    EXPECT_EQ(c.vips[0].affinity, Affinity::flow);
    EXPECT_TRUE(c.vips[0].conn_table);
    EXPECT_EQ(c.vips[0].conn_idle_timeout_s, 300u);
    EXPECT_EQ(c.vips[0].line, 49);
    EXPECT_EQ(c.vips[1].address.str(), "2001:db8::53");
    EXPECT_EQ(c.vips[1].protocol, Protocol::udp);
    EXPECT_EQ(c.vips[1].method, Method::l2dsr);
    EXPECT_EQ(c.vips[1].affinity, Affinity::client);
    EXPECT_FALSE(c.vips[1].conn_table);
    EXPECT_EQ(c.vips[1].conn_idle_timeout_s, 30u);

    const DataplaneConfig &d = c.dataplane;
    EXPECT_EQ(d.eal_args, (std::vector<std::string>{"--in-memory", "-l", "0-2"}));
    EXPECT_EQ(d.worker_lcores, (std::vector<unsigned>{1, 2}));
    EXPECT_EQ(d.source_v4->str(), "10.0.0.2");
    EXPECT_EQ(d.source_v6->str(), "fd00::2");
    EXPECT_EQ(format_mac(*d.gateway_mac), "02:00:00:00:00:01");
    EXPECT_EQ(d.non_vip, NonVipPolicy::drop);
    EXPECT_EQ(d.exception_iface, "us0");
    EXPECT_EQ(d.conn_table_size, 4096u);
    EXPECT_EQ(d.hop_budget, 15);
    EXPECT_EQ(d.mbufs, 65536u);
    ASSERT_EQ(d.ports.size(), 1u);
    EXPECT_EQ(d.ports[0].name, "p0");
    EXPECT_EQ(d.ports[0].devargs, "net_af_packet0,iface=veth0");
    EXPECT_EQ(d.ports[0].rx_queues, 2);

    EXPECT_EQ(c.control.socket, "/tmp/us.sock");
    EXPECT_EQ(c.control.socket_group, "wheel");
    EXPECT_EQ(c.control.metrics, "[::1]:9999");

    EXPECT_EQ(c.find_pool("dns"), &c.pools[1]);
    EXPECT_EQ(c.find_pool("nope"), nullptr);
    EXPECT_EQ(c.find_vip(*Address::parse("192.0.2.10"), 80, Protocol::tcp), &c.vips[0]);
    EXPECT_EQ(c.find_vip(*Address::parse("192.0.2.10"), 80, Protocol::udp), nullptr);
    EXPECT_EQ(c.find_vip(*Address::parse("2001:db8::53"), 53, Protocol::udp), &c.vips[1]);

    EXPECT_TRUE(validate_config(c)) << validate_config(c).error();
}

TEST(ConfigParse, Defaults)
{
    std::string text = doc({
        /*  1 */ "[cluster]",
        /*  2 */ kSecretLine,
        /*  3 */ "[[pool]]",
        /*  4 */ "name = \"web\"",
        /*  5 */ "[[pool.backend]]",
        /*  6 */ "id = 1",
        /*  7 */ "address = \"10.0.1.11\"",
        /*  8 */ "[[vip]]",
        /*  9 */ "address = \"192.0.2.10\"",
        /* 10 */ "port = 80",
        /* 11 */ "pool = \"web\"",
        /* 12 */ "[dataplane]",
        /* 13 */ "source_v4 = \"10.0.0.2\"",
    });
    auto config = parse_config(text, "t.toml");
    ASSERT_TRUE(config) << config.error();
    const HealthConfig defaults;
    const Config &c = *config;
    for (const HealthConfig *h : {&c.health, &c.pools[0].health, &c.pools[0].backends[0].health}) {
        EXPECT_EQ(h->kind, ProbeKind::tcp);
        EXPECT_EQ(h->port, 0);
        EXPECT_EQ(h->http_path, "/");
        EXPECT_EQ(h->http_status_min, 200);
        EXPECT_EQ(h->http_status_max, 399);
        EXPECT_EQ(h->udp_payload, "ping");
        EXPECT_EQ(h->udp_expect, "");
        EXPECT_EQ(h->interval_ms, 1000u);
        EXPECT_EQ(h->timeout_ms, 500u);
        EXPECT_EQ(h->rise, 2u);
        EXPECT_EQ(h->fall, 3u);
        EXPECT_FALSE(h->source);
    }
    EXPECT_EQ(c.pools[0].table_bits, 20u);
    const Backend &b = c.pools[0].backends[0];
    EXPECT_EQ(b.weight, 100u);
    EXPECT_EQ(b.state, AdminState::enabled);
    EXPECT_FALSE(b.mac);
    const Vip &v = c.vips[0];
    EXPECT_EQ(v.protocol, Protocol::tcp);
    EXPECT_EQ(v.method, Method::gue);
    EXPECT_EQ(v.affinity, Affinity::flow);
    EXPECT_TRUE(v.conn_table);
    EXPECT_EQ(v.conn_idle_timeout_s, 300u);
    const DataplaneConfig &d = c.dataplane;
    EXPECT_TRUE(d.eal_args.empty());
    EXPECT_TRUE(d.ports.empty());
    EXPECT_TRUE(d.worker_lcores.empty());
    EXPECT_FALSE(d.source_v6);
    EXPECT_FALSE(d.gateway_mac);
    EXPECT_EQ(d.non_vip, NonVipPolicy::kernel);
    EXPECT_EQ(d.exception_iface, "understudy0");
    EXPECT_EQ(d.conn_table_size, 1u << 20);
    EXPECT_EQ(d.hop_budget, 3);  // docs/configuration.md
    EXPECT_EQ(d.mbufs, 0u);  // sized from the RX queues
    EXPECT_EQ(c.control.socket, "/run/understudy/understudy.sock");
    EXPECT_EQ(c.control.socket_group, "");
    EXPECT_EQ(c.control.metrics, "127.0.0.1:9273");
}

TEST(ConfigParse, EmptyBalancerIsValid)
{
    auto config = parse_config(doc({"[cluster]", kSecretLine}), "t.toml");
    ASSERT_TRUE(config) << config.error();
    EXPECT_TRUE(config->pools.empty());
    EXPECT_TRUE(config->vips.empty());
}

TEST(ConfigParse, PoolWithoutBackendsIsValid)
{
    auto config = parse_config(doc({
                                   /* 1 */ "[cluster]",
                                   /* 2 */ kSecretLine,
                                   /* 3 */ "[[pool]]",
                                   /* 4 */ "name = \"empty\"",
                                   /* 5 */ "[[vip]]",
                                   /* 6 */ "address = \"192.0.2.10\"",
                                   /* 7 */ "port = 80",
                                   /* 8 */ "pool = \"empty\"",
                               }),
                               "t.toml");
    ASSERT_TRUE(config) << config.error();
    EXPECT_TRUE(config->pools[0].backends.empty());
}

TEST(ConfigParse, InlineTablesAreTheSame)
{
    auto config = parse_config(doc({
                                   /* 1 */ "cluster = { secret = \"000102030405060708090a0b0c0d0e0f\" }",
                                   /* 2 */ "pool = [{ name = \"web\", backend = [{ id = 3, address = \"fd00::3\" }] }]",
                               }),
                               "t.toml");
    ASSERT_TRUE(config) << config.error();
    EXPECT_EQ(config->pools[0].backends[0].id, 3u);
}

TEST(ConfigParse, EnumNamesRoundTrip)
{
    for (auto v : {AdminState::enabled, AdminState::drain, AdminState::disabled})
        EXPECT_EQ(*parse_admin_state(to_string(v)), v);
    for (auto v : {Method::gue, Method::ipip, Method::l2dsr})
        EXPECT_EQ(*parse_method(to_string(v)), v);
    for (auto v : {Affinity::flow, Affinity::client})
        EXPECT_EQ(*parse_affinity(to_string(v)), v);
    for (auto v : {Protocol::tcp, Protocol::udp})
        EXPECT_EQ(*parse_protocol(to_string(v)), v);
    for (auto v : {ProbeKind::none, ProbeKind::tcp, ProbeKind::http, ProbeKind::udp})
        EXPECT_EQ(*parse_probe_kind(to_string(v)), v);
    EXPECT_EQ(to_string(Method::l2dsr), "l2dsr");
    EXPECT_EQ(to_string(Protocol::udp), "udp");
    auto bad = parse_method("GUE");
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error(), "'GUE' is not one of: gue, ipip, l2dsr");
}

// ---------------------------------------------------------------------------------------------------------
// The file as a whole

TEST(ConfigErrors, SyntaxErrorGivesLineAndColumn)
{
    auto ps = problems(doc({
        /* 1 */ "[cluster]",
        /* 2 */ kSecretLine,
        /* 3 */ "[[pool]]",
        /* 4 */ "name = web",
    }));
    ASSERT_EQ(ps.size(), 1u) << show(ps);
    EXPECT_TRUE(has_problem(ps, "t.toml:4: syntax: ", "(column "));
}

TEST(ConfigErrors, DuplicateKeyIsASyntaxError)
{
    EXPECT_TRUE(only_problem(doc({
                                 /* 1 */ "[cluster]",
                                 /* 2 */ kSecretLine,
                                 /* 3 */ kSecretLine,
                             }),
                             "t.toml:3: syntax: "));
}

TEST(ConfigErrors, MissingFileNamesThePath)
{
    auto config = load_config("/nonexistent/understudy.toml");
    ASSERT_FALSE(config);
    EXPECT_EQ(config.error(), "/nonexistent/understudy.toml: cannot read the config file: No such file or directory");
}

TEST(ConfigErrors, LoadConfigReportsTheFileName)
{
    auto dir = std::filesystem::temp_directory_path() / ("config_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    auto path = (dir / "bad.toml").string();
    {
        std::ofstream out(path);
        out << "[cluster]\nsecret = \"00\"\n";
    }
    auto config = load_config(path);
    std::filesystem::remove_all(dir);
    ASSERT_FALSE(config);
    EXPECT_EQ(config.error(), path + ":2: cluster.secret: must be 32 hex digits (16 bytes), got 2 characters");
}

TEST(ConfigErrors, AllProblemsAreReportedInLineOrder)
{
    std::string text = doc({
        /*  1 */ "[cluster]",
        /*  2 */ "secret = \"xyz\"",
        /*  3 */ "[[pool]]",
        /*  4 */ "name = \"web\"",
        /*  5 */ "table_bits = 30",
        /*  6 */ "  [[pool.backend]]",
        /*  7 */ "  id = 0",
        /*  8 */ "  address = \"10.0.1.11\"",
        /*  9 */ "  wieght = 100",
        /* 10 */ "[[vip]]",
        /* 11 */ "address = \"192.0.2.10\"",
        /* 12 */ "port = 80",
        /* 13 */ "pool = \"nope\"",
        /* 14 */ "[dataplane]",
        /* 15 */ "hop_budget = 16",
    });
    auto ps = problems(text);
    ASSERT_EQ(ps.size(), 6u) << show(ps);
    EXPECT_TRUE(has_problem({ps[0]}, "t.toml:2: cluster.secret: "));
    EXPECT_TRUE(has_problem({ps[1]}, "t.toml:5: pool[0].table_bits: ", "must be 8-24, not 30"));
    EXPECT_TRUE(has_problem({ps[2]}, "t.toml:7: pool[0].backend[0].id: ", "must be 1-4294967294, not 0"));
    EXPECT_TRUE(has_problem({ps[3]}, "t.toml:9: pool[0].backend[0].wieght: ", "did you mean 'weight'?"));
    EXPECT_TRUE(has_problem({ps[4]}, "t.toml:13: vip[0].pool: ", "no pool named 'nope'"));
    EXPECT_TRUE(has_problem({ps[5]}, "t.toml:15: dataplane.hop_budget: ", "must be 0-15, not 16"));
}

// ---------------------------------------------------------------------------------------------------------
// [cluster]

TEST(ConfigErrors, SecretMissingWithoutClusterTable)
{
    EXPECT_TRUE(only_problem(doc({"[control]", "metrics = \"\""}), "t.toml:1: cluster.secret: ", "is required"));
}

TEST(ConfigErrors, SecretMissingInClusterTable)
{
    EXPECT_TRUE(only_problem(doc({
                                 /* 1 */ "[control]",
                                 /* 2 */ "metrics = \"\"",
                                 /* 3 */ "[cluster]",
                             }),
                             "t.toml:3: cluster.secret: ", "is required"));
}

TEST(ConfigErrors, SecretShortLongNotHexWrongType)
{
    EXPECT_TRUE(only_problem(doc({"[cluster]", "secret = \"000102030405060708090a0b0c0d0e\""}),
                             "t.toml:2: cluster.secret: ", "got 30 characters"));
    EXPECT_TRUE(only_problem(doc({"[cluster]", "secret = \"000102030405060708090a0b0c0d0e0f00\""}),
                             "t.toml:2: cluster.secret: ", "got 34 characters"));
    EXPECT_TRUE(only_problem(doc({"[cluster]", "secret = \"000102030405060708090a0b0c0d0e0g\""}),
                             "t.toml:2: cluster.secret: ", "hex digits only"));
    EXPECT_TRUE(only_problem(doc({"[cluster]", "", "secret = 1234"}), "t.toml:3: cluster.secret: ",
                             "must be a string, not an integer"));
}

TEST(ConfigErrors, SecretAllZerosIsNotASecret)
{
    EXPECT_TRUE(only_problem(doc({"[cluster]", "secret = \"00000000000000000000000000000000\""}),
                             "t.toml:2: cluster.secret: ", "all zeros"));
}

// ---------------------------------------------------------------------------------------------------------
// Keys and types

TEST(ConfigErrors, UnknownKeysAreNamed)
{
    auto ps = problems(doc({
        /*  1 */ "[cluster]",
        /*  2 */ kSecretLine,
        /*  3 */ "[pools]",
        /*  4 */ "name = \"x\"",
        /*  5 */ "[health]",
        /*  6 */ "intervall_ms = 10",
        /*  7 */ "[[pool]]",
        /*  8 */ "name = \"web\"",
        /*  9 */ "  [pool.health]",
        /* 10 */ "  kind = \"tcp\"",
        /* 11 */ "  colour = \"red\"",
        /* 12 */ "  [[pool.backend]]",
        /* 13 */ "  id = 1",
        /* 14 */ "  address = \"10.0.1.11\"",
        /* 15 */ "  wieght = 100",
        /* 16 */ "[dataplane]",
        /* 17 */ "hop_budgte = 3",
        /* 18 */ "[control]",
        /* 19 */ "metric = \"\"",
    }));
    ASSERT_EQ(ps.size(), 6u) << show(ps);
    EXPECT_TRUE(has_problem(ps, "t.toml:3: pools: ", "unknown key (did you mean 'pool'?)"));
    EXPECT_TRUE(has_problem(ps, "t.toml:6: health.intervall_ms: ", "unknown key (did you mean 'interval_ms'?)"));
    EXPECT_TRUE(has_problem(ps, "t.toml:11: pool[0].health.colour: ", "unknown key (allowed here: kind, port,"));
    EXPECT_TRUE(has_problem(ps, "t.toml:15: pool[0].backend[0].wieght: ", "unknown key (did you mean 'weight'?)"));
    EXPECT_TRUE(has_problem(ps, "t.toml:17: dataplane.hop_budgte: ", "did you mean 'hop_budget'?"));
    EXPECT_TRUE(has_problem(ps, "t.toml:19: control.metric: ", "did you mean 'metrics'?"));
}

TEST(ConfigErrors, WrongValueTypes)
{
    auto ps = problems(doc({
        /*  1 */ "[cluster]",
        /*  2 */ kSecretLine,
        /*  3 */ "[health]",
        /*  4 */ "rise = \"2\"",
        /*  5 */ "[[pool]]",
        /*  6 */ "name = 5",
        /*  7 */ "  [[pool.backend]]",
        /*  8 */ "  id = 1",
        /*  9 */ "  address = \"10.0.1.11\"",
        /* 10 */ "  weight = 1.5",
        /* 11 */ "[[vip]]",
        /* 12 */ "address = \"192.0.2.10\"",
        /* 13 */ "port = 80",
        /* 14 */ "pool = \"web\"",
        /* 15 */ "conn_table = \"yes\"",
        /* 16 */ "[dataplane]",
        /* 17 */ "source_v4 = \"10.0.0.2\"",
        /* 18 */ "eal_args = \"--in-memory\"",
        /* 19 */ "workers = [1, \"2\"]",
        /* 20 */ "port = { name = \"p0\" }",
    }));
    EXPECT_TRUE(has_problem(ps, "t.toml:4: health.rise: ", "must be an integer, not a string"));
    EXPECT_TRUE(has_problem(ps, "t.toml:6: pool[0].name: ", "must be a string, not an integer"));
    EXPECT_TRUE(has_problem(ps, "t.toml:10: pool[0].backend[0].weight: ", "must be an integer, not a float"));
    EXPECT_TRUE(has_problem(ps, "t.toml:15: vip[0].conn_table: ", "must be a boolean (true or false), not a string"));
    EXPECT_TRUE(has_problem(ps, "t.toml:18: dataplane.eal_args: ", "must be an array, not a string"));
    EXPECT_TRUE(has_problem(ps, "t.toml:19: dataplane.workers[1]: ", "must be an integer"));
    EXPECT_TRUE(has_problem(ps, "t.toml:20: dataplane.port: ", "must be an array of tables ([[dataplane.port]])"));
    // The VIP naming "web" is not blamed: the pool's name could not be read. Nor is the worker count.
    EXPECT_EQ(ps.size(), 7u) << show(ps);
}

TEST(ConfigErrors, SectionThatMustBeAnArrayOfTables)
{
    EXPECT_TRUE(only_problem(doc({
                                 /* 1 */ "[cluster]",
                                 /* 2 */ kSecretLine,
                                 /* 3 */ "[pool]",
                                 /* 4 */ "name = \"web\"",
                             }),
                             "t.toml:3: pool: ", "must be an array of tables ([[pool]]), not a table"));
}

// ---------------------------------------------------------------------------------------------------------
// Pools and backends

TEST(ConfigErrors, DuplicatePoolNames)
{
    EXPECT_TRUE(only_problem(doc({
                                 /* 1 */ "[cluster]",
                                 /* 2 */ kSecretLine,
                                 /* 3 */ "[[pool]]",
                                 /* 4 */ "name = \"web\"",
                                 /* 5 */ "[[pool]]",
                                 /* 6 */ "name = \"web\"",
                             }),
                             "t.toml:6: pool[1].name: ", "duplicate pool name 'web', also used by pool[0] at line 3"));
}

TEST(ConfigErrors, PoolNameMissingOrInvalid)
{
    EXPECT_TRUE(only_problem(doc({"[cluster]", kSecretLine, "[[pool]]", "table_bits = 10"}), "t.toml:3: pool[0].name: ",
                             "is required"));
    EXPECT_TRUE(only_problem(doc({"[cluster]", kSecretLine, "[[pool]]", "name = \"w b\""}), "t.toml:4: pool[0].name: ",
                             "not a valid pool name"));
}

TEST(ConfigErrors, TableBitsOutOfRange)
{
    for (const char *bits : {"table_bits = 7", "table_bits = 25", "table_bits = -1", "table_bits = 99999999999"}) {
        SCOPED_TRACE(bits);
        EXPECT_TRUE(only_problem(doc({"[cluster]", kSecretLine, "[[pool]]", "name = \"web\"", bits}),
                                 "t.toml:5: pool[0].table_bits: ", "must be 8-24, not "));
    }
    EXPECT_TRUE(problems(doc({"[cluster]", kSecretLine, "[[pool]]", "name = \"a\"", "table_bits = 8"})).empty());
    EXPECT_TRUE(problems(doc({"[cluster]", kSecretLine, "[[pool]]", "name = \"a\"", "table_bits = 24"})).empty());
}

TEST(ConfigErrors, DuplicateBackendIdAndAddress)
{
    auto ps = problems(doc({
        /*  1 */ "[cluster]",
        /*  2 */ kSecretLine,
        /*  3 */ "[[pool]]",
        /*  4 */ "name = \"web\"",
        /*  5 */ "  [[pool.backend]]",
        /*  6 */ "  id = 1",
        /*  7 */ "  address = \"10.0.1.11\"",
        /*  8 */ "  [[pool.backend]]",
        /*  9 */ "  id = 2",
        /* 10 */ "  address = \"10.0.1.12\"",
        /* 11 */ "  [[pool.backend]]",
        /* 12 */ "  id = 1",
        /* 13 */ "  address = \"10.0.1.12\"",
        /* 14 */ "[[pool]]",
        /* 15 */ "name = \"other\"",
        /* 16 */ "  [[pool.backend]]",  // the same id and address in another pool are fine
        /* 17 */ "  id = 1",
        /* 18 */ "  address = \"10.0.1.11\"",
    }));
    ASSERT_EQ(ps.size(), 2u) << show(ps);
    EXPECT_TRUE(has_problem(ps, "t.toml:12: pool[0].backend[2].id: ",
                            "duplicate id 1, also used by pool[0].backend[0] at line 5"));
    EXPECT_TRUE(has_problem(ps, "t.toml:13: pool[0].backend[2].address: ",
                            "duplicate address 10.0.1.12, also used by pool[0].backend[1] at line 8"));
}

TEST(ConfigErrors, BackendIdRange)
{
    for (const char *id : {"id = 0", "id = 4294967295", "id = -1", "id = 4294967296"}) {
        SCOPED_TRACE(id);
        EXPECT_TRUE(only_problem(doc({
                                     /* 1 */ "[cluster]",
                                     /* 2 */ kSecretLine,
                                     /* 3 */ "[[pool]]",
                                     /* 4 */ "name = \"web\"",
                                     /* 5 */ "[[pool.backend]]",
                                     /* 6 */ "address = \"10.0.1.11\"",
                                     /* 7 */ id,
                                 }),
                                 "t.toml:7: pool[0].backend[0].id: ", "must be 1-4294967294, not "));
    }
}

TEST(ConfigErrors, BackendRequiredKeys)
{
    auto ps = problems(doc({
        /* 1 */ "[cluster]",
        /* 2 */ kSecretLine,
        /* 3 */ "[[pool]]",
        /* 4 */ "name = \"web\"",
        /* 5 */ "[[pool.backend]]",
        /* 6 */ "weight = 1",
        /* 7 */ "[[pool.backend]]",
        /* 8 */ "weight = 2",
    }));
    // Missing ids and addresses are reported once each, not again as "0" or as duplicates.
    ASSERT_EQ(ps.size(), 4u) << show(ps);
    EXPECT_TRUE(has_problem(ps, "t.toml:5: pool[0].backend[0].id: ", "is required"));
    EXPECT_TRUE(has_problem(ps, "t.toml:5: pool[0].backend[0].address: ", "is required"));
    EXPECT_TRUE(has_problem(ps, "t.toml:7: pool[0].backend[1].id: ", "is required"));
    EXPECT_TRUE(has_problem(ps, "t.toml:7: pool[0].backend[1].address: ", "is required"));
}

TEST(ConfigErrors, WeightRange)
{
    for (const char *w : {"weight = 65536", "weight = -1"}) {
        SCOPED_TRACE(w);
        EXPECT_TRUE(only_problem(doc({
                                     /* 1 */ "[cluster]",
                                     /* 2 */ kSecretLine,
                                     /* 3 */ "[[pool]]",
                                     /* 4 */ "name = \"web\"",
                                     /* 5 */ "[[pool.backend]]",
                                     /* 6 */ "id = 1",
                                     /* 7 */ "address = \"10.0.1.11\"",
                                     /* 8 */ w,
                                 }),
                                 "t.toml:8: pool[0].backend[0].weight: ", "must be 0-65535, not "));
    }
}

TEST(ConfigErrors, BadStateListsAllowedValues)
{
    EXPECT_TRUE(only_problem(doc({
                                 /* 1 */ "[cluster]",
                                 /* 2 */ kSecretLine,
                                 /* 3 */ "[[pool]]",
                                 /* 4 */ "name = \"web\"",
                                 /* 5 */ "[[pool.backend]]",
                                 /* 6 */ "id = 1",
                                 /* 7 */ "address = \"10.0.1.11\"",
                                 /* 8 */ "state = \"up\"",
                             }),
                             "t.toml:8: pool[0].backend[0].state: ", "'up' is not one of: enabled, drain, disabled"));
}

TEST(ConfigErrors, BadBackendAddressAndMac)
{
    auto ps = problems(doc({
        /*  1 */ "[cluster]",
        /*  2 */ kSecretLine,
        /*  3 */ "[[pool]]",
        /*  4 */ "name = \"web\"",
        /*  5 */ "[[pool.backend]]",
        /*  6 */ "id = 1",
        /*  7 */ "address = \"10.0.1.300\"",
        /*  8 */ "mac = \"02:00:00:00:01\"",
        /*  9 */ "[[pool.backend]]",
        /* 10 */ "id = 2",
        /* 11 */ "address = \"10.0.1.12\"",
        /* 12 */ "mac = \"01:00:5e:00:00:01\"",
    }));
    ASSERT_EQ(ps.size(), 3u) << show(ps);
    EXPECT_TRUE(has_problem(ps, "t.toml:7: pool[0].backend[0].address: ", "'10.0.1.300' is not an IPv4 or IPv6 address"));
    EXPECT_TRUE(has_problem(ps, "t.toml:8: pool[0].backend[0].mac: ", "is not a MAC address"));
    EXPECT_TRUE(has_problem(ps, "t.toml:12: pool[0].backend[1].mac: ", "01:00:5e:00:00:01 is not a unicast MAC address"));
}

TEST(ConfigErrors, BackendAddressThatIsAVip)
{
    EXPECT_TRUE(only_problem(doc({
                                 /*  1 */ "[cluster]",
                                 /*  2 */ kSecretLine,
                                 /*  3 */ "[[pool]]",
                                 /*  4 */ "name = \"web\"",
                                 /*  5 */ "[[pool.backend]]",
                                 /*  6 */ "id = 1",
                                 /*  7 */ "address = \"192.0.2.10\"",
                                 /*  8 */ "[[vip]]",
                                 /*  9 */ "address = \"192.0.2.10\"",
                                 /* 10 */ "port = 80",
                                 /* 11 */ "pool = \"web\"",
                                 /* 12 */ "method = \"l2dsr\"",
                             }),
                             "t.toml:7: pool[0].backend[0].address: ", "is the address of vip[0] at line 8"));
}

TEST(ConfigValidate, TooManyBackends)
{
    Config c;
    c.path = "mem";
    c.secret[0] = 1;
    Pool p;
    p.name = "big";
    p.line = 3;
    for (uint32_t i = 0; i <= kMaxBackendsPerPool; i++) {
        Backend b;
        b.id = i + 1;
        b.address = Address::from_v4(0x0a000000 + i);
        p.backends.push_back(b);
    }
    c.pools.push_back(p);
    auto status = validate_config(c);
    ASSERT_FALSE(status);
    EXPECT_EQ(status.error(), "mem:3: pool[0].backend: 65536 backends, at most 65535 per pool");
    c.pools[0].backends.pop_back();
    EXPECT_TRUE(validate_config(c)) << validate_config(c).error();
}

// ---------------------------------------------------------------------------------------------------------
// Health

TEST(ConfigErrors, TimeoutAboveIntervalIsReportedOnceWhereItIsSet)
{
    auto ps = problems(doc({
        /*  1 */ "[cluster]",
        /*  2 */ kSecretLine,
        /*  3 */ "[health]",
        /*  4 */ "timeout_ms = 1500",
        /*  5 */ "[[pool]]",
        /*  6 */ "name = \"web\"",
        /*  7 */ "  [[pool.backend]]",
        /*  8 */ "  id = 1",
        /*  9 */ "  address = \"10.0.1.11\"",
        /* 10 */ "[[pool]]",
        /* 11 */ "name = \"api\"",
        /* 12 */ "  [pool.health]",
        /* 13 */ "  timeout_ms = 100",
        /* 14 */ "  interval_ms = 50",
    }));
    // [health] is wrong and pool "web" inherits it silently; pool "api" makes its own different mistake.
    ASSERT_EQ(ps.size(), 2u) << show(ps);
    EXPECT_TRUE(has_problem(ps, "t.toml:4: health.timeout_ms: ", "1500 is greater than interval_ms 1000"));
    EXPECT_TRUE(has_problem(ps, "t.toml:13: pool[1].health.timeout_ms: ", "100 is greater than interval_ms 50"));
}

TEST(ConfigErrors, BackendHealthOverride)
{
    EXPECT_TRUE(only_problem(doc({
                                 /*  1 */ "[cluster]",
                                 /*  2 */ kSecretLine,
                                 /*  3 */ "[[pool]]",
                                 /*  4 */ "name = \"web\"",
                                 /*  5 */ "  [[pool.backend]]",
                                 /*  6 */ "  id = 1",
                                 /*  7 */ "  address = \"10.0.1.11\"",
                                 /*  8 */ "    [pool.backend.health]",
                                 /*  9 */ "    interval_ms = 100",
                             }),
                             "t.toml:8: pool[0].backend[0].health.timeout_ms: ", "500 is greater than interval_ms 100"));
}

TEST(ConfigErrors, RiseFallZero)
{
    auto ps = problems(doc({
        /* 1 */ "[cluster]",
        /* 2 */ kSecretLine,
        /* 3 */ "[health]",
        /* 4 */ "rise = 0",
        /* 5 */ "fall = 0",
    }));
    ASSERT_EQ(ps.size(), 2u) << show(ps);
    EXPECT_TRUE(has_problem(ps, "t.toml:4: health.rise: ", "must be 1-4294967295, not 0"));
    EXPECT_TRUE(has_problem(ps, "t.toml:5: health.fall: ", "must be 1-4294967295, not 0"));
}

TEST(ConfigErrors, BadExpectRange)
{
    for (const char *e : {"expect = \"abc\"", "expect = \"200-\"", "expect = \"2xx\""}) {
        SCOPED_TRACE(e);
        EXPECT_TRUE(only_problem(doc({"[cluster]", kSecretLine, "[health]", e}), "t.toml:4: health.expect: ",
                                 "is not a status code or range"));
    }
    for (const char *e : {"expect = \"300-200\"", "expect = \"700\"", "expect = \"99-200\""}) {
        SCOPED_TRACE(e);
        EXPECT_TRUE(only_problem(doc({"[cluster]", kSecretLine, "[health]", e}), "t.toml:4: health.expect: ",
                                 "must lie within 100-599"));
    }
    EXPECT_TRUE(problems(doc({"[cluster]", kSecretLine, "[health]", "expect = \"204\""})).empty());
}

TEST(ConfigErrors, BadKindListsAllowedValues)
{
    EXPECT_TRUE(only_problem(doc({
                                 /* 1 */ "[cluster]",
                                 /* 2 */ kSecretLine,
                                 /* 3 */ "[[pool]]",
                                 /* 4 */ "name = \"web\"",
                                 /* 5 */ "[pool.health]",
                                 /* 6 */ "kind = \"icmp\"",
                             }),
                             "t.toml:6: pool[0].health.kind: ", "'icmp' is not one of: none, tcp, http, udp"));
}

TEST(ConfigErrors, BadHealthPathAndSource)
{
    auto ps = problems(doc({
        /*  1 */ "[cluster]",
        /*  2 */ kSecretLine,
        /*  3 */ "[health]",
        /*  4 */ "path = \"healthz\"",
        /*  5 */ "source = \"10.0.0\"",
        /*  6 */ "port = 65536",
    }));
    ASSERT_EQ(ps.size(), 3u) << show(ps);
    EXPECT_TRUE(has_problem(ps, "t.toml:4: health.path: ", "must start with '/'"));
    EXPECT_TRUE(has_problem(ps, "t.toml:5: health.source: ", "is not an IPv4 or IPv6 address"));
    EXPECT_TRUE(has_problem(ps, "t.toml:6: health.port: ", "must be 0-65535, not 65536"));
}

TEST(ConfigErrors, ProbeSourceFamilyMustMatchTheBackend)
{
    EXPECT_TRUE(only_problem(doc({
                                 /*  1 */ "[cluster]",
                                 /*  2 */ kSecretLine,
                                 /*  3 */ "[health]",
                                 /*  4 */ "source = \"10.0.0.1\"",
                                 /*  5 */ "[[pool]]",
                                 /*  6 */ "name = \"web\"",
                                 /*  7 */ "  [[pool.backend]]",
                                 /*  8 */ "  id = 1",
                                 /*  9 */ "  address = \"10.0.1.11\"",
                                 /* 10 */ "  [[pool.backend]]",
                                 /* 11 */ "  id = 2",
                                 /* 12 */ "  address = \"fd00::12\"",
                                 /* 13 */ "  [[pool.backend]]",
                                 /* 14 */ "  id = 3",
                                 /* 15 */ "  address = \"fd00::13\"",
                                 /* 16 */ "    [pool.backend.health]",
                                 /* 17 */ "    source = \"fd00::1\"",
                             }),
                             "t.toml:4: health.source: ",
                             "probe source 10.0.0.1 is IPv4 but the backend fd00::12 (pool[0].backend[1] at line "
                             "10) is IPv6"));
}

// A [health] or [pool.health] source every backend inherits is one mistake: reported once, where it is set,
// not once per backend (it was one line per backend).
TEST(ConfigErrors, InheritedProbeSourceIsReportedOnce)
{
    auto ps = problems(doc({
        /*  1 */ "[cluster]",
        /*  2 */ kSecretLine,
        /*  3 */ "[health]",
        /*  4 */ "source = \"10.0.0.1\"",
        /*  5 */ "[[pool]]",
        /*  6 */ "name = \"web\"",
        /*  7 */ "  [[pool.backend]]",
        /*  8 */ "  id = 1",
        /*  9 */ "  address = \"fd00::11\"",
        /* 10 */ "  [[pool.backend]]",
        /* 11 */ "  id = 2",
        /* 12 */ "  address = \"fd00::12\"",
        /* 13 */ "  [[pool.backend]]",
        /* 14 */ "  id = 3",
        /* 15 */ "  address = \"fd00::13\"",
        /* 16 */ "  [[pool.backend]]",
        /* 17 */ "  id = 4",
        /* 18 */ "  address = \"fd00::14\"",
        /* 19 */ "[[pool]]",
        /* 20 */ "name = \"api\"",
        /* 21 */ "  [pool.health]",
        /* 22 */ "  source = \"fd00::1\"",
        /* 23 */ "  [[pool.backend]]",
        /* 24 */ "  id = 1",
        /* 25 */ "  address = \"10.0.2.1\"",
        /* 26 */ "  [[pool.backend]]",
        /* 27 */ "  id = 2",
        /* 28 */ "  address = \"10.0.2.2\"",
    }));
    ASSERT_EQ(ps.size(), 2u) << show(ps);
    EXPECT_EQ(ps[0], "t.toml:4: health.source: probe source 10.0.0.1 is IPv4 but the backends fd00::11 "
                     "(pool[0].backend[0] at line 7), fd00::12 (pool[0].backend[1] at line 10), fd00::13 "
                     "(pool[0].backend[2] at line 13) and 1 more are IPv6 (set health.source per backend in a "
                     "mixed pool)");
    EXPECT_EQ(ps[1], "t.toml:22: pool[1].health.source: probe source fd00::1 is IPv6 but the backends 10.0.2.1 "
                     "(pool[1].backend[0] at line 23), 10.0.2.2 (pool[1].backend[1] at line 26) are IPv4 (set "
                     "health.source per backend in a mixed pool)");
}

// ---------------------------------------------------------------------------------------------------------
// VIPs

TEST(ConfigErrors, VipUnknownPool)
{
    EXPECT_TRUE(only_problem(doc({
                                 /* 1 */ "[cluster]",
                                 /* 2 */ kSecretLine,
                                 /* 3 */ "[[pool]]",
                                 /* 4 */ "name = \"web\"",
                                 /* 5 */ "[[vip]]",
                                 /* 6 */ "address = \"192.0.2.10\"",
                                 /* 7 */ "port = 80",
                                 /* 8 */ "pool = \"wbe\"",
                             }),
                             "t.toml:8: vip[0].pool: ", "no pool named 'wbe' (did you mean 'web'?)"));
    EXPECT_TRUE(only_problem(doc({"[cluster]", kSecretLine, "[[vip]]", "address = \"192.0.2.10\"", "port = 80",
                                  "pool = \"web\""}),
                             "t.toml:6: vip[0].pool: ", "no pool named 'web' (no [[pool]] is defined)"));
}

TEST(ConfigErrors, DuplicateVip)
{
    EXPECT_TRUE(only_problem(doc({
                                 /*  1 */ "[cluster]",
                                 /*  2 */ kSecretLine,
                                 /*  3 */ "[[pool]]",
                                 /*  4 */ "name = \"web\"",
                                 /*  5 */ "[[vip]]",
                                 /*  6 */ "address = \"192.0.2.10\"",
                                 /*  7 */ "port = 80",
                                 /*  8 */ "pool = \"web\"",
                                 /*  9 */ "[[vip]]",  // the same address and port over UDP is another VIP
                                 /* 10 */ "address = \"192.0.2.10\"",
                                 /* 11 */ "port = 80",
                                 /* 12 */ "protocol = \"udp\"",
                                 /* 13 */ "pool = \"web\"",
                                 /* 14 */ "[[vip]]",
                                 /* 15 */ "address = \"192.0.2.10\"",
                                 /* 16 */ "port = 80",
                                 /* 17 */ "protocol = \"tcp\"",
                                 /* 18 */ "pool = \"web\"",
                             }),
                             "t.toml:15: vip[2].address: ",
                             "duplicate VIP 192.0.2.10:80/tcp, also defined by vip[0] at line 5"));
}

TEST(ConfigErrors, VipPort)
{
    for (const char *port : {"port = 0", "port = 65536", "port = -80"}) {
        SCOPED_TRACE(port);
        EXPECT_TRUE(only_problem(doc({"[cluster]", kSecretLine, "[[pool]]", "name = \"web\"", "[[vip]]",
                                      "address = \"192.0.2.10\"", port, "pool = \"web\""}),
                                 "t.toml:7: vip[0].port: ", "must be 1-65535, not "));
    }
    EXPECT_TRUE(only_problem(doc({"[cluster]", kSecretLine, "[[pool]]", "name = \"web\"", "[[vip]]",
                                  "address = \"192.0.2.10\"", "pool = \"web\""}),
                             "t.toml:5: vip[0].port: ", "is required"));
}

TEST(ConfigErrors, BadVipStringsListAllowedValues)
{
    auto ps = problems(doc({
        /*  1 */ "[cluster]",
        /*  2 */ kSecretLine,
        /*  3 */ "[[pool]]",
        /*  4 */ "name = \"web\"",
        /*  5 */ "[[vip]]",
        /*  6 */ "address = \"192.0.2.300\"",
        /*  7 */ "port = 80",
        /*  8 */ "pool = \"web\"",
        /*  9 */ "protocol = \"sctp\"",
        /* 10 */ "method = \"nat\"",
        /* 11 */ "affinity = \"sticky\"",
        /* 12 */ "conn_idle_timeout_s = 0",
    }));
    ASSERT_EQ(ps.size(), 5u) << show(ps);
    EXPECT_TRUE(has_problem(ps, "t.toml:6: vip[0].address: ", "'192.0.2.300' is not an IPv4 or IPv6 address"));
    EXPECT_TRUE(has_problem(ps, "t.toml:9: vip[0].protocol: ", "'sctp' is not one of: tcp, udp"));
    EXPECT_TRUE(has_problem(ps, "t.toml:10: vip[0].method: ", "'nat' is not one of: gue, ipip, l2dsr"));
    EXPECT_TRUE(has_problem(ps, "t.toml:11: vip[0].affinity: ", "'sticky' is not one of: flow, client"));
    EXPECT_TRUE(has_problem(ps, "t.toml:12: vip[0].conn_idle_timeout_s: ", "must be 1-2097151, not 0"));
}

// A pool with one IPv4 and one IPv6 backend, used by one VIP with the given method.
static std::string mixed_pool_vip(const char *vip_address, const char *method)
{
    return doc({
        /*  1 */ "[cluster]",
        /*  2 */ kSecretLine,
        /*  3 */ "[[pool]]",
        /*  4 */ "name = \"web\"",
        /*  5 */ "  [[pool.backend]]",
        /*  6 */ "  id = 1",
        /*  7 */ "  address = \"10.0.1.11\"",
        /*  8 */ "  [[pool.backend]]",
        /*  9 */ "  id = 2",
        /* 10 */ "  address = \"fd00::12\"",
        /* 11 */ "[[vip]]",
        /* 12 */ vip_address,
        /* 13 */ "port = 80",
        /* 14 */ "pool = \"web\"",
        /* 15 */ method,
        /* 16 */ "[dataplane]",
        /* 17 */ "source_v4 = \"10.0.0.2\"",
        /* 18 */ "source_v6 = \"fd00::2\"",
    });
}

TEST(ConfigErrors, L2dsrAndIpipCannotChangeFamily)
{
    EXPECT_TRUE(only_problem(mixed_pool_vip("address = \"192.0.2.10\"", "method = \"l2dsr\""),
                             "t.toml:15: vip[0].method: ",
                             "l2dsr cannot change the address family, but this IPv4 VIP's pool 'web' has IPv6 "
                             "backends: pool[0].backend[1] fd00::12"));
    EXPECT_TRUE(only_problem(mixed_pool_vip("address = \"2001:db8::10\"", "method = \"ipip\""),
                             "t.toml:15: vip[0].method: ",
                             "ipip cannot change the address family, but this IPv6 VIP's pool 'web' has IPv4 "
                             "backends: pool[0].backend[0] 10.0.1.11"));
    EXPECT_TRUE(problems(mixed_pool_vip("address = \"192.0.2.10\"", "method = \"gue\"")).empty());
    EXPECT_TRUE(problems(mixed_pool_vip("address = \"2001:db8::10\"", "method = \"gue\"")).empty());
}

TEST(ConfigErrors, SourceAddressFamilies)
{
    auto ps = problems(doc({
        /* 1 */ "[cluster]",
        /* 2 */ kSecretLine,
        /* 3 */ "[dataplane]",
        /* 4 */ "source_v4 = \"fd00::2\"",
        /* 5 */ "source_v6 = \"10.0.0.2\"",
    }));
    ASSERT_EQ(ps.size(), 2u) << show(ps);
    EXPECT_TRUE(has_problem(ps, "t.toml:4: dataplane.source_v4: ", "must be an IPv4 address, not fd00::2"));
    EXPECT_TRUE(has_problem(ps, "t.toml:5: dataplane.source_v6: ", "must be an IPv6 address, not 10.0.0.2"));
}

TEST(ConfigValidate, DataplaneNeedsPortsAndSourceAddresses)
{
    std::string text = doc({
        /*  1 */ "[cluster]",
        /*  2 */ kSecretLine,
        /*  3 */ "[[pool]]",
        /*  4 */ "name = \"web\"",
        /*  5 */ "  [[pool.backend]]",
        /*  6 */ "  id = 1",
        /*  7 */ "  address = \"fd00::11\"",
        /*  8 */ "[[vip]]",
        /*  9 */ "address = \"192.0.2.10\"",
        /* 10 */ "port = 80",
        /* 11 */ "pool = \"web\"",
    });
    // Valid as a model (offline tools accept it) ...
    auto config = parse_config(text, "t.toml");
    ASSERT_TRUE(config) << config.error();
    // ... but the data plane could neither receive nor encapsulate to the IPv6 backend.
    auto status = validate_for_dataplane(*config);
    ASSERT_FALSE(status);
    auto ps = split_lines(status.error());
    ASSERT_EQ(ps.size(), 2u) << show(ps);
    // No [dataplane]: the file as a whole, and the VIP that needs the source (it said FILE:0).
    EXPECT_EQ(ps[0], "t.toml:1: dataplane.port: at least one [[dataplane.port]] is needed to run the data plane");
    EXPECT_EQ(ps[1], "t.toml:8: dataplane.source_v6: is required: vip[0] at line 8 (192.0.2.10:80/tcp, gue) "
                     "encapsulates in IPv6 and needs an outer source address");

    config->dataplane.source_v6 = *Address::parse("fd00::2");
    config->dataplane.ports.push_back({"p0", "net_null0", 1, ""});
    config->dataplane.worker_lcores = {1};
    EXPECT_TRUE(validate_for_dataplane(*config)) << validate_for_dataplane(*config).error();
    EXPECT_TRUE(validate_config(*config)) << validate_config(*config).error();
}

// ---------------------------------------------------------------------------------------------------------
// [dataplane] and [control]

TEST(ConfigErrors, DataplaneValues)
{
    auto ps = problems(doc({
        /*  1 */ "[cluster]",
        /*  2 */ kSecretLine,
        /*  3 */ "[dataplane]",
        /*  4 */ "hop_budget = 16",
        /*  5 */ "non_vip = \"forward\"",
        /*  6 */ "gateway_mac = \"02:00:00:00:00\"",
        /*  7 */ "conn_table_size = 0",
        /*  8 */ "source_v6 = \"not-an-address\"",
        /*  9 */ "mbufs = -1",
    }));
    ASSERT_EQ(ps.size(), 6u) << show(ps);
    EXPECT_TRUE(has_problem(ps, "t.toml:4: dataplane.hop_budget: ", "must be 0-15, not 16"));
    EXPECT_TRUE(has_problem(ps, "t.toml:5: dataplane.non_vip: ", "'forward' is not one of: kernel, drop"));
    EXPECT_TRUE(has_problem(ps, "t.toml:6: dataplane.gateway_mac: ", "is not a MAC address"));
    EXPECT_TRUE(has_problem(ps, "t.toml:7: dataplane.conn_table_size: ", "must be 1-4294967295, not 0"));
    EXPECT_TRUE(has_problem(ps, "t.toml:8: dataplane.source_v6: ", "is not an IPv4 or IPv6 address"));
    EXPECT_TRUE(has_problem(ps, "t.toml:9: dataplane.mbufs: ", "must be 0-4294967295, not -1"));
    EXPECT_TRUE(only_problem(doc({"[cluster]", kSecretLine, "[dataplane]", "mbufs = \"1M\""}),
                             "t.toml:4: dataplane.mbufs: ", "must be an integer"));
    EXPECT_TRUE(only_problem(doc({"[cluster]", kSecretLine, "[dataplane]", "mbufs = 4294967296"}),
                             "t.toml:4: dataplane.mbufs: ", "must be 0-4294967295, not 4294967296"));
    EXPECT_TRUE(only_problem(doc({"[cluster]", kSecretLine, "[dataplane]", "hop_budget = 300"}),
                             "t.toml:4: dataplane.hop_budget: ", "must be 0-15, not 300"));
}

TEST(ConfigErrors, WorkersMatchRxQueues)
{
    auto ps = problems(doc({
        /*  1 */ "[cluster]",
        /*  2 */ kSecretLine,
        /*  3 */ "[dataplane]",
        /*  4 */ "workers = [1, 2, 2]",
        /*  5 */ "  [[dataplane.port]]",
        /*  6 */ "  name = \"p0\"",
        /*  7 */ "  devargs = \"net_af_packet0,iface=veth0\"",
        /*  8 */ "  rx_queues = 2",
        /*  9 */ "  [[dataplane.port]]",
        /* 10 */ "  name = \"p0\"",
        /* 11 */ "  devargs = \"\"",
        /* 12 */ "  [[dataplane.port]]",
        /* 13 */ "  devargs = \"net_null0\"",
        /* 14 */ "  rx_queues = 0",
    }));
    // Three workers for 2 + 1 + 0 queues: the count is right even though one port is wrong. A port with
    // no RX queue is a transmit-only port (the target of another port's tx_port).
    ASSERT_EQ(ps.size(), 4u) << show(ps);
    EXPECT_TRUE(has_problem(ps, "t.toml:4: dataplane.workers[2]: ", "lcore 2 is listed twice"));
    EXPECT_TRUE(has_problem(ps, "t.toml:10: dataplane.port[1].name: ", "duplicate port name 'p0', also used by "
                                                                        "dataplane.port[0] at line 5"));
    EXPECT_TRUE(has_problem(ps, "t.toml:11: dataplane.port[1].devargs: ", "must not be empty"));
    EXPECT_TRUE(has_problem(ps, "t.toml:12: dataplane.port[2].name: ", "is required"));

    auto tx = problems(doc({
        /*  1 */ "[cluster]",
        /*  2 */ kSecretLine,
        /*  3 */ "[dataplane]",
        /*  4 */ "workers = [1]",
        /*  5 */ "  [[dataplane.port]]",
        /*  6 */ "  name = \"in\"",
        /*  7 */ "  devargs = \"net_pcap0,rx_pcap=x.pcap\"",
        /*  8 */ "  tx_port = \"nowhere\"",
        /*  9 */ "  [[dataplane.port]]",
        /* 10 */ "  name = \"out\"",
        /* 11 */ "  devargs = \"net_null0\"",
        /* 12 */ "  rx_queues = 0",
        /* 13 */ "  tx_port = \"out\"",
    }));
    ASSERT_EQ(tx.size(), 2u) << show(tx);
    EXPECT_TRUE(has_problem(tx, "t.toml:8: dataplane.port[0].tx_port: ", "no port named 'nowhere'"));
    EXPECT_TRUE(has_problem(tx, "t.toml:13: dataplane.port[1].tx_port: ", "names the port itself"));
    EXPECT_TRUE(only_problem(doc({"[cluster]", kSecretLine, "[dataplane]", "workers = []", "[[dataplane.port]]",
                                  "name = \"p0\"", "devargs = \"net_null0\"", "rx_queues = 0"}),
                             "t.toml:5: dataplane.port: ", "no port has an RX queue"));

    EXPECT_TRUE(only_problem(doc({"[cluster]", kSecretLine, "[dataplane]", "workers = [1, 2]", "[[dataplane.port]]",
                                  "name = \"p0\"", "devargs = \"net_null0\""}),
                             "t.toml:4: dataplane.workers: ",
                             "lists 2 lcores but the ports have 1 RX queues in all (one worker per RX queue"));
}

TEST(ConfigErrors, ControlValues)
{
    for (const char *m : {"metrics = \"localhost:9273\"", "metrics = \"127.0.0.1\"", "metrics = \"::1:9273\"",
                          "metrics = \"127.0.0.1:99999\"", "metrics = \"127.0.0.1:0\""}) {
        SCOPED_TRACE(m);
        EXPECT_TRUE(only_problem(doc({"[cluster]", kSecretLine, "[control]", m}), "t.toml:4: control.metrics: "));
    }
    EXPECT_TRUE(problems(doc({"[cluster]", kSecretLine, "[control]", "metrics = \"\""})).empty());
    EXPECT_TRUE(problems(doc({"[cluster]", kSecretLine, "[control]", "metrics = \"[::]:9273\""})).empty());
    EXPECT_TRUE(only_problem(doc({"[cluster]", kSecretLine, "[control]", "socket = \"\""}),
                             "t.toml:4: control.socket: ", "must not be empty"));
}

// ---------------------------------------------------------------------------------------------------------
// validate_config() on models built in code, as the control API does

TEST(ConfigValidate, UsesStoredLinesAndReportsEverything)
{
    Config c;
    c.secret[15] = 1;
    Pool p;
    p.name = "web";
    p.line = 10;
    Backend b;
    b.id = 1;
    b.address = *Address::parse("10.0.1.11");
    b.line = 12;
    p.backends.push_back(b);
    b.weight = 70000;
    b.address = *Address::parse("10.0.1.12");
    b.line = 0;  // added through the API: no line of its own
    p.backends.push_back(b);
    c.pools.push_back(p);
    Vip v;
    v.address = *Address::parse("192.0.2.10");
    v.port = 80;
    v.pool = "nope";
    v.line = 20;
    c.vips.push_back(v);
    c.health.timeout_ms = 5000;

    auto status = validate_config(c);
    ASSERT_FALSE(status);
    auto ps = split_lines(status.error());
    ASSERT_EQ(ps.size(), 4u) << show(ps);
    EXPECT_EQ(ps[0], "<config>:0: health.timeout_ms: 5000 is greater than interval_ms 1000 (a probe must end "
                     "before the next)");
    EXPECT_EQ(ps[1], "<config>:10: pool[0].backend[1].id: duplicate id 1, also used by pool[0].backend[0] at "
                     "line 12");
    EXPECT_EQ(ps[2], "<config>:10: pool[0].backend[1].weight: must be 0-65535, not 70000");
    EXPECT_EQ(ps[3], "<config>:20: vip[0].pool: no pool named 'nope' (pools: 'web')");
}

TEST(ConfigValidate, ZeroSecretAndDefaultsAreNotEnough)
{
    Config c;
    auto status = validate_config(c);
    ASSERT_FALSE(status);
    EXPECT_EQ(status.error(), "<config>:0: cluster.secret: is all zeros: set a random secret (`openssl rand -hex 16`)");
    c.secret[0] = 1;
    EXPECT_TRUE(validate_config(c));
}

// ---------------------------------------------------------------------------------------------------------
// The example users copy

static std::string find_example()
{
    if (const char *root = std::getenv("UNDERSTUDY_SOURCE_ROOT"))
        return std::string(root) + "/conf/understudy.toml";
    // Run by hand rather than through meson test: look upwards from the working directory.
    for (auto dir = std::filesystem::current_path(); !dir.empty(); dir = dir.parent_path()) {
        if (std::filesystem::exists(dir / "conf/understudy.toml") && std::filesystem::exists(dir / "src/core/config.h"))
            return (dir / "conf/understudy.toml").string();
        if (dir == dir.parent_path())
            break;
    }
    return "";
}

TEST(ConfigExample, ShippedConfigIsValid)
{
    std::string path = find_example();
    ASSERT_FALSE(path.empty()) << "UNDERSTUDY_SOURCE_ROOT is not set and conf/understudy.toml is not above the "
                                  "working directory: run through meson test";
    auto config = load_config(path);
    ASSERT_TRUE(config) << config.error();
    const Pool *web = config->find_pool("web");
    ASSERT_NE(web, nullptr);
    ASSERT_EQ(web->backends.size(), 4u);
    for (size_t i = 0; i < 4; i++)
        EXPECT_EQ(web->backends[i].address.str(), "10.0.1.1" + std::to_string(i + 1));
    EXPECT_NE(config->find_vip(*Address::parse("192.0.2.10"), 80, Protocol::tcp), nullptr);
    bool has_v6_vip = false;
    for (const auto &v : config->vips)
        has_v6_vip = has_v6_vip || (!v.address.is_v4() && v.pool == "web");
    EXPECT_TRUE(has_v6_vip);
}

// [agent] tunnel_sources: addresses and prefixes, IPv4 and IPv6; each bad entry named with its line.
TEST(ConfigAgent, TunnelSources)
{
    auto config = parse_config(doc({
                                   /* 1 */ "[cluster]",
                                   /* 2 */ kSecretLine,
                                   /* 3 */ "[agent]",
                                   /* 4 */ "interface = \"eth0\"",
                                   /* 5 */ "tunnel_sources = [\"10.0.0.0/24\", \"2001:db8::/48\", \"192.0.2.7\"]",
                               }),
                               "t.toml");
    ASSERT_TRUE(config) << config.error();
    const auto &t = config->agent.tunnel_sources;
    ASSERT_EQ(t.size(), 3u);
    EXPECT_EQ(t[0].first, *Address::parse("10.0.0.0"));
    EXPECT_EQ(t[0].second, 24);
    EXPECT_EQ(t[1].first, *Address::parse("2001:db8::"));
    EXPECT_EQ(t[1].second, 48);
    EXPECT_EQ(t[2].second, 32) << "an address alone is a host";

    auto ps = problems(doc({
        /* 1 */ "[cluster]",
        /* 2 */ kSecretLine,
        /* 3 */ "[agent]",
        /* 4 */ "interface = \"eth0\"",
        /* 5 */ "tunnel_sources = [",
        /* 6 */ "  \"10.0.0.0/33\",",
        /* 7 */ "  7,",
        /* 8 */ "  \"nope/8\",",
        /* 9 */ "  \"10.0.0.1/\",",
        /* 10 */ "]",
    }));
    ASSERT_EQ(ps.size(), 4u) << show(ps);
    EXPECT_TRUE(has_problem(ps, "t.toml:6: agent.tunnel_sources[0]: ", "is not ADDR or ADDR/PREFIX"));
    EXPECT_TRUE(has_problem(ps, "t.toml:7: agent.tunnel_sources[1]: ", "must be a string"));
    EXPECT_TRUE(has_problem(ps, "t.toml:8: agent.tunnel_sources[2]: "));
    EXPECT_TRUE(has_problem(ps, "t.toml:9: agent.tunnel_sources[3]: "));
}

// Input that would exhaust the TOML reader's stack (it recurses per level and per key part) is refused
// first, with the line; a file larger than any configuration is refused without reading it all.
TEST(ConfigLimits, DeepNestingAndHugeFiles)
{
    std::string dotted = "[cluster]\n" + std::string(kSecretLine) + "\n";
    dotted += "a";
    for (int i = 0; i < 40000; i++)
        dotted += ".a";
    dotted += " = 1\n";
    auto ps = problems(dotted);
    ASSERT_EQ(ps.size(), 1u) << show(ps);
    EXPECT_TRUE(has_problem(ps, "t.toml:3: syntax: ", "a dotted key of 40001 parts; at most 64"));

    std::string header = "[" + std::string(20000, 'x');
    for (int i = 0; i < 20000; i++)
        header += ".x";
    header += "]\n";
    EXPECT_TRUE(has_problem(problems(header), "t.toml:1: syntax: ", "parts; at most 64"));

    std::string arrays = "[cluster]\n" + std::string(kSecretLine) + "\nx = " + std::string(100000, '[') +
                         std::string(100000, ']') + "\n";
    EXPECT_TRUE(has_problem(problems(arrays), "t.toml:3: syntax: ", "nested 100000 deep; at most 64"));

    std::string tables = "x = " + std::string(5000, ' ');
    for (int i = 0; i < 5000; i++)
        tables += "{a=";
    EXPECT_TRUE(has_problem(problems(tables), "t.toml:1: syntax: ", "nested 5000 deep"));

    // Within the limits, and dots in strings, comments and values, are nothing to refuse.
    auto fine = parse_config(doc({"[cluster]", kSecretLine, "# a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z",
                                  "[health]", "path = \"/a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z.a.b.c\""}),
                             "t.toml");
    EXPECT_TRUE(fine) << fine.error();

    auto zero = load_config("/dev/zero");
    ASSERT_FALSE(zero);
    EXPECT_EQ(zero.error(), "/dev/zero:1: file: holds more than 16777216 bytes (stopped reading there); a "
                            "configuration holds at most 16777216");
}


// ---------------------------------------------------------------------------------------------------------
// Input defects: what the reader must refuse or say properly

// A config file that is not a regular file is read up to the limit and no further, whatever it is: a pipe
// that never ends is refused with the limit named, as /dev/zero is.
TEST(ConfigLimits, PipesDirectoriesAndLargeFilesStopAtTheLimit)
{
    std::signal(SIGPIPE, SIG_IGN);
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    std::thread writer([fd = fds[1]] {
        std::string chunk(65536, '#');
        while (write(fd, chunk.data(), chunk.size()) > 0) {
        }
        close(fd);
    });
    auto piped = load_config("/proc/self/fd/" + std::to_string(fds[0]));
    close(fds[0]);
    writer.join();
    ASSERT_FALSE(piped);
    EXPECT_NE(piped.error().find(":1: file: holds more than 16777216 bytes (stopped reading there)"), std::string::npos)
        << piped.error();

    auto dir = load_config("/tmp");
    ASSERT_FALSE(dir);
    EXPECT_EQ(dir.error(), "/tmp: cannot read the config file: it is a directory");

    std::string big = testing::TempDir() + "/config_test_big.toml";
    {
        std::ofstream out(big, std::ios::binary);
        out << std::string((16u << 20) + 1, '#');
    }
    auto large = load_config(big);
    std::remove(big.c_str());
    ASSERT_FALSE(large);
    EXPECT_EQ(large.error(), big + ":1: file: is 16777217 bytes; a configuration holds at most 16777216");
}

// An escaped NUL in a string would cut an address, a path or a name short where it reaches C: any string
// holding one is refused with its line and field (control.socket and the others were accepted, truncated).
TEST(ConfigErrors, StringsWithNulAreRefused)
{
    auto ps = problems(doc({
        /*  1 */ "[cluster]",
        /*  2 */ kSecretLine,
        /*  3 */ "[control]",
        /*  4 */ "socket = \"/run/a\\u0000b\"",
        /*  5 */ "[dataplane]",
        /*  6 */ "exception_iface = \"tap\\u0000x\"",
        /*  7 */ "eal_args = [\"-l\", \"0\\u00001\"]",
        /*  8 */ "[agent]",
        /*  9 */ "interface = \"eth0\\u0000\"",
        /* 10 */ "tunnel_sources = [\"10.0.0.0/24\\u0000\"]",
        /* 11 */ "[[pool]]",
        /* 12 */ "name = \"web\"",
        /* 13 */ "  [[pool.backend]]",
        /* 14 */ "  id = 1",
        /* 15 */ "  address = \"10.0.0.1\\u0000x\"",
    }));
    ASSERT_EQ(ps.size(), 6u) << show(ps);
    const std::string nul = "holds a NUL character (\\u0000), which would cut the value short";
    EXPECT_EQ(ps[0], "t.toml:4: control.socket: " + nul);
    EXPECT_EQ(ps[1], "t.toml:6: dataplane.exception_iface: " + nul);
    EXPECT_EQ(ps[2], "t.toml:7: dataplane.eal_args[1]: " + nul);
    EXPECT_EQ(ps[3], "t.toml:9: agent.interface: " + nul);
    EXPECT_EQ(ps[4], "t.toml:10: agent.tunnel_sources[0]: " + nul);
    EXPECT_EQ(ps[5], "t.toml:15: pool[0].backend[0].address: " + nul);
}

// Keys, values and file names are echoed with control characters, terminal escape sequences (7- and 8-bit)
// and bytes that are not UTF-8 escaped: they were printed raw (or as '?').
TEST(ConfigErrors, UserTextIsEscapedInMessages)
{
    auto ps = problems(doc({
        /* 1 */ "[cluster]",
        /* 2 */ kSecretLine,
        /* 3 */ "\"ke\\u001b[2Jy\\r\" = 1",
        /* 4 */ "[[pool]]",
        /* 5 */ "name = \"we\\u009b31mb\\\\\\t\"",
    }));
    ASSERT_EQ(ps.size(), 2u) << show(ps);
    EXPECT_EQ(ps[0], "t.toml:3: cluster.ke\\x1b[2Jy\\r: unknown key (allowed here: secret)");
    EXPECT_EQ(ps[1], "t.toml:5: pool[0].name: 'we\\u009b31mb\\\\\\t' is not a valid pool name (1-63 letters, digits, "
                     "'_', '-', '.')");
    auto named = parse_config("[cluster]\nsecret = 7\n", "conf\xff\x1b.toml");
    ASSERT_FALSE(named);
    EXPECT_EQ(named.error(), "conf\\xff\\x1b.toml:2: cluster.secret: must be a string, not an integer");
    EXPECT_EQ(escape_text("a\x7f\xc3\xa9\xe2\x82\xac\xed\xa0\x80\xc0\xaf"), "a\\x7fé€\\xed\\xa0\\x80\\xc0\\xaf");
}

// Integers the model cannot hold are reported as written: past int64, negative for an unsigned field.
TEST(ConfigErrors, OutOfRangeIntegersAreReportedAsWritten)
{
    auto ps = problems(doc({"[cluster]", kSecretLine, "[[pool]]", "name = \"web\"", "table_bits = 18446744073709551615"}));
    ASSERT_EQ(ps.size(), 1u) << show(ps);
    EXPECT_TRUE(has_problem(ps, "t.toml:5: syntax: ", "'18446744073709551615'"));
    ps = problems(doc({"[cluster]", kSecretLine, "[[pool]]", "name = \"web\"", "table_bits = 0xffffffffffffffff"}));
    ASSERT_EQ(ps.size(), 1u) << show(ps);
    EXPECT_TRUE(has_problem(ps, "t.toml:5: syntax: ", "'0xffffffffffffffff'"));
    EXPECT_TRUE(only_problem(doc({"[cluster]", kSecretLine, "[[pool]]", "name = \"web\"", "table_bits = -1"}),
                             "t.toml:5: pool[0].table_bits: ", "must be 8-24, not -1"));
    EXPECT_TRUE(only_problem(doc({"[cluster]", kSecretLine, "[[pool]]", "name = \"web\"", "  [[pool.backend]]",
                                  "  id = 1", "  address = \"10.0.0.1\"", "  weight = 9223372036854775807"}),
                             "t.toml:8: pool[0].backend[0].weight: ", "must be 0-65535, not 9223372036854775807"));
}

// The checks run later on the model (the daemon's and the agent's) point at the line of the section or key
// they are about: they said FILE:0.
TEST(ConfigValidate, LaterChecksCarryTheLine)
{
    auto config = parse_config(doc({
                                   /* 1 */ "[cluster]",
                                   /* 2 */ kSecretLine,
                                   /* 3 */ "[dataplane]",
                                   /* 4 */ "mtu = 1500",
                                   /* 5 */ "[[pool]]",
                                   /* 6 */ "name = \"web\"",
                                   /* 7 */ "  [[pool.backend]]",
                                   /* 8 */ "  id = 1",
                                   /* 9 */ "  address = \"10.0.0.1\"",
                                   /* 10 */ "[[vip]]",
                                   /* 11 */ "address = \"192.0.2.1\"",
                                   /* 12 */ "port = 80",
                                   /* 13 */ "pool = \"web\"",
                                   /* 14 */ "[agent]",
                                   /* 15 */ "xdp_mode = \"fast\"",
                               }),
                               "t.toml");
    ASSERT_TRUE(config) << config.error();
    auto dp = validate_for_dataplane(*config);
    ASSERT_FALSE(dp);
    auto ps = split_lines(dp.error());
    ASSERT_EQ(ps.size(), 2u) << show(ps);
    EXPECT_EQ(ps[0], "t.toml:3: dataplane.port: at least one [[dataplane.port]] is needed to run the data plane");
    EXPECT_EQ(ps[1], "t.toml:3: dataplane.source_v4: is required: vip[0] at line 10 (192.0.2.1:80/tcp, gue) "
                     "encapsulates in IPv4 and needs an outer source address");
    auto agent = validate_for_agent(*config);
    ASSERT_FALSE(agent);
    ps = split_lines(agent.error());
    ASSERT_EQ(ps.size(), 2u) << show(ps);
    EXPECT_EQ(ps[0], "t.toml:14: agent.interface: is required: the interface the balancers' packets arrive on");
    EXPECT_EQ(ps[1], "t.toml:15: agent.xdp_mode: 'fast' is not one of: native, generic");

    // Without a [dataplane] section, at the VIP that needs the source address.
    auto bare = parse_config(doc({"[cluster]", kSecretLine, "[[pool]]", "name = \"web\"", "  [[pool.backend]]",
                                  "  id = 1", "  address = \"10.0.0.1\"", "[[vip]]", "address = \"192.0.2.1\"",
                                  "port = 80", "pool = \"web\""}),
                             "t.toml");
    ASSERT_TRUE(bare) << bare.error();
    auto st = validate_for_dataplane(*bare);
    ASSERT_FALSE(st);
    ps = split_lines(st.error());
    ASSERT_EQ(ps.size(), 2u) << show(ps);
    EXPECT_EQ(ps[0], "t.toml:1: dataplane.port: at least one [[dataplane.port]] is needed to run the data plane");
    EXPECT_EQ(ps[1].substr(0, 37), "t.toml:8: dataplane.source_v4: is req");
}

// Two ports with the exception path get taps named exception_iface + index: names past 15 characters (which
// the kernel would cut to the same name), a port's own interface or a net_tap device of the same name are
// refused by check; they were found only when the daemon started.
TEST(ConfigErrors, ExceptionTapNamesMustNotCollide)
{
    auto ps = problems(doc({
        /*  1 */ "[cluster]",
        /*  2 */ kSecretLine,
        /*  3 */ "[dataplane]",
        /*  4 */ "workers = [1, 2]",
        /*  5 */ "[[dataplane.port]]",
        /*  6 */ "name = \"a\"",
        /*  7 */ "devargs = \"net_af_packet0,iface=understudy01\"",
        /*  8 */ "[[dataplane.port]]",
        /*  9 */ "name = \"b\"",
        /* 10 */ "devargs = \"net_tap1,iface=eth9\"",
    }));
    ASSERT_EQ(ps.size(), 2u) << show(ps);
    EXPECT_EQ(ps[0], "t.toml:7: dataplane.port[0].devargs: iface 'understudy01' is the name of the exception tap of "
                     "dataplane.port[1] at line 8 (exception_iface 'understudy0'): rename one");
    EXPECT_EQ(ps[1], "t.toml:10: dataplane.port[1].devargs: device 'net_tap1' is the DPDK name of the exception tap "
                     "of dataplane.port[1] at line 8: give this net_tap another number");

    EXPECT_TRUE(only_problem(doc({"[cluster]", kSecretLine, "[dataplane]", "exception_iface = \"understudy_tap0\"",
                                  "workers = [1, 2]", "[[dataplane.port]]", "name = \"a\"", "devargs = \"0000:3b:00.0\"",
                                  "[[dataplane.port]]", "name = \"b\"", "devargs = \"0000:3b:00.1\""}),
                             "t.toml:4: dataplane.exception_iface: ",
                             "the exception tap of dataplane.port[0] at line 6 would be named 'understudy_tap00' (16 "
                             "characters), longer than an interface name can be (15)"));
    // One port: the tap is exception_iface itself. non_vip = "drop": no taps at all.
    EXPECT_TRUE(only_problem(doc({"[cluster]", kSecretLine, "[dataplane]", "workers = [1]", "[[dataplane.port]]",
                                  "name = \"a\"", "devargs = \"net_af_xdp0,iface=understudy0\""}),
                             "t.toml:7: dataplane.port[0].devargs: ", "iface 'understudy0' is the name of the exception tap"));
    auto drop = parse_config(doc({"[cluster]", kSecretLine, "[dataplane]", "non_vip = \"drop\"", "workers = [1]", "[[dataplane.port]]",
                                  "name = \"a\"", "devargs = \"net_af_xdp0,iface=understudy0\""}),
                             "t.toml");
    EXPECT_TRUE(drop) << drop.error();
    DataplaneConfig d;
    d.ports.resize(2);
    EXPECT_EQ(exception_tap_name(d, 1), "understudy01");
    d.ports.resize(1);
    EXPECT_EQ(exception_tap_name(d, 0), "understudy0");
}

// ---------------------------------------------------------------------------------------------------------
// Limits of the data plane and of the agent's BPF maps: refused by the checks, naming the limit, and exactly
// the limit accepted (1,025 VIPs passed check and were refused when the data plane published them).

static std::string vips_doc(size_t n)
{
    std::string text = doc({"[cluster]", kSecretLine, "[[pool]]", "name = \"web\"", "  [[pool.backend]]", "  id = 1",
                            "  address = \"10.0.0.1\""});  // 7 lines
    for (size_t i = 0; i < n; i++)
        text += "[[vip]]\naddress = \"192.0." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1) +
                "\"\nport = 80\npool = \"web\"\n";
    return text;
}

TEST(ConfigLimits, DataplaneVips)
{
    EXPECT_TRUE(problems(vips_doc(1024)).empty()) << show(problems(vips_doc(1024)));
    // VIP 1025 starts at line 7 + 1024 * 4 + 1 = 4104.
    EXPECT_TRUE(only_problem(vips_doc(1025), "t.toml:4104: vip[1024]: ",
                             "is VIP number 1025 of 1025; the data plane holds at most 1024 VIPs"));
}

// Backends numbered within their pool; their addresses differ over all pools, or with `shared` are the same
// in every pool (one host in many pools).
static Config model_with_pools(size_t pools, size_t backends_each, bool shared = false)
{
    Config c;
    c.secret[0] = 1;
    for (size_t i = 0; i < pools; i++) {
        Pool p;
        p.name = "p" + std::to_string(i);
        for (size_t j = 0; j < backends_each; j++) {
            Backend b;
            b.id = uint32_t(j + 1);
            uint32_t a = uint32_t(shared ? j : i * backends_each + j);
            b.address = *Address::parse("10." + std::to_string(a >> 16 & 255) + "." + std::to_string(a >> 8 & 255) +
                                        "." + std::to_string(a & 255));
            p.backends.push_back(b);
        }
        c.pools.push_back(std::move(p));
    }
    c.agent.interface = "eth0";
    return c;
}

TEST(ConfigLimits, DataplanePools)
{
    EXPECT_TRUE(validate_config(model_with_pools(65536, 0)));
    auto st = validate_config(model_with_pools(65537, 0));
    ASSERT_FALSE(st);
    EXPECT_EQ(st.error(), "<config>:0: pool[65536]: is pool number 65537 of 65537; the data plane holds at most 65536 "
                          "pools (16-bit pool index)");
}

TEST(ConfigLimits, AgentMaps)
{
    EXPECT_TRUE(validate_for_agent(model_with_pools(64, 1)));
    auto st = validate_for_agent(model_with_pools(65, 1));
    ASSERT_FALSE(st);
    EXPECT_EQ(st.error(), "<config>:0: pool[64]: is pool number 65 of 65; the agent holds at most 64 pools "
                          "(US_BPF_MAX_POOLS)");

    EXPECT_TRUE(validate_for_agent(model_with_pools(1, 4096)));
    st = validate_for_agent(model_with_pools(1, 4097));
    ASSERT_FALSE(st);
    EXPECT_EQ(st.error(), "<config>:0: pool[0].backend[4096]: is backend number 4097 of 4097 in pool 'p0'; the "
                          "agent holds at most 4096 backends per pool (US_BPF_MAX_SLOTS)");

    // 16 pools of 4096 backends fill us_backend_ids (65536); one more backend anywhere does not fit.
    Config full = model_with_pools(16, 4096, true);
    EXPECT_TRUE(validate_for_agent(full));
    full.pools.push_back(model_with_pools(1, 1).pools[0]);
    full.pools.back().name = "extra";
    full.pools.back().backends[0].address = *Address::parse("10.255.0.1");
    st = validate_for_agent(full);
    ASSERT_FALSE(st);
    EXPECT_EQ(st.error(), "<config>:0: pool[16].backend[0]: is backend number 65537 over all pools; the agent holds "
                          "at most 65536 backends in all (US_BPF_MAX_IDS)");

    // us_vips: a VIP and its address's fragment entry; 2048 VIPs on their own addresses fill 4096 entries.
    Config vips = model_with_pools(1, 1);
    auto add_vip = [&](uint32_t a, uint16_t port) {
        Vip v;
        v.address = *Address::parse("192." + std::to_string(a >> 8 & 255) + "." + std::to_string(a & 255) + ".1");
        v.port = port;
        v.pool = "p0";
        vips.vips.push_back(v);
    };
    for (uint32_t i = 0; i < 2048; i++)
        add_vip(i, 80);
    EXPECT_TRUE(validate_for_agent(vips));
    add_vip(0, 443);  // a new VIP on a known address: one more entry, 4097
    st = validate_for_agent(vips);
    ASSERT_FALSE(st);
    EXPECT_EQ(st.error(), "<config>:0: vip[2048]: needs VIP map entry number 4097 (one per VIP and one per VIP address "
                          "and protocol); the agent holds at most 4096 (US_BPF_MAX_VIPS)");

    // us_tunnel_sources: the two default outer sources, the backend, and [agent] tunnel_sources.
    Config sources = model_with_pools(1, 1);
    for (uint32_t i = 0; i < 16381; i++)
        sources.agent.tunnel_sources.emplace_back(
            *Address::parse("172." + std::to_string(16 + (i >> 16)) + "." + std::to_string(i >> 8 & 255) + "." +
                            std::to_string(i & 255)),
            32);
    EXPECT_TRUE(validate_for_agent(sources));
    sources.agent.tunnel_sources.emplace_back(*Address::parse("fd00::"), 64);
    st = validate_for_agent(sources);
    ASSERT_FALSE(st);
    EXPECT_EQ(st.error(), "<config>:0: agent.tunnel_sources: 16385 tunnel sources (the balancers' two outer sources, "
                          "every backend address and [agent] tunnel_sources); the agent holds at most 16384 "
                          "(US_BPF_MAX_SOURCES)");
}

// Validation is linear in the size of the file: 20,000 pools and 20,000 VIPs (each VIP on its own pool, the
// lookups that were quadratic) are read and checked; the time is printed, not asserted.
TEST(ConfigScale, TwentyThousandPoolsAndVips)
{
    const size_t n = 20000;
    std::string text = doc({"[cluster]", kSecretLine});
    for (size_t i = 0; i < n; i++) {
        std::string octets = std::to_string(i >> 8 & 255) + "." + std::to_string(i & 255);
        text += "[[pool]]\nname = \"p" + std::to_string(i) + "\"\ntable_bits = 8\n[[pool.backend]]\nid = 1\naddress = \"10.0." +
                octets + "\"\n";
    }
    for (size_t i = 0; i < n; i++) {
        std::string octets = std::to_string(i >> 8 & 255) + "." + std::to_string(i & 255);
        text += "[[vip]]\naddress = \"192.168." + octets + "\"\nport = 80\nmethod = \"" +
                (i % 2 ? "ipip" : "l2dsr") + "\"\npool = \"p" + std::to_string(n - 1 - i) + "\"\n";
    }
    auto start = std::chrono::steady_clock::now();
    auto ps = problems(text);
    double read_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ASSERT_EQ(ps.size(), 1u) << show(ps);  // only the data plane's VIP limit
    EXPECT_TRUE(has_problem(ps, "t.toml:", "vip[1024]: is VIP number 1025 of 20000"));

    Config model = model_with_pools(n, 1);
    for (size_t i = 0; i < n; i++) {
        Vip v;
        v.address = *Address::parse("192.168." + std::to_string(i >> 8 & 255) + "." + std::to_string(i & 255));
        v.port = 80;
        v.method = Method::ipip;
        v.pool = "p" + std::to_string(i);
        model.vips.push_back(v);
    }
    start = std::chrono::steady_clock::now();
    auto st = validate_config(model);
    auto dp = validate_for_dataplane(model);
    for (auto &v : model.vips)
        v.pool = "missing";
    auto missing = validate_config(model);
    double model_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("20000 pools x 20000 VIPs: file read and checked in %.2f s; model checked three times in %.2f s\n",
                read_s, model_s);
    ASSERT_FALSE(st);
    EXPECT_EQ(split_lines(st.error()).size(), 1u);
    ASSERT_FALSE(dp);
    ASSERT_FALSE(missing);
    auto lines = split_lines(missing.error());
    ASSERT_EQ(lines.size(), 20001u);
    EXPECT_EQ(lines[1], "<config>:0: vip[0].pool: no pool named 'missing' (pools: 'p0', 'p1', 'p10', 'p100', "
                        "'p1000', 'p10000', 'p10001', 'p10002', 'p10003', 'p10004' and 19990 more)");
}
