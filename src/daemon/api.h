// The control API: a Unix socket speaking newline-delimited JSON. One request object per line, one reply
// object per line: {"ok": true, ...} or {"ok": false, "error": "what is wrong"}. A bad request never
// disturbs other clients or the daemon. Operations are listed in docs/operations.md.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "core/result.h"
#include "event_loop.h"

namespace understudy {

constexpr size_t kMaxRequestBytes = 1 << 20;  // a longer line is answered with an error and the client dropped
// Every client costs a descriptor and buffers: a listener holds this many, and a new client past it takes the
// place of the one idle the longest, so that an operator always gets in.
constexpr size_t kMaxApiClients = 64;
constexpr uint64_t kApiIdleMs = 60'000;         // a client silent this long is closed
constexpr size_t kMaxPendingReplyBytes = 4 << 20;  // replies not yet read: past this, its requests wait

// What the API can do; the daemon (balancer or agent) implements it.
class ApiHandler {
  public:
    virtual ~ApiHandler() = default;
    // Returns the reply fields (without "ok"), or an error message.
    virtual Result<nlohmann::ordered_json> handle(const std::string &op, const nlohmann::json &request) = 0;

    // Operations answered later (a change built off the control thread) start here. Returns false when op is
    // not one of them (handle() answers it); otherwise calls done exactly once, on the control thread, maybe
    // before returning. The client's next requests wait for that answer: replies stay in order.
    using Completion = std::function<void(Result<nlohmann::ordered_json>)>;
    virtual bool start(const std::string &op, const nlohmann::json &request, Completion done)
    {
        (void)op, (void)request, (void)done;
        return false;
    }
};

class ApiServer {
  public:
    ApiServer(EventLoop &loop, ApiHandler &handler);
    ~ApiServer();

    // Creates the socket (and its directory), mode 0660, group `group` ("" = keep root's).
    Status listen(const std::string &path, const std::string &group);

    // Handles one request line; public so tests and the agent can reuse the exact same parsing.
    std::string handle_line(const std::string &line);

    // Closes clients idle for longer than kApiIdleMs; call it now and then (the housekeeping timer).
    void sweep(uint64_t now_ms);
    size_t clients() const { return clients_.size(); }

  private:
    struct Client {
        std::string in;
        std::string out;
        bool discarding = false;  // after an oversized request: answer sent, input ignored until EOF
        size_t discarded = 0;
        uint64_t active_ms = 0;   // last read or write
        uint64_t serial = 0;      // tells a later answer whether its client is still this one
        bool waiting = false;     // a request is being answered later: the next ones wait
        bool serving = false;     // inside serve_lines
    };
    // The reply to one line, or nullopt when the handler answers later through `later` (when given).
    std::optional<std::string> answer(const std::string &line, std::function<void(std::string)> later);
    void update_events(int fd, const Client &c);
    void refuse_oversized(int fd, Client &c);
    void serve_lines(int fd, Client &c);
    void accept_clients();
    void on_client(int fd, uint32_t events);
    void close_client(int fd);

    EventLoop &loop_;
    ApiHandler &handler_;
    int listen_fd_ = -1;
    std::string path_;
    std::map<int, Client> clients_;
    uint64_t next_serial_ = 1;
};

}  // namespace understudy
