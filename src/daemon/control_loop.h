// The control thread's main loop, the same for the balancer and the agent: signals (SIGHUP reloads,
// SIGINT/SIGTERM stop), health probes when due, and a periodic housekeeping callback, all on one
// EventLoop that the caller has also given its API socket (and metrics endpoint).
#pragma once

#include <functional>
#include <string>

#include "core/result.h"
#include "event_loop.h"
#include "health.h"

namespace understudy {

// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread and every thread it starts afterwards (call it
// before EAL or any other thread starts, so that only the control thread sees them), ignores SIGPIPE,
// and returns a signalfd for the three (-1 on failure).
int block_control_signals();

// Raises the soft limit on open descriptors to the hard one: health probes need descriptors, and the listeners'
// clients must never take the last ones. Returns the limit now in force.
unsigned long raise_descriptor_limit();

struct ControlLoop {
    EventLoop &loop;
    int signal_fd;
    HealthChecker &health;
    std::function<Status()> reload;                   // SIGHUP
    std::function<void(const std::string &)> log;
    unsigned housekeeping_ms;
    std::function<void()> housekeeping;

    // Returns when SIGINT or SIGTERM arrives.
    void run();
};

}  // namespace understudy
