// Metrics: a Prometheus text endpoint served from the control thread's event loop, and the same counters
// registered with DPDK telemetry (dpdk-telemetry.py: /understudy/stats, /understudy/backends).
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <string>

#include "controller.h"
#include "daemon/event_loop.h"

namespace understudy {

// The Prometheus exposition text of everything the controller and data plane count.
std::string render_prometheus(const Controller &controller);

// Scrapers connect, send one GET and read one response. At most kMaxMetricsClients at once (a new one takes
// the place of the oldest), and a request must be complete within kMetricsRequestMs.
constexpr size_t kMaxMetricsClients = 32;
constexpr uint64_t kMetricsRequestMs = 5'000;

class MetricsServer {
  public:
    MetricsServer(EventLoop &loop, std::function<std::string()> render);
    ~MetricsServer();
    Status listen(const std::string &address_port);  // "127.0.0.1:9273", "[::1]:9273"
    // Closes clients whose request is not complete after kMetricsRequestMs (the housekeeping timer).
    void sweep(uint64_t now_ms);
    size_t clients() const { return requests_.size(); }

  private:
    struct Request {
        std::string text;
        uint64_t since_ms = 0;
    };
    void on_client(int fd, uint32_t events);
    void close_client(int fd);
    EventLoop &loop_;
    std::function<std::string()> render_;
    int listen_fd_ = -1;
    std::map<int, Request> requests_;
};

// DPDK telemetry reads from its own thread: the control thread refreshes this copy once a second.
class TelemetryExport {
  public:
    static TelemetryExport &instance();
    void register_commands();
    void update(const Json &stats, const Json &backends);

    // The telemetry callbacks read these under the mutex.
    std::mutex mutex_;
    Json stats_, backends_;
};

}  // namespace understudy
