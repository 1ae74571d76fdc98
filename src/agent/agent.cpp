// understudy-agent's state: see agent.h. The order of map updates follows bpf/README.md: a pool's backends,
// then its table (swapped in whole), then its info; VIPs last (new ones after their pool, stale ones removed
// at the end).
#include "agent.h"

#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>
#include <fstream>

namespace understudy {

Agent::Agent(EventLoop &loop, Logger log)
    : log_(std::move(log)), builder_(loop), health_([this](const HealthEvent &e) { on_health_event(e); })
{
}

Agent::~Agent() { stop(); }

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

Status Agent::write_config()
{
    us_bpf_config c{};
    for (const Address &a : view_->own()) {
        if (a.is_v4() && !c.own_v4[0] && !c.own_v4[1] && !c.own_v4[2] && !c.own_v4[3])
            std::memcpy(c.own_v4, a.bytes.data() + 12, 4);
        else if (!a.is_v4() && std::all_of(std::begin(c.own_v6), std::end(c.own_v6), [](uint8_t x) { return x == 0; }))
            std::memcpy(c.own_v6, a.bytes.data(), 16);
    }
    std::memcpy(c.own_mac, own_mac_.data(), 6);
    c.gue_port = htons(config().dataplane.gue_port);
    c.max_hops = config().dataplane.hop_budget;
    return maps_->set_config(c);
}

// The balancers' outer sources (defaults as the data plane's), every backend of every pool
// (backends forward to each other) and [agent] tunnel_sources. Stale entries go first, so that a config near
// the map's size fits.
Status Agent::write_sources()
{
    std::set<std::pair<Address, uint32_t>> keys;
    const DataplaneConfig &d = config().dataplane;
    keys.insert({d.source_v4 ? *d.source_v4 : *Address::parse(kDefaultSourceV4), 128});
    keys.insert({d.source_v6 ? *d.source_v6 : *Address::parse(kDefaultSourceV6), 128});
    for (const Pool &pool : config().pools)
        for (const Backend &b : pool.backends)
            keys.insert({b.address, 128});
    for (const auto &[addr, prefix] : config().agent.tunnel_sources)
        keys.insert({addr, uint32_t(addr.is_v4() ? 96 + prefix : prefix)});
    if (keys.size() > US_BPF_MAX_SOURCES)
        return Error{"more than " + std::to_string(US_BPF_MAX_SOURCES) + " tunnel sources (backends and [agent] tunnel_sources)"};
    for (auto it = source_keys_.begin(); it != source_keys_.end();) {
        if (keys.count(*it)) {
            ++it;
            continue;
        }
        if (auto s = maps_->delete_tunnel_source(it->first.bytes.data(), it->second); !s)
            return s;
        it = source_keys_.erase(it);
    }
    for (const auto &key : keys) {
        if (source_keys_.count(key))
            continue;
        if (auto s = maps_->put_tunnel_source(key.first.bytes.data(), key.second); !s)
            return s;
        source_keys_.insert(key);
    }
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
        if (auto s = maps_->put_backend_id(index, t.members()[slot].id, uint32_t(slot)); !s)
            return s;
        backend_ids_[index].insert(t.members()[slot].id);
    }
    return forget_backend_ids(index, now);
}

Status Agent::forget_backend_ids(uint32_t index, const std::set<uint32_t> &keep)
{
    std::set<uint32_t> &written = backend_ids_[index];
    for (auto it = written.begin(); it != written.end();) {
        if (keep.count(*it)) {
            ++it;
            continue;
        }
        if (auto s = maps_->delete_backend_id(index, *it); !s)
            return s;
        it = written.erase(it);
    }
    return Ok{};
}

Status Agent::write_pool(size_t index)
{
    const Pool &pool = config().pools[index];
    const PoolTable &t = view_->table(index);
    if (t.members().size() > US_BPF_MAX_SLOTS)
        return Error{"pool " + pool.name + ": the agent holds at most " + std::to_string(US_BPF_MAX_SLOTS) + " backends"};
    std::map<uint32_t, const Backend *> by_id;
    for (const Backend &b : pool.backends)
        by_id[b.id] = &b;
    std::vector<ServerRef> refs;
    const auto &neighbors = view_->neighbors();
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
            else if (auto n = neighbors.find(b.address); n != neighbors.end())
                std::memcpy(e.mac, n->second.data(), 6);
            refs.push_back(ServerRef{m.id, m.weight});
        }
        if (auto s = maps_->put_backend(uint32_t(index), uint32_t(slot), e); !s)
            return s;
        slots_written_[uint32_t(index)] = std::max(slots_written_[uint32_t(index)], slot + 1);
    }
    if (auto s = clear_slots(uint32_t(index), t.members().size()); !s)
        return s;
    if (auto s = write_backend_ids(uint32_t(index), t); !s)
        return s;
    if (auto s = maps_->swap_table(uint32_t(index), t.entries()); !s)
        return s;
    table_swaps_++;
    us_bpf_pool info{};
    info.pool_digest = pool_digest(config().secret, refs);
    info.my_slot = view_->my_slot(index);
    info.n_backends = uint16_t(t.members().size());
    info.table_bits = uint8_t(pool.table_bits);
    return maps_->put_pool(uint32_t(index), info);
}

// Slots from `from` on hold no backend (a pool that shrank or went).
Status Agent::clear_slots(uint32_t index, size_t from)
{
    size_t &written = slots_written_[index];
    while (written > from) {
        if (auto s = maps_->put_backend(index, uint32_t(written - 1), us_bpf_backend{}); !s)
            return s;
        written--;
    }
    return Ok{};
}

Status Agent::forget_pool(uint32_t index)
{
    if (auto s = maps_->put_pool(index, us_bpf_pool{}); !s)
        return s;
    if (auto s = maps_->remove_table(index); !s)
        return s;
    if (auto s = clear_slots(index, 0); !s)
        return s;
    return forget_backend_ids(index, {});
}

Status Agent::write_vips()
{
    std::set<std::vector<uint8_t>> keys;
    auto entries = bpf::vip_entries(config());
    for (const auto &e : entries)
        keys.insert(e.key);
    for (auto it = vip_keys_.begin(); it != vip_keys_.end();) {
        if (keys.count(*it)) {
            ++it;
            continue;
        }
        if (auto s = maps_->delete_vip(bpf::vip_key_of(*it)); !s)
            return s;
        it = vip_keys_.erase(it);
    }
    for (const auto &e : entries) {
        if (auto s = maps_->put_vip(bpf::vip_key_of(e.key), e.pool); !s)
            return s;
        vip_keys_.insert(e.key);
    }
    return Ok{};
}

// Every map from the view. Pools from the view's count up to pools_before are emptied (they are gone).
Status Agent::write_all(size_t pools_before)
{
    for (size_t i = view_->pools(); i < pools_before; i++)
        if (auto s = forget_pool(uint32_t(i)); !s)
            return s;
    if (auto s = write_config(); !s)
        return s;
    if (auto s = write_sources(); !s)
        return s;
    for (size_t i = 0; i < view_->pools(); i++)
        if (auto s = write_pool(i); !s)
            return s;
    return write_vips();
}

Status Agent::start(Config config)
{
    const AgentConfig &a = config.agent;
    ifindex_ = int(if_nametoindex(a.interface.c_str()));
    if (ifindex_ == 0)
        return Error{"agent.interface: no interface named '" + a.interface + "'"};
    std::vector<Address> own = a.addresses.empty() ? interface_addresses(a.interface) : a.addresses;
    if (own.empty())
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
    std::string iface = a.interface, mode = a.xdp_mode;
    if (auto s = start_with(std::move(config), *program_, std::move(own)); !s)
        return s;
    xdp_flags_ = mode == "generic" ? XDP_FLAGS_SKB_MODE : XDP_FLAGS_DRV_MODE;
    if (auto s = bpf::attach_xdp(ifindex_, program_->prog_fd(), xdp_flags_); !s)
        return s;
    attached_ = true;
    size_t members = 0;
    for (size_t i = 0; i < view_->pools(); i++)
        members += view_->my_slot(i) != US_NO_SERVER;
    log_("attached to " + iface + " (" + mode + " XDP); member of " + std::to_string(members) + " of " +
         std::to_string(view_->pools()) + " pools");
    return Ok{};
}

Status Agent::start_with(Config config, bpf::BackendMaps &maps, std::vector<Address> own)
{
    started_ns_ = monotonic_ns();
    maps_ = &maps;
    if (config.pools.size() > US_BPF_MAX_POOLS)
        return Error{"the agent holds at most " + std::to_string(US_BPF_MAX_POOLS) + " pools"};
    view_ = std::make_unique<ClusterView>(std::move(own));
    view_->start(std::move(config));
    view_->refresh_neighbors(read_neighbors(), false);
    if (auto s = write_all(0); !s)
        return s;
    health_.set_targets(probe_targets(view_->config()));
    return Ok{};
}

void Agent::stop()
{
    if (attached_) {
        auto s = bpf::detach_xdp(ifindex_, xdp_flags_);
        attached_ = false;
        log_(s ? "detached from " + config().agent.interface : s.error());
    }
}

void Agent::on_health_event(const HealthEvent &e) { verdicts_.push_back(e); }

void Agent::flush_health()
{
    if (verdicts_.empty())
        return;
    std::vector<HealthEvent> events;
    events.swap(verdicts_);
    auto changes = view_->apply_health(events);
    for (const PoolChange &c : changes)
        if (auto s = write_pool(c.pool); !s) {
            dirty_.insert(c.pool);
            log_("updating the maps of pool " + config().pools[c.pool].name + " failed (retried): " + s.error());
        }
    for (const HealthEvent &e : events)
        log_("health: " + e.pool + "/" + std::to_string(e.backend_id) + (e.up ? " up (" : " down (") + e.reason + ")");
}

void Agent::retry_dirty()
{
    for (auto it = dirty_.begin(); it != dirty_.end();) {
        bool gone = *it >= view_->pools();
        if (gone || write_pool(*it))
            it = dirty_.erase(it);
        else
            ++it;
    }
}

void Agent::change(Config next, const std::string &cause, std::function<void(Status)> done)
{
    if (builder_.busy())
        return done(Error{"another change is being built; nothing was applied: try again when it is live"});
    if (auto s = validate_config(next); !s)
        return done(s);
    if (auto s = validate_for_agent(next); !s)
        return done(s);
    const AgentConfig &a = config().agent, &b = next.agent;
    std::string restart;
    if (a.interface != b.interface)
        restart += " agent.interface";
    if (a.socket != b.socket)
        restart += " agent.socket";
    if (a.xdp_mode != b.xdp_mode)
        restart += " agent.xdp_mode";
    if (a.addresses != b.addresses)
        restart += " agent.addresses";
    if (!restart.empty())
        return done(Error{"reload: these settings only change with a restart:" + restart + "; nothing was applied"});
    if (next.pools.size() > US_BPF_MAX_POOLS)
        return done(Error{"the agent holds at most " + std::to_string(US_BPF_MAX_POOLS) + " pools"});
    auto prepared = view_->prepare(std::move(next));
    if (!prepared)
        return done(Error{prepared.error()});
    std::shared_ptr<ClusterView::Transition> t = std::move(*prepared);
    auto build = [t]() -> Status {
        ClusterView::build(*t);
        return Ok{};
    };
    auto finish = [this, t, cause, done](Status built) {
        if (!built) {
            view_->abandon(*t);
        } else {
            size_t before = view_->pools();
            view_->commit(*t);
            if (auto s = write_all(before); !s) {
                size_t after = view_->pools();
                view_->rollback(*t);
                // What the failed write changed goes back; a map that refuses that too is retried every tick.
                if (auto back = write_all(std::max(before, after)); !back) {
                    for (size_t i = 0; i < view_->pools(); i++)
                        dirty_.insert(i);
                    log_(cause + ": writing the previous state back failed too (retried): " + back.error());
                }
                built = Error{"updating the maps failed: " + s.error() + "; the previous configuration is back in them"};
            } else {
                health_.set_targets(probe_targets(config()));
            }
        }
        for (const PoolChange &c : view_->apply_waiting_health())
            if (auto s = write_pool(c.pool); !s)
                dirty_.insert(c.pool);
        log_(cause + (built ? ": applied, generation " + std::to_string(generation()) : ": refused: " + built.error()));
        done(built);
    };
    if (ClusterView::light(*t)) {
        Status st = Ok{};
        try {
            st = build();
        } catch (const std::exception &e) {
            st = Error{std::string("the change could not be built: ") + e.what()};
        }
        return finish(std::move(st));
    }
    log_(cause + ": building the new tables off the control thread");
    builder_.run(build, finish);
}

void Agent::refresh_neighbors()
{
    for (size_t i : view_->refresh_neighbors(read_neighbors(), true))
        if (auto s = write_pool(i); !s) {
            dirty_.insert(i);
            log_("updating pool " + config().pools[i].name + " failed (retried): " + s.error());
        }
    retry_dirty();
}

Json Agent::status_json() const
{
    Json j;
    j["version"] = "0.1.0";
    j["role"] = "agent";
    j["config"] = config().path;
    j["interface"] = config().agent.interface;
    j["xdp_mode"] = config().agent.xdp_mode;
    j["uptime_s"] = double(monotonic_ns() - started_ns_) / 1e9;
    j["table_swaps"] = table_swaps_;
    j["generation"] = generation();
    j["maps_in_sync"] = dirty_.empty();
    j["addresses"] = Json::array();
    for (const Address &a : view_->own())
        j["addresses"].push_back(a.str());
    j["pools"] = view_->pools_json();
    j["control"] = {{"longest_pause_ms", pauses_.longest_ms},
                    {"pauses_over_10ms", pauses_.over_10ms},
                    {"pauses_over_100ms", pauses_.over_100ms},
                    {"change_in_progress", builder_.busy()}};
    return j;
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
