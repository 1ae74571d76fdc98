// The balancer daemon's implementation of the control API (see api.h and docs/operations.md).
#pragma once

#include <functional>

#include "daemon/api.h"
#include "controller.h"

namespace understudy {

class BalancerApi : public ApiHandler {
  public:
    BalancerApi(Controller &controller, std::function<Status()> reload);
    Result<nlohmann::ordered_json> handle(const std::string &op, const nlohmann::json &request) override;

  private:
    Result<nlohmann::ordered_json> change(Config next, const std::string &what);
    Controller &controller_;
    std::function<Status()> reload_;
};

}  // namespace understudy
