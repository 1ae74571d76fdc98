// understudy-agent's state: see agent.h. The order of map updates follows bpf/README.md: a pool's backends,
// then its table (swapped in whole), then its info; VIPs last when they are new, first when they go.
#include "agent.h"

#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>

#include <cstring>
#include <fstream>

namespace understudy {

Agent::Agent(Logger log) : log_(std::move(log)), health_([this](const HealthEvent &e) { on_health_event(e); }) {}

Agent::~Agent() { stop(); }

static uint32_t effective_weight(const Backend &b) { return b.state == AdminState::drain ? 0 : b.weight; }

bool Agent::operational(const std::string &pool, const Backend &b) const
{
    auto it = health_up_.find({pool, b.id});
    return b.state != AdminState::disabled && (it == health_up_.end() || it->second);
}

std::set<std::pair<std::string, uint32_t>> Agent::down_pairs() const
{
    std::set<std::pair<std::string, uint32_t>> out;
    for (const auto &[key, up] : health_up_)
        if (!up)
            out.insert(key);
    return out;
}

// The interface's own addresses, when [agent] addresses names none.
static std::vector<Address> interface_addresses(const std::string &iface)
{
    std::vector<Address> out;
    ifaddrs *list = nullptr;
    if (getifaddrs(&list) != 0)
        return out;
    for (ifaddrs *a = list; a; a = a->ifa_next) {
        if (!a->ifa_addr || iface != a->ifa_name)
            continue;
        Address addr;
        if (a->ifa_addr->sa_family == AF_INET) {
            addr.bytes[10] = addr.bytes[11] = 0xff;
            std::memcpy(addr.bytes.data() + 12, &reinterpret_cast<sockaddr_in *>(a->ifa_addr)->sin_addr, 4);
            out.push_back(addr);
        } else if (a->ifa_addr->sa_family == AF_INET6) {
            std::memcpy(addr.bytes.data(), &reinterpret_cast<sockaddr_in6 *>(a->ifa_addr)->sin6_addr, 16);
            if (addr.bytes[0] != 0xfe || (addr.bytes[1] & 0xc0) != 0x80)  // not link-local
                out.push_back(addr);
        }
    }
    freeifaddrs(list);
    return out;
}

std::unique_ptr<Agent::PoolState> Agent::build_pool(const Pool &pool) const
{
    auto st = std::make_unique<PoolState>();
    st->table = std::make_unique<PoolTable>(config_.secret, pool.table_bits);
    std::vector<Member> members;
    for (size_t i = 0; i < pool.backends.size(); i++) {
        const Backend &b = pool.backends[i];
        members.push_back(Member{b.id, effective_weight(b), operational(pool.name, b), true});
        for (const Address &a : own_)
            if (a == b.address)
                st->my_slot = uint16_t(i);
    }
    st->table->build(std::move(members));
    return st;
}

Status Agent::write_config()
{
    us_bpf_config c{};
    for (const Address &a : own_) {
        if (a.is_v4() && !c.own_v4[0] && !c.own_v4[1] && !c.own_v4[2] && !c.own_v4[3])
            std::memcpy(c.own_v4, a.bytes.data() + 12, 4);
        else if (!a.is_v4() && std::all_of(std::begin(c.own_v6), std::end(c.own_v6), [](uint8_t x) { return x == 0; }))
            std::memcpy(c.own_v6, a.bytes.data(), 16);
    }
    std::memcpy(c.own_mac, own_mac_.data(), 6);
    c.gue_port = htons(config_.dataplane.gue_port);
    c.max_hops = config_.dataplane.hop_budget;
    return program_->set_config(c);
}

// The balancers' outer sources (defaults as the data plane's), every backend of every pool
// (backends forward to each other) and [agent] tunnel_sources. New entries go in before stale ones go.
Status Agent::write_sources()
{
    std::set<std::pair<Address, uint32_t>> keys;
    const DataplaneConfig &d = config_.dataplane;
    keys.insert({d.source_v4 ? *d.source_v4 : *Address::parse(kDefaultSourceV4), 128});
    keys.insert({d.source_v6 ? *d.source_v6 : *Address::parse(kDefaultSourceV6), 128});
    for (const Pool &pool : config_.pools)
        for (const Backend &b : pool.backends)
            keys.insert({b.address, 128});
    for (const auto &[addr, prefix] : config_.agent.tunnel_sources)
        keys.insert({addr, uint32_t(addr.is_v4() ? 96 + prefix : prefix)});
    if (keys.size() > US_BPF_MAX_SOURCES)
        return Error{"more than " + std::to_string(US_BPF_MAX_SOURCES) + " tunnel sources (backends and [agent] tunnel_sources)"};
    for (const auto &[addr, prefix] : keys)
        if (!source_keys_.count({addr, prefix}))
            if (auto s = program_->put_tunnel_source(addr.bytes.data(), prefix); !s)
                return s;
    for (const auto &[addr, prefix] : source_keys_)
        if (!keys.count({addr, prefix}))
            if (auto s = program_->delete_tunnel_source(addr.bytes.data(), prefix); !s)
                return s;
    source_keys_ = std::move(keys);
    return Ok{};
}

// us_backend_ids for pool `index` as its table's members are; IDs that left it are deleted.
Status Agent::write_backend_ids(uint32_t index, const PoolTable &t)
{
    std::set<uint32_t> now;
    for (size_t slot = 0; slot < t.members().size(); slot++) {
        if (!t.members()[slot].present)
            continue;
        now.insert(t.members()[slot].id);
        if (auto s = program_->put_backend_id(index, t.members()[slot].id, uint32_t(slot)); !s)
            return s;
    }
    return forget_backend_ids(index, now);
}

Status Agent::forget_backend_ids(uint32_t index, const std::set<uint32_t> &keep)
{
    std::set<uint32_t> &written = backend_ids_[index];
    for (uint32_t id : written)
        if (!keep.count(id))
            if (auto s = program_->delete_backend_id(index, id); !s)
                return s;
    written = keep;
    return Ok{};
}

Status Agent::write_pool(size_t index)
{
    const Pool &pool = config_.pools[index];
    PoolState &st = *pools_[index];
    const PoolTable &t = *st.table;
    if (t.members().size() > US_BPF_MAX_SLOTS)
        return Error{"pool " + pool.name + ": the agent holds at most " + std::to_string(US_BPF_MAX_SLOTS) + " backends"};
    std::map<uint32_t, const Backend *> by_id;
    for (const Backend &b : pool.backends)
        by_id[b.id] = &b;
    std::vector<ServerRef> refs;
    for (size_t slot = 0; slot < t.members().size(); slot++) {
        const Member &m = t.members()[slot];
        us_bpf_backend e{};
        auto it = by_id.find(m.id);
        if (m.present && it != by_id.end()) {
            const Backend &b = *it->second;
            e.id = m.id;
            e.operational = m.operational;
            e.ip_version = b.address.is_v4() ? 4 : 6;
            std::memcpy(e.addr, b.address.bytes.data(), 16);
            if (b.mac)
                std::memcpy(e.mac, b.mac->data(), 6);
            else if (auto n = neighbors_.find(b.address); n != neighbors_.end())
                std::memcpy(e.mac, n->second.data(), 6);
            refs.push_back(ServerRef{m.id, m.weight});
        }
        if (auto s = program_->put_backend(uint32_t(index), uint32_t(slot), e); !s)
            return s;
    }
    if (auto s = write_backend_ids(uint32_t(index), t); !s)
        return s;
    if (auto s = program_->swap_table(uint32_t(index), t.entries()); !s)
        return s;
    table_swaps_++;
    us_bpf_pool info{};
    info.pool_digest = pool_digest(config_.secret, refs);
    info.my_slot = st.my_slot;
    info.n_backends = uint16_t(t.members().size());
    info.table_bits = uint8_t(pool.table_bits);
    return program_->put_pool(uint32_t(index), info);
}

Status Agent::write_vips()
{
    std::set<std::vector<uint8_t>> keys;
    for (const Vip &v : config_.vips) {
        size_t pool = 0;
        while (pool < config_.pools.size() && config_.pools[pool].name != v.pool)
            pool++;
        for (uint16_t port : {v.port, uint16_t(0)}) {  // port 0: the entry fragments use
            us_vip_key k = bpf::vip_key(v.address.bytes.data(), port, uint8_t(v.protocol));
            std::vector<uint8_t> raw(reinterpret_cast<uint8_t *>(&k), reinterpret_cast<uint8_t *>(&k) + sizeof k);
            if (port == 0 && keys.count(raw))
                continue;  // the first VIP on the address and protocol owns the fragments
            keys.insert(raw);
            if (auto s = program_->put_vip(k, uint16_t(pool)); !s)
                return s;
        }
    }
    for (const auto &raw : vip_keys_) {
        if (keys.count(raw))
            continue;
        us_vip_key k;
        std::memcpy(&k, raw.data(), sizeof k);
        if (auto s = program_->delete_vip(k); !s)
            return s;
    }
    vip_keys_ = std::move(keys);
    return Ok{};
}

Status Agent::start(Config config)
{
    started_ns_ = monotonic_ns();
    config_ = std::move(config);
    const AgentConfig &a = config_.agent;
    ifindex_ = int(if_nametoindex(a.interface.c_str()));
    if (ifindex_ == 0)
        return Error{"agent.interface: no interface named '" + a.interface + "'"};
    own_ = a.addresses.empty() ? interface_addresses(a.interface) : a.addresses;
    if (own_.empty())
        return Error{"agent: " + a.interface + " has no address; give [agent] addresses"};
    std::ifstream mac_file("/sys/class/net/" + a.interface + "/address");
    std::string mac_text;
    mac_file >> mac_text;
    if (auto mac = parse_mac(mac_text))
        own_mac_ = *mac;

    auto prog = bpf::BackendProgram::load();
    if (!prog)
        return Error{prog.error()};
    program_ = std::move(*prog);
    neighbors_ = read_neighbors();
    for (const Pool &pool : config_.pools)
        pools_.push_back(build_pool(pool));
    if (config_.pools.size() > US_BPF_MAX_POOLS)
        return Error{"the agent holds at most " + std::to_string(US_BPF_MAX_POOLS) + " pools"};
    if (auto s = write_config(); !s)
        return s;
    if (auto s = write_sources(); !s)
        return s;
    for (size_t i = 0; i < pools_.size(); i++)
        if (auto s = write_pool(i); !s)
            return s;
    if (auto s = write_vips(); !s)
        return s;
    xdp_flags_ = a.xdp_mode == "generic" ? XDP_FLAGS_SKB_MODE : XDP_FLAGS_DRV_MODE;
    if (auto s = bpf::attach_xdp(ifindex_, program_->prog_fd(), xdp_flags_); !s)
        return s;
    attached_ = true;
    generation_ = 1;
    health_.set_targets(probe_targets(config_));
    size_t members = 0;
    for (const auto &p : pools_)
        members += p->my_slot != US_NO_SERVER;
    log_("attached to " + a.interface + " (" + a.xdp_mode + " XDP); member of " + std::to_string(members) + " of " +
         std::to_string(pools_.size()) + " pools");
    return Ok{};
}

void Agent::stop()
{
    if (attached_) {
        auto s = bpf::detach_xdp(ifindex_, xdp_flags_);
        attached_ = false;
        log_(s ? "detached from " + config_.agent.interface : s.error());
    }
}

void Agent::on_health_event(const HealthEvent &e)
{
    health_up_[{e.pool, e.backend_id}] = e.up;
    for (size_t i = 0; i < config_.pools.size(); i++) {
        const Pool &pool = config_.pools[i];
        if (pool.name != e.pool)
            continue;
        for (const Backend &b : pool.backends) {
            if (b.id != e.backend_id)
                continue;
            PoolTable &t = *pools_[i]->table;
            for (uint32_t slot = 0; slot < t.members().size(); slot++)
                if (t.members()[slot].present && t.members()[slot].id == b.id)
                    t.set_operational(slot, operational(pool.name, b));
            auto s = write_pool(i);
            log_("health: " + e.pool + "/" + std::to_string(e.backend_id) + (e.up ? " up (" : " down (") + e.reason +
                 ")" + (s ? "" : "; updating the maps failed: " + s.error()));
        }
    }
}

Status Agent::apply_config(Config next, const std::string &cause)
{
    if (auto s = validate_config(next); !s)
        return s;
    if (auto s = validate_for_agent(next); !s)
        return s;
    if (next.secret != config_.secret)
        return Error{"cluster.secret cannot change at run time: restart every node with the new secret together"};
    if (next.agent.interface != config_.agent.interface || next.agent.socket != config_.agent.socket ||
        next.agent.xdp_mode != config_.agent.xdp_mode)
        return Error{"reload: [agent] interface, socket and xdp_mode only change with a restart; nothing was applied"};
    if (next.pools.size() > US_BPF_MAX_POOLS)
        return Error{"the agent holds at most " + std::to_string(US_BPF_MAX_POOLS) + " pools"};
    Config old = std::move(config_);
    config_ = std::move(next);
    // Pools are rebuilt whole: the agent serves what the tables say, and a full build is a second at most.
    // Each bucket's history (the servers that served it before) carries over from the pool of the same
    // name, so that flows a balancer still holds on an earlier server are found there after the change.
    std::vector<std::unique_ptr<PoolState>> pools;
    for (const Pool &pool : config_.pools) {
        pools.push_back(build_pool(pool));
        for (size_t i = 0; i < old.pools.size(); i++)
            if (old.pools[i].name == pool.name)
                pools.back()->table->inherit_history(*pools_[i]->table);
    }
    pools_ = std::move(pools);
    Status s = Ok{};
    for (size_t i = config_.pools.size(); s && i < old.pools.size(); i++) {  // pools that are gone
        s = program_->put_pool(uint32_t(i), us_bpf_pool{});
        if (s)
            s = program_->remove_table(uint32_t(i));
        if (s)
            s = forget_backend_ids(uint32_t(i), {});
    }
    if (s)
        s = write_config();
    if (s)
        s = write_sources();
    for (size_t i = 0; s && i < pools_.size(); i++)
        s = write_pool(i);
    if (s)
        s = write_vips();
    health_.set_targets(probe_targets(config_));
    generation_ += s ? 1 : 0;
    log_(cause + (s ? ": applied" : ": maps not fully updated: " + s.error()));
    return s;
}

void Agent::refresh_neighbors()
{
    auto all = read_neighbors();
    for (size_t i = 0; i < config_.pools.size(); i++) {
        bool changed = false;
        for (const Backend &b : config_.pools[i].backends) {
            auto it = all.find(b.address);
            if (it == all.end()) {
                if (!b.mac)
                    solicit_neighbor(b.address);
                continue;
            }
            auto known = neighbors_.find(b.address);
            if (known == neighbors_.end() || known->second != it->second) {
                neighbors_[b.address] = it->second;
                changed = true;
            }
        }
        if (changed)
            if (auto s = write_pool(i); !s)
                log_("updating pool " + config_.pools[i].name + " failed: " + s.error());
    }
}

Json Agent::status_json() const
{
    Json j;
    j["version"] = "0.1.0";
    j["role"] = "agent";
    j["config"] = config_.path;
    j["interface"] = config_.agent.interface;
    j["xdp_mode"] = config_.agent.xdp_mode;
    j["uptime_s"] = double(monotonic_ns() - started_ns_) / 1e9;
    j["table_swaps"] = table_swaps_;
    j["generation"] = generation_;
    j["addresses"] = Json::array();
    for (const Address &a : own_)
        j["addresses"].push_back(a.str());
    j["pools"] = Json::array();
    for (size_t i = 0; i < config_.pools.size(); i++) {
        const Pool &pool = config_.pools[i];
        size_t up = 0;
        for (const Backend &b : pool.backends)
            up += operational(pool.name, b);
        const PoolState &st = *pools_[i];
        j["pools"].push_back({{"name", pool.name}, {"table_bits", pool.table_bits}, {"backends", pool.backends.size()},
                              {"operational", up},
                              {"my_id", st.my_slot == US_NO_SERVER ? Json(nullptr) : Json(pool.backends[st.my_slot].id)}});
    }
    return j;
}

Json Agent::backends_json(const std::string &filter) const
{
    Json out = Json::array();
    for (size_t i = 0; i < config_.pools.size(); i++) {
        const Pool &pool = config_.pools[i];
        if (!filter.empty() && pool.name != filter)
            continue;
        const PoolTable &t = *pools_[i]->table;
        std::vector<uint64_t> per_slot(t.members().size() + 1);
        for (const us_bucket_entry &e : t.entries())
            per_slot[e.serving == US_NO_SERVER ? per_slot.size() - 1 : e.serving]++;
        std::map<uint32_t, uint64_t> serving;
        for (size_t slot = 0; slot < t.members().size(); slot++)
            if (t.members()[slot].present)
                serving[t.members()[slot].id] = per_slot[slot];
        for (const Backend &b : pool.backends) {
            auto up = health_up_.find({pool.name, b.id});
            out.push_back({{"pool", pool.name}, {"id", b.id}, {"address", b.address.str()}, {"weight", b.weight},
                           {"state", to_string(b.state)},
                           {"health", up == health_up_.end() || up->second ? "up" : "down"},
                           {"operational", operational(pool.name, b)},
                           {"share", double(serving[b.id]) / double(t.buckets())}});
        }
    }
    return out;
}

Json Agent::health_json(const std::string &filter) const
{
    Json out = Json::array();
    for (const Pool &pool : config_.pools) {
        if (!filter.empty() && pool.name != filter)
            continue;
        for (const Backend &b : pool.backends) {
            auto up = health_up_.find({pool.name, b.id});
            Json j{{"pool", pool.name}, {"id", b.id}, {"address", b.address.str()}, {"kind", to_string(b.health.kind)},
                   {"up", up == health_up_.end() || up->second}};
            if (auto s = health_.status(pool.name, b.id)) {
                j["probed"] = s->probed;
                j["probes"] = s->probes;
                j["failures"] = s->failures;
                j["last_result"] = s->last_result;
            }
            out.push_back(j);
        }
    }
    return out;
}

Json Agent::stats_json() const
{
    Json j;
    auto counters = program_ ? program_->counters() : Result<bpf::BackendCounters>(Error{"not loaded"});
    j["counters"] = Json::object();
    if (counters)
        for (int i = 0; i < US_BCTR_MAX; i++)
            j["counters"][bpf::kBackendCounterNames[i]] = (*counters)[size_t(i)];
    j["time_s"] = double(monotonic_ns()) / 1e9;
    return j;
}

}  // namespace understudy
