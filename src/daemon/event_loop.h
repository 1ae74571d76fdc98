// A small epoll loop for the control thread: signals, health probes, the API socket and the metrics
// endpoint all wait on it, so the control thread never blocks on any one of them.
#pragma once

#include <cstdint>
#include <functional>
#include <map>

namespace understudy {

class EventLoop {
  public:
    using Handler = std::function<void(uint32_t events)>;
    EventLoop();
    ~EventLoop();
    EventLoop(const EventLoop &) = delete;
    EventLoop &operator=(const EventLoop &) = delete;

    void add(int fd, uint32_t events, Handler handler);
    void modify(int fd, uint32_t events);
    void remove(int fd);  // safe from inside a handler
    // Waits up to timeout_ms (-1: forever) and runs the handlers of ready descriptors. woke_ns, when given,
    // receives the CLOCK_MONOTONIC time the wait ended (to measure the work that follows).
    void run_once(int timeout_ms, uint64_t *woke_ns = nullptr);

  private:
    int epfd_;
    std::map<int, Handler> handlers_;
};

}  // namespace understudy
