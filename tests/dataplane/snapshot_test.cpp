// The snapshot's fast-path structures against independent computations: the VIP table against the
// configuration itself, the outer IPv4 checksum against DPDK's rte_ipv4_cksum over the finished header.
#include <gtest/gtest.h>

#include <rte_ip.h>

#include <cstring>
#include <map>
#include <random>
#include <set>
#include <tuple>

#include "dataplane/encap.h"
#include "dataplane/snapshot.h"

namespace understudy::dp {
namespace {

struct Key {
    std::array<uint8_t, 16> addr;
    uint16_t port;
    uint8_t proto;
    auto operator<=>(const Key &) const = default;
};

int32_t find(const VipTable &t, const Key &k)
{
    uint64_t a[2];
    std::memcpy(a, k.addr.data(), 16);
    return vip_find(t.slots.data(), uint32_t(t.slots.size() - 1), a[0], a[1],
                    vip_port_proto(rte_cpu_to_be_16(k.port), k.proto));
}

Address random_address(std::mt19937_64 &rng, bool v4)
{
    if (v4)
        return Address::from_v4(uint32_t(rng()));
    Address a;
    for (auto &b : a.bytes)
        b = uint8_t(rng());
    a.bytes[0] = 0x20;  // never IPv4-mapped
    return a;
}

// Many VIPs, few addresses (so that several share an address and the fragment entries matter), and keys
// one field away from a VIP: each VIP is found at its own index, fragments (port 0) at the first VIP of
// their address and protocol, everything else nowhere.
TEST(VipTable, FindsEveryVipAndNothingElse)
{
    std::mt19937_64 rng(7);
    Config config;
    config.pools.emplace_back().name = "p";
    std::vector<Address> addresses;
    for (int i = 0; i < 300; i++)
        addresses.push_back(random_address(rng, i % 2 == 0));
    std::map<Key, int32_t> expected;
    while (config.vips.size() < kMaxVips) {
        understudy::Vip v;
        v.address = addresses[rng() % addresses.size()];
        v.port = uint16_t(1 + rng() % 2000);
        v.protocol = rng() % 2 ? Protocol::tcp : Protocol::udp;
        v.pool = "p";
        Key k{v.address.bytes, v.port, uint8_t(v.protocol)};
        if (expected.count(k))
            continue;
        expected[k] = int32_t(config.vips.size());
        config.vips.push_back(v);
    }
    std::map<Key, int32_t> fragments;  // the first VIP on each (address, protocol)
    for (size_t i = 0; i < config.vips.size(); i++) {
        const understudy::Vip &v = config.vips[i];
        fragments.emplace(Key{v.address.bytes, 0, uint8_t(v.protocol)}, int32_t(i));
    }

    StatIndex stats;
    auto table = build_vip_table(config, stats);
    ASSERT_TRUE(table) << table.error();
    const VipTable &t = **table;
    ASSERT_EQ(t.vips.size(), config.vips.size());
    EXPECT_GE(t.slots.size(), 4 * (expected.size() + fragments.size()));

    for (const auto &[k, index] : expected)
        EXPECT_EQ(find(t, k), index);
    for (const auto &[k, index] : fragments)
        EXPECT_EQ(find(t, k), index);

    int misses = 0;
    for (const auto &[k, index] : expected) {
        Key other = k;
        other.port = uint16_t(k.port + 2000);
        misses += find(t, other) == -1;
        other = k;
        other.proto = k.proto == uint8_t(Protocol::tcp) ? uint8_t(Protocol::udp) : uint8_t(Protocol::tcp);
        if (!expected.count(other))
            misses += find(t, other) == -1;
        else
            misses++;
        other = k;
        other.addr[15] ^= 1;
        if (!expected.count(other))
            misses += find(t, other) == -1;
        else
            misses++;
    }
    EXPECT_EQ(misses, 3 * int(expected.size()));
    for (int i = 0; i < 100000; i++) {
        Key k{random_address(rng, i % 2 == 0).bytes, uint16_t(rng()), uint8_t(rng() % 2 ? 6 : 17)};
        if (!expected.count(k)) {
            ASSERT_EQ(find(t, k), -1);
        }
    }
}

TEST(VipTable, EmptyConfigFindsNothing)
{
    Config config;
    StatIndex stats;
    auto table = build_vip_table(config, stats);
    ASSERT_TRUE(table);
    EXPECT_EQ(find(**table, Key{Address::from_v4(0x0a000001).bytes, 80, 6}), -1);
}

// write_ipv4's checksum from the backend's partial sum equals a checksum over the finished header, with DF
// and identification 0 (the default) and without DF with any identification (outer_df = false).
TEST(OuterIpv4, ChecksumFromPartialSumMatchesFullSum)
{
    std::mt19937_64 rng(11);
    for (int i = 0; i < 20000; i++) {
        Config config;
        Address src = Address::from_v4(uint32_t(rng()));
        if (i % 7 != 0)  // else the default source address
            config.dataplane.source_v4 = src;
        config.dataplane.outer_df = i % 2 == 0;
        understudy::Pool &pool = config.pools.emplace_back();
        pool.name = "p";
        understudy::Backend &backend = pool.backends.emplace_back();
        backend.id = 1;
        backend.address = Address::from_v4(uint32_t(rng()));
        PoolTable table(config.secret, 4);
        table.build({Member{.id = 1, .weight = 100, .operational = true, .present = true}}, 1);
        StatIndex stats;
        SnapshotOptions options;
        options.stat_index = &stats;
        options.tsc_hz = 1000000000;
        auto snapshot = build_snapshot(config, {&table}, options, 1);
        ASSERT_TRUE(snapshot) << snapshot.error();
        const Snapshot &sn = **snapshot;
        ASSERT_EQ(sn.backends[0].size(), 1u);

        alignas(8) uint8_t header[20];
        uint8_t tos = uint8_t(rng());
        uint8_t proto = i % 3 == 0 ? 17 : i % 3 == 1 ? 4 : uint8_t(rng());
        uint16_t total = uint16_t(20 + rng() % 65000);
        uint16_t id = uint16_t(rng() & sn.source.ip_id_mask);
        write_ipv4(header, sn.backends[0][0], sn.source, tos, proto, total, id);
        auto *ip = reinterpret_cast<rte_ipv4_hdr *>(header);
        EXPECT_EQ(rte_be_to_cpu_16(ip->fragment_offset), config.dataplane.outer_df ? 0x4000 : 0);
        EXPECT_EQ(ip->packet_id, id);
        if (config.dataplane.outer_df) {
            EXPECT_EQ(id, 0);
        }
        uint16_t written = ip->hdr_checksum;
        ip->hdr_checksum = 0;
        ASSERT_EQ(written, rte_ipv4_cksum(ip)) << "tos " << int(tos) << " proto " << int(proto) << " len " << total;
    }
}

// The connection-table identity of a VIP depends on the VIP alone (address, port, protocol, pool), never on
// its position: removing or reordering other VIPs leaves it as it was, and VIPs that differ in any field
// get different identities.
TEST(VipTable, ConnKeyIsTheVipsOwn)
{
    auto vip = [](const char *addr, uint16_t port, Protocol proto, const char *pool) {
        understudy::Vip v;
        v.address = *Address::parse(addr);
        v.port = port;
        v.protocol = proto;
        v.pool = pool;
        return v;
    };
    Config a;
    a.pools.emplace_back().name = "web";
    a.pools.emplace_back().name = "api";
    a.vips = {vip("192.0.2.1", 80, Protocol::tcp, "web"), vip("192.0.2.2", 80, Protocol::tcp, "web"),
              vip("2001:db8::1", 443, Protocol::tcp, "api")};
    Config b = a;
    b.vips = {a.vips[2], a.vips[1]};  // the first removed, the others reordered
    StatIndex stats;
    auto ta = build_vip_table(a, stats), tb = build_vip_table(b, stats);
    ASSERT_TRUE(ta && tb);
    EXPECT_EQ((*ta)->vips[1].conn_key, (*tb)->vips[1].conn_key);
    EXPECT_EQ((*ta)->vips[2].conn_key, (*tb)->vips[0].conn_key);
    std::set<uint64_t> keys;
    for (const understudy::Vip &v : {a.vips[0], vip("192.0.2.1", 81, Protocol::tcp, "web"),
                                     vip("192.0.2.1", 80, Protocol::udp, "web"), vip("192.0.2.3", 80, Protocol::tcp, "web"),
                                     vip("192.0.2.1", 80, Protocol::tcp, "api")})
        keys.insert(vip_conn_key(a.secret, v));
    EXPECT_EQ(keys.size(), 5u);
}

}  // namespace
}  // namespace understudy::dp
