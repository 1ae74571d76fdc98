// The balancer daemon's implementation of the control API (see api.h and docs/operations.md).
#pragma once

#include <functional>

#include "daemon/api.h"
#include "controller.h"
#include "daemon/off_thread.h"

namespace understudy {

// Reads the config file again and applies it; done is called when it is live or refused.
using Reload = std::function<void(std::function<void(Status)> done)>;

class BalancerApi : public ApiHandler {
  public:
    BalancerApi(Controller &controller, EventLoop &loop, Reload reload);
    // The read-only operations.
    Result<nlohmann::ordered_json> handle(const std::string &op, const nlohmann::json &request) override;
    // Changes, reload and plan: answered when built (see Controller::change).
    bool start(const std::string &op, const nlohmann::json &request, Completion done) override;

  private:
    // The running config with the change a request asks for, and its description.
    std::pair<Config, std::string> edited(const std::string &op, const nlohmann::json &request) const;
    Controller &controller_;
    Reload reload_;
    OffThread planner_;  // a live plan builds the tables of the new config: off the control thread
};

}  // namespace understudy
