// The worker's burst pipeline (process_burst) on real mbufs, under EAL without hugepages: connection-table
// pins belong to a VIP's identity, not to its position in the configuration. A reload that removes an
// earlier VIP, adds one before it or reorders them must leave every other VIP's established flows on the
// server they started on, even when a new backend takes over their buckets.
#include <gtest/gtest.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include <memory>
#include <string>
#include <unistd.h>
#include <vector>

#include "core/table.h"
#include "dataplane/snapshot.h"
#include "dataplane/worker.h"

namespace understudy::dp {
namespace {

rte_mempool *g_pool = nullptr;
const rte_ether_addr kPortMac{{0x02, 0x00, 0x00, 0x00, 0xaa, 0x01}};
const uint8_t kRouterMac[6] = {0x02, 0x00, 0x00, 0x00, 0xcc, 0x01};

understudy::Vip make_vip(const char *address, uint16_t port)
{
    understudy::Vip v;
    v.address = *Address::parse(address);
    v.port = port;
    v.protocol = Protocol::tcp;
    v.pool = "web";
    return v;
}

Config make_config(std::vector<understudy::Vip> vips, uint32_t backends)
{
    Config c;
    for (size_t i = 0; i < c.secret.size(); i++)
        c.secret[i] = uint8_t(0x30 + i);
    understudy::Pool &pool = c.pools.emplace_back();
    pool.name = "web";
    pool.table_bits = 10;
    for (uint32_t id = 1; id <= backends; id++) {
        understudy::Backend &b = pool.backends.emplace_back();
        b.id = id;
        b.address = Address::from_v4(0x0a000100u + id);  // 10.0.1.<id>
    }
    c.vips = std::move(vips);
    return c;
}

// A snapshot of config with every backend up, and the tables it was built from (kept alive by the caller).
struct World {
    Config config;
    std::vector<std::unique_ptr<PoolTable>> tables;
    std::unique_ptr<Snapshot> snapshot;
};

std::unique_ptr<World> make_world(Config config, StatIndex &stats, uint64_t generation)
{
    auto w = std::make_unique<World>();
    w->config = std::move(config);
    std::vector<const PoolTable *> tables;
    for (const understudy::Pool &p : w->config.pools) {
        w->tables.push_back(std::make_unique<PoolTable>(w->config.secret, p.table_bits));
        w->tables.back()->build(members_of(p, {}));
        tables.push_back(w->tables.back().get());
    }
    SnapshotOptions options;
    options.port_mac = kPortMac;
    options.stat_index = &stats;
    auto s = build_snapshot(w->config, tables, options, generation);
    EXPECT_TRUE(s) << (s ? "" : s.error());
    w->snapshot = std::move(*s);
    return w;
}

// Ethernet + IPv4 + TCP (20-byte header, no payload) from 198.51.<flow> to vip:80.
rte_mbuf *tcp_frame(uint32_t vip, uint16_t flow, uint8_t flags)
{
    rte_mbuf *m = rte_pktmbuf_alloc(g_pool);
    EXPECT_NE(m, nullptr);
    uint8_t *d = reinterpret_cast<uint8_t *>(rte_pktmbuf_append(m, 14 + 40));
    std::memcpy(d, kPortMac.addr_bytes, 6);
    std::memcpy(d + 6, kRouterMac, 6);
    d[12] = 0x08;
    d[13] = 0x00;
    uint8_t *ip = d + 14;
    std::memset(ip, 0, 40);
    ip[0] = 0x45;
    ip[3] = 40;
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = 6;
    const uint8_t src[4] = {198, 51, uint8_t(flow >> 8), uint8_t(flow)};
    std::memcpy(ip + 12, src, 4);
    const uint8_t dst[4] = {uint8_t(vip >> 24), uint8_t(vip >> 16), uint8_t(vip >> 8), uint8_t(vip)};
    std::memcpy(ip + 16, dst, 4);
    uint8_t *tcp = ip + 20;
    uint16_t sport = uint16_t(20000 + flow);
    tcp[0] = uint8_t(sport >> 8);
    tcp[1] = uint8_t(sport);
    tcp[3] = 80;
    tcp[12] = 0x50;
    tcp[13] = flags;
    return m;
}

class Pipeline {
  public:
    Pipeline()
    {
        std::memset(&w_.stats, 0, sizeof w_.stats);
        w_.cfg.mac = kPortMac;
        EXPECT_TRUE(conn_table_create(w_.conn, 1u << 14, SOCKET_ID_ANY));
    }
    ~Pipeline() { conn_table_free(w_.conn); }

    // The backend (last octet of its outer destination) each flow's packet is sent to, in flow order.
    std::vector<int> send(const Snapshot &s, uint32_t vip, uint16_t flows, uint8_t flags)
    {
        std::vector<int> served;
        for (uint16_t first = 0; first < flows; first += kBurst) {
            uint16_t n = std::min<uint16_t>(kBurst, uint16_t(flows - first));
            rte_mbuf *in[kBurst];
            for (uint16_t i = 0; i < n; i++)
                in[i] = tcp_frame(vip, uint16_t(first + i), flags);
            BurstOut out;
            process_burst(w_, s, in, n, now, out);
            EXPECT_EQ(out.n_tx, n);
            for (uint16_t i = 0; i < out.n_tx; i++) {
                served.push_back(rte_pktmbuf_mtod(out.tx[i], const uint8_t *)[14 + 19]);
                rte_pktmbuf_free(out.tx[i]);
            }
        }
        return served;
    }
    // One burst, all forwarded (and freed).
    void burst(const Snapshot &s, rte_mbuf **in, uint16_t n)
    {
        BurstOut out;
        process_burst(w_, s, in, n, now, out);
        EXPECT_EQ(out.n_tx, n);
        for (uint16_t i = 0; i < out.n_tx; i++)
            rte_pktmbuf_free(out.tx[i]);
    }
    uint64_t counter(int c) const { return w_.stats.counters[c]; }
    uint32_t now = 1000;  // connection-table ticks of the next bursts

  private:
    Worker w_;
};

constexpr uint32_t kVipX = 0xc0000201, kVipY = 0xc0000202;  // 192.0.2.1, 192.0.2.2
constexpr uint16_t kFlows = 512;

// More than a burst: the pipeline takes kBurst and says so; the rest stay the caller's (none is lost).
TEST(Burst, MoreThanABurstIsNotTakenAndNotLost)
{
    StatIndex stats;
    auto world = make_world(make_config({make_vip("192.0.2.1", 80)}, 4), stats, 1);
    Worker w;
    std::memset(&w.stats, 0, sizeof w.stats);
    w.cfg.mac = kPortMac;
    ASSERT_TRUE(conn_table_create(w.conn, 1u << 10, SOCKET_ID_ANY));
    unsigned before = rte_mempool_avail_count(g_pool);
    constexpr uint16_t kMore = kBurst + 8;
    rte_mbuf *in[kMore];
    for (uint16_t i = 0; i < kMore; i++)
        in[i] = tcp_frame(kVipX, i, 0x02);
    BurstOut out;
    uint16_t taken = process_burst(w, *world->snapshot, in, kMore, 1000, out);
    EXPECT_EQ(taken, kBurst);
    EXPECT_EQ(w.stats.counters[US_CTR_rx_packets], kBurst);
    EXPECT_EQ(out.n_tx, kBurst);
    for (uint16_t i = 0; i < out.n_tx; i++)
        rte_pktmbuf_free(out.tx[i]);
    for (uint16_t i = taken; i < kMore; i++)
        rte_pktmbuf_free(in[i]);
    EXPECT_EQ(rte_mempool_avail_count(g_pool), before);
    conn_table_free(w.conn);
}

TEST(ConnTable, PinsSurviveRemovingAnEarlierVip)
{
    StatIndex stats;
    auto before = make_world(make_config({make_vip("192.0.2.1", 80), make_vip("192.0.2.2", 80)}, 4), stats, 1);
    // Reload: X (the VIP before Y) is gone, and a fifth backend joins and takes its share of Y's buckets.
    auto after = make_world(make_config({make_vip("192.0.2.2", 80)}, 5), stats, 2);
    // Another reload: a new VIP Z comes first, X comes back after Y.
    auto again = make_world(
        make_config({make_vip("192.0.2.3", 80), make_vip("192.0.2.2", 80), make_vip("192.0.2.1", 80)}, 5), stats, 3);

    Pipeline lb;
    std::vector<int> first = lb.send(*before->snapshot, kVipY, kFlows, 0x02);  // SYN
    EXPECT_EQ(lb.counter(US_CTR_conn_misses), kFlows);
    std::vector<int> later = lb.send(*after->snapshot, kVipY, kFlows, 0x10);   // ACK
    EXPECT_EQ(later, first) << "established flows moved when an earlier VIP was removed";
    EXPECT_EQ(lb.counter(US_CTR_conn_hits), kFlows);
    std::vector<int> last = lb.send(*again->snapshot, kVipY, kFlows, 0x10);
    EXPECT_EQ(last, first) << "established flows moved when VIPs were added and reordered";
    EXPECT_EQ(lb.counter(US_CTR_conn_hits), 2u * kFlows);

    // Without the pins the new backend takes part of these flows: the test above could fail.
    Pipeline fresh;
    std::vector<int> unpinned = fresh.send(*after->snapshot, kVipY, kFlows, 0x10);
    int moved = 0;
    for (size_t i = 0; i < unpinned.size(); i++)
        moved += unpinned[i] != first[i];
    EXPECT_GT(moved, int(kFlows) / 10);
    EXPECT_EQ(std::count(first.begin(), first.end(), 5), 0);
}

// A SYN flood (every packet a new flow, many more than the table holds) between an established flow's
// handshake and its next packets, with a backend added meanwhile: the flows that completed their handshake
// (SYN, then ACK) are confirmed and keep their servers; flows that only ever sent SYNs (twice) are not, and
// the flood (~15 new flows per set) takes their entries.
TEST(ConnTable, EstablishedFlowsKeepTheirPinsUnderASynFlood)
{
    StatIndex stats;
    auto before = make_world(make_config({make_vip("192.0.2.2", 80)}, 4), stats, 1);
    auto after = make_world(make_config({make_vip("192.0.2.2", 80)}, 5), stats, 2);
    constexpr uint16_t kSynOnly = 640, kFlood = 60000;  // flows 512-639 send SYNs only; the flood 1000-60999

    Pipeline lb;
    std::vector<int> first = lb.send(*before->snapshot, kVipY, kSynOnly, 0x02);  // SYN
    lb.now = 1001;
    lb.send(*before->snapshot, kVipY, kFlows, 0x10);                             // ACK: confirmed
    lb.send(*before->snapshot, kVipY, kSynOnly, 0x02);                           // SYN again: 512-639 not
    EXPECT_EQ(lb.counter(US_CTR_conn_hits), kFlows + kSynOnly);

    lb.now = 2000;  // the flood is fresher than every established entry: the stalest are the established
    for (uint16_t first_flow = 1000; first_flow < 1000 + kFlood; first_flow += kBurst) {
        rte_mbuf *in[kBurst];
        for (uint16_t i = 0; i < kBurst; i++)
            in[i] = tcp_frame(kVipY, uint16_t(first_flow + i), 0x02);
        lb.burst(*after->snapshot, in, kBurst);
    }
    EXPECT_GT(lb.counter(US_CTR_conn_evictions), uint64_t(kFlood) / 2);
    EXPECT_EQ(lb.counter(US_CTR_conn_evictions_confirmed), 0u);

    lb.now = 2500;
    uint64_t hits = lb.counter(US_CTR_conn_hits);
    std::vector<int> later = lb.send(*after->snapshot, kVipY, kFlows, 0x10);
    EXPECT_EQ(later, std::vector<int>(first.begin(), first.begin() + kFlows))
        << "established flows lost their pins to the flood";
    EXPECT_EQ(lb.counter(US_CTR_conn_hits) - hits, kFlows);
    hits = lb.counter(US_CTR_conn_hits);
    lb.send(*after->snapshot, kVipY, kSynOnly, 0x10);
    EXPECT_EQ(lb.counter(US_CTR_conn_hits) - hits, kFlows) << "SYN-only flows kept entries through the flood";
}

TEST(ConnTable, VipsDoNotShareEntries)
{
    // The same client flow to two VIPs of one pool is two connection-table entries, not one.
    StatIndex stats;
    auto world = make_world(make_config({make_vip("192.0.2.1", 80), make_vip("192.0.2.2", 80)}, 4), stats, 1);
    Pipeline lb;
    lb.send(*world->snapshot, kVipX, 64, 0x02);
    lb.send(*world->snapshot, kVipY, 64, 0x02);
    EXPECT_EQ(lb.counter(US_CTR_conn_misses), 128u);
}

}  // namespace
}  // namespace understudy::dp

int main(int argc, char **argv)
{
    testing::InitGoogleTest(&argc, argv);
    std::string prefix = "--file-prefix=us-worker-test-" + std::to_string(getpid());
    std::vector<std::string> args{"worker_test", "--no-huge", "--no-shconf", "-m", "256", "--no-pci",
                                  "--no-telemetry", "-l", "0", "--log-level=lib.*:error", prefix};
    std::vector<char *> eal_argv;
    for (auto &a : args)
        eal_argv.push_back(a.data());
    if (rte_eal_init(int(eal_argv.size()), eal_argv.data()) < 0) {
        fprintf(stderr, "FAIL: EAL initialisation failed (--no-huge): %s\n", rte_strerror(rte_errno));
        return 1;
    }
    understudy::dp::g_pool = rte_pktmbuf_pool_create("test_mbufs", 4095, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
    if (!understudy::dp::g_pool) {
        fprintf(stderr, "FAIL: cannot create the mbuf pool: %s\n", rte_strerror(rte_errno));
        return 1;
    }
    int rc = RUN_ALL_TESTS();
    rte_mempool_free(understudy::dp::g_pool);
    std::string runtime_dir = rte_eal_get_runtime_dir();
    rte_eal_cleanup();
    rmdir(runtime_dir.c_str());  // empty with --no-shconf; EAL leaves it behind
    return rc;
}
