// The control thread's state: the running config, one table per pool, health, and publication of
// snapshots to the workers. Every change (probe verdict, API request, reload) goes through here, is
// validated like the config file, rebuilds only what it must and is published by one pointer swap.
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
#include "dataplane/dataplane.h"
#include "dataplane/snapshot.h"
#include "daemon/health.h"
#include "daemon/neighbors.h"

namespace understudy {

using Json = nlohmann::ordered_json;
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
    Controller(dp::Dataplane &dataplane, Logger log);

    // Called after every config change is applied (the AF_XDP steering map follows the VIPs).
    std::function<void(const Config &)> on_config_applied;
    // Extra fields for stats_json() (steering counters).
    std::function<void(Json &)> extend_stats;

    // First tables and snapshot; health targets; does not start the workers.
    Status start(Config config);

    // Replace the running config by next: validated whole first; on any error nothing changes.
    Status apply_config(Config next, const std::string &cause, uint64_t cause_ns);
    void on_health_event(const HealthEvent &event);
    // Re-reads the kernel's neighbour table; republishes when a next hop changed.
    void refresh_neighbors();

    const Config &config() const { return config_; }
    HealthChecker &health() { return health_; }
    bool backend_up(const std::string &pool, uint32_t id) const;  // health only
    std::set<uint32_t> down_ids(const std::string &pool) const;   // health-down backend IDs of a pool
    std::set<std::pair<std::string, uint32_t>> down_pairs() const;

    // Views for the API and metrics.
    Json status_json() const;
    Json vips_json() const;
    Json backends_json(const std::string &pool_filter) const;
    Json health_json(const std::string &pool_filter) const;
    Json stats_json() const;
    const UpdateRecord &last_update() const { return last_update_; }
    // Seconds from the cause of the last update to the first packet a worker handled with it (-1: none yet).
    double last_update_first_packet_seconds() const;
    uint64_t generation() const { return generation_; }
    uint64_t started_ns() const { return started_ns_; }

  private:
    struct PoolRuntime {
        std::unique_ptr<PoolTable> table;
        std::unique_ptr<dp::EntryArray> buffer[2];
        int active = 0;                      // the buffer the current snapshot points at
        std::vector<uint32_t> lag;           // buckets where the standby buffer is behind the table
        std::vector<uint32_t> pending;       // changed since the last publication
    };

    bool operational(const std::string &pool, const Backend &b) const;
    std::unique_ptr<PoolRuntime> build_pool(const Pool &pool) const;
    Status publish(const std::string &cause, uint64_t cause_ns, bool vips_changed);
    uint32_t slot_of(const PoolRuntime &rt, uint32_t id) const;

    dp::Dataplane &dataplane_;
    Logger log_;
    Config config_;
    std::map<std::string, std::unique_ptr<PoolRuntime>> pools_;
    std::map<std::pair<std::string, uint32_t>, bool> health_up_;
    HealthChecker health_;
    dp::StatIndex stat_index_;
    std::shared_ptr<const dp::VipTable> vip_table_;
    std::map<Address, MacAddress> neighbors_;
    uint64_t generation_ = 0;
    uint64_t started_ns_ = 0;
    UpdateRecord last_update_;
};

}  // namespace understudy
