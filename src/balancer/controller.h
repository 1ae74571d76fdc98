// The balancer's control state: the cluster view (config, health, tables; shared with the agent) and the
// publication of snapshots to the workers. Every change (probe verdicts, API request, reload) is validated like
// the config file, built aside (off the control thread when heavy), and swapped in whole, or not at all.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/config.h"
#include "core/table.h"
#include "daemon/cluster_view.h"
#include "daemon/control_loop.h"
#include "daemon/event_loop.h"
#include "daemon/health.h"
#include "daemon/off_thread.h"
#include "dataplane/dataplane.h"
#include "dataplane/snapshot.h"

namespace understudy {

using Logger = std::function<void(const std::string &)>;

// The last table publication, for status and metrics.
struct UpdateRecord {
    uint64_t generation = 0;
    std::string cause;            // "health: web/3 down (timeout)", "reload", "api: backend.drain web/2"...
    uint64_t verdict_ns = 0;      // when the cause happened (probe verdict, request received)
    uint64_t published_ns = 0;    // when the new snapshot was live (after the RCU grace period)
    uint64_t publish_tsc = 0;     // TSC at the same moment, to place the workers' first packet
    size_t buckets_changed = 0;
};

class Controller {
  public:
    Controller(dp::Dataplane &dataplane, EventLoop &loop, Logger log);

    // Called after every config change is applied (the AF_XDP steering map follows the VIPs).
    std::function<void(const Config &)> on_config_applied;
    // Extra fields for stats_json() (steering counters).
    std::function<void(Json &)> extend_stats;

    // First tables and snapshot; health targets; does not start the workers.
    Status start(Config config);

    // Replaces the running config by next: validated whole first; built aside; swapped in when all of it is
    // ready. done is called on the control thread once it is live, or with every reason it is not (then
    // nothing changed). One change at a time: another that comes meanwhile is refused.
    void change(Config next, const std::string &cause, uint64_t cause_ns, std::function<void(Status)> done);
    bool changing() const { return builder_.busy(); }

    // Probe verdicts are collected and published together by flush_health() (after each round of events).
    void on_health_event(const HealthEvent &event);
    void flush_health();
    // Re-reads the kernel's neighbour table; republishes when a next hop changed.
    void refresh_neighbors();

    const Config &config() const { return view_.config(); }
    const ClusterView &view() const { return view_; }
    HealthChecker &health() { return health_; }
    ControlPauses &pauses() { return pauses_; }
    const ControlPauses &pauses() const { return pauses_; }
    std::set<std::pair<std::string, uint32_t>> down_pairs() const { return view_.down_pairs(); }

    // Views for the API and metrics.
    Json status_json() const;
    Json vips_json() const { return view_.vips_json(); }
    Json backends_json(const std::string &pool_filter) const { return view_.backends_json(pool_filter); }
    Json health_json(const std::string &pool_filter) const { return view_.health_json(pool_filter, health_); }
    Json stats_json() const;
    const UpdateRecord &last_update() const { return last_update_; }
    // Seconds from the cause of the last update to the first packet a worker handled with it (-1: none yet).
    double last_update_first_packet_seconds() const;
    uint64_t generation() const { return generation_; }
    uint64_t started_ns() const { return started_ns_; }

  private:
    // Each pool keeps two copies of its bucket entries for the workers: see controller.cpp.
    struct Buffers {
        std::unique_ptr<dp::EntryArray> buffer[2];
        int active = 0;                  // the buffer the current snapshot points at
        std::vector<uint32_t> lag;       // buckets where the standby buffer is behind the table
        std::vector<uint32_t> pending;   // changed since the last publication
    };
    std::unique_ptr<Buffers> make_buffers(const std::string &pool, const PoolTable &table) const;
    void publish(const std::string &cause, uint64_t cause_ns);
    void note(const std::vector<PoolChange> &changes);

    dp::Dataplane &dataplane_;
    Logger log_;
    ClusterView view_;
    OffThread builder_;
    std::map<std::string, std::unique_ptr<Buffers>> buffers_;  // by pool name
    HealthChecker health_;
    std::vector<HealthEvent> verdicts_;  // not yet published
    dp::StatIndex stat_index_;
    std::shared_ptr<const dp::VipTable> vip_table_;
    ControlPauses pauses_;
    // Per backend statistics slot, the previous owners' totals: what stats_json() subtracts.
    std::vector<uint64_t> backend_base_packets_, backend_base_bytes_;
    uint64_t generation_ = 0;
    uint64_t started_ns_ = 0;
    UpdateRecord last_update_;
};

}  // namespace understudy
