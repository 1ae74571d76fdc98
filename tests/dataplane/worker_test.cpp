// The worker's burst pipeline (process_burst) on real mbufs, under EAL without hugepages: connection-table
// pins belong to a VIP's identity, not to its position in the configuration. A reload that removes an
// earlier VIP, adds one before it or reorders them must leave every other VIP's established flows on the
// server they started on, even when a new backend takes over their buckets. A QUIC VIP's packets go to the
// server their connection ID names (tests Quic.*, docs/quic-lb.md).
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
#include "quiclb/quic_lb.h"
#include "us_key.h"
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
    uint64_t quic(uint16_t vip_stat, int c) const { return w_.stats.vip_quic[vip_stat][c]; }
    // One packet through the pipeline: the frame sent (empty when nothing was).
    std::vector<uint8_t> pass(const Snapshot &s, rte_mbuf *m)
    {
        BurstOut out;
        process_burst(w_, s, &m, 1, now, out);
        std::vector<uint8_t> frame;
        if (out.n_tx == 1) {
            const uint8_t *d = rte_pktmbuf_mtod(out.tx[0], const uint8_t *);
            frame.assign(d, d + rte_pktmbuf_data_len(out.tx[0]));
            rte_pktmbuf_free(out.tx[0]);
        }
        return frame;
    }
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

// QUIC VIPs (docs/quic-lb.md): the destination connection ID names the primary server. Expected servers come
// from the CID's minting (the library, as a server would) and, for the 4-tuple, from the ordering contract:
// the session hash of docs/ordering.md (us_key.h, pinned to tools/ordering_ref.py's vectors by the core tests)
// into the pool table's bucket (core/table, likewise), never from the worker.
constexpr uint32_t kQuicVip = 0xc000020a;  // 192.0.2.10
constexpr uint32_t kQuicBackends = 8;
const uint8_t kQuicKey[16] = {0x8f, 0x95, 0xf0, 0x92, 0x45, 0x76, 0x5f, 0x80,
                              0x25, 0x69, 0x34, 0xe5, 0x0c, 0x66, 0x20, 0x7f};

QuicLbConfig quic_lb(uint8_t codepoint, uint8_t sid_len, uint8_t nonce_len, bool key)
{
    QuicLbConfig q;
    q.codepoint = codepoint;
    q.server_id_len = sid_len;
    q.nonce_len = nonce_len;
    if (key)
        std::copy(std::begin(kQuicKey), std::end(kQuicKey), q.key.emplace().begin());
    return q;
}

// Codepoint 0: four-pass, 1: plaintext with backend 3's server ID given, 2: single pass.
Config quic_config(uint32_t backends)
{
    understudy::Vip v = make_vip("192.0.2.10", 443);
    v.protocol = Protocol::udp;
    v.quic_lb = {quic_lb(0, 2, 8, true), quic_lb(1, 1, 6, false), quic_lb(2, 3, 13, true)};
    v.quic_lb[1].server_ids[3] = {0x33};
    return make_config({v}, backends);
}

// A CID minted for backend `id` under the VIP's configuration `q` (as a server does), nonce from `n`.
std::vector<uint8_t> mint(const QuicLbConfig &q, uint32_t id, uint64_t n)
{
    quic_lb_config c;
    EXPECT_EQ(quic_lb_config_init(&c, q.codepoint, q.server_id_len, q.nonce_len, q.key ? q.key->data() : nullptr),
              QUIC_LB_OK);
    std::vector<uint8_t> sid = quic_server_id(q, id);
    EXPECT_EQ(sid.size(), q.server_id_len);
    std::vector<uint8_t> nonce(q.nonce_len);
    quic_lb_nonce_from_counter(n, nonce.data(), nonce.size());
    std::vector<uint8_t> cid(quic_lb_cid_len(&c));
    EXPECT_EQ(quic_lb_encode(&c, sid.data(), nonce.data(), QUIC_LB_LENGTH_BITS, cid.data()), QUIC_LB_OK);
    return cid;
}

std::vector<uint8_t> short_header(const std::vector<uint8_t> &cid)
{
    std::vector<uint8_t> p{0x40};
    p.insert(p.end(), cid.begin(), cid.end());
    p.insert(p.end(), 24, 0xab);  // packet number and protected payload
    return p;
}

// Long header: type 0-3 (v1: Initial, 0-RTT, Handshake, Retry), DCID, an empty SCID and some payload.
std::vector<uint8_t> long_header(unsigned type, const std::vector<uint8_t> &dcid, uint32_t version = 1)
{
    std::vector<uint8_t> p{uint8_t(0xc0 | type << 4), uint8_t(version >> 24), uint8_t(version >> 16),
                           uint8_t(version >> 8), uint8_t(version), uint8_t(dcid.size())};
    p.insert(p.end(), dcid.begin(), dcid.end());
    p.push_back(0);
    p.insert(p.end(), 24, 0xab);
    return p;
}

// Ethernet + IPv4 + UDP from 198.51.100.<host>:sport to vip:443 carrying payload.
rte_mbuf *udp_frame(uint32_t vip, uint8_t host, uint16_t sport, const std::vector<uint8_t> &payload)
{
    rte_mbuf *m = rte_pktmbuf_alloc(g_pool);
    EXPECT_NE(m, nullptr);
    uint16_t ip_len = uint16_t(28 + payload.size());
    uint8_t *d = reinterpret_cast<uint8_t *>(rte_pktmbuf_append(m, uint16_t(14 + ip_len)));
    std::memcpy(d, kPortMac.addr_bytes, 6);
    std::memcpy(d + 6, kRouterMac, 6);
    d[12] = 0x08;
    d[13] = 0x00;
    uint8_t *ip = d + 14;
    std::memset(ip, 0, 28);
    ip[0] = 0x45;
    ip[2] = uint8_t(ip_len >> 8);
    ip[3] = uint8_t(ip_len);
    ip[8] = 64;
    ip[9] = 17;
    const uint8_t src[4] = {198, 51, 100, host};
    std::memcpy(ip + 12, src, 4);
    const uint8_t dst[4] = {uint8_t(vip >> 24), uint8_t(vip >> 16), uint8_t(vip >> 8), uint8_t(vip)};
    std::memcpy(ip + 16, dst, 4);
    uint8_t *udp = ip + 20;
    udp[0] = uint8_t(sport >> 8);
    udp[1] = uint8_t(sport);
    udp[2] = 443 >> 8;
    udp[3] = 443 & 0xff;
    uint16_t udp_len = uint16_t(8 + payload.size());
    udp[4] = uint8_t(udp_len >> 8);
    udp[5] = uint8_t(udp_len);
    if (!payload.empty())  // an empty vector's data() may be null, which memcpy must never get
        std::memcpy(udp + 8, payload.data(), payload.size());
    return m;
}

// The 4-tuple's bucket under the ordering contract.
us_bucket_entry bucket_of(const World &w, uint32_t vip, uint8_t host, uint16_t sport)
{
    us_session_key k{};
    const uint8_t src[4] = {198, 51, 100, host};
    const uint8_t dst[4] = {uint8_t(vip >> 24), uint8_t(vip >> 16), uint8_t(vip >> 8), uint8_t(vip)};
    k.src[10] = k.src[11] = k.dst[10] = k.dst[11] = 0xff;
    std::memcpy(k.src + 12, src, 4);
    std::memcpy(k.dst + 12, dst, 4);
    k.sport[0] = uint8_t(sport >> 8);
    k.sport[1] = uint8_t(sport);
    k.dport[0] = 443 >> 8;
    k.dport[1] = 443 & 0xff;
    k.proto = 17;
    uint64_t hash = us_session_hash(w.config.secret.data(), &k);
    const PoolTable &t = *w.tables[0];
    return t.entries()[hash & (t.buckets() - 1)];
}

uint32_t id_at(const World &w, uint16_t slot) { return w.tables[0]->members()[slot].id; }

// What a forwarded GUE frame says: the backend (10.0.1.<id>), the header's primary ID and flags.
struct Gue {
    uint32_t backend, primary;
    uint8_t flags;
};

Gue gue_of(const std::vector<uint8_t> &f)
{
    EXPECT_GE(f.size(), 14u + 20 + 8 + 4 + 24);
    if (f.size() < 14u + 20 + 8 + 4 + 24)
        return {0, 0, 0};
    const uint8_t *priv = f.data() + 14 + 20 + 8 + 4;
    uint32_t primary = uint32_t(priv[4]) << 24 | uint32_t(priv[5]) << 16 | uint32_t(priv[6]) << 8 | priv[7];
    return {f[14 + 19], primary, priv[3]};
}

uint16_t quic_stat(const World &w) { return w.snapshot->vips[0].stat_index; }

TEST(Quic, ACidGoesToTheServerItNamesFromAnySourcePort)
{
    StatIndex stats;
    auto world = make_world(quic_config(kQuicBackends), stats, 1);
    Pipeline lb;
    uint64_t sent = 0, elsewhere = 0;
    for (const QuicLbConfig &q : world->config.vips[0].quic_lb)
        for (uint32_t x = 1; x <= kQuicBackends; x++)
            for (uint16_t port = 40000; port < 40016; port++) {
                std::vector<uint8_t> cid = mint(q, x, sent * 7919 + 1);
                // short header, and the long-header Handshake packet that carries a server's CID too
                for (const auto &payload : {short_header(cid), long_header(2, cid)}) {
                    auto g = gue_of(lb.pass(*world->snapshot, udp_frame(kQuicVip, uint8_t(port), port, payload)));
                    EXPECT_EQ(g.backend, x) << "codepoint " << int(q.codepoint) << " port " << port;
                    EXPECT_EQ(g.primary, x);
                    // QUIC_PRIMARY alone, whatever the ordering names: the agent re-checks the header's
                    // primary by its own view, so no PINNED, and the server is the primary (no FAILOVER).
                    EXPECT_EQ(g.flags, US_GUE_F_QUIC_PRIMARY);
                    elsewhere += id_at(*world, bucket_of(*world, kQuicVip, uint8_t(port), port).serving) != x;
                    sent++;
                }
            }
    EXPECT_EQ(lb.quic(quic_stat(*world), US_QUIC_cid_routed), sent);
    EXPECT_GT(elsewhere, sent / 2);  // most 4-tuples' ordering names another server: a PINNED would show
    for (int c = 0; c < US_QUIC_MAX; c++)
        EXPECT_EQ(lb.quic(quic_stat(*world), c), c == US_QUIC_cid_routed ? sent : 0u) << quic_counter_name(c);
}

TEST(Quic, APrimaryDownGoesByTheOrderingAndTheHeaderStillNamesIt)
{
    StatIndex stats;
    Config config = quic_config(kQuicBackends);
    auto world = std::make_unique<World>();
    world->config = config;
    world->tables.push_back(std::make_unique<PoolTable>(config.secret, config.pools[0].table_bits));
    world->tables.back()->build(members_of(config.pools[0], {5}));  // backend 5 down
    SnapshotOptions options;
    options.port_mac = kPortMac;
    options.stat_index = &stats;
    auto s = build_snapshot(world->config, {world->tables[0].get()}, options, 1);
    ASSERT_TRUE(s) << s.error();
    world->snapshot = std::move(*s);

    Pipeline lb;
    uint64_t sent = 0;
    for (const QuicLbConfig &q : world->config.vips[0].quic_lb)
        for (uint16_t port = 41000; port < 41064; port++) {
            std::vector<uint8_t> cid = mint(q, 5, port);
            auto g = gue_of(lb.pass(*world->snapshot, udp_frame(kQuicVip, 7, port, short_header(cid))));
            us_bucket_entry e = bucket_of(*world, kQuicVip, 7, port);
            EXPECT_EQ(g.backend, id_at(*world, e.serving)) << "port " << port;
            EXPECT_NE(g.backend, 5u);
            EXPECT_EQ(g.primary, 5u) << "the header must name the CID's primary";
            // The agents redo the check by the header's primary (QUIC_PRIMARY); a first packet has no pin.
            EXPECT_EQ(g.flags, US_GUE_F_QUIC_PRIMARY | US_GUE_F_FAILOVER);
            sent++;
        }
    EXPECT_EQ(lb.quic(quic_stat(*world), US_QUIC_primary_down), sent);
    EXPECT_EQ(lb.quic(quic_stat(*world), US_QUIC_cid_routed), 0u);
}

TEST(Quic, UnroutablePacketsGoByTheFourTupleAndAreCounted)
{
    StatIndex stats;
    // Backend 8 is removed from the pool: CIDs minted for it name nobody now.
    auto world = make_world(quic_config(kQuicBackends - 1), stats, 1);
    const auto &q = world->config.vips[0].quic_lb;
    std::vector<uint8_t> good = mint(q[0], 2, 99);
    std::vector<uint8_t> cp7 = good, cp3 = good, cp1_short = mint(q[1], 3, 5);
    cp7[0] = uint8_t(0xe0 | (cp7[0] & 0x1f));
    cp3[0] = uint8_t(0x60 | (cp3[0] & 0x1f));
    cp1_short.resize(4);  // 1 + server ID + 2 of 6 nonce octets
    std::vector<uint8_t> plain_unknown = {0x20, 0x77, 1, 2, 3, 4, 5, 6};  // codepoint 1, server ID 0x77
    struct Case {
        const char *what;
        std::vector<uint8_t> payload;
        int reason;
    } cases[] = {
        {"codepoint 7", short_header(cp7), US_QUIC_unroutable_codepoint},
        {"codepoint without configuration", short_header(cp3), US_QUIC_unroutable_codepoint},
        {"long header, codepoint 7", long_header(2, cp7), US_QUIC_unroutable_codepoint},
        {"empty payload", {}, US_QUIC_unroutable_length},
        {"one octet", {0x40}, US_QUIC_unroutable_length},
        {"short header, CID cut short", {0x40, good[0], good[1], good[2]}, US_QUIC_unroutable_length},
        {"long header, CID shorter than its configuration's", long_header(2, cp1_short), US_QUIC_unroutable_length},
        {"long header, DCID length past the packet", {0xe0, 0, 0, 0, 1, 20, good[0]}, US_QUIC_unroutable_length},
        {"long header, DCID length 0", long_header(2, {}), US_QUIC_unroutable_length},
        {"long header, DCID longer than 20", long_header(2, std::vector<uint8_t>(21, 0x01)),
         US_QUIC_unroutable_length},
        {"server ID of a removed backend", short_header(mint(q[0], 8, 1)), US_QUIC_unroutable_server_id},
        {"server ID of nobody", short_header(plain_unknown), US_QUIC_unroutable_server_id},
        {"v1 Initial naming backend 2", long_header(0, good), US_QUIC_unroutable_initial},
        {"v1 0-RTT naming backend 2", long_header(1, good), US_QUIC_unroutable_initial},
        {"v2 Initial naming backend 2", long_header(1, good, 0x6b3343cf), US_QUIC_unroutable_initial},
        {"unknown version", long_header(2, good, 0x1a2a3a4a), US_QUIC_unroutable_initial},
    };
    Pipeline lb;
    uint16_t port = 42000;
    uint64_t expected[US_QUIC_MAX] = {};
    for (const Case &c : cases) {
        for (uint8_t host = 1; host <= 8; host++, port++) {
            auto g = gue_of(lb.pass(*world->snapshot, udp_frame(kQuicVip, host, port, c.payload)));
            us_bucket_entry e = bucket_of(*world, kQuicVip, host, port);
            EXPECT_EQ(g.backend, id_at(*world, e.serving)) << c.what;
            EXPECT_EQ(g.primary, id_at(*world, e.primary)) << c.what;
            EXPECT_EQ(g.flags, 0) << c.what;
            expected[c.reason]++;
        }
        for (int r = 0; r < US_QUIC_MAX; r++)
            EXPECT_EQ(lb.quic(quic_stat(*world), r), expected[r]) << c.what << ": " << quic_counter_name(r);
    }
    // The same CID as a v1 Handshake packet is routable: the Initial above went by the 4-tuple by its type.
    auto g = gue_of(lb.pass(*world->snapshot, udp_frame(kQuicVip, 9, 43000, long_header(2, good))));
    EXPECT_EQ(g.backend, 2u);
}

TEST(Quic, AVipWithoutQuicLbIgnoresCids)
{
    StatIndex stats;
    Config config = quic_config(kQuicBackends);
    config.vips[0].quic_lb.clear();
    auto world = make_world(config, stats, 1);
    std::vector<uint8_t> cid = mint(quic_config(kQuicBackends).vips[0].quic_lb[0], 2, 1);
    Pipeline lb;
    for (uint16_t port = 44000; port < 44032; port++) {
        auto g = gue_of(lb.pass(*world->snapshot, udp_frame(kQuicVip, 1, port, short_header(cid))));
        EXPECT_EQ(g.backend, id_at(*world, bucket_of(*world, kQuicVip, 1, port).serving));
        EXPECT_EQ(g.flags & US_GUE_F_QUIC_PRIMARY, 0);
    }
    for (int c = 0; c < US_QUIC_MAX; c++)
        EXPECT_EQ(lb.quic(quic_stat(*world), c), 0u);
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
