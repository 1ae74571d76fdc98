// The JSON forms of the core's results, shared by understudyctl and both daemons' control APIs. The core
// itself knows no JSON.
#pragma once

#include <nlohmann/json.hpp>

#include "core/lookup.h"
#include "core/plan.h"
#include "core/result.h"

namespace understudy {

// Exactly {"session_hash", "bucket", "ordering", "primary", "serving"}: the batch and --json format.
nlohmann::ordered_json to_json(const LookupResult &result);

// The control API's "lookup" operation, shared by the balancer and the agent: {"vip", "src"} for one flow
// (reply: to_json() plus "pool"), or {"lines": [batch lines]} (reply: {"results": [...]}).
Result<nlohmann::ordered_json> lookup_request(const Lookup &lookup, const nlohmann::json &request);

nlohmann::ordered_json to_json(const PlanResult &plan);

}  // namespace understudy
