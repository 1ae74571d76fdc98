// The balancer's control state and table publication: see controller.h.
//
// Each pool keeps two copies of its bucket entries. Workers read the active one through the current
// snapshot; a change is written into the standby copy (only the buckets that changed, plus those the
// standby missed last time), the standby is published, and after the RCU grace period the roles swap.
// A pool whose table is replaced whole (new, or resized) gets two new copies, made off the control thread.
#include "controller.h"

#include <pthread.h>
#include <rte_cycles.h>

#include <algorithm>
#include <cstring>

#include "report.h"

namespace understudy {

Controller::Controller(dp::Dataplane &dataplane, EventLoop &loop, Logger log)
    : dataplane_(dataplane), log_(std::move(log)), builder_(loop),
      health_([this](const HealthEvent &e) { on_health_event(e); }),
      backend_base_packets_(dp::kMaxBackendStats), backend_base_bytes_(dp::kMaxBackendStats)
{
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

std::unique_ptr<Controller::Buffers> Controller::make_buffers(const std::string &pool, const PoolTable &table) const
{
    auto b = std::make_unique<Buffers>();
    for (auto &buffer : b->buffer)
        buffer = std::make_unique<dp::EntryArray>(table.entries());
    if (!b->buffer[0]->in_hugepages() || !b->buffer[1]->in_hugepages())
        log_("pool " + pool + ": not enough hugepage memory for its bucket tables (2 x " +
             std::to_string(table.buckets() * sizeof(us_bucket_entry) >> 10) +
             " KiB); using ordinary memory, which is slower with many flows (reserve more hugepages)");
    return b;
}

Status Controller::start(Config config)
{
    started_ns_ = monotonic_ns();
    auto vips = dp::build_vip_table(config, stat_index_);
    if (!vips)
        return Error{vips.error()};
    vip_table_ = *vips;
    {
        // Before the workers start: every CPU.
        SpreadThreads spread(dataplane_.spare_cpus());
        view_.start(std::move(config), spread.threads());
    }
    for (size_t i = 0; i < view_.pools(); i++)
        buffers_[view_.config().pools[i].name] = make_buffers(view_.config().pools[i].name, view_.table(i));
    health_.set_targets(probe_targets(view_.config()));
    publish("start", started_ns_);
    return Ok{};
}

// Snapshots cannot fail to build: everything that could be wrong with a config (limits, the VIP table) was
// refused before anything changed.
void Controller::publish(const std::string &cause, uint64_t cause_ns)
{
    const Config &config = view_.config();
    std::vector<const PoolTable *> tables;
    std::vector<const us_bucket_entry *> entries;
    size_t changed = 0;
    for (size_t i = 0; i < config.pools.size(); i++) {
        Buffers &b = *buffers_.at(config.pools[i].name);
        int standby = 1 - b.active;
        // Copying a bucket twice is harmless and cheaper than merging the two lists.
        const us_bucket_entry *now = view_.table(i).entries().data();
        for (uint32_t k : b.lag)
            (*b.buffer[standby])[k] = now[k];
        for (uint32_t k : b.pending)
            (*b.buffer[standby])[k] = now[k];
        changed += b.pending.size();
        tables.push_back(&view_.table(i));
        entries.push_back(b.buffer[standby]->data());
    }

    dp::SnapshotOptions options;
    options.port_mac = dataplane_.port_mac(0);
    options.stat_index = &stat_index_;
    const auto &neighbors = view_.neighbors();
    options.resolve_mac = [&neighbors](const Address &a) -> std::optional<rte_ether_addr> {
        auto it = neighbors.find(a);
        if (it == neighbors.end())
            return std::nullopt;
        rte_ether_addr mac;
        std::memcpy(mac.addr_bytes, it->second.data(), 6);
        return mac;
    };
    auto snapshot = dp::build_snapshot(config, vip_table_, tables, entries, options, generation_ + 1);
    // A statistics slot given to a new backend starts from the totals its previous owner left, taken before
    // the snapshot that gives it is live (nothing counts on a free slot).
    if (auto recycled = stat_index_.take_recycled(); !recycled.empty()) {
        dp::StatsTotal now = dataplane_.stats();
        for (uint16_t slot : recycled) {
            backend_base_packets_[slot] = now.backend_packets[slot];
            backend_base_bytes_[slot] = now.backend_bytes[slot];
        }
    }
    dataplane_.publish(std::move(*snapshot));  // returns after the grace period: the old buffers are free
    uint64_t live_ns = dataplane_.last_swap_ns();
    generation_++;

    for (auto &[name, b] : buffers_) {
        b->active = 1 - b->active;
        b->lag = std::move(b->pending);
        b->pending.clear();
    }
    last_update_ = UpdateRecord{generation_, cause, cause_ns, live_ns, dataplane_.last_swap_tsc(), changed};
}

void Controller::note(const std::vector<PoolChange> &changes)
{
    for (const PoolChange &c : changes) {
        Buffers &b = *buffers_.at(view_.config().pools[c.pool].name);
        b.pending.insert(b.pending.end(), c.buckets.begin(), c.buckets.end());
    }
}

double Controller::last_update_first_packet_seconds() const
{
    uint64_t tsc = dataplane_.first_packet_tsc(last_update_.generation);
    if (tsc == 0 || last_update_.publish_tsc == 0)
        return -1;
    double since_publish = double(int64_t(tsc - last_update_.publish_tsc)) / double(rte_get_tsc_hz());
    return double(last_update_.published_ns - last_update_.verdict_ns) / 1e9 + since_publish;
}

void Controller::on_health_event(const HealthEvent &e) { verdicts_.push_back(e); }

void Controller::flush_health()
{
    if (verdicts_.empty())
        return;
    std::vector<HealthEvent> events;
    events.swap(verdicts_);
    auto changes = view_.apply_health(events);
    std::string cause = "health:";
    for (const HealthEvent &e : events)
        cause += " " + e.pool + "/" + std::to_string(e.backend_id) + (e.up ? " up (" : " down (") + e.reason + ")";
    if (changes.empty()) {
        log_(cause + (builder_.busy() ? ": applied when the change being built is live" : ": no bucket changed"));
        return;
    }
    note(changes);
    publish(cause, events.front().verdict_ns);
    log_(cause + ": " + std::to_string(last_update_.buckets_changed) + " buckets changed, generation " +
         std::to_string(generation_));
}

void Controller::change(Config next, const std::string &cause, uint64_t cause_ns, std::function<void(Status)> done)
{
    if (builder_.busy()) {
        done(Error{"another change is being built (started " +
                   std::to_string(double(monotonic_ns() - builder_.started_ns()) / 1e9) +
                   " s ago); nothing was applied: try again when it is live"});
        return;
    }
    if (auto st = validate_config(next); !st)
        return done(st);
    // Everything that can refuse the change comes before anything changes.
    auto vips = dp::build_vip_table(next, stat_index_);
    if (!vips)
        return done(Error{vips.error()});
    for (const Pool &np : next.pools)
        if (const Pool *op = view_.config().find_pool(np.name); op && op->table_bits != np.table_bits)
            log_("pool " + np.name + ": table_bits changes from " + std::to_string(op->table_bits) + " to " +
                 std::to_string(np.table_bits) + ": every session of the pool remaps");
    auto prepared = view_.prepare(std::move(next));
    if (!prepared)
        return done(Error{prepared.error()});

    // The heavy part, on a thread of its own unless it is small: table copies, patches and builds, and the
    // workers' copies of the tables built whole.
    struct Work {
        std::unique_ptr<ClusterView::Transition> t;
        std::map<std::string, std::unique_ptr<Buffers>> buffers;
        std::shared_ptr<const dp::VipTable> vips;
    };
    auto work = std::make_shared<Work>();
    work->t = std::move(*prepared);
    work->vips = *vips;
    cpu_set_t spare = dataplane_.spare_cpus();
    auto build = [this, work, spare]() -> Status {
        {
            SpreadThreads spread(spare);  // only CPUs no worker polls on
            ClusterView::build(*work->t, spread.threads());
        }
        for (const auto &plan : work->t->plans)
            if (!plan.from)
                work->buffers[plan.name] = make_buffers(plan.name, *plan.table);
        return Ok{};
    };
    auto finish = [this, work, cause, cause_ns, done](Status built) {
        if (!built) {
            view_.abandon(*work->t);
            note(view_.apply_waiting_health());
            done(built);
            return;
        }
        const Config before = view_.config();
        auto changes = view_.commit(*work->t);
        for (auto &[name, b] : work->buffers)
            buffers_[name] = std::move(b);  // the replaced ones are freed with work, after the publication
        note(changes);
        for (auto it = buffers_.begin(); it != buffers_.end();)
            if (!view_.config().find_pool(it->first))
                work->buffers[it->first] = std::move(it->second), it = buffers_.erase(it);  // freed after publish
            else
                ++it;
        for (const Pool &op : before.pools)
            for (const Backend &b : op.backends) {
                const Pool *np = view_.config().find_pool(op.name);
                if (!np || std::none_of(np->backends.begin(), np->backends.end(),
                                        [&](const Backend &x) { return x.id == b.id; }))
                    stat_index_.forget_backend(op.name, b.id);
            }
        vip_table_ = work->vips;
        publish(cause, cause_ns);
        health_.set_targets(probe_targets(view_.config()));
        if (on_config_applied)
            on_config_applied(view_.config());
        log_(cause + ": applied, " + std::to_string(last_update_.buckets_changed) + " buckets changed, generation " +
             std::to_string(generation_));
        if (auto late = view_.apply_waiting_health(); !late.empty()) {
            note(late);
            publish("health verdicts that waited for " + cause, monotonic_ns());
        }
        done(Ok{});
    };
    if (ClusterView::light(*work->t)) {
        Status st = Ok{};
        try {
            st = build();
        } catch (const std::exception &e) {
            st = Error{std::string("the change could not be built: ") + e.what()};
        }
        finish(std::move(st));
        return;
    }
    log_(cause + ": building the new tables off the control thread");
    builder_.run(build, finish);
}

void Controller::refresh_neighbors()
{
    auto pools = view_.refresh_neighbors(read_neighbors(), !view_.config().dataplane.gateway_mac);
    if (pools.empty())
        return;
    publish("neighbours", monotonic_ns());
}

Json Controller::status_json() const
{
    Json j;
    j["version"] = "0.1.0";
    j["config"] = view_.config().path;
    j["uptime_s"] = double(monotonic_ns() - started_ns_) / 1e9;
    j["generation"] = generation_;
    j["workers"] = dataplane_.workers();
    j["vips"] = view_.config().vips.size();
    j["pools"] = view_.pools_json();
    double first = last_update_first_packet_seconds();
    j["last_update"] = {{"generation", last_update_.generation},
                        {"cause", last_update_.cause},
                        {"buckets_changed", last_update_.buckets_changed},
                        {"publish_seconds", double(last_update_.published_ns - last_update_.verdict_ns) / 1e9},
                        {"first_packet_seconds", first < 0 ? Json(nullptr) : Json(first)}};
    j["control"] = {{"longest_pause_ms", pauses_.longest_ms},
                    {"pauses_over_10ms", pauses_.over_10ms},
                    {"pauses_over_100ms", pauses_.over_100ms},
                    {"change_in_progress", builder_.busy()}};
    return j;
}

Json Controller::stats_json() const
{
    const dp::Snapshot *s = dataplane_.current();
    dp::StatsTotal total = dataplane_.stats();
    for (size_t slot = 0; slot < dp::kMaxBackendStats; slot++) {
        total.backend_packets[slot] -= backend_base_packets_[slot];
        total.backend_bytes[slot] -= backend_base_bytes_[slot];
    }
    Json j = understudy::stats_json(view_.config(), *s, total, dataplane_.port_stats());
    j["conn_table_entries"] = dataplane_.conn_occupancy();
    j["generation"] = generation_;
    j["time_s"] = double(monotonic_ns()) / 1e9;
    if (extend_stats)
        extend_stats(j);
    return j;
}

}  // namespace understudy
