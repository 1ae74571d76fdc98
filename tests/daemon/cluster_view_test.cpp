// The cluster view both daemons share, and the agent's map writes behind a fake: every kind of change, the
// next state built aside while probe verdicts arrive, and a failure injected at every map write, after which
// the view and the maps must be exactly as before. Expected tables come from the plain ordering contract
// (ordering() over the members), never from the table builder under test.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <random>

#include "agent/agent.h"
#include "core/ordering.h"
#include "daemon/cluster_view.h"
#include "daemon/event_loop.h"

using namespace understudy;

static bool operator==(const us_bucket_entry &a, const us_bucket_entry &b)
{
    return std::memcmp(&a, &b, sizeof a) == 0;
}

namespace {

std::string config_text(const std::string &pools_and_vips)
{
    return "[cluster]\nsecret = \"00112233445566778899aabbccddeeff\"\n[health]\nkind = \"none\"\n" + pools_and_vips +
           "[agent]\ninterface = \"lo\"\n";
}

std::string pool(const std::string &name, int bits, const std::vector<std::tuple<int, int, std::string>> &backends)
{
    std::string s = "[[pool]]\nname = \"" + name + "\"\ntable_bits = " + std::to_string(bits) + "\n";
    for (auto [id, weight, state] : backends)
        s += "  [[pool.backend]]\n  id = " + std::to_string(id) + "\n  address = \"10.0.0." + std::to_string(10 + id) +
             "\"\n  weight = " + std::to_string(weight) + "\n  state = \"" + state + "\"\n";
    return s;
}

std::string vip(const std::string &address, int port, const std::string &pool_name)
{
    return "[[vip]]\naddress = \"" + address + "\"\nport = " + std::to_string(port) + "\nprotocol = \"tcp\"\npool = \"" +
           pool_name + "\"\n";
}

Config parse(const std::string &body)
{
    auto c = parse_config(config_text(body), "test.toml");
    if (!c)
        throw std::runtime_error(c.error());
    if (auto st = validate_config(*c); !st)
        throw std::runtime_error(st.error());
    return *c;
}

// Every bucket of the pool's table as the contract says: the members' order by score; serving is the first
// that is operational (not disabled, not down).
void expect_contract(const ClusterView &view, const std::string &what,
                     const std::set<std::pair<std::string, uint32_t>> &down = {})
{
    const Config &c = view.config();
    for (size_t i = 0; i < c.pools.size(); i++) {
        const Pool &p = c.pools[i];
        const PoolTable &t = view.table(i);
        ASSERT_EQ(t.buckets(), 1u << p.table_bits) << what;
        std::vector<ServerRef> refs;
        std::vector<bool> up;
        for (const Backend &b : p.backends) {
            refs.push_back(ServerRef{b.id, b.state == AdminState::drain ? 0u : b.weight});
            up.push_back(b.state != AdminState::disabled && !down.count({p.name, b.id}));
        }
        auto id_at = [&](uint16_t slot) { return slot == US_NO_SERVER ? 0u : t.members().at(slot).id; };
        for (uint32_t bucket = 0; bucket < t.buckets(); bucket++) {
            auto order = ordering(c.secret, bucket, refs);
            uint32_t serving = 0;
            for (uint32_t k : order)
                if (up[k]) {
                    serving = refs[k].id;
                    break;
                }
            ASSERT_EQ(id_at(t.entries()[bucket].primary), refs[order[0]].id) << what << " " << p.name << " " << bucket;
            ASSERT_EQ(id_at(t.entries()[bucket].serving), serving) << what << " " << p.name << " " << bucket;
        }
    }
}

std::vector<us_bucket_entry> entries(const ClusterView &v, size_t pool)
{
    return {v.table(pool).entries().begin(), v.table(pool).entries().end()};
}

HealthEvent verdict(const std::string &pool, uint32_t id, bool up)
{
    HealthEvent e;
    e.pool = pool;
    e.backend_id = id;
    e.up = up;
    e.reason = "test";
    return e;
}

const std::string kA = pool("web", 10, {{1, 100, "enabled"}, {2, 100, "enabled"}, {3, 50, "enabled"}, {4, 100, "enabled"}}) +
                       pool("db", 8, {{7, 100, "enabled"}, {8, 100, "enabled"}}) + vip("192.0.2.1", 80, "web") +
                       vip("192.0.2.2", 5432, "db");
// web: 3 reweighted, 4 drained, 2 removed, 5 added; db resized (built whole); cache is new.
const std::string kB = pool("web", 10, {{1, 100, "enabled"}, {3, 200, "enabled"}, {4, 100, "drain"}, {5, 100, "enabled"}}) +
                       pool("db", 9, {{7, 100, "enabled"}, {8, 100, "enabled"}}) +
                       pool("cache", 8, {{9, 100, "enabled"}, {10, 100, "disabled"}}) + vip("192.0.2.1", 80, "web") +
                       vip("192.0.2.3", 11211, "cache");

}  // namespace

TEST(ClusterView, StartFollowsTheContract)
{
    ClusterView v;
    v.start(parse(kA), 1);
    expect_contract(v, "start");
    EXPECT_EQ(v.generation(), 1u);
}

TEST(ClusterView, ChangeIsBuiltAsideThenSwappedWhole)
{
    ClusterView v;
    v.start(parse(kA), 1);
    auto web_before = entries(v, 0), db_before = entries(v, 1);
    auto t = v.prepare(parse(kB));
    ASSERT_TRUE(t.ok()) << t.error();
    ClusterView::build(**t, 1);
    // Nothing live moved while the next state was built.
    EXPECT_EQ(v.config().pools.size(), 2u);
    EXPECT_EQ(entries(v, 0), web_before);
    EXPECT_EQ(entries(v, 1), db_before);
    auto changes = v.commit(**t);
    EXPECT_EQ(v.generation(), 2u);
    expect_contract(v, "after commit");
    // web was patched (its buckets listed), db and cache built whole.
    std::map<size_t, PoolChange> by_pool;
    for (auto &c : changes)
        by_pool[c.pool] = c;
    ASSERT_TRUE(by_pool.count(0) && by_pool.count(1) && by_pool.count(2));
    EXPECT_FALSE(by_pool[0].replaced);
    EXPECT_TRUE(by_pool[1].replaced);
    EXPECT_TRUE(by_pool[2].replaced);
    std::set<uint32_t> listed(by_pool[0].buckets.begin(), by_pool[0].buckets.end());
    for (uint32_t b = 0; b < v.table(0).buckets(); b++) {
        const us_bucket_entry &x = web_before[b], &y = v.table(0).entries()[b];
        bool differs = x.primary != y.primary || x.serving != y.serving || x.previous != y.previous ||
                       x.previous2 != y.previous2;
        ASSERT_EQ(differs, listed.count(b) == 1) << "bucket " << b;
    }
    // The previous state is whole in the transition until it goes.
    EXPECT_EQ(std::vector<us_bucket_entry>((*t)->previous_pools[0].table->entries().begin(),
                                           (*t)->previous_pools[0].table->entries().end()),
              web_before);
}

TEST(ClusterView, RollbackPutsBackEveryBit)
{
    ClusterView v;
    v.start(parse(kA), 1);
    auto web_before = entries(v, 0), db_before = entries(v, 1);
    Json backends_before = v.backends_json("");
    auto t = v.prepare(parse(kB));
    ASSERT_TRUE(t.ok());
    ClusterView::build(**t, 1);
    v.commit(**t);
    v.rollback(**t);
    EXPECT_EQ(v.generation(), 1u);
    ASSERT_EQ(v.config().pools.size(), 2u);
    EXPECT_EQ(entries(v, 0), web_before);
    EXPECT_EQ(entries(v, 1), db_before);
    EXPECT_EQ(v.backends_json(""), backends_before);
    EXPECT_EQ(v.pool_index("cache"), -1);
}

TEST(ClusterView, VerdictsDuringABuildReachTheNextState)
{
    ClusterView v;
    v.start(parse(kA), 1);
    auto t = v.prepare(parse(kB));
    ASSERT_TRUE(t.ok());
    // web is being copied: its verdict waits; db is built whole from members taken before: its verdict goes
    // to the live table now and to the new one at commit.
    EXPECT_TRUE(v.apply_health({verdict("web", 1, false)}).empty());
    auto db_now = v.apply_health({verdict("db", 7, false)});
    ASSERT_EQ(db_now.size(), 1u);
    EXPECT_EQ(db_now[0].pool, 1u);
    ClusterView::build(**t, 1);
    v.commit(**t);
    auto late = v.apply_waiting_health();
    ASSERT_EQ(late.size(), 1u);
    EXPECT_EQ(late[0].pool, 0u);
    expect_contract(v, "verdicts during the build", {{"web", 1}, {"db", 7}});
    // And back up: one publication for both verdicts that came together.
    auto both = v.apply_health({verdict("web", 1, true), verdict("db", 7, true)});
    EXPECT_EQ(both.size(), 2u);
    expect_contract(v, "both back");
}

TEST(ClusterView, AbandonReleasesWaitingVerdicts)
{
    ClusterView v;
    v.start(parse(kA), 1);
    auto t = v.prepare(parse(kB));
    ASSERT_TRUE(t.ok());
    EXPECT_TRUE(v.apply_health({verdict("web", 2, false)}).empty());
    v.abandon(**t);
    EXPECT_EQ(v.apply_waiting_health().size(), 1u);
    expect_contract(v, "abandoned", {{"web", 2}});
    EXPECT_EQ(v.generation(), 1u);
}

TEST(ClusterView, SharesAreKeptWithoutScanning)
{
    ClusterView v;
    v.start(parse(kA), 1);
    v.apply_health({verdict("web", 3, false)});
    Json backends = v.backends_json("web");
    std::map<uint32_t, uint64_t> counted;
    for (const auto &e : v.table(0).entries())
        if (e.serving != US_NO_SERVER)
            counted[v.table(0).members()[e.serving].id]++;
    for (const auto &b : backends)
        EXPECT_DOUBLE_EQ(b["share"].get<double>(), double(counted[b["id"].get<uint32_t>()]) / 1024.0) << b.dump();
}

TEST(ClusterView, SecretNeverChangesLive)
{
    ClusterView v;
    v.start(parse(kA), 1);
    Config next = parse(kB);
    next.secret[0] ^= 1;
    auto t = v.prepare(std::move(next));
    ASSERT_FALSE(t.ok());
    EXPECT_NE(t.error().find("secret"), std::string::npos);
}

// The maps as the program would see them, written through the same interface, failing the nth write. us_pools
// and us_backends are BPF arrays: an entry of zeros is the same as none.
class FakeMaps : public bpf::BackendMaps {
  public:
    struct State {
        std::map<uint32_t, us_bpf_pool> pools;
        std::map<uint32_t, std::vector<uint8_t>> backends;  // pool * slots + slot -> bytes
        std::map<std::pair<uint32_t, uint32_t>, uint32_t> ids;
        std::map<std::vector<uint8_t>, uint16_t> vips;
        std::set<std::pair<std::vector<uint8_t>, uint32_t>> sources;
        std::map<uint32_t, std::vector<us_bucket_entry>> tables;
        std::vector<uint8_t> config;
        bool operator==(const State &o) const
        {
            auto pools_eq = pools.size() == o.pools.size() &&
                            std::equal(pools.begin(), pools.end(), o.pools.begin(), [](const auto &a, const auto &b) {
                                return a.first == b.first && std::memcmp(&a.second, &b.second, sizeof a.second) == 0;
                            });
            auto tables_eq = tables.size() == o.tables.size() &&
                             std::equal(tables.begin(), tables.end(), o.tables.begin(), [](const auto &a, const auto &b) {
                                 return a.first == b.first && a.second.size() == b.second.size() &&
                                        std::memcmp(a.second.data(), b.second.data(),
                                                    a.second.size() * sizeof(us_bucket_entry)) == 0;
                             });
            return pools_eq && tables_eq && backends == o.backends && ids == o.ids && vips == o.vips &&
                   sources == o.sources && config == o.config;
        }
    };
    State state;
    int fail_at = -1;  // the write number that fails (-1: none)
    int writes = 0;

    template <class T>
    static std::vector<uint8_t> bytes(const T &v)
    {
        return {reinterpret_cast<const uint8_t *>(&v), reinterpret_cast<const uint8_t *>(&v) + sizeof v};
    }
    Status step()
    {
        return writes++ == fail_at ? Status(Error{"injected failure at write " + std::to_string(fail_at)}) : Status(Ok{});
    }
    Status set_config(const us_bpf_config &c) override
    {
        if (auto s = step(); !s)
            return s;
        state.config = bytes(c);
        return Ok{};
    }
    Status put_vip(const us_vip_key &k, uint16_t pool) override
    {
        if (auto s = step(); !s)
            return s;
        state.vips[bytes(k)] = pool;
        return Ok{};
    }
    Status delete_vip(const us_vip_key &k) override
    {
        if (auto s = step(); !s)
            return s;
        state.vips.erase(bytes(k));
        return Ok{};
    }
    Status put_backend_id(uint32_t pool, uint32_t id, uint32_t slot) override
    {
        if (auto s = step(); !s)
            return s;
        state.ids[{pool, id}] = slot;
        return Ok{};
    }
    Status delete_backend_id(uint32_t pool, uint32_t id) override
    {
        if (auto s = step(); !s)
            return s;
        state.ids.erase({pool, id});
        return Ok{};
    }
    Status put_tunnel_source(const uint8_t addr[16], uint32_t prefix) override
    {
        if (auto s = step(); !s)
            return s;
        state.sources.insert({std::vector<uint8_t>(addr, addr + 16), prefix});
        return Ok{};
    }
    Status delete_tunnel_source(const uint8_t addr[16], uint32_t prefix) override
    {
        if (auto s = step(); !s)
            return s;
        state.sources.erase({std::vector<uint8_t>(addr, addr + 16), prefix});
        return Ok{};
    }
    Status put_pool(uint32_t pool, const us_bpf_pool &info) override
    {
        if (auto s = step(); !s)
            return s;
        if (bytes(info) == bytes(us_bpf_pool{}))
            state.pools.erase(pool);
        else
            state.pools[pool] = info;
        return Ok{};
    }
    Status put_backend(uint32_t pool, uint32_t slot, const us_bpf_backend &b) override
    {
        if (auto s = step(); !s)
            return s;
        if (bytes(b) == bytes(us_bpf_backend{}))
            state.backends.erase(pool * US_BPF_MAX_SLOTS + slot);
        else
            state.backends[pool * US_BPF_MAX_SLOTS + slot] = bytes(b);
        return Ok{};
    }
    Status swap_table(uint32_t pool, std::span<const us_bucket_entry> e) override
    {
        if (auto s = step(); !s)
            return s;
        state.tables[pool] = {e.begin(), e.end()};
        return Ok{};
    }
    Status remove_table(uint32_t pool) override
    {
        if (auto s = step(); !s)
            return s;
        state.tables.erase(pool);
        return Ok{};
    }
};

static std::vector<Address> host(int id) { return {*Address::parse("10.0.0." + std::to_string(10 + id))}; }

// Runs the loop until done was called (changes this small are built on the control thread anyway).
static Status change(EventLoop &loop, Agent &agent, Config next)
{
    std::optional<Status> result;
    agent.change(std::move(next), "test", [&](Status s) { result = std::move(s); });
    for (int i = 0; i < 1000 && !result; i++)
        loop.run_once(10);
    if (!result)
        return Error{"no answer"};
    return *result;
}

TEST(AgentMaps, EveryFailedWriteLeavesTheMapsAsTheyWere)
{
    // How many writes a successful change makes.
    int total = 0;
    {
        EventLoop loop;
        FakeMaps maps;
        Agent agent(loop, [](const std::string &) {});
        ASSERT_TRUE(agent.start_with(parse(kA), maps, host(3)).ok());
        maps.writes = 0;
        ASSERT_TRUE(change(loop, agent, parse(kB)).ok());
        total = maps.writes;
        ASSERT_GT(total, 20);
        expect_contract(agent.view(), "agent after the change");
        // What the maps hold is the view: each pool's table, and this host's slot.
        for (size_t i = 0; i < agent.view().pools(); i++) {
            ASSERT_TRUE(maps.state.tables.count(uint32_t(i)));
            EXPECT_EQ(maps.state.tables[uint32_t(i)], entries(agent.view(), i));
            EXPECT_EQ(maps.state.pools[uint32_t(i)].my_slot, agent.view().my_slot(i));
        }
        EXPECT_NE(agent.view().my_slot(0), US_NO_SERVER);  // 10.0.0.13 is web's backend 3
        EXPECT_EQ(maps.state.vips.size(), 4u);              // two VIPs, each with its fragments' entry
    }
    for (int k = 0; k < total; k++) {
        EventLoop loop;
        FakeMaps maps;
        Agent agent(loop, [](const std::string &) {});
        ASSERT_TRUE(agent.start_with(parse(kA), maps, host(3)).ok());
        FakeMaps::State before = maps.state;
        Json view_before = agent.backends_json("");
        uint64_t generation = agent.generation();
        maps.writes = 0;
        maps.fail_at = k;
        Status s = change(loop, agent, parse(kB));
        ASSERT_FALSE(s.ok()) << "write " << k;
        EXPECT_NE(s.error().find("injected failure"), std::string::npos) << s.error();
        EXPECT_TRUE(maps.state == before) << "the maps differ after a failure at write " << k << " of " << total;
        EXPECT_EQ(agent.backends_json(""), view_before) << k;
        EXPECT_EQ(agent.generation(), generation) << k;
        EXPECT_TRUE(agent.maps_in_sync()) << k;
        // And the same change goes through afterwards.
        maps.fail_at = -1;
        ASSERT_TRUE(change(loop, agent, parse(kB)).ok()) << k;
        expect_contract(agent.view(), "after the retry " + std::to_string(k));
    }
}

TEST(AgentMaps, RestartOnlySettingsAreRefusedByName)
{
    EventLoop loop;
    FakeMaps maps;
    Agent agent(loop, [](const std::string &) {});
    ASSERT_TRUE(agent.start_with(parse(kA), maps, host(1)).ok());
    Config next = parse(kB);
    next.agent.interface = "eth9";
    Status s = change(loop, agent, next);
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.error().find("agent.interface"), std::string::npos) << s.error();
    EXPECT_EQ(agent.config().pools.size(), 2u);
}
