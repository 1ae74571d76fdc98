// Heavy control work (table builds for a reload, a live plan) off the control thread: one job at a time runs
// on a thread of its own, and its completion runs on the control thread from the event loop, so that probes
// and API answers go on meanwhile.
#pragma once

#include <functional>
#include <thread>

#include "core/result.h"
#include "event_loop.h"

namespace understudy {

class OffThread {
  public:
    explicit OffThread(EventLoop &loop);
    ~OffThread();  // waits for a job still running; its completion is not called
    OffThread(const OffThread &) = delete;
    OffThread &operator=(const OffThread &) = delete;

    bool busy() const { return busy_; }
    uint64_t started_ns() const { return started_ns_; }
    // Runs work on its own thread (an exception becomes an Error), then done(work's status) on the control
    // thread. Only when not busy.
    void run(std::function<Status()> work, std::function<void(Status)> done);

  private:
    void finish();

    EventLoop &loop_;
    int efd_ = -1;
    std::thread thread_;
    Status result_ = Ok{};
    std::function<void(Status)> done_;
    bool busy_ = false;
    uint64_t started_ns_ = 0;
};

}  // namespace understudy
