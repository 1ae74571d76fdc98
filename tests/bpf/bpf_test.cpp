// The BPF suite: both XDP programs of bpf/ run through BPF_PROG_TEST_RUN on the packet fixtures that
// make_fixtures.py writes (verdict, output bytes and counters, all computed without the programs), plus the
// helpers of src/bpfhost/maps.h, the steering object loaded the way DPDK's net_af_xdp loads it, and real traffic
// over a veth pair. Needs root; it works in network and mount namespaces of its own, so the host is untouched.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xdp/xsk.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <bpf/bpf.h>
#include <sys/mman.h>

#include "bpfhost/maps.h"
#include "us_backend.skel.h"
#include "us_steer.skel.h"

namespace understudy::bpf {
namespace {

using json = nlohmann::json;
using Bytes = std::vector<uint8_t>;

constexpr const char *kVerdicts[] = {"XDP_ABORTED", "XDP_DROP", "XDP_PASS", "XDP_TX", "XDP_REDIRECT"};

std::string verdict_name(uint32_t v) { return v < 5 ? kVerdicts[v] : "verdict " + std::to_string(v); }

Bytes unhex(const std::string &s)
{
    Bytes out;
    for (size_t i = 0; i + 1 < s.size(); i += 2)
        out.push_back(uint8_t(std::stoi(s.substr(i, 2), nullptr, 16)));
    return out;
}

std::string hex(const uint8_t *p, size_t n)
{
    static const char d[] = "0123456789abcdef";
    std::string out;
    for (size_t i = 0; i < n; i++) {
        out += d[p[i] >> 4];
        out += d[p[i] & 15];
    }
    return out;
}

// An address as the maps hold it: IPv6, or IPv4 as ::ffff:a.b.c.d.
std::array<uint8_t, 16> addr16(const std::string &text)
{
    std::array<uint8_t, 16> a{};
    if (inet_pton(AF_INET6, text.c_str(), a.data()) == 1)
        return a;
    a[10] = a[11] = 0xff;
    if (inet_pton(AF_INET, text.c_str(), a.data() + 12) != 1)
        throw std::runtime_error("bad address " + text);
    return a;
}

std::array<uint8_t, 6> mac6(const std::string &text)
{
    std::array<uint8_t, 6> m{};
    unsigned v[6];
    if (sscanf(text.c_str(), "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6)
        throw std::runtime_error("bad MAC " + text);
    for (int i = 0; i < 6; i++)
        m[i] = uint8_t(v[i]);
    return m;
}

void sh(const std::string &cmd)
{
    int rc = std::system(cmd.c_str());
    if (rc != 0)
        throw std::runtime_error("failed (" + std::to_string(rc) + "): " + cmd);
}

template <class T>
T must(Result<T> r, const std::string &what)
{
    if (!r)
        throw std::runtime_error(what + ": " + r.error());
    return std::move(r.value());
}

void must(const Status &s, const std::string &what)
{
    if (!s)
        throw std::runtime_error(what + ": " + s.error());
}

struct RunResult {
    int err = 0;
    uint32_t retval = 0;
    Bytes out;
};

// One BPF_PROG_TEST_RUN of prog on frame (ingress: this namespace's loopback, RX queue 0).
RunResult test_run(int prog_fd, const Bytes &frame)
{
    RunResult r;
    r.out.resize(frame.size() + 256);
    bpf_test_run_opts opts{};
    opts.sz = sizeof(opts);
    opts.data_in = frame.data();
    opts.data_size_in = uint32_t(frame.size());
    opts.data_out = r.out.data();
    opts.data_size_out = uint32_t(r.out.size());
    opts.repeat = 1;
    r.err = bpf_prog_test_run_opts(prog_fd, &opts);
    r.retval = opts.retval;
    r.out.resize(opts.data_size_out);
    return r;
}

// An AF_XDP socket bound to queue 0 of an interface (copy mode), with frames on its fill ring.
struct Xsk {
    static constexpr uint32_t kFrames = 64;
    void *area = nullptr;
    xsk_umem *umem = nullptr;
    xsk_socket *sock = nullptr;
    xsk_ring_prod fq{}, tx{};
    xsk_ring_cons cq{}, rx{};

    void open(const char *ifname)
    {
        size_t size = size_t(kFrames) * XSK_UMEM__DEFAULT_FRAME_SIZE;
        area = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (area == MAP_FAILED)
            throw std::runtime_error("mmap umem");
        if (int err = xsk_umem__create(&umem, area, size, &fq, &cq, nullptr))
            throw std::runtime_error(std::string("xsk_umem__create: ") + strerror(-err));
        xsk_socket_config cfg{};
        cfg.rx_size = XSK_RING_CONS__DEFAULT_NUM_DESCS;
        cfg.tx_size = XSK_RING_PROD__DEFAULT_NUM_DESCS;
        cfg.libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD;
        cfg.bind_flags = XDP_COPY;
        if (int err = xsk_socket__create(&sock, ifname, 0, umem, &rx, &tx, &cfg))
            throw std::runtime_error(std::string("xsk_socket__create: ") + strerror(-err));
        uint32_t idx = 0;
        if (xsk_ring_prod__reserve(&fq, kFrames, &idx) != kFrames)
            throw std::runtime_error("xsk fill ring");
        for (uint32_t i = 0; i < kFrames; i++)
            *xsk_ring_prod__fill_addr(&fq, idx + i) = uint64_t(i) * XSK_UMEM__DEFAULT_FRAME_SIZE;
        xsk_ring_prod__submit(&fq, kFrames);
    }

    int fd() const { return xsk_socket__fd(sock); }

    // The frames received since the last call.
    std::vector<Bytes> receive()
    {
        std::vector<Bytes> out;
        uint32_t idx = 0;
        uint32_t n = xsk_ring_cons__peek(&rx, kFrames, &idx);
        for (uint32_t i = 0; i < n; i++) {
            const xdp_desc *d = xsk_ring_cons__rx_desc(&rx, idx + i);
            const uint8_t *p = static_cast<const uint8_t *>(xsk_umem__get_data(area, d->addr));
            out.emplace_back(p, p + d->len);
        }
        xsk_ring_cons__release(&rx, n);
        return out;
    }
};

// Everything the tests share: the fixtures, both programs with their maps filled from the fixtures' world,
// the TCP connections of world.sockets, and a veth pair with an AF_XDP socket.
struct Env {
    json doc;
    std::unique_ptr<BackendProgram> backend;
    us_steer_bpf *steer = nullptr;
    std::string tmp;       // fixtures, and the bpffs below
    std::string pin_root;  // a bpffs of this mount namespace
    std::string steer_obj; // the object DPDK would load
    std::vector<int> fds;
    Xsk xsk;
    int veth = 0, peer = 0;  // us-b0 (the backend's NIC in the live tests), us-b1 (the wire)
};
Env *env = nullptr;

constexpr const char *kVeth = "us-b0";
constexpr const char *kPeer = "us-b1";

uint32_t index_of(const char *const *names, size_t n, const std::string &name)
{
    for (size_t i = 0; i < n; i++)
        if (name == names[i])
            return uint32_t(i);
    throw std::runtime_error("no counter named " + name);
}

// This host's settings: the world's, with what a fixture changes.
void fill_config(BackendProgram &b, const json &world_config, const json &changes)
{
    json c = world_config;
    c.update(changes);
    us_bpf_config cfg{};
    auto v4 = addr16(c["own_v4"]);
    auto v6 = addr16(c["own_v6"]);
    auto mac = mac6(c["own_mac"]);
    std::memcpy(cfg.own_v4, v4.data() + 12, 4);
    std::memcpy(cfg.own_v6, v6.data(), 16);
    std::memcpy(cfg.own_mac, mac.data(), 6);
    cfg.gue_port = htons(uint16_t(c["gue_port"]));
    cfg.max_hops = uint8_t(c["max_hops"]);
    must(b.set_config(cfg), "config");
}

// The fixtures' world in the backend program's maps (tables excepted: each fixture brings its own).
void fill_backend(BackendProgram &b, const json &w)
{
    fill_config(b, w["config"], json::object());
    for (const auto &be : w["backends"]) {
        us_bpf_backend x{};
        x.id = be["id"];
        x.operational = be["operational"] ? 1 : 0;
        std::string a = be["address"];
        x.ip_version = a.find(':') != std::string::npos ? 6 : 4;
        auto addr = addr16(a);
        std::memcpy(x.addr, addr.data(), 16);
        auto m = mac6(be["mac"]);
        std::memcpy(x.mac, m.data(), 6);
        must(b.put_backend(be["pool"], be["slot"], x), "backend");
        must(b.put_backend_id(be["pool"], be["id"], be["slot"]), "backend id");
    }
    for (const auto &src : w["tunnel_sources"]) {
        auto a = addr16(src["address"]);
        must(b.put_tunnel_source(a.data(), src["prefixlen"]), "tunnel source");
    }
    for (const auto &p : w["pools"]) {
        us_bpf_pool info{};
        info.pool_digest = p["digest"];
        info.my_slot = p["my_slot"];
        info.n_backends = p["n_backends"];
        info.table_bits = p["table_bits"];
        must(b.put_pool(p["index"], info), "pool");
    }
    for (const auto &v : w["vips"]) {
        auto a = addr16(v["address"]);
        must(b.put_vip(vip_key(a.data(), v["port"], v["proto"]), v["pool"]), "vip");
    }
}

// Tables as a fixture wants them: UNSET everywhere but in the buckets it names.
void fill_tables(BackendProgram &b, const json &w, const json &tables)
{
    us_bucket_entry unset{w["unset_entry"][0], w["unset_entry"][1], w["unset_entry"][2], w["unset_entry"][3]};
    for (const auto &p : w["pools"]) {
        uint32_t pool = p["index"];
        if (p.value("no_table", false)) {
            must(b.remove_table(pool), "remove table");
            continue;
        }
        std::vector<us_bucket_entry> entries(size_t(1) << int(p["table_bits"]), unset);
        std::string key = std::to_string(pool);
        if (tables.contains(key))
            for (const auto &[bucket, e] : tables[key].items())
                entries.at(std::stoul(bucket)) = us_bucket_entry{e[0], e[1], e[2], e[3]};
        must(b.swap_table(pool, entries), "swap table");
    }
}

void set_xsk(bool present)
{
    int map = bpf_map__fd(env->steer->maps.xsks_map);
    uint32_t zero = 0;
    if (present) {
        int fd = env->xsk.fd();
        if (bpf_map_update_elem(map, &zero, &fd, BPF_ANY) != 0)
            throw std::runtime_error(std::string("xsks_map update: ") + strerror(errno));
    } else if (bpf_map_delete_elem(map, &zero) != 0 && errno != ENOENT) {
        throw std::runtime_error(std::string("xsks_map delete: ") + strerror(errno));
    }
}

std::vector<uint64_t> counters(bool steer)
{
    if (steer) {
        SteerCounters c;
        must(read_percpu_counters(bpf_map__fd(env->steer->maps.us_steer_stats), c), "stats");
        return {c.begin(), c.end()};
    }
    auto c = must(env->backend->counters(), "stats");
    return {c.begin(), c.end()};
}

// One fixture: the verdict, the bytes that come out and exactly the counters it names move.
class FixtureTest : public testing::Test {
  public:
    explicit FixtureTest(json f) : f_(std::move(f)) {}

    void TestBody() override
    {
        bool steer = f_["program"] == "steer";
        SCOPED_TRACE(f_["desc"].get<std::string>());
        if (steer)
            set_xsk(f_["xsk"]);
        else
            fill_tables(*env->backend, env->doc["world"], f_["tables"]);
        if (!steer)
            fill_config(*env->backend, env->doc["world"]["config"], f_["config"]);
        int prog = steer ? bpf_program__fd(env->steer->progs.us_steer) : env->backend->prog_fd();
        Bytes in = unhex(f_["input"]);

        auto before = counters(steer);
        RunResult r = test_run(prog, in);
        auto after = counters(steer);

        ASSERT_EQ(r.err, 0) << "BPF_PROG_TEST_RUN: " << strerror(-r.err);
        EXPECT_EQ(verdict_name(r.retval), f_["verdict"].get<std::string>());
        EXPECT_EQ(hex(r.out.data(), r.out.size()), f_["output"].get<std::string>());
        const char *const *names = steer ? kSteerCounterNames : kBackendCounterNames;
        size_t n = steer ? size_t(US_SCTR_MAX) : size_t(US_BCTR_MAX);
        for (const auto &[name, delta] : f_["counters"].items())
            index_of(names, n, name);  // throws on a name the program does not have
        for (size_t i = 0; i < n; i++) {
            uint64_t want = f_["counters"].value(names[i], uint64_t(0));
            EXPECT_EQ(after[i] - before[i], want) << "counter " << names[i];
        }
    }

  private:
    json f_;
};

const json &fixture(const std::string &name)
{
    for (const auto &f : env->doc["fixtures"])
        if (f["name"] == name)
            return f;
    throw std::runtime_error("no fixture " + name);
}

// ---- layouts and coverage ----

TEST(Layout, MapsMatchTheSharedHeader)
{
    auto &m = env->backend->skeleton()->maps;
    EXPECT_EQ(bpf_map__value_size(m.us_config), sizeof(us_bpf_config));
    EXPECT_EQ(bpf_map__key_size(m.us_vips), sizeof(us_vip_key));
    EXPECT_EQ(bpf_map__value_size(m.us_vips), sizeof(us_vip_value));
    EXPECT_EQ(bpf_map__value_size(m.us_pools), sizeof(us_bpf_pool));
    EXPECT_EQ(bpf_map__max_entries(m.us_pools), uint32_t(US_BPF_MAX_POOLS));
    EXPECT_EQ(bpf_map__value_size(m.us_backends), sizeof(us_bpf_backend));
    EXPECT_EQ(bpf_map__max_entries(m.us_backends), uint32_t(US_BPF_MAX_POOLS * US_BPF_MAX_SLOTS));
    EXPECT_EQ(bpf_map__type(m.us_tables), BPF_MAP_TYPE_ARRAY_OF_MAPS);
    EXPECT_EQ(bpf_map__max_entries(m.us_tables), uint32_t(US_BPF_MAX_POOLS));
    EXPECT_EQ(bpf_map__max_entries(m.us_stats), uint32_t(US_BCTR_MAX));
    auto &s = env->steer->maps;
    EXPECT_EQ(bpf_map__type(s.xsks_map), BPF_MAP_TYPE_XSKMAP);
    EXPECT_STREQ(bpf_map__name(s.xsks_map), "xsks_map");
    EXPECT_EQ(bpf_map__key_size(s.us_steer_vips), sizeof(us_vip_key));
    EXPECT_EQ(bpf_map__max_entries(s.us_steer_stats), uint32_t(US_SCTR_MAX));
}

// Every counter is some fixture's expectation, so every branch that counts runs at least once.
TEST(Coverage, EveryCounterIsExercised)
{
    std::set<std::string> backend, steer;
    for (const auto &f : env->doc["fixtures"])
        for (const auto &[name, delta] : f["counters"].items())
            (f["program"] == "steer" ? steer : backend).insert(name);
    for (const char *name : kBackendCounterNames) {
        if (std::string(name) != "adjust_failed") {  // the kernel refusing bpf_xdp_adjust_head: not reachable
            EXPECT_TRUE(backend.count(name)) << "no fixture counts " << name;
        }
    }
    for (const char *name : kSteerCounterNames)
        EXPECT_TRUE(steer.count(name)) << "no fixture counts " << name;
}

TEST(Verifier, BothProgramsLoad)
{
    for (int fd : {env->backend->prog_fd(), bpf_program__fd(env->steer->progs.us_steer)}) {
        bpf_prog_info info{};
        uint32_t len = sizeof(info);
        ASSERT_EQ(bpf_obj_get_info_by_fd(fd, &info, &len), 0);
        printf("%s: %u instructions verified, %u bytes translated\n", info.name, info.verified_insns,
               info.xlated_prog_len);
        EXPECT_GT(info.xlated_prog_len, 0u);
    }
}

// ---- tables ----

TEST(Tables, SwapPublishesTheWholeNewTable)
{
    const json &w = env->doc["world"];
    Bytes in = unhex(fixture("served_v4_udp")["input"]);  // UDP: the table decides (no socket to ask)
    auto run = [&] { return test_run(env->backend->prog_fd(), in).retval; };
    uint32_t bits = w["pools"][0]["table_bits"];
    std::vector<us_bucket_entry> mine(size_t(1) << bits, us_bucket_entry{1, 1, 1, 0});
    std::vector<us_bucket_entry> other(size_t(1) << bits, us_bucket_entry{0, 0, 0, 0});

    must(env->backend->swap_table(0, mine), "swap");
    EXPECT_EQ(verdict_name(run()), "XDP_PASS");
    must(env->backend->swap_table(0, other), "swap");
    EXPECT_EQ(verdict_name(run()), "XDP_TX");

    // Swapping while packets run: every packet sees one table or the other, and nothing fails.
    std::atomic<bool> stop{false};
    std::thread swapper([&] {
        for (int i = 0; i < 200 && !stop; i++)
            must(env->backend->swap_table(0, i % 2 ? mine : other), "swap");
    });
    int pass = 0, tx = 0, bad = 0;
    for (int i = 0; i < 2000; i++) {
        RunResult r = test_run(env->backend->prog_fd(), in);
        (r.err == 0 && r.retval == XDP_PASS ? pass : r.err == 0 && r.retval == XDP_TX ? tx : bad)++;
    }
    stop = true;
    swapper.join();
    EXPECT_EQ(bad, 0);
    EXPECT_EQ(pass + tx, 2000);

    // A table shorter than 2^table_bits: buckets past its end are served here (no_table).
    std::vector<us_bucket_entry> short_table(4, us_bucket_entry{0, 0, 0, 0});
    must(env->backend->swap_table(0, short_table), "swap");
    auto before = must(env->backend->counters(), "stats");
    EXPECT_EQ(verdict_name(run()), "XDP_PASS");  // the fixture's bucket, 200, is past the end
    auto after = must(env->backend->counters(), "stats");
    EXPECT_EQ(after[US_BCTR_no_table] - before[US_BCTR_no_table], 1u);

    must(env->backend->remove_table(0), "remove");
    EXPECT_EQ(verdict_name(run()), "XDP_PASS");
    EXPECT_FALSE(make_table(std::vector<us_bucket_entry>(3)).ok());
    EXPECT_FALSE(make_table({}).ok());
}

TEST(Tables, FullSizeTableFillsThroughMmap)
{
    std::vector<us_bucket_entry> entries(size_t(1) << 20);
    for (size_t i = 0; i < entries.size(); i++)
        entries[i] = us_bucket_entry{uint16_t(i % 7), uint16_t(i % 5), uint16_t(i % 3), 0};
    Fd table = must(make_table(entries), "make_table");
    for (uint32_t i : {0u, 1u, 12345u, (1u << 20) - 1}) {
        us_bucket_entry e{};
        ASSERT_EQ(bpf_map_lookup_elem(table.get(), &i, &e), 0);
        EXPECT_EQ(e.primary, entries[i].primary);
        EXPECT_EQ(e.serving, entries[i].serving);
        EXPECT_EQ(e.previous, entries[i].previous);
    }
}

// ---- the steering object, loaded the way DPDK's net_af_xdp loads it ----

TEST(Steer, LoadedByDpdkFindsTheMapsTheBalancerPinned)
{
    std::string root = env->pin_root + "/dpdk";
    sh("mkdir -p " + root);
    // The balancer creates and fills the pinned maps first...
    SteerMaps maps = must(SteerMaps::open_or_create(root), "SteerMaps");
    auto vip = addr16("192.0.2.10");
    must(maps.put_vip(vip_key(vip.data(), 80, 6)), "put_vip");
    // ...then net_af_xdp opens the object file, loads it and looks up xsks_map by name.
    bpf_object_open_opts opts{};
    opts.sz = sizeof(opts);
    opts.pin_root_path = root.c_str();
    bpf_object *obj = bpf_object__open_file(env->steer_obj.c_str(), &opts);
    ASSERT_TRUE(obj) << "open " << env->steer_obj;
    ASSERT_EQ(bpf_object__load(obj), 0);
    bpf_map *xsks = bpf_object__find_map_by_name(obj, "xsks_map");
    ASSERT_TRUE(xsks);
    EXPECT_EQ(bpf_map__type(xsks), BPF_MAP_TYPE_XSKMAP);
    int prog = bpf_program__fd(bpf_object__next_program(obj, nullptr));

    Bytes in = unhex(fixture("steer_vip_tcp")["input"]);
    auto before = must(maps.counters(), "counters");
    RunResult r = test_run(prog, in);
    auto after = must(maps.counters(), "counters");
    EXPECT_EQ(r.err, 0);
    EXPECT_EQ(verdict_name(r.retval), "XDP_PASS");  // no socket in this object's xsks_map
    EXPECT_EQ(after[US_SCTR_no_socket] - before[US_SCTR_no_socket], 1u);
    // A second open finds the same pins.
    SteerMaps again = must(SteerMaps::open_or_create(root), "SteerMaps again");
    EXPECT_EQ(must(again.counters(), "counters")[US_SCTR_no_socket], after[US_SCTR_no_socket]);
    bpf_object__close(obj);
}

// ---- attachment and real traffic over veth ----

TEST(Attach, NativeOnVethAndDetach)
{
    must(attach_xdp(env->veth, env->backend->prog_fd()), "attach");
    uint32_t id = 0;
    ASSERT_EQ(bpf_xdp_query_id(env->veth, XDP_FLAGS_DRV_MODE, &id), 0);
    bpf_prog_info info{};
    uint32_t len = sizeof(info);
    ASSERT_EQ(bpf_obj_get_info_by_fd(env->backend->prog_fd(), &info, &len), 0);
    EXPECT_EQ(id, info.id);
    must(detach_xdp(env->veth), "detach");
    ASSERT_EQ(bpf_xdp_query_id(env->veth, XDP_FLAGS_DRV_MODE, &id), 0);
    EXPECT_EQ(id, 0u);
}

// A frame sent into the peer of the backend's veth: what leaves on the wire, if anything, within a second.
std::vector<Bytes> wire_exchange(const Bytes &frame, int wait_ms)
{
    int s = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
    if (s < 0)
        throw std::runtime_error("packet socket");
    Fd sock(s);
    sockaddr_ll ll{};
    ll.sll_family = AF_PACKET;
    ll.sll_protocol = htons(ETH_P_ALL);
    ll.sll_ifindex = env->peer;
    if (bind(s, reinterpret_cast<sockaddr *>(&ll), sizeof(ll)) != 0)
        throw std::runtime_error("bind packet socket");
    if (send(s, frame.data(), frame.size(), 0) != ssize_t(frame.size()))
        throw std::runtime_error("send");
    std::vector<Bytes> got;
    pollfd p{s, POLLIN, 0};
    while (poll(&p, 1, wait_ms) > 0) {
        uint8_t buf[2048];
        sockaddr_ll from{};
        socklen_t fl = sizeof(from);
        ssize_t n = recvfrom(s, buf, sizeof(buf), 0, reinterpret_cast<sockaddr *>(&from), &fl);
        if (n > 0 && from.sll_pkttype != PACKET_OUTGOING)
            got.emplace_back(buf, buf + n);
    }
    return got;
}

class Live : public testing::Test {
  protected:
    void SetUp() override
    {
        must(attach_xdp(env->veth, env->backend->prog_fd()), "attach backend");
        // veth transmits XDP_TX frames only to a peer with NAPI, which a native XDP program gives it: the
        // steering program passes everything that is not a VIP.
        must(attach_xdp(env->peer, bpf_program__fd(env->steer->progs.us_steer)), "attach peer");
    }
    void TearDown() override
    {
        (void)detach_xdp(env->veth);
        (void)detach_xdp(env->peer);
    }
};

// Served: the kernel takes the decapsulated packet (a UDP datagram to the VIP) and a socket receives it.
TEST_F(Live, ServedPacketReachesTheVipSocket)
{
    const json &f = fixture("live_served_udp");
    fill_tables(*env->backend, env->doc["world"], f["tables"]);
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    Fd sock(s);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(f["udp_port"]));
    inet_pton(AF_INET, f["udp_vip"].get<std::string>().c_str(), &a.sin_addr);
    ASSERT_EQ(bind(s, reinterpret_cast<sockaddr *>(&a), sizeof(a)), 0) << strerror(errno);
    auto before = must(env->backend->counters(), "stats");
    wire_exchange(unhex(f["input"]), 200);
    pollfd p{s, POLLIN, 0};
    ASSERT_EQ(poll(&p, 1, 2000), 1) << "no datagram reached the VIP socket";
    char buf[256];
    ssize_t n = recv(s, buf, sizeof(buf), 0);
    EXPECT_EQ(std::string(buf, size_t(n > 0 ? n : 0)), f["udp_payload"].get<std::string>());
    auto after = must(env->backend->counters(), "stats");
    EXPECT_EQ(after[US_BCTR_gue_served] - before[US_BCTR_gue_served], 1u);
}

// Forwarded: the frame goes back out of the NIC (XDP_TX), byte for byte as the fixture says.
TEST_F(Live, ForwardedPacketLeavesByTheSameNic)
{
    const json &f = fixture("forward_v4");
    fill_tables(*env->backend, env->doc["world"], f["tables"]);
    auto got = wire_exchange(unhex(f["input"]), 500);
    bool found = false;
    for (const Bytes &b : got)
        found |= hex(b.data(), b.size()) == f["output"].get<std::string>();
    EXPECT_TRUE(found) << got.size() << " frames came back, none the forwarded one";
}

// Steering on a real NIC: a VIP frame lands in the AF_XDP socket of its queue, anything else in the kernel.
TEST(SteerLive, VipFramesReachTheSocketOthersTheKernel)
{
    set_xsk(true);
    must(attach_xdp(env->veth, bpf_program__fd(env->steer->progs.us_steer)), "attach steer");
    env->xsk.receive();
    Bytes vip = unhex(fixture("steer_vip_tcp")["input"]);
    Bytes other = unhex(fixture("steer_not_vip_port")["input"]);
    SteerCounters before, after;
    must(read_percpu_counters(bpf_map__fd(env->steer->maps.us_steer_stats), before), "stats");
    wire_exchange(vip, 100);
    wire_exchange(other, 100);
    std::vector<Bytes> frames;
    for (int i = 0; i < 20 && frames.empty(); i++) {
        frames = env->xsk.receive();
        usleep(10000);
    }
    must(read_percpu_counters(bpf_map__fd(env->steer->maps.us_steer_stats), after), "stats");
    (void)detach_xdp(env->veth);
    ASSERT_EQ(frames.size(), 1u);
    EXPECT_EQ(hex(frames[0].data(), frames[0].size()), hex(vip.data(), vip.size()));
    EXPECT_EQ(after[US_SCTR_steered] - before[US_SCTR_steered], 1u);
    EXPECT_GE(after[US_SCTR_passed] - before[US_SCTR_passed], 1u);  // and whatever the kernel sends (IPv6 DAD...)
}

// ---- set-up ----

void open_connection(const json &s)
{
    bool v6 = int(s["family"]) == 6;
    auto sa = [&](const std::string &addr, uint16_t port, sockaddr_storage &ss) -> socklen_t {
        std::memset(&ss, 0, sizeof(ss));
        if (v6) {
            auto *a = reinterpret_cast<sockaddr_in6 *>(&ss);
            a->sin6_family = AF_INET6;
            a->sin6_port = htons(port);
            inet_pton(AF_INET6, addr.c_str(), &a->sin6_addr);
            return sizeof(*a);
        }
        auto *a = reinterpret_cast<sockaddr_in *>(&ss);
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        inet_pton(AF_INET, addr.c_str(), &a->sin_addr);
        return sizeof(*a);
    };
    int family = v6 ? AF_INET6 : AF_INET;
    sockaddr_storage vip, client;
    socklen_t vl = sa(s["vip"], s["vport"], vip), cl = sa(s["client"], s["cport"], client);
    int one = 1;
    int l = socket(family, SOCK_STREAM, 0);
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(l, reinterpret_cast<sockaddr *>(&vip), vl) != 0 || listen(l, 16) != 0)
        throw std::runtime_error(std::string("listen on the VIP: ") + strerror(errno));
    int c = socket(family, SOCK_STREAM, 0);
    if (bind(c, reinterpret_cast<sockaddr *>(&client), cl) != 0 ||
        connect(c, reinterpret_cast<sockaddr *>(&vip), vl) != 0)
        throw std::runtime_error(std::string("connect to the VIP: ") + strerror(errno));
    int a = accept(l, nullptr, nullptr);
    if (a < 0)
        throw std::runtime_error("accept");
    env->fds.insert(env->fds.end(), {l, c, a});
}

void set_up(const char *source_root, const char *steer_obj)
{
    // Namespaces of our own: the sockets, addresses, veths and bpffs pins of the tests touch nothing else,
    // and BPF_PROG_TEST_RUN looks sockets up in this network namespace.
    char dir[] = "/tmp/us-bpf-test.XXXXXX";
    if (!mkdtemp(dir))
        throw std::runtime_error("mkdtemp");
    std::string tmp = dir;
    env->tmp = tmp;
    sh("/usr/bin/python3 " + std::string(source_root) + "/tests/bpf/make_fixtures.py " + tmp);
    std::ifstream in(tmp + "/fixtures.json");
    env->doc = json::parse(in);
    const json &w = env->doc["world"];

    if (unshare(CLONE_NEWNET | CLONE_NEWNS) != 0)
        throw std::runtime_error(std::string("unshare: ") + strerror(errno));
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
        throw std::runtime_error("making mounts private");
    env->pin_root = tmp + "/bpffs";
    sh("mkdir -p " + env->pin_root);
    if (mount("bpf", env->pin_root.c_str(), "bpf", 0, nullptr) != 0)
        throw std::runtime_error(std::string("mounting bpffs: ") + strerror(errno));

    sh("ip link set lo up");
    for (const auto &s : w["sockets"])
        for (const char *k : {"vip", "client"}) {
            std::string a = s[k];
            sh(a.find(':') != std::string::npos ? "ip -6 addr add " + a + "/128 dev lo nodad"
                                                : "ip addr add " + a + "/32 dev lo");
        }
    sh(std::string("ip link add ") + kVeth + " type veth peer name " + kPeer);
    sh(std::string("ip link set ") + kVeth + " address " + w["config"]["own_mac"].get<std::string>() + " up");
    sh(std::string("ip link set ") + kPeer + " up");
    sh(std::string("ip route add 198.51.100.0/24 dev ") + kVeth);
    env->veth = int(if_nametoindex(kVeth));
    env->peer = int(if_nametoindex(kPeer));

    env->backend = must(BackendProgram::load(), "loading us_backend");
    fill_backend(*env->backend, w);

    bpf_object_open_opts opts{};
    opts.sz = sizeof(opts);
    opts.pin_root_path = env->pin_root.c_str();
    env->steer = us_steer_bpf__open_opts(&opts);
    if (!env->steer || us_steer_bpf__load(env->steer) != 0)
        throw std::runtime_error("loading us_steer");
    SteerMaps steer_maps = must(SteerMaps::open_or_create(env->pin_root), "steer maps");
    for (const auto &v : w["vips"]) {
        auto a = addr16(v["address"]);
        must(steer_maps.put_vip(vip_key(a.data(), v["port"], v["proto"])), "steer vip");
    }
    env->steer_obj = steer_obj;

    for (const auto &s : w["sockets"])
        open_connection(s);
    env->xsk.open(kVeth);
}

}  // namespace
}  // namespace understudy::bpf

int main(int argc, char **argv)
{
    using namespace understudy::bpf;
    testing::InitGoogleTest(&argc, argv);
    if (geteuid() != 0) {
        fprintf(stderr, "bpf tests: FAILED: they need root (BPF_PROG_TEST_RUN, map creation, network and mount "
                        "namespaces, veth pairs); run them as root, e.g. sudo meson test --suite bpf\n");
        return 1;
    }
    const char *root = getenv("UNDERSTUDY_SOURCE_ROOT");
    const char *steer_obj = getenv("UNDERSTUDY_STEER_OBJECT");
    if (!root || !steer_obj) {
        fprintf(stderr, "bpf tests: FAILED: UNDERSTUDY_SOURCE_ROOT and UNDERSTUDY_STEER_OBJECT must be set "
                        "(meson test sets them)\n");
        return 1;
    }
    env = new Env;
    try {
        set_up(root, steer_obj);
    } catch (const std::exception &e) {
        fprintf(stderr, "bpf tests: FAILED during set-up: %s\n", e.what());
        if (!env->pin_root.empty())
            umount(env->pin_root.c_str());
        if (!env->tmp.empty())
            std::system(("rm -rf " + env->tmp).c_str());
        return 1;
    }
    for (const auto &f : env->doc["fixtures"]) {
        std::string name = f["name"];
        testing::RegisterTest(f["program"] == "steer" ? "SteerFixture" : "BackendFixture", name.c_str(), nullptr,
                              nullptr, __FILE__, __LINE__, [f]() -> testing::Test * { return new FixtureTest(f); });
    }
    int rc = RUN_ALL_TESTS();
    umount(env->pin_root.c_str());
    std::system(("rm -rf " + env->tmp).c_str());
    return rc;
}
