// Health prober against real servers on loopback (127.0.0.1, 127.0.0.2 as a probe source, ::1): tcp, http and
// udp verdicts, rise/fall, set_targets(), source binding, and the CPU cost of 1,000 backends probed every second.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "daemon/health.h"

using namespace understudy;

namespace {

Address addr(const char *text)
{
    auto a = Address::parse(text);
    if (!a)
        throw std::runtime_error(std::string("bad address in test: ") + text);
    return *a;
}

socklen_t make_sockaddr(const char *text, uint16_t port, sockaddr_storage &ss)
{
    std::memset(&ss, 0, sizeof ss);
    if (std::strchr(text, ':')) {
        auto *s6 = reinterpret_cast<sockaddr_in6 *>(&ss);
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        inet_pton(AF_INET6, text, &s6->sin6_addr);
        return sizeof *s6;
    }
    auto *s4 = reinterpret_cast<sockaddr_in *>(&ss);
    s4->sin_family = AF_INET;
    s4->sin_port = htons(port);
    inet_pton(AF_INET, text, &s4->sin_addr);
    return sizeof *s4;
}

std::string peer_text(const sockaddr_storage &ss)
{
    char buf[INET6_ADDRSTRLEN] = {};
    if (ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in *>(&ss)->sin_addr, buf, sizeof buf);
    else
        inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6 *>(&ss)->sin6_addr, buf, sizeof buf);
    return buf;
}

// A socket bound to HOST:0; port() tells which port the kernel chose.
class BoundSocket {
  public:
    BoundSocket(const char *host, int type)
    {
        sockaddr_storage ss;
        socklen_t len = make_sockaddr(host, 0, ss);
        fd_ = socket(ss.ss_family, type | SOCK_CLOEXEC, 0);
        if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr *>(&ss), len) != 0)
            throw std::runtime_error(std::string("cannot bind test socket: ") + std::strerror(errno));
        socklen_t slen = sizeof ss;
        getsockname(fd_, reinterpret_cast<sockaddr *>(&ss), &slen);
        port_ = ntohs(ss.ss_family == AF_INET ? reinterpret_cast<sockaddr_in *>(&ss)->sin_port
                                              : reinterpret_cast<sockaddr_in6 *>(&ss)->sin6_port);
    }
    ~BoundSocket() { close(); }
    BoundSocket(const BoundSocket &) = delete;
    BoundSocket &operator=(const BoundSocket &) = delete;

    int fd() const { return fd_; }
    uint16_t port() const { return port_; }
    void close()
    {
        if (fd_ >= 0)
            ::close(fd_);
        fd_ = -1;
    }

  private:
    int fd_ = -1;
    uint16_t port_ = 0;
};

// A port nothing listens on: bound for a moment to learn a free one, then released.
uint16_t closed_port(const char *host, int type)
{
    BoundSocket s(host, type);
    return s.port();
}

// Runs a loop on a thread until stopped; the loop body polls with a short timeout.
class Worker {
  public:
    ~Worker() { stop(); }
    void start(std::function<void(const std::atomic<bool> &)> body)
    {
        thread_ = std::thread([this, body] { body(stop_); });
    }
    void stop()
    {
        stop_ = true;
        if (thread_.joinable())
            thread_.join();
    }

  private:
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

// TCP listener whose thread accepts and closes, remembering the peer addresses.
class TcpServer {
  public:
    explicit TcpServer(const char *host, int backlog = 4096) : sock_(host, SOCK_STREAM)
    {
        listen(sock_.fd(), backlog);
    }
    ~TcpServer() { close(); }
    uint16_t port() const { return sock_.port(); }
    int fd() const { return sock_.fd(); }

    void accept_all()
    {
        worker_.start([this](const std::atomic<bool> &stop) {
            while (!stop) {
                pollfd p{sock_.fd(), POLLIN, 0};
                if (poll(&p, 1, 20) <= 0)
                    continue;
                sockaddr_storage ss;
                socklen_t len = sizeof ss;
                int c = accept4(sock_.fd(), reinterpret_cast<sockaddr *>(&ss), &len, SOCK_CLOEXEC);
                if (c < 0)
                    continue;
                {
                    std::lock_guard lock(mutex_);
                    peers_.push_back(peer_text(ss));
                }
                ::close(c);
            }
        });
    }

    std::vector<std::string> peers()
    {
        std::lock_guard lock(mutex_);
        return peers_;
    }

    void close()
    {
        worker_.stop();
        sock_.close();
    }

  private:
    BoundSocket sock_;
    Worker worker_;
    std::mutex mutex_;
    std::vector<std::string> peers_;
};

// A tiny HTTP/1.0 server: answers each request with `status` (0: a line that is not HTTP), or alternates
// 200 and 500 (200 first) when `alternate` is set.
class HttpServer {
  public:
    std::atomic<int> status{200};
    std::atomic<bool> alternate{false};

    HttpServer() : sock_("127.0.0.1", SOCK_STREAM)
    {
        listen(sock_.fd(), 64);
        worker_.start([this](const std::atomic<bool> &stop) {
            while (!stop) {
                pollfd p{sock_.fd(), POLLIN, 0};
                if (poll(&p, 1, 20) <= 0)
                    continue;
                int c = accept4(sock_.fd(), nullptr, nullptr, SOCK_CLOEXEC);
                if (c >= 0) {
                    serve(c);
                    ::close(c);
                }
            }
        });
    }
    ~HttpServer() { worker_.stop(); }

    uint16_t port() const { return sock_.port(); }
    int requests() const { return requests_; }
    std::string last_request()
    {
        std::lock_guard lock(mutex_);
        return last_request_;
    }

  private:
    void serve(int c)
    {
        std::string request;
        char buf[1024];
        while (request.find("\r\n\r\n") == std::string::npos) {
            pollfd p{c, POLLIN, 0};
            if (poll(&p, 1, 1000) <= 0)
                return;
            ssize_t n = recv(c, buf, sizeof buf, 0);
            if (n <= 0)
                return;
            request.append(buf, size_t(n));
        }
        int n = requests_++;
        {
            std::lock_guard lock(mutex_);
            last_request_ = request;
        }
        int code = alternate ? (n % 2 == 0 ? 200 : 500) : status.load();
        std::string response = code == 0 ? std::string("SSH-2.0-OpenSSH_9.2\r\n")
                                         : "HTTP/1.0 " + std::to_string(code) + " X\r\nContent-Length: 0\r\n\r\n";
        send(c, response.data(), response.size(), MSG_NOSIGNAL);
    }

    BoundSocket sock_;
    Worker worker_;
    std::atomic<int> requests_{0};
    std::mutex mutex_;
    std::string last_request_;
};

// UDP responder: answers each datagram with `reply_prefix` + the datagram, remembering the senders.
class UdpEcho {
  public:
    explicit UdpEcho(std::string reply_prefix) : sock_("127.0.0.1", SOCK_DGRAM), prefix_(std::move(reply_prefix))
    {
        worker_.start([this](const std::atomic<bool> &stop) {
            while (!stop) {
                pollfd p{sock_.fd(), POLLIN, 0};
                if (poll(&p, 1, 20) <= 0)
                    continue;
                char buf[2048];
                sockaddr_storage ss;
                socklen_t len = sizeof ss;
                ssize_t n = recvfrom(sock_.fd(), buf, sizeof buf, 0, reinterpret_cast<sockaddr *>(&ss), &len);
                if (n < 0)
                    continue;
                std::string reply = prefix_ + std::string(buf, size_t(n));
                sendto(sock_.fd(), reply.data(), reply.size(), 0, reinterpret_cast<sockaddr *>(&ss), len);
                std::lock_guard lock(mutex_);
                peers_.push_back(peer_text(ss));
            }
        });
    }
    ~UdpEcho() { worker_.stop(); }
    uint16_t port() const { return sock_.port(); }
    std::vector<std::string> peers()
    {
        std::lock_guard lock(mutex_);
        return peers_;
    }

  private:
    BoundSocket sock_;
    std::string prefix_;
    Worker worker_;
    std::mutex mutex_;
    std::vector<std::string> peers_;
};

ProbeTarget target(uint32_t id, const char *host, uint16_t port, ProbeKind kind, uint32_t rise = 2, uint32_t fall = 2)
{
    ProbeTarget t;
    t.pool = "web";
    t.backend_id = id;
    t.address = addr(host);
    t.config.kind = kind;
    t.config.port = port;
    t.config.interval_ms = 60;
    t.config.timeout_ms = 50;
    t.config.rise = rise;
    t.config.fall = fall;
    return t;
}

// The checker driven the way the daemon drives it: poll fd() for next_timeout_ms(), then run().
struct Prober {
    std::vector<HealthEvent> events;
    std::vector<HealthStatus> at_event;  // the backend's status when its event was reported
    HealthChecker checker{[this](const HealthEvent &e) {
        events.push_back(e);
        at_event.push_back(*checker.status(e.pool, e.backend_id));
    }};

    HealthStatus status(uint32_t id, const std::string &pool = "web")
    {
        auto s = checker.status(pool, id);
        if (!s)
            throw std::runtime_error("no status for backend " + std::to_string(id));
        return *s;
    }

    bool run_until(const std::function<bool()> &done, int max_ms = 3000)
    {
        uint64_t end = monotonic_ns() + uint64_t(max_ms) * 1'000'000;
        while (!done()) {
            uint64_t now = monotonic_ns();
            if (now >= end)
                return false;
            int left = int((end - now + 999'999) / 1'000'000);
            int wait = checker.next_timeout_ms();
            if (wait < 0 || wait > left)
                wait = left;
            pollfd p{checker.fd(), POLLIN, 0};
            poll(&p, 1, wait);
            checker.run();
        }
        return true;
    }
    void run_for(int ms) { run_until([] { return false; }, ms); }
    bool run_probes(uint32_t id, uint64_t probes, const std::string &pool = "web")
    {
        return run_until([&] { return status(id, pool).probes >= probes; });
    }
};

int open_fds()
{
    int n = 0;
    for ([[maybe_unused]] auto &e : std::filesystem::directory_iterator("/proc/self/fd"))
        ++n;
    return n;
}

}  // namespace

TEST(Health, TcpUp)
{
    TcpServer server("127.0.0.1");
    server.accept_all();
    Prober p;
    p.checker.set_targets({target(1, "127.0.0.1", server.port(), ProbeKind::tcp)});
    auto s = p.status(1);
    EXPECT_TRUE(s.up);
    EXPECT_FALSE(s.probed);
    ASSERT_TRUE(p.run_probes(1, 3));
    s = p.status(1);
    EXPECT_TRUE(s.up);
    EXPECT_TRUE(s.probed);
    EXPECT_EQ(s.failures, 0u);
    EXPECT_GE(s.consecutive_ok, 3u);
    EXPECT_EQ(s.last_result, "ok");
    EXPECT_GT(s.last_rtt_ms, 0.0);
    EXPECT_TRUE(p.events.empty());
}

TEST(Health, TcpUpV6)
{
    TcpServer server("::1");
    server.accept_all();
    Prober p;
    p.checker.set_targets({target(1, "::1", server.port(), ProbeKind::tcp)});
    ASSERT_TRUE(p.run_probes(1, 3));
    EXPECT_TRUE(p.status(1).up);
    EXPECT_EQ(p.status(1).failures, 0u);
    EXPECT_TRUE(p.events.empty());
}

TEST(Health, ClosedListenerGoesDownAfterFall)
{
    TcpServer server("127.0.0.1");
    server.accept_all();
    Prober p;
    p.checker.set_targets({target(1, "127.0.0.1", server.port(), ProbeKind::tcp, 2, 3)});
    ASSERT_TRUE(p.run_probes(1, 2));
    uint64_t closed_at = monotonic_ns();
    server.close();
    ASSERT_TRUE(p.run_until([&] { return !p.events.empty(); }));
    ASSERT_EQ(p.events.size(), 1u);
    const HealthEvent &e = p.events[0];
    EXPECT_EQ(e.pool, "web");
    EXPECT_EQ(e.backend_id, 1u);
    EXPECT_FALSE(e.up);
    EXPECT_EQ(e.reason, "connection refused");
    EXPECT_GT(e.verdict_ns, closed_at);
    EXPECT_LE(e.verdict_ns, monotonic_ns());
    EXPECT_EQ(p.at_event[0].consecutive_fail, 3u);  // fall = 3, not before
    EXPECT_FALSE(p.status(1).up);
    EXPECT_EQ(p.status(1).last_change_ns, e.verdict_ns);
    EXPECT_EQ(p.status(1).last_result, "connection refused");
}

TEST(Health, FirstProbeDecidesAtOnce)
{
    Prober p;
    p.checker.set_targets({target(1, "127.0.0.1", closed_port("127.0.0.1", SOCK_STREAM), ProbeKind::tcp, 2, 5)});
    ASSERT_TRUE(p.run_until([&] { return !p.events.empty(); }));
    EXPECT_FALSE(p.events[0].up);
    EXPECT_EQ(p.events[0].reason, "connection refused");
    EXPECT_EQ(p.at_event[0].probes, 1u);  // not fall = 5 probes
}

TEST(Health, BoundButNotListeningIsRefused)
{
    BoundSocket sock("127.0.0.1", SOCK_STREAM);
    Prober p;
    p.checker.set_targets({target(1, "127.0.0.1", sock.port(), ProbeKind::tcp)});
    ASSERT_TRUE(p.run_until([&] { return !p.events.empty(); }));
    EXPECT_FALSE(p.events[0].up);
    EXPECT_EQ(p.events[0].reason, "connection refused");
}

TEST(Health, ListenerNotAcceptingTimesOut)
{
    TcpServer server("127.0.0.1", 0);  // never accepts; the accept queue holds one connection
    std::vector<int> fillers;
    for (int i = 0; i < 3; ++i) {
        int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        sockaddr_storage ss;
        socklen_t len = make_sockaddr("127.0.0.1", server.port(), ss);
        connect(c, reinterpret_cast<sockaddr *>(&ss), len);
        fillers.push_back(c);
    }
    usleep(50'000);
    Prober p;
    ProbeTarget t = target(1, "127.0.0.1", server.port(), ProbeKind::tcp);
    p.checker.set_targets({t});
    ASSERT_TRUE(p.run_until([&] { return !p.events.empty(); }));
    EXPECT_FALSE(p.events[0].up);
    EXPECT_EQ(p.events[0].reason, "timeout");
    EXPECT_GE(p.at_event[0].last_rtt_ms, double(t.config.timeout_ms) - 1);
    for (int c : fillers)
        close(c);
}

TEST(Health, HttpStatusDownAndUpAgain)
{
    HttpServer server;
    Prober p;
    ProbeTarget t = target(7, "127.0.0.1", server.port(), ProbeKind::http, 2, 2);
    t.config.http_path = "/healthz";
    p.checker.set_targets({t});
    ASSERT_TRUE(p.run_probes(7, 2));
    EXPECT_TRUE(p.status(7).up);
    EXPECT_TRUE(p.events.empty());

    std::string req = server.last_request();
    EXPECT_EQ(req.rfind("GET /healthz HTTP/1.0\r\n", 0), 0u) << req;
    EXPECT_NE(req.find("\r\nHost: 127.0.0.1:" + std::to_string(server.port()) + "\r\n"), std::string::npos) << req;
    EXPECT_NE(req.find("\r\nUser-Agent: understudy-health\r\n"), std::string::npos) << req;
    EXPECT_NE(req.find("\r\nConnection: close\r\n"), std::string::npos) << req;

    server.status = 500;
    ASSERT_TRUE(p.run_until([&] { return p.events.size() == 1; }));
    EXPECT_FALSE(p.events[0].up);
    EXPECT_EQ(p.events[0].reason, "HTTP status 500");
    EXPECT_EQ(p.at_event[0].consecutive_fail, 2u);

    server.status = 200;
    ASSERT_TRUE(p.run_until([&] { return p.events.size() == 2; }));
    EXPECT_TRUE(p.events[1].up);
    EXPECT_EQ(p.events[1].reason, "2 consecutive successes");
    EXPECT_EQ(p.at_event[1].consecutive_ok, 2u);
    EXPECT_GT(p.events[1].verdict_ns, p.events[0].verdict_ns);
}

TEST(Health, HttpStatusRangeAndBadResponse)
{
    HttpServer server;
    server.status = 302;
    Prober p;
    ProbeTarget in_range = target(1, "127.0.0.1", server.port(), ProbeKind::http);  // 200-399
    ProbeTarget strict = target(2, "127.0.0.1", server.port(), ProbeKind::http);
    strict.config.http_status_max = 299;
    p.checker.set_targets({in_range, strict});
    ASSERT_TRUE(p.run_until([&] { return p.status(1).probes >= 2 && p.status(2).probes >= 1; }));
    EXPECT_TRUE(p.status(1).up);
    EXPECT_FALSE(p.status(2).up);
    EXPECT_EQ(p.status(2).last_result, "HTTP status 302");

    server.status = 0;  // not HTTP at all
    ASSERT_TRUE(p.run_until([&] { return p.events.size() == 2; }));
    EXPECT_EQ(p.events[1].backend_id, 1u);
    EXPECT_EQ(p.events[1].reason, "bad HTTP response");
}

TEST(Health, UdpSilentTimesOut)
{
    BoundSocket silent("127.0.0.1", SOCK_DGRAM);  // bound, never read
    Prober p;
    p.checker.set_targets({target(1, "127.0.0.1", silent.port(), ProbeKind::udp)});
    ASSERT_TRUE(p.run_until([&] { return !p.events.empty(); }));
    EXPECT_FALSE(p.events[0].up);
    EXPECT_EQ(p.events[0].reason, "timeout");
}

TEST(Health, UdpEchoUpAndExpectedPrefix)
{
    UdpEcho echo("pong:");
    Prober p;
    ProbeTarget any = target(1, "127.0.0.1", echo.port(), ProbeKind::udp);
    ProbeTarget good = target(2, "127.0.0.1", echo.port(), ProbeKind::udp);
    good.config.udp_payload = "ping";
    good.config.udp_expect = "pong:ping";
    ProbeTarget wrong = target(3, "127.0.0.1", echo.port(), ProbeKind::udp);
    wrong.config.udp_expect = "PONG";
    p.checker.set_targets({any, good, wrong});
    ASSERT_TRUE(p.run_until([&] {
        return p.status(1).probes >= 3 && p.status(2).probes >= 3 && p.status(3).probes >= 1;
    }));
    EXPECT_TRUE(p.status(1).up);
    EXPECT_EQ(p.status(1).failures, 0u);
    EXPECT_TRUE(p.status(2).up);
    EXPECT_EQ(p.status(2).failures, 0u);
    EXPECT_FALSE(p.status(3).up);
    EXPECT_EQ(p.status(3).last_result, "unexpected reply");
    ASSERT_EQ(p.events.size(), 1u);
    EXPECT_EQ(p.events[0].backend_id, 3u);
}

TEST(Health, UdpClosedPortIsRefused)
{
    Prober p;
    p.checker.set_targets({target(1, "127.0.0.1", closed_port("127.0.0.1", SOCK_DGRAM), ProbeKind::udp)});
    ASSERT_TRUE(p.run_until([&] { return !p.events.empty(); }));
    EXPECT_FALSE(p.events[0].up);
    EXPECT_EQ(p.events[0].reason, "connection refused");
}

TEST(Health, FlappingDoesNotFlipBelowRiseAndFall)
{
    HttpServer server;
    server.alternate = true;  // 200, 500, 200, 500...
    Prober p;
    p.checker.set_targets({target(1, "127.0.0.1", server.port(), ProbeKind::http, 2, 2)});
    ASSERT_TRUE(p.run_probes(1, 8));
    EXPECT_TRUE(p.events.empty());
    EXPECT_TRUE(p.status(1).up);
    EXPECT_EQ(p.status(1).failures, p.status(1).probes / 2);

    server.alternate = false;
    server.status = 500;
    ASSERT_TRUE(p.run_until([&] { return p.events.size() == 1; }));
    EXPECT_FALSE(p.events[0].up);
    EXPECT_EQ(p.at_event[0].consecutive_fail, 2u);

    server.alternate = true;
    uint64_t probes = p.status(1).probes;
    ASSERT_TRUE(p.run_probes(1, probes + 8));
    EXPECT_EQ(p.events.size(), 1u);  // never 2 successes in a row
    EXPECT_FALSE(p.status(1).up);

    server.alternate = false;
    server.status = 200;
    ASSERT_TRUE(p.run_until([&] { return p.events.size() == 2; }));
    EXPECT_TRUE(p.events[1].up);
}

TEST(Health, KindNoneIsAlwaysUpAndNeverProbed)
{
    Prober p;
    p.checker.set_targets({target(1, "127.0.0.1", closed_port("127.0.0.1", SOCK_STREAM), ProbeKind::none)});
    EXPECT_EQ(p.checker.next_timeout_ms(), -1);
    p.run_for(200);
    auto s = p.status(1);
    EXPECT_TRUE(s.up);
    EXPECT_FALSE(s.probed);
    EXPECT_EQ(s.probes, 0u);
    EXPECT_TRUE(p.events.empty());
}

TEST(Health, IntervalIsHonoured)
{
    TcpServer server("127.0.0.1");
    server.accept_all();
    Prober p;
    ProbeTarget t = target(1, "127.0.0.1", server.port(), ProbeKind::tcp);
    t.config.interval_ms = 50;
    p.checker.set_targets({t});
    p.run_for(1000);
    // First probe within 50 ms (jitter), then one every 50 ms: about 20, never more (a loaded machine may
    // skip some).
    EXPECT_GE(p.status(1).probes, 15u);
    EXPECT_LE(p.status(1).probes, 21u);
}

TEST(Health, SetTargetsKeepsUnchangedState)
{
    TcpServer server("127.0.0.1");
    server.accept_all();
    BoundSocket silent("127.0.0.1", SOCK_DGRAM);
    ProbeTarget down = target(1, "127.0.0.1", closed_port("127.0.0.1", SOCK_STREAM), ProbeKind::tcp);
    ProbeTarget up = target(2, "127.0.0.1", server.port(), ProbeKind::tcp);
    ProbeTarget slow = target(3, "127.0.0.1", silent.port(), ProbeKind::udp);
    slow.config.interval_ms = 200;
    slow.config.timeout_ms = 200;  // a probe nearly always in flight
    int fds_before = open_fds();

    Prober p;
    p.checker.set_targets({down, up, slow});
    ASSERT_TRUE(p.run_until([&] { return p.status(1).probes >= 2 && p.status(2).probes >= 2; }));
    ASSERT_EQ(p.events.size(), 1u);
    EXPECT_FALSE(p.status(1).up);
    uint64_t down_probes = p.status(1).probes;
    uint64_t down_change = p.status(1).last_change_ns;

    ProbeTarget added = target(4, "127.0.0.1", server.port(), ProbeKind::tcp);
    p.checker.set_targets({down, added});
    auto kept = p.status(1);
    EXPECT_FALSE(kept.up);
    EXPECT_TRUE(kept.probed);
    EXPECT_EQ(kept.probes, down_probes);
    EXPECT_EQ(kept.last_change_ns, down_change);
    EXPECT_FALSE(p.checker.status("web", 2));
    EXPECT_FALSE(p.checker.status("web", 3));
    auto fresh = p.status(4);
    EXPECT_TRUE(fresh.up);
    EXPECT_FALSE(fresh.probed);
    ASSERT_TRUE(p.run_probes(4, 2));
    EXPECT_TRUE(p.status(4).up);
    EXPECT_FALSE(p.status(1).up);
    EXPECT_GT(p.status(1).probes, down_probes);  // its schedule went on
    EXPECT_EQ(p.events.size(), 1u);              // no event for kept, removed or added backends

    // Changed settings: the backend stays down (the caller was told so) and starts over otherwise.
    ProbeTarget changed = down;
    changed.config.interval_ms = 70;
    p.checker.set_targets({changed, added});
    EXPECT_FALSE(p.status(1).up);
    EXPECT_FALSE(p.status(1).probed);
    EXPECT_EQ(p.status(1).probes, 0u);
    ASSERT_TRUE(p.run_probes(1, 2));
    EXPECT_FALSE(p.status(1).up);
    EXPECT_EQ(p.events.size(), 1u);

    // Removing everything closes every probe socket and leaves nothing to wait for.
    p.checker.set_targets({slow});
    ASSERT_TRUE(p.run_until([&] { return p.status(3).probes >= 1; }, 2000));
    p.run_for(50);  // the next probe is in flight now
    p.checker.set_targets({});
    EXPECT_EQ(p.checker.next_timeout_ms(), -1);
    EXPECT_EQ(open_fds(), fds_before + 1);  // the epoll fd only
}

TEST(Health, ChangedTargetsKeepUpDownAndDecideAtOnce)
{
    TcpServer server("127.0.0.1");
    server.accept_all();
    uint16_t closed = closed_port("127.0.0.1", SOCK_STREAM);
    ProbeTarget t = target(1, "127.0.0.1", closed, ProbeKind::tcp, 3, 3);
    Prober p;
    p.checker.set_targets({t});
    ASSERT_TRUE(p.run_until([&] { return p.events.size() == 1; }));
    EXPECT_FALSE(p.events[0].up);

    // Now pointed at a live port: down until its first probe, which brings it up at once (not after rise = 3).
    t.config.port = server.port();
    p.checker.set_targets({t});
    EXPECT_FALSE(p.status(1).up);
    ASSERT_TRUE(p.run_until([&] { return p.events.size() == 2; }));
    EXPECT_TRUE(p.events[1].up);
    EXPECT_EQ(p.events[1].reason, "1 consecutive success");
    EXPECT_EQ(p.at_event[1].probes, 1u);

    // Back to the closed port: its first probe takes it down at once (not after fall = 3).
    t.config.port = closed;
    p.checker.set_targets({t});
    EXPECT_TRUE(p.status(1).up);
    ASSERT_TRUE(p.run_until([&] { return p.events.size() == 3; }));
    EXPECT_FALSE(p.events[2].up);
    EXPECT_EQ(p.at_event[2].probes, 1u);

    // Health checks turned off for a down backend: up, with an event reported by the next run().
    ProbeTarget off = t;
    off.config.kind = ProbeKind::none;
    uint64_t before = monotonic_ns();
    p.checker.set_targets({off});
    EXPECT_TRUE(p.status(1).up);
    EXPECT_EQ(p.events.size(), 3u);
    EXPECT_EQ(p.checker.next_timeout_ms(), 0);
    p.checker.run();
    ASSERT_EQ(p.events.size(), 4u);
    EXPECT_TRUE(p.events[3].up);
    EXPECT_EQ(p.events[3].reason, "health checks off");
    EXPECT_GE(p.events[3].verdict_ns, before);
    EXPECT_EQ(p.checker.next_timeout_ms(), -1);

    // An event for a backend removed before run() reported it is dropped.
    p.checker.set_targets({t});
    ASSERT_TRUE(p.run_until([&] { return p.events.size() == 5; }));
    p.checker.set_targets({off});
    p.checker.set_targets({});
    p.run_for(50);
    EXPECT_EQ(p.events.size(), 5u);
}

TEST(Health, SourceAddressIsBound)
{
    TcpServer tcp("127.0.0.1");
    tcp.accept_all();
    UdpEcho udp("");
    ProbeTarget t = target(1, "127.0.0.1", tcp.port(), ProbeKind::tcp);
    t.config.source = addr("127.0.0.2");
    ProbeTarget u = target(2, "127.0.0.1", udp.port(), ProbeKind::udp);
    u.config.source = addr("127.0.0.2");
    Prober p;
    p.checker.set_targets({t, u});
    ASSERT_TRUE(p.run_until([&] { return p.status(1).probes >= 2 && p.status(2).probes >= 2; }));
    EXPECT_TRUE(p.status(1).up);
    EXPECT_TRUE(p.status(2).up);
    auto tcp_peers = tcp.peers();
    ASSERT_FALSE(tcp_peers.empty());
    for (const auto &peer : tcp_peers)
        EXPECT_EQ(peer, "127.0.0.2");
    auto udp_peers = udp.peers();
    ASSERT_FALSE(udp_peers.empty());
    for (const auto &peer : udp_peers)
        EXPECT_EQ(peer, "127.0.0.2");
}

// 1,000 backends (250 on each of 4 listeners) probed every second: reports the prober's CPU time. A
// benchmark figure, not a pass/fail criterion; the test checks only that every backend was probed and is up.
TEST(Health, CostOfThousandTargets)
{
    constexpr int kListeners = 4;
    constexpr uint32_t kTargets = 1000;
    std::vector<std::unique_ptr<BoundSocket>> listeners;
    std::vector<pollfd> pfds;
    for (int i = 0; i < kListeners; ++i) {
        listeners.push_back(std::make_unique<BoundSocket>("127.0.0.1", SOCK_STREAM | SOCK_NONBLOCK));
        listen(listeners.back()->fd(), 4096);
        pfds.push_back({listeners.back()->fd(), POLLIN, 0});
    }
    Worker acceptor;
    acceptor.start([&](const std::atomic<bool> &stop) {
        while (!stop) {
            if (poll(pfds.data(), pfds.size(), 20) <= 0)
                continue;
            for (auto &pf : pfds)
                if (pf.revents & POLLIN)
                    for (int c; (c = accept4(pf.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0;)
                        close(c);
        }
    });

    std::vector<ProbeTarget> targets;
    for (uint32_t id = 1; id <= kTargets; ++id) {
        ProbeTarget t = target(id, "127.0.0.1", listeners[id % kListeners]->port(), ProbeKind::tcp);
        t.config.interval_ms = 1000;
        t.config.timeout_ms = 500;
        targets.push_back(t);
    }
    Prober p;
    p.checker.set_targets(targets);

    rusage before{}, after{};
    getrusage(RUSAGE_THREAD, &before);
    uint64_t start = monotonic_ns();
    p.run_for(3500);
    double wall_s = double(monotonic_ns() - start) / 1e9;
    getrusage(RUSAGE_THREAD, &after);

    // What the kernel alone charges this thread for the same connections on loopback (it runs both ends of
    // the handshake here), for comparison: socket, connect, wait, close with reset.
    rusage bare_before{}, bare_after{};
    getrusage(RUSAGE_THREAD, &bare_before);
    constexpr int kBare = 1000;
    for (int i = 0; i < kBare; ++i) {
        sockaddr_storage ss;
        socklen_t len = make_sockaddr("127.0.0.1", listeners[size_t(i) % kListeners]->port(), ss);
        int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        connect(c, reinterpret_cast<sockaddr *>(&ss), len);
        pollfd pf{c, POLLOUT, 0};
        poll(&pf, 1, 1000);
        linger lg{1, 0};
        setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(c);
    }
    getrusage(RUSAGE_THREAD, &bare_after);
    acceptor.stop();

    auto us = [](const timeval &tv) { return double(tv.tv_sec) * 1e6 + double(tv.tv_usec); };
    double user_ms = (us(after.ru_utime) - us(before.ru_utime)) / 1e3;
    double sys_ms = (us(after.ru_stime) - us(before.ru_stime)) / 1e3;
    double bare_us = (us(bare_after.ru_utime) - us(bare_before.ru_utime) + us(bare_after.ru_stime) -
                      us(bare_before.ru_stime)) / kBare;
    uint64_t probes = 0, failures = 0;
    uint32_t down = 0;
    for (uint32_t id = 1; id <= kTargets; ++id) {
        auto s = p.status(id);
        probes += s.probes;
        failures += s.failures;
        down += s.up ? 0 : 1;
    }
    std::printf("health cost: %u tcp targets, interval 1000 ms, %.2f s: %llu probes (%llu failed), "
                "prober thread CPU %.1f ms user + %.1f ms sys = %.2f%% of one core (%.1f us per probe)\n",
                kTargets, wall_s, (unsigned long long)probes, (unsigned long long)failures, user_ms, sys_ms,
                (user_ms + sys_ms) / 10.0 / wall_s, (user_ms + sys_ms) * 1e3 / double(probes ? probes : 1));
    std::printf("health cost: a bare loopback connect + close costs this thread %.1f us by itself\n", bare_us);
    EXPECT_EQ(down, 0u);
    EXPECT_EQ(failures, 0u);
    EXPECT_GE(probes, 3u * kTargets);
}
