// Health probes from the control thread: non-blocking sockets multiplexed on one epoll instance, no
// thread per probe. tcp (connect), http (GET, expect a status range), udp (send, expect a reply), none.
// Rise/fall counting per backend; every state change is reported with its reason.
// Shared by the balancer daemon and understudy-agent.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/address.h"
#include "core/config.h"

namespace understudy {

struct ProbeTarget {
    std::string pool;
    uint32_t backend_id = 0;
    Address address;
    HealthConfig config;  // effective settings; config.port already resolved (never 0)
};

struct HealthEvent {
    std::string pool;
    uint32_t backend_id = 0;
    bool up = false;
    std::string reason;       // "timeout", "connection refused", "HTTP status 500", "3 consecutive successes"...
    uint64_t verdict_ns = 0;  // CLOCK_MONOTONIC when the deciding probe result arrived
};

struct HealthStatus {
    bool up = true;
    bool probed = false;            // false until the first probe completed
    uint32_t consecutive_ok = 0;
    uint32_t consecutive_fail = 0;
    uint64_t probes = 0;
    uint64_t failures = 0;
    std::string last_result;        // "ok" or the failure reason of the last probe
    double last_rtt_ms = 0;
    uint64_t last_change_ns = 0;    // CLOCK_MONOTONIC of the last state change (0: never)
};

// Initial state: a backend counts as up until its first probe completes; the first result decides at
// once (a backend that is down at start-up is not used for fall x interval), after that rise and fall
// apply. kind = none: always up, never probed.
// A backend (same pool and id) whose address or settings change keeps its up/down state, so that a view
// built from the events stays right, and starts over otherwise: its first probe decides at once, either
// way; a down backend whose kind becomes none comes up with an event ("health checks off"). Events are
// only ever reported from run(), including those caused by set_targets().
class HealthChecker {
  public:
    using Callback = std::function<void(const HealthEvent &)>;
    explicit HealthChecker(Callback on_change);
    ~HealthChecker();
    HealthChecker(const HealthChecker &) = delete;
    HealthChecker &operator=(const HealthChecker &) = delete;

    // Replaces the target set. Targets whose pool, id, address and settings are unchanged keep their
    // state and schedule; new and changed ones start as described above; removed ones are forgotten.
    void set_targets(const std::vector<ProbeTarget> &targets);

    int fd() const;                     // an epoll fd: poll it for readability in the caller's loop
    int next_timeout_ms() const;        // until the next probe is due or times out (-1: nothing to do)
    void run(uint64_t now_ns = 0);      // handles ready sockets and due timers without blocking

    std::optional<HealthStatus> status(const std::string &pool, uint32_t backend_id) const;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

uint64_t monotonic_ns();

// Every backend of every pool with its effective settings; port 0 becomes the port of the first VIP that
// uses the pool, and a pool no VIP uses yet is not probed (kind none). The balancer and the agent both
// probe what this returns.
std::vector<ProbeTarget> probe_targets(const Config &config);

}  // namespace understudy
