// Statistics as people and scripts read them: per-lcore counters summed, with VIP and backend names.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/config.h"
#include "dataplane/snapshot.h"
#include "dataplane/stats.h"

namespace understudy {

// ports: each port's own counters (Dataplane::port_stats()), listed under "ports".
nlohmann::ordered_json stats_json(const Config &config, const dp::Snapshot &snapshot, const dp::StatsTotal &stats,
                                  const std::vector<dp::PortStats> &ports = {});
std::string stats_text(const Config &config, const dp::Snapshot &snapshot, const dp::StatsTotal &stats,
                       const std::vector<dp::PortStats> &ports = {});

}  // namespace understudy
