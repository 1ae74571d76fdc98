// understudyctl plan: what a change of config would move, before it is applied. Compares, bucket by
// bucket and pool by pool, the serving server under the current config (with the given health) and under
// the new one, against the least any scheme would have to move for the same change.
#pragma once

#include <set>
#include <string>
#include <utility>
#include <vector>


#include "config.h"

namespace understudy {

struct PlanBackend {
    std::string pool;
    uint32_t id = 0;
    double share_before = 0;  // fraction of the pool's buckets it serves now
    double share_after = 0;   // ... and after the change
    double moved_away = 0;    // fraction of the pool's buckets it serves now and would not after
    double moved_in = 0;      // fraction of the pool's buckets it would gain
    std::string address;      // from the new config, else the current one
    std::string note;         // "added", "removed", "weight 100 -> 200", "enabled -> drain", "down"...
};

struct PlanPool {
    std::string name;
    uint32_t buckets = 0;
    double moved = 0;  // fraction of this pool's buckets whose serving server changes
    double ideal = 0;  // least fraction any scheme must move (total variation between weight shares)
    std::string note;  // "added", "removed", "table_bits changed: every session remaps"...
    uint32_t table_bits_before = 0;  // 0: the pool is not in that config
    uint32_t table_bits_after = 0;
    uint32_t buckets_after = 0;      // buckets counts the current config's (0 for an added pool)
    uint32_t moved_buckets = 0;
    double unserved_before = 0;      // fraction of buckets with no operational server
    double unserved_after = 0;
};

struct PlanResult {
    double moved = 0;  // over all buckets of all pools
    double ideal = 0;
    std::vector<PlanPool> pools;
    std::vector<PlanBackend> backends;
    uint64_t buckets = 0;             // the totals' denominator: buckets of the current config's pools
    uint64_t moved_buckets = 0;
    std::vector<std::string> notes;   // changes outside the pools' tables: VIPs that change pool, affinity...
};

// down: (pool, backend id) pairs not operational now (the daemon's health; empty offline). The same
// backends are taken as still down after the change.
Result<PlanResult> plan_change(const Config &current, const Config &next,
                               const std::set<std::pair<std::string, uint32_t>> &down);

std::string plan_text(const PlanResult &plan);

}  // namespace understudy
