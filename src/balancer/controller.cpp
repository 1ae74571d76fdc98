// The control thread's state and table publication: see controller.h.
//
// Each pool keeps two copies of its bucket entries. Workers read the active one through the current
// snapshot; a change is written into the standby copy (only the buckets that changed, plus those the
// standby missed last time), the standby is published, and after the RCU grace period the roles swap.
#include "controller.h"

#include <pthread.h>
#include <rte_cycles.h>

#include <algorithm>
#include <cstring>

#include "report.h"

namespace understudy {

Controller::Controller(dp::Dataplane &dataplane, Logger log)
    : dataplane_(dataplane), log_(std::move(log)), health_([this](const HealthEvent &e) { on_health_event(e); })
{
}

static uint32_t effective_weight(const Backend &b) { return b.state == AdminState::drain ? 0 : b.weight; }

bool Controller::backend_up(const std::string &pool, uint32_t id) const
{
    auto it = health_up_.find({pool, id});
    return it == health_up_.end() || it->second;
}

bool Controller::operational(const std::string &pool, const Backend &b) const
{
    return b.state != AdminState::disabled && backend_up(pool, b.id);
}

std::set<uint32_t> Controller::down_ids(const std::string &pool) const
{
    std::set<uint32_t> ids;
    for (const auto &[key, up] : health_up_)
        if (key.first == pool && !up)
            ids.insert(key.second);
    return ids;
}

std::set<std::pair<std::string, uint32_t>> Controller::down_pairs() const
{
    std::set<std::pair<std::string, uint32_t>> out;
    for (const auto &[key, up] : health_up_)
        if (!up)
            out.insert(key);
    return out;
}

uint32_t Controller::slot_of(const PoolRuntime &rt, uint32_t id) const
{
    const auto &members = rt.table->members();
    for (uint32_t s = 0; s < members.size(); s++)
        if (members[s].present && members[s].id == id)
            return s;
    return UINT32_MAX;
}

// EAL pins the control thread to the main lcore's CPU, and threads inherit their creator's affinity: a
// table build would run all of its threads on that one CPU. This widens the calling thread's affinity to
// cpus for its lifetime (unless cpus is empty: then the build stays on the control CPU) and restores it.
class SpreadThreads {
  public:
    explicit SpreadThreads(const cpu_set_t &cpus)
    {
        CPU_ZERO(&saved_);
        widened_ = pthread_getaffinity_np(pthread_self(), sizeof saved_, &saved_) == 0 && CPU_COUNT(&cpus) > 0 &&
                   pthread_setaffinity_np(pthread_self(), sizeof cpus, &cpus) == 0;
        threads_ = unsigned(std::max(1, CPU_COUNT(widened_ ? &cpus : &saved_)));
    }
    ~SpreadThreads()
    {
        if (widened_)
            pthread_setaffinity_np(pthread_self(), sizeof saved_, &saved_);
    }
    SpreadThreads(const SpreadThreads &) = delete;
    SpreadThreads &operator=(const SpreadThreads &) = delete;

    unsigned threads() const { return threads_; }  // one per CPU the calling thread may now run on

  private:
    cpu_set_t saved_;
    bool widened_ = false;
    unsigned threads_ = 1;
};

std::unique_ptr<Controller::PoolRuntime> Controller::build_pool(const Pool &pool) const
{
    auto rt = std::make_unique<PoolRuntime>();
    rt->table = std::make_unique<PoolTable>(config_.secret, pool.table_bits);
    std::vector<Member> members;
    for (const Backend &b : pool.backends)
        members.push_back(Member{b.id, effective_weight(b), operational(pool.name, b), true});
    {
        // Before the workers start: every CPU; while they run: only CPUs no worker polls on.
        SpreadThreads spread(dataplane_.spare_cpus());
        rt->table->build(std::move(members), spread.threads());
    }
    for (auto &buffer : rt->buffer)
        buffer = std::make_unique<dp::EntryArray>(rt->table->entries());
    if (!rt->buffer[0]->in_hugepages() || !rt->buffer[1]->in_hugepages())
        log_("pool " + pool.name + ": not enough hugepage memory for its bucket tables (2 x " +
             std::to_string(rt->table->buckets() * sizeof(us_bucket_entry) >> 10) +
             " KiB); using ordinary memory, which is slower with many flows (reserve more hugepages)");
    return rt;
}

Status Controller::start(Config config)
{
    started_ns_ = monotonic_ns();
    config_ = std::move(config);
    for (const Pool &pool : config_.pools)
        pools_[pool.name] = build_pool(pool);
    health_.set_targets(probe_targets(config_));
    return publish("start", started_ns_, true);
}

Status Controller::publish(const std::string &cause, uint64_t cause_ns, bool vips_changed)
{
    if (vips_changed || !vip_table_) {
        auto vips = dp::build_vip_table(config_, stat_index_);
        if (!vips)
            return Error{vips.error()};
        vip_table_ = *vips;
    }
    std::vector<const PoolTable *> tables;
    std::vector<const us_bucket_entry *> entries;
    size_t changed = 0;
    for (const Pool &pool : config_.pools) {
        PoolRuntime &rt = *pools_.at(pool.name);
        int standby = 1 - rt.active;
        // Copying a bucket twice is harmless and cheaper than merging the two lists.
        const us_bucket_entry *now = rt.table->entries().data();
        for (uint32_t b : rt.lag)
            (*rt.buffer[standby])[b] = now[b];
        for (uint32_t b : rt.pending)
            (*rt.buffer[standby])[b] = now[b];
        changed += rt.pending.size();
        tables.push_back(rt.table.get());
        entries.push_back(rt.buffer[standby]->data());
    }

    dp::SnapshotOptions options;
    options.port_mac = dataplane_.port_mac(0);
    options.stat_index = &stat_index_;
    options.resolve_mac = [this](const Address &a) -> std::optional<rte_ether_addr> {
        auto it = neighbors_.find(a);
        if (it == neighbors_.end())
            return std::nullopt;
        rte_ether_addr mac;
        std::memcpy(mac.addr_bytes, it->second.data(), 6);
        return mac;
    };
    auto snapshot = dp::build_snapshot(config_, vip_table_, tables, entries, options, generation_ + 1);
    if (!snapshot)
        return Error{snapshot.error()};
    dataplane_.publish(std::move(*snapshot));  // returns after the grace period: the old buffers are free
    uint64_t live_ns = dataplane_.last_swap_ns();
    generation_++;

    for (const Pool &pool : config_.pools) {
        PoolRuntime &rt = *pools_.at(pool.name);
        rt.active = 1 - rt.active;
        rt.lag = std::move(rt.pending);
        rt.pending.clear();
    }
    last_update_ = UpdateRecord{generation_, cause, cause_ns, live_ns, dataplane_.last_swap_tsc(), changed};
    return Ok{};
}

double Controller::last_update_first_packet_seconds() const
{
    uint64_t tsc = dataplane_.first_packet_tsc(last_update_.generation);
    if (tsc == 0 || last_update_.publish_tsc == 0)
        return -1;
    double since_publish = double(int64_t(tsc - last_update_.publish_tsc)) / double(rte_get_tsc_hz());
    return double(last_update_.published_ns - last_update_.verdict_ns) / 1e9 + since_publish;
}

void Controller::on_health_event(const HealthEvent &e)
{
    health_up_[{e.pool, e.backend_id}] = e.up;
    auto pit = pools_.find(e.pool);
    const Pool *pool = config_.find_pool(e.pool);
    if (pit == pools_.end() || !pool)
        return;
    const Backend *backend = nullptr;
    for (const Backend &b : pool->backends)
        if (b.id == e.backend_id)
            backend = &b;
    uint32_t slot = slot_of(*pit->second, e.backend_id);
    if (!backend || slot == UINT32_MAX)
        return;
    PoolRuntime &rt = *pit->second;
    const auto &changed = rt.table->set_operational(slot, operational(e.pool, *backend));
    rt.pending.insert(rt.pending.end(), changed.begin(), changed.end());
    std::string cause = "health: " + e.pool + "/" + std::to_string(e.backend_id) + (e.up ? " up (" : " down (") +
                        e.reason + ")";
    if (auto st = publish(cause, e.verdict_ns, false); !st)
        log_("publish failed after " + cause + ": " + st.error());
    else
        log_(cause + ": " + std::to_string(last_update_.buckets_changed) + " buckets changed, generation " +
             std::to_string(generation_));
}

static bool same_vips(const Config &a, const Config &b)
{
    if (a.vips.size() != b.vips.size() || a.pools.size() != b.pools.size())
        return false;
    for (size_t i = 0; i < a.pools.size(); i++)
        if (a.pools[i].name != b.pools[i].name)
            return false;  // VIPs refer to pools by index in the snapshot
    for (size_t i = 0; i < a.vips.size(); i++) {
        const Vip &x = a.vips[i], &y = b.vips[i];
        if (x.address != y.address || x.port != y.port || x.protocol != y.protocol || x.pool != y.pool ||
            x.method != y.method || x.affinity != y.affinity || x.conn_table != y.conn_table ||
            x.conn_idle_timeout_s != y.conn_idle_timeout_s)
            return false;
    }
    return true;
}

Status Controller::apply_config(Config next, const std::string &cause, uint64_t cause_ns)
{
    if (auto st = validate_config(next); !st)
        return st;
    if (next.secret != config_.secret)
        return Error{"cluster.secret cannot change at run time: every node must restart with the new secret together"};

    std::vector<std::unique_ptr<PoolRuntime>> retired;
    std::map<std::string, std::unique_ptr<PoolRuntime>> pools;
    for (const Pool &np : next.pools) {
        auto it = pools_.find(np.name);
        const Pool *op = config_.find_pool(np.name);
        if (it == pools_.end() || !op || it->second->table->table_bits() != np.table_bits) {
            if (op && op->table_bits != np.table_bits)
                log_("pool " + np.name + ": table_bits changed from " + std::to_string(op->table_bits) + " to " +
                     std::to_string(np.table_bits) + ": every session of the pool remaps");
            if (it != pools_.end())
                retired.push_back(std::move(it->second));
            pools[np.name] = build_pool(np);  // the secret is the same, health is per (pool, id)
            continue;
        }
        PoolRuntime &rt = *it->second;
        auto note = [&rt](const std::vector<uint32_t> &changed) {
            rt.pending.insert(rt.pending.end(), changed.begin(), changed.end());
        };
        std::map<uint32_t, const Backend *> before, after;
        for (const Backend &b : op->backends)
            before[b.id] = &b;
        for (const Backend &b : np.backends)
            after[b.id] = &b;
        for (const auto &[id, b] : before) {
            if (after.count(id))
                continue;
            note(rt.table->remove(slot_of(rt, id)));
            stat_index_.forget_backend(np.name, id);
            health_up_.erase({np.name, id});
        }
        for (const auto &[id, b] : after) {
            bool op_now = b->state != AdminState::disabled && backend_up(np.name, id);
            if (!before.count(id)) {
                rt.table->add(Member{id, effective_weight(*b), op_now, true});
                note(rt.table->last_changes());
                continue;
            }
            uint32_t slot = slot_of(rt, id);
            if (rt.table->members()[slot].weight != effective_weight(*b))
                note(rt.table->set_weight(slot, effective_weight(*b)));
            if (rt.table->members()[slot].operational != op_now)
                note(rt.table->set_operational(slot, op_now));
        }
        pools[np.name] = std::move(it->second);
    }
    for (auto &[name, rt] : pools_)
        if (rt)
            retired.push_back(std::move(rt));  // pools that are gone; freed after the grace period

    bool vips_changed = !same_vips(config_, next);
    config_ = std::move(next);
    pools_ = std::move(pools);
    health_.set_targets(probe_targets(config_));
    auto st = publish(cause, cause_ns, vips_changed);
    if (st && on_config_applied)
        on_config_applied(config_);
    if (st)
        log_(cause + ": applied, " + std::to_string(last_update_.buckets_changed) + " buckets changed, generation " +
             std::to_string(generation_));
    return st;
}

void Controller::refresh_neighbors()
{
    auto all = read_neighbors();
    // Sticky: an entry the kernel forgets (garbage collection, a probe in flight) keeps its last MAC;
    // only a new or different MAC republishes.
    bool changed = false;
    for (const Pool &pool : config_.pools) {
        for (const Backend &b : pool.backends) {
            auto it = all.find(b.address);
            if (it != all.end()) {
                auto known = neighbors_.find(b.address);
                if (known == neighbors_.end() || known->second != it->second) {
                    neighbors_[b.address] = it->second;
                    changed = true;
                }
            } else if (!b.mac && !config_.dataplane.gateway_mac) {
                solicit_neighbor(b.address);
            }
        }
    }
    if (!changed)
        return;
    if (auto st = publish("neighbours", monotonic_ns(), false); !st)
        log_("publish after a neighbour change failed: " + st.error());
}

Json Controller::status_json() const
{
    Json j;
    j["version"] = "0.1.0";
    j["config"] = config_.path;
    j["uptime_s"] = double(monotonic_ns() - started_ns_) / 1e9;
    j["generation"] = generation_;
    j["workers"] = dataplane_.workers();
    j["vips"] = config_.vips.size();
    j["pools"] = Json::array();
    for (const Pool &pool : config_.pools) {
        size_t up = 0;
        for (const Backend &b : pool.backends)
            up += operational(pool.name, b);
        j["pools"].push_back({{"name", pool.name}, {"table_bits", pool.table_bits},
                              {"backends", pool.backends.size()}, {"operational", up}});
    }
    double first = last_update_first_packet_seconds();
    j["last_update"] = {{"generation", last_update_.generation},
                        {"cause", last_update_.cause},
                        {"buckets_changed", last_update_.buckets_changed},
                        {"publish_seconds", double(last_update_.published_ns - last_update_.verdict_ns) / 1e9},
                        {"first_packet_seconds", first < 0 ? Json(nullptr) : Json(first)}};
    return j;
}

Json Controller::vips_json() const
{
    Json out = Json::array();
    for (const Vip &v : config_.vips) {
        out.push_back({{"address", v.address.str()}, {"port", v.port}, {"protocol", to_string(v.protocol)},
                       {"pool", v.pool}, {"method", to_string(v.method)}, {"affinity", to_string(v.affinity)},
                       {"conn_table", v.conn_table}, {"conn_idle_timeout_s", v.conn_idle_timeout_s}});
    }
    return out;
}

Json Controller::backends_json(const std::string &filter) const
{
    Json out = Json::array();
    for (const Pool &pool : config_.pools) {
        if (!filter.empty() && pool.name != filter)
            continue;
        const PoolRuntime &rt = *pools_.at(pool.name);
        // Counted per slot in one pass: this runs for every metrics scrape, over up to 2^24 buckets.
        std::vector<uint64_t> per_slot(rt.table->members().size() + 1);
        for (const us_bucket_entry &e : rt.table->entries())
            per_slot[e.serving == US_NO_SERVER ? per_slot.size() - 1 : e.serving]++;
        std::map<uint32_t, uint64_t> serving;
        for (size_t slot = 0; slot < rt.table->members().size(); slot++)
            if (rt.table->members()[slot].present)
                serving[rt.table->members()[slot].id] = per_slot[slot];
        for (const Backend &b : pool.backends) {
            out.push_back({{"pool", pool.name}, {"id", b.id}, {"address", b.address.str()}, {"weight", b.weight},
                           {"state", to_string(b.state)}, {"health", backend_up(pool.name, b.id) ? "up" : "down"},
                           {"operational", operational(pool.name, b)},
                           {"share", double(serving[b.id]) / double(rt.table->buckets())}});
        }
    }
    return out;
}

Json Controller::health_json(const std::string &filter) const
{
    Json out = Json::array();
    uint64_t now = monotonic_ns();
    for (const Pool &pool : config_.pools) {
        if (!filter.empty() && pool.name != filter)
            continue;
        for (const Backend &b : pool.backends) {
            Json j{{"pool", pool.name}, {"id", b.id}, {"address", b.address.str()},
                   {"kind", to_string(b.health.kind)}, {"up", backend_up(pool.name, b.id)}};
            if (auto s = health_.status(pool.name, b.id)) {
                j["probed"] = s->probed;
                j["consecutive_ok"] = s->consecutive_ok;
                j["consecutive_fail"] = s->consecutive_fail;
                j["probes"] = s->probes;
                j["failures"] = s->failures;
                j["last_result"] = s->last_result;
                j["last_rtt_ms"] = s->last_rtt_ms;
                j["since_change_s"] = s->last_change_ns ? Json(double(now - s->last_change_ns) / 1e9) : Json(nullptr);
            }
            out.push_back(j);
        }
    }
    return out;
}

Json Controller::stats_json() const
{
    const dp::Snapshot *s = dataplane_.current();
    Json j = understudy::stats_json(config_, *s, dataplane_.stats(), dataplane_.port_stats());
    j["conn_table_entries"] = dataplane_.conn_occupancy();
    j["generation"] = generation_;
    j["time_s"] = double(monotonic_ns()) / 1e9;
    if (extend_stats)
        extend_stats(j);
    return j;
}

}  // namespace understudy
