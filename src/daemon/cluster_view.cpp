// One host's view of the cluster: see cluster_view.h.
#include "cluster_view.h"

#include <algorithm>

namespace understudy {

uint32_t effective_weight(const Backend &b) { return b.state == AdminState::drain ? 0 : b.weight; }

ClusterView::ClusterView(std::vector<Address> own) : own_(std::move(own)) {}

ClusterView::~ClusterView() = default;

bool ClusterView::health_up(const std::string &pool, uint32_t id) const
{
    auto it = health_up_.find({pool, id});
    return it == health_up_.end() || it->second;
}

bool ClusterView::operational(const std::string &pool, const Backend &b) const
{
    return b.state != AdminState::disabled && health_up(pool, b.id);
}

std::set<std::pair<std::string, uint32_t>> ClusterView::down_pairs() const
{
    std::set<std::pair<std::string, uint32_t>> out;
    for (const auto &[key, up] : health_up_)
        if (!up)
            out.insert(key);
    return out;
}

int ClusterView::pool_index(const std::string &name) const
{
    auto it = pool_index_.find(name);
    return it == pool_index_.end() ? -1 : int(it->second);
}

uint16_t ClusterView::find_my_slot(const Pool &pool, const PoolTable &table) const
{
    for (const Backend &b : pool.backends) {
        if (std::find(own_.begin(), own_.end(), b.address) == own_.end())
            continue;
        for (size_t slot = 0; slot < table.members().size(); slot++)
            if (table.members()[slot].present && table.members()[slot].id == b.id)
                return uint16_t(slot);
    }
    return US_NO_SERVER;
}

void ClusterView::start(Config config, unsigned threads)
{
    config_ = std::move(config);
    pools_.clear();
    pool_index_.clear();
    for (const Pool &pool : config_.pools) {
        PoolState st;
        st.table = std::make_shared<PoolTable>(config_.secret, pool.table_bits);
        std::vector<Member> members;
        for (const Backend &b : pool.backends)
            members.push_back(Member{b.id, effective_weight(b), operational(pool.name, b), true});
        st.table->build(std::move(members), threads);
        st.my_slot = find_my_slot(pool, *st.table);
        pool_index_[pool.name] = pools_.size();
        pools_.push_back(std::move(st));
    }
    generation_ = 1;
}

Result<std::unique_ptr<ClusterView::Transition>> ClusterView::prepare(Config next)
{
    if (next.secret != config_.secret)
        return Error{"cluster.secret cannot change at run time: restart every node with the new secret together"};
    auto t = std::make_unique<Transition>();
    for (const Pool &np : next.pools) {
        Transition::Plan plan;
        plan.name = np.name;
        int at = pool_index(np.name);
        const Pool *op = config_.find_pool(np.name);
        if (at < 0 || !op || pools_[size_t(at)].table->table_bits() != np.table_bits) {
            // Built whole: the buckets of another size are not the same sessions, so no history carries.
            for (const Backend &b : np.backends)
                plan.members.push_back(Member{b.id, effective_weight(b), operational(np.name, b), true});
            plan.table = std::make_shared<PoolTable>(next.secret, np.table_bits);
            t->plans.push_back(std::move(plan));
            continue;
        }
        const PoolTable &live = *pools_[size_t(at)].table;
        std::map<uint32_t, const Backend *> before, after;
        for (const Backend &b : op->backends)
            before[b.id] = &b;
        for (const Backend &b : np.backends)
            after[b.id] = &b;
        std::map<uint32_t, const Member *> member_of;
        for (const Member &m : live.members())
            if (m.present)
                member_of[m.id] = &m;
        for (const auto &[id, b] : before)
            if (!after.count(id))
                plan.remove.push_back(id);
        for (const auto &[id, b] : after) {
            Member m{id, effective_weight(*b), b->state != AdminState::disabled && health_up(np.name, id), true};
            auto it = member_of.find(id);
            if (!before.count(id) || it == member_of.end()) {
                plan.add.push_back(m);
                continue;
            }
            if (it->second->weight != m.weight)
                plan.weights.push_back({id, m.weight});
            if (it->second->operational != m.operational)
                plan.operational.push_back({id, m.operational});
        }
        plan.unchanged = plan.remove.empty() && plan.add.empty() && plan.weights.empty() && plan.operational.empty();
        plan.from = pools_[size_t(at)].table;
        if (plan.unchanged)
            plan.table = pools_[size_t(at)].table;
        t->plans.push_back(std::move(plan));
    }
    // The pools whose live table build() copies: their verdicts wait until commit or abandon.
    for (const auto &plan : t->plans)
        if (plan.from && !plan.unchanged)
            frozen_.insert(plan.name);
    t->next = std::move(next);
    return t;
}

static uint32_t slot_of(const PoolTable &t, uint32_t id)
{
    for (uint32_t s = 0; s < t.members().size(); s++)
        if (t.members()[s].present && t.members()[s].id == id)
            return s;
    return UINT32_MAX;
}

void ClusterView::build(Transition &t, unsigned threads)
{
    for (size_t i = 0; i < t.plans.size(); i++) {
        Transition::Plan &plan = t.plans[i];
        if (plan.unchanged)
            continue;
        if (!plan.from) {
            plan.table->build(std::move(plan.members), threads);
            continue;
        }
        plan.table = std::make_shared<PoolTable>(*plan.from);  // copy on write: the live one stays as it is
        PoolTable &table = *plan.table;
        auto note = [&plan](const std::vector<uint32_t> &changed) {
            plan.changed.insert(plan.changed.end(), changed.begin(), changed.end());
        };
        for (uint32_t id : plan.remove)
            note(table.remove(slot_of(table, id)));
        for (const Member &m : plan.add) {
            table.add(m);
            note(table.last_changes());
        }
        for (const auto &[id, weight] : plan.weights)
            note(table.set_weight(slot_of(table, id), weight));
        for (const auto &[id, up] : plan.operational)
            note(table.set_operational(slot_of(table, id), up));
        std::sort(plan.changed.begin(), plan.changed.end());
        plan.changed.erase(std::unique(plan.changed.begin(), plan.changed.end()), plan.changed.end());
    }
}

bool ClusterView::light(const Transition &t)
{
    // A copy and a patch cost about a hash per bucket; a whole build a few. 2^16 buckets are a few ms.
    uint64_t work = 0;
    for (const auto &plan : t.plans)
        if (!plan.unchanged)
            work += uint64_t(1) << (plan.from ? plan.from->table_bits() : plan.table->table_bits());
    return work <= (uint64_t(1) << 16);
}

// The operational state of every member as the health now says: verdicts that arrived after prepare().
std::vector<PoolChange> ClusterView::reconcile(std::vector<PoolState> &pools, const Config &config) const
{
    std::vector<PoolChange> out;
    for (size_t i = 0; i < config.pools.size(); i++) {
        const Pool &pool = config.pools[i];
        PoolTable &table = *pools[i].table;
        PoolChange change{i, false, {}};
        for (const Backend &b : pool.backends) {
            uint32_t slot = slot_of(table, b.id);
            if (slot == UINT32_MAX)
                continue;
            bool up = operational(pool.name, b);
            if (table.members()[slot].operational != up) {
                const auto &changed = table.set_operational(slot, up);
                change.buckets.insert(change.buckets.end(), changed.begin(), changed.end());
            }
        }
        if (!change.buckets.empty())
            out.push_back(std::move(change));
    }
    return out;
}

std::vector<PoolChange> ClusterView::commit(Transition &t)
{
    std::vector<PoolState> next;
    std::vector<PoolChange> changes;
    for (size_t i = 0; i < t.plans.size(); i++) {
        Transition::Plan &plan = t.plans[i];
        PoolState st;
        st.table = plan.table;
        st.my_slot = find_my_slot(t.next.pools[i], *st.table);
        next.push_back(std::move(st));
        if (plan.unchanged)
            continue;
        changes.push_back(PoolChange{i, !plan.from, std::move(plan.changed)});
    }
    // Verdicts that came while the tables were built (for pools not frozen they changed the live tables,
    // which the new ones were made from before that).
    for (PoolChange &late : reconcile(next, t.next)) {
        auto it = std::find_if(changes.begin(), changes.end(), [&](const PoolChange &c) { return c.pool == late.pool; });
        if (it == changes.end())
            changes.push_back(std::move(late));
        else
            it->buckets.insert(it->buckets.end(), late.buckets.begin(), late.buckets.end());
    }
    t.previous = std::move(config_);
    t.previous_pools = std::move(pools_);
    config_ = std::move(t.next);
    pools_ = std::move(next);
    pool_index_.clear();
    for (size_t i = 0; i < config_.pools.size(); i++)
        pool_index_[config_.pools[i].name] = i;
    // Health of backends that left goes with them.
    for (auto it = health_up_.begin(); it != health_up_.end();) {
        const Pool *pool = config_.find_pool(it->first.first);
        bool kept = pool && std::any_of(pool->backends.begin(), pool->backends.end(),
                                        [&](const Backend &b) { return b.id == it->first.second; });
        it = kept ? std::next(it) : health_up_.erase(it);
    }
    t.committed = true;
    generation_++;
    frozen_.clear();
    return changes;
}

void ClusterView::rollback(Transition &t)
{
    if (!t.committed)
        return;
    t.next = std::move(config_);
    config_ = std::move(t.previous);
    pools_ = std::move(t.previous_pools);
    pool_index_.clear();
    for (size_t i = 0; i < config_.pools.size(); i++)
        pool_index_[config_.pools[i].name] = i;
    // Verdicts taken meanwhile live in health_up_; the restored tables get them now.
    reconcile(pools_, config_);
    t.committed = false;
    generation_--;
}

void ClusterView::abandon(Transition &t)
{
    if (!t.committed)
        frozen_.clear();
}

std::vector<PoolChange> ClusterView::apply_health(const std::vector<HealthEvent> &events)
{
    std::map<size_t, PoolChange> by_pool;
    for (const HealthEvent &e : events) {
        if (frozen_.count(e.pool)) {
            waiting_.push_back(e);
            continue;
        }
        health_up_[{e.pool, e.backend_id}] = e.up;
        int at = pool_index(e.pool);
        if (at < 0)
            continue;
        const Pool &pool = config_.pools[size_t(at)];
        auto b = std::find_if(pool.backends.begin(), pool.backends.end(),
                              [&](const Backend &x) { return x.id == e.backend_id; });
        PoolTable &table = *pools_[size_t(at)].table;
        uint32_t slot = slot_of(table, e.backend_id);
        if (b == pool.backends.end() || slot == UINT32_MAX)
            continue;
        bool up = operational(pool.name, *b);
        if (table.members()[slot].operational == up)
            continue;
        const auto &changed = table.set_operational(slot, up);
        PoolChange &c = by_pool[size_t(at)];
        c.pool = size_t(at);
        c.buckets.insert(c.buckets.end(), changed.begin(), changed.end());
    }
    std::vector<PoolChange> out;
    for (auto &[i, c] : by_pool)
        out.push_back(std::move(c));
    return out;
}

std::vector<PoolChange> ClusterView::apply_waiting_health()
{
    std::vector<HealthEvent> events;
    events.swap(waiting_);
    return apply_health(events);
}

std::vector<size_t> ClusterView::refresh_neighbors(const std::map<Address, MacAddress> &all, bool solicit)
{
    std::vector<size_t> out;
    for (size_t i = 0; i < config_.pools.size(); i++) {
        bool changed = false;
        for (const Backend &b : config_.pools[i].backends) {
            auto it = all.find(b.address);
            if (it == all.end()) {
                if (solicit && !b.mac)
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
            out.push_back(i);
    }
    return out;
}

Json ClusterView::pools_json() const
{
    Json out = Json::array();
    for (size_t i = 0; i < config_.pools.size(); i++) {
        const Pool &pool = config_.pools[i];
        size_t up = 0;
        for (const Backend &b : pool.backends)
            up += operational(pool.name, b);
        Json j{{"name", pool.name}, {"table_bits", pool.table_bits}, {"backends", pool.backends.size()},
               {"operational", up}};
        if (!own_.empty()) {
            uint16_t slot = pools_[i].my_slot;
            j["my_id"] = slot == US_NO_SERVER ? Json(nullptr) : Json(pools_[i].table->members()[slot].id);
        }
        out.push_back(j);
    }
    return out;
}

Json ClusterView::vips_json() const
{
    Json out = Json::array();
    for (const Vip &v : config_.vips)
        out.push_back({{"address", v.address.str()}, {"port", v.port}, {"protocol", to_string(v.protocol)},
                       {"pool", v.pool}, {"method", to_string(v.method)}, {"affinity", to_string(v.affinity)},
                       {"conn_table", v.conn_table}, {"conn_idle_timeout_s", v.conn_idle_timeout_s}});
    return out;
}

Json ClusterView::backends_json(const std::string &filter) const
{
    Json out = Json::array();
    for (size_t i = 0; i < config_.pools.size(); i++) {
        const Pool &pool = config_.pools[i];
        if (!filter.empty() && pool.name != filter)
            continue;
        const PoolTable &t = *pools_[i].table;
        for (const Backend &b : pool.backends) {
            uint32_t slot = slot_of(t, b.id);
            uint64_t served = slot == UINT32_MAX ? 0 : t.buckets_served(slot);
            out.push_back({{"pool", pool.name}, {"id", b.id}, {"address", b.address.str()}, {"weight", b.weight},
                           {"state", to_string(b.state)}, {"health", health_up(pool.name, b.id) ? "up" : "down"},
                           {"operational", operational(pool.name, b)},
                           {"share", double(served) / double(t.buckets())}});
        }
    }
    return out;
}

Json ClusterView::health_json(const std::string &filter, const HealthChecker &health) const
{
    Json out = Json::array();
    uint64_t now = monotonic_ns();
    for (const Pool &pool : config_.pools) {
        if (!filter.empty() && pool.name != filter)
            continue;
        for (const Backend &b : pool.backends) {
            Json j{{"pool", pool.name}, {"id", b.id}, {"address", b.address.str()},
                   {"kind", to_string(b.health.kind)}, {"up", health_up(pool.name, b.id)}};
            if (auto s = health.status(pool.name, b.id)) {
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

}  // namespace understudy
