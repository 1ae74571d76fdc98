// The control thread's main loop, the same for the balancer and the agent: signals (SIGHUP reloads,
// SIGINT/SIGTERM stop), health probes when due, and a periodic housekeeping callback, all on one
// EventLoop that the caller has also given its API socket (and metrics endpoint). It also tells the service
// manager (notify.h) about reloads and stopping, and feeds its watchdog: only a loop that turns keeps it fed.
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

// How long the control thread was busy between two waits: while it is, nothing probes and nothing answers.
struct ControlPauses {
    double longest_ms = 0;         // since start
    double longest_recent_ms = 0;  // since the last call of take_recent()
    uint64_t over_10ms = 0;
    uint64_t over_100ms = 0;
    void record(uint64_t ns);
    double take_recent();
};

struct ControlLoop {
    EventLoop &loop;
    int signal_fd;
    HealthChecker &health;
    // SIGHUP: reads the config again and applies it; calls done once it is live or refused.
    std::function<void(std::function<void(Status)> done)> reload;
    std::function<void(const std::string &)> log;
    unsigned housekeeping_ms;
    std::function<void()> housekeeping;
    std::function<void()> after_events;  // after each round of events (verdicts that came together, together)
    ControlPauses *pauses = nullptr;
    std::function<void(const std::string &)> warn;  // a rejected reload; null: log

    // Returns when SIGINT or SIGTERM arrives (having sent STOPPING=1). With $WATCHDOG_USEC set, sends
    // WATCHDOG=1 every half interval; a SIGHUP sends RELOADING=1, and READY=1 once the reload is done.
    void run();
};

}  // namespace understudy
