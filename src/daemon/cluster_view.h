// One host's view of the cluster, the same code in the balancer and the agent: the running config, the
// health verdicts, one table per pool, and the JSON views of them. What each daemon does with a change
// (publish a snapshot to the workers, write BPF maps) is its own business; what the change is, is decided here.
//
// A config change is made in three steps, so that nothing live changes until the whole next state exists:
//   prepare()  on the control thread: validated; decides which pools are patched and which built whole;
//   build()    anywhere (a thread of its own when heavy): copies and patches or builds the next tables;
//   commit()   on the control thread: swaps config and tables in (cheap, cannot fail); rollback() swaps back,
//              for a daemon whose own publication failed.
// Probe verdicts change the live tables in place, all verdicts that arrived together at once. While a pool's
// next table is being built from its live one, verdicts for that pool wait and then go to both.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/address.h"
#include "core/config.h"
#include "core/result.h"
#include "core/table.h"
#include "health.h"
#include "neighbors.h"

namespace understudy {

using Json = nlohmann::ordered_json;

// The weight a backend has in its pool's table: 0 while draining.
uint32_t effective_weight(const Backend &b);

// What changed in one pool (index in the config), for a daemon to publish.
struct PoolChange {
    size_t pool = 0;
    bool replaced = false;          // built whole: a daemon copies it whole, then applies buckets
    std::vector<uint32_t> buckets;  // the buckets whose entry changed (after the build, when replaced)
};

class ClusterView {
  public:
    // own: this host's addresses (the agent's): a pool member with one of them is "this host".
    explicit ClusterView(std::vector<Address> own = {});
    ~ClusterView();

    // The first state: every pool built whole. threads = 0 uses every CPU the caller may run on.
    void start(Config config, unsigned threads = 0);

    // ---- config changes ----
    struct Transition;
    // Validation happened before (validate_config and the daemon's own checks): this refuses only what the
    // view cannot do (the secret changing).
    Result<std::unique_ptr<Transition>> prepare(Config next);
    // Heavy: table copies, patches and builds. Touches only the transition and reads nothing live but the
    // tables it copies, which prepare() froze (probe verdicts wait for them).
    static void build(Transition &t, unsigned threads = 0);
    // True when build() is cheap enough for the control thread (a few milliseconds).
    static bool light(const Transition &t);
    // Swaps the built state in; the previous one stays in t until t is destroyed. Returns what changed.
    std::vector<PoolChange> commit(Transition &t);
    // After commit(): puts the previous state back (the daemon could not publish the new one).
    void rollback(Transition &t);
    // Called when a prepared transition is dropped without commit: releases the frozen pools.
    void abandon(Transition &t);

    // ---- probe verdicts ----
    // Applies every verdict at once and returns what changed. Verdicts for a frozen pool wait.
    std::vector<PoolChange> apply_health(const std::vector<HealthEvent> &events);
    // Verdicts that waited for a frozen pool, applied now that it is released (call after commit/abandon).
    std::vector<PoolChange> apply_waiting_health();

    // ---- neighbours ----
    // Records the MACs of backends found in `all`; returns the pools with a backend whose MAC is new or
    // different (kept when the kernel forgets one). Solicits backends without a MAC when solicit is set.
    std::vector<size_t> refresh_neighbors(const std::map<Address, MacAddress> &all, bool solicit);
    const std::map<Address, MacAddress> &neighbors() const { return neighbors_; }

    // ---- state ----
    const Config &config() const { return config_; }
    size_t pools() const { return pools_.size(); }
    const PoolTable &table(size_t pool) const { return *pools_[pool].table; }
    // This host's slot in the pool's table (US_NO_SERVER: not a member).
    uint16_t my_slot(size_t pool) const { return pools_[pool].my_slot; }
    int pool_index(const std::string &name) const;
    const std::vector<Address> &own() const { return own_; }

    bool health_up(const std::string &pool, uint32_t id) const;  // health only: true until a probe says down
    bool operational(const std::string &pool, const Backend &b) const;
    std::set<std::pair<std::string, uint32_t>> down_pairs() const;
    uint64_t generation() const { return generation_; }  // config changes committed (1 after start)

    // ---- views for the API and metrics ----
    Json pools_json() const;
    Json vips_json() const;
    Json backends_json(const std::string &pool_filter) const;
    Json health_json(const std::string &pool_filter, const HealthChecker &health) const;

  private:
    struct PoolState {
        std::shared_ptr<PoolTable> table;
        uint16_t my_slot = US_NO_SERVER;
    };
    uint16_t find_my_slot(const Pool &pool, const PoolTable &table) const;
    std::vector<PoolChange> reconcile(std::vector<PoolState> &pools, const Config &config) const;

    std::vector<Address> own_;
    Config config_;
    std::vector<PoolState> pools_;  // in config order
    std::map<std::string, size_t> pool_index_;
    std::map<std::pair<std::string, uint32_t>, bool> health_up_;
    std::set<std::string> frozen_;            // pools a transition is copying
    std::vector<HealthEvent> waiting_;        // verdicts for frozen pools
    std::map<Address, MacAddress> neighbors_;
    uint64_t generation_ = 0;
};

struct ClusterView::Transition {
    Config next;
    struct Plan {
        std::string name;
        std::shared_ptr<const PoolTable> from;  // the live table it starts from (null: built whole)
        std::vector<Member> members;            // built whole: the members, slot = position
        std::vector<uint32_t> remove;           // patched: IDs that leave
        std::vector<Member> add;                // patched: members that join
        std::vector<std::pair<uint32_t, uint32_t>> weights;  // patched: ID -> new effective weight
        std::vector<std::pair<uint32_t, bool>> operational;  // patched: ID -> new operational state
        bool unchanged = false;                 // same table object as now
        std::shared_ptr<PoolTable> table;       // the result
        std::vector<uint32_t> changed;          // patched: buckets changed
    };
    std::vector<Plan> plans;  // per pool of next
    // The state before commit, kept for rollback() and freed with the transition.
    Config previous;
    std::vector<PoolState> previous_pools;
    bool committed = false;
};

}  // namespace understudy
