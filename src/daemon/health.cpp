// Health prober of the control thread: one non-blocking kernel socket per probe in flight, all on one epoll
// instance that the caller's loop polls, and one ordered set of due times (next probe or probe deadline,
// one entry per backend). No threads, no logging: state changes go to the callback with their reason.
#include "health.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstring>
#include <ctime>
#include <set>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace understudy {

uint64_t monotonic_ns()
{
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(ts.tv_nsec);
}

namespace {

constexpr uint64_t kNsPerMs = 1'000'000;
constexpr uint64_t kMaxFirstDelayMs = 1000;  // first probes spread over at most this, so start-up verdicts come fast
constexpr size_t kMaxStatusLine = 512;        // an HTTP status line longer than this is not one
constexpr int kEpollBatch = 256;
// Timers are served on a grid of this step: probes and deadlines due within one step share one wake-up of
// the caller's loop (1,000 backends spread over a second would otherwise wake it every millisecond). They
// run at most this much late, never early.
constexpr uint64_t kTimerStepNs = 4 * kNsPerMs;

enum class Phase { idle, connecting, sending, reading };

bool same_settings(const HealthConfig &a, const HealthConfig &b)
{
    return a.kind == b.kind && a.port == b.port && a.http_path == b.http_path &&
           a.http_status_min == b.http_status_min && a.http_status_max == b.http_status_max &&
           a.udp_payload == b.udp_payload && a.udp_expect == b.udp_expect && a.interval_ms == b.interval_ms &&
           a.timeout_ms == b.timeout_ms && a.rise == b.rise && a.fall == b.fall && a.source == b.source;
}

bool same_target(const ProbeTarget &a, const ProbeTarget &b)
{
    return a.pool == b.pool && a.backend_id == b.backend_id && a.address == b.address &&
           same_settings(a.config, b.config);
}

// Deterministic per-backend spread (FNV-1a over pool and id), so that the phases of 1,000 backends do not
// all fall on the same millisecond and stay the same from one run to the next.
uint64_t spread_hash(const std::string &pool, uint32_t id)
{
    uint64_t h = 14695981039346656037ull;
    auto mix = [&h](uint8_t byte) {
        h ^= byte;
        h *= 1099511628211ull;
    };
    for (char c : pool)
        mix(static_cast<uint8_t>(c));
    for (int i = 0; i < 4; ++i)
        mix(static_cast<uint8_t>(id >> (8 * i)));
    return h;
}

// strerror text with a lower-case first letter, like the other reasons.
std::string errno_reason(int err)
{
    switch (err) {
    case ECONNREFUSED:
        return "connection refused";
    case ETIMEDOUT:
        return "timeout";
    default:
        break;
    }
    char buf[128];
    std::string text = strerror_r(err, buf, sizeof buf);
    if (!text.empty() && text[0] >= 'A' && text[0] <= 'Z')
        text[0] = static_cast<char>(text[0] - 'A' + 'a');
    return text;
}

socklen_t to_sockaddr(const Address &address, uint16_t port, sockaddr_storage &out)
{
    std::memset(&out, 0, sizeof out);
    if (address.is_v4()) {
        auto *sin = reinterpret_cast<sockaddr_in *>(&out);
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        std::memcpy(&sin->sin_addr, address.bytes.data() + 12, 4);
        return sizeof(sockaddr_in);
    }
    auto *sin6 = reinterpret_cast<sockaddr_in6 *>(&out);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    std::memcpy(&sin6->sin6_addr, address.bytes.data(), 16);
    return sizeof(sockaddr_in6);
}

std::string http_request(const ProbeTarget &t)
{
    std::string host = t.address.is_v4() ? t.address.str() : "[" + t.address.str() + "]";
    if (t.config.port != 80)
        host += ":" + std::to_string(t.config.port);
    std::string path = t.config.http_path.empty() ? "/" : t.config.http_path;
    return "GET " + path + " HTTP/1.0\r\nHost: " + host +
           "\r\nUser-Agent: understudy-health\r\nConnection: close\r\n\r\n";
}

// "HTTP/1.1 200 OK": returns the status code, or -1 when the line is not an HTTP status line.
int parse_status_line(std::string_view line)
{
    if (line.size() < 12 || line.substr(0, 5) != "HTTP/")
        return -1;
    size_t sp = line.find(' ');
    if (sp == std::string_view::npos || sp < 6 || line.size() < sp + 4)
        return -1;
    int code = 0;
    for (size_t i = sp + 1; i < sp + 4; ++i) {
        if (line[i] < '0' || line[i] > '9')
            return -1;
        code = code * 10 + (line[i] - '0');
    }
    if (line.size() > sp + 4 && line[sp + 4] != ' ' && line[sp + 4] != '\r')
        return -1;
    return code;
}

}  // namespace

struct HealthChecker::Impl {
    struct Target {
        ProbeTarget spec;
        uint64_t seq = 0;          // identifies this target in epoll data and in the timer set
        HealthStatus status;
        std::string request;       // kind = http: built once
        uint64_t phase_ns = 0;     // per-backend jitter
        uint64_t next_due_ns = 0;  // start of the next probe
        uint64_t timer_ns = 0;     // current entry in the timer set (0: none)
        // The probe in flight, if any.
        int fd = -1;
        Phase phase = Phase::idle;
        uint64_t started_ns = 0;
        size_t sent = 0;
        std::string received;
    };

    Callback on_change;
    int epfd = -1;
    uint64_t next_seq = 1;
    std::map<std::pair<std::string, uint32_t>, std::unique_ptr<Target>> targets;
    std::unordered_map<uint64_t, Target *> by_seq;
    std::set<std::pair<uint64_t, uint64_t>> timers;  // (due ns, seq)
    std::vector<HealthEvent> pending;                 // reported once run() is done with its own state

    uint64_t interval_ns(const Target &t) const
    {
        return std::max<uint64_t>(t.spec.config.interval_ms, 1) * kNsPerMs;
    }
    uint64_t timeout_ns(const Target &t) const
    {
        return std::max<uint64_t>(t.spec.config.timeout_ms, 1) * kNsPerMs;
    }

    void set_timer(Target &t, uint64_t due_ns)
    {
        if (t.timer_ns != 0)
            timers.erase({t.timer_ns, t.seq});
        t.timer_ns = due_ns;
        if (due_ns != 0)
            timers.insert({due_ns, t.seq});
    }

    void close_probe(Target &t)
    {
        if (t.fd < 0)
            return;
        if (t.spec.config.kind != ProbeKind::udp) {
            // Close with a reset: the prober keeps no TIME_WAIT entry per probe (1,000 backends probed every
            // second would otherwise hold tens of thousands), as load balancers' checkers usually do.
            linger lg{1, 0};
            setsockopt(t.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        }
        close(t.fd);  // also leaves the epoll set
        t.fd = -1;
        t.phase = Phase::idle;
        t.sent = 0;
        t.received.clear();
    }

    // `carried`: the status of the same backend under its previous address or settings, whose up/down state
    // stays (the caller knows it from events) while everything else starts over.
    void add_target(const ProbeTarget &spec, uint64_t now, const HealthStatus *carried)
    {
        auto t = std::make_unique<Target>();
        t->spec = spec;
        if (carried) {
            t->status.up = carried->up;
            t->status.last_change_ns = carried->last_change_ns;
        }
        t->seq = next_seq++;
        if (spec.config.kind == ProbeKind::http)
            t->request = http_request(spec);
        uint64_t hash = spread_hash(spec.pool, spec.backend_id);
        uint64_t window_ms = std::min<uint64_t>(std::max<uint32_t>(spec.config.interval_ms, 1), kMaxFirstDelayMs);
        t->phase_ns = (hash % (window_ms * 1000)) * 1000;  // microsecond granularity
        Target &ref = *t;
        by_seq[t->seq] = t.get();
        targets[{spec.pool, spec.backend_id}] = std::move(t);
        if (spec.config.kind == ProbeKind::none) {
            if (!ref.status.up)
                flip(ref, true, "health checks off", now);
            return;  // always up, never probed
        }
        ref.next_due_ns = now + ref.phase_ns;
        set_timer(ref, ref.next_due_ns);
    }

    void remove_target(std::map<std::pair<std::string, uint32_t>, std::unique_ptr<Target>>::iterator it)
    {
        Target &t = *it->second;
        close_probe(t);
        set_timer(t, 0);
        by_seq.erase(t.seq);
        targets.erase(it);
    }

    void set_targets(const std::vector<ProbeTarget> &wanted)
    {
        uint64_t now = monotonic_ns();
        std::set<std::pair<std::string, uint32_t>> keep;
        for (const auto &spec : wanted)
            keep.insert({spec.pool, spec.backend_id});
        for (auto it = targets.begin(); it != targets.end();) {
            auto next = std::next(it);
            if (!keep.count(it->first)) {
                std::erase_if(pending, [&](const HealthEvent &e) {
                    return e.pool == it->first.first && e.backend_id == it->first.second;
                });
                remove_target(it);
            }
            it = next;
        }
        std::set<std::pair<std::string, uint32_t>> seen;
        for (const auto &spec : wanted) {
            std::pair<std::string, uint32_t> key{spec.pool, spec.backend_id};
            if (!seen.insert(key).second)
                continue;  // a duplicate (validation rejects them): the first one counts
            auto it = targets.find(key);
            if (it == targets.end()) {
                add_target(spec, now, nullptr);
                continue;
            }
            if (same_target(it->second->spec, spec))
                continue;  // state and schedule kept
            HealthStatus carried = it->second->status;
            remove_target(it);
            add_target(spec, now, &carried);
        }
    }

    // One completed probe: counters, rise/fall, and the next probe.
    void complete(Target &t, bool ok, const std::string &reason, uint64_t now)
    {
        close_probe(t);
        HealthStatus &s = t.status;
        const HealthConfig &c = t.spec.config;
        bool first = !s.probed;
        s.probed = true;
        s.probes++;
        s.last_rtt_ms = static_cast<double>(now - std::min(now, t.started_ns)) / 1e6;
        if (ok) {
            s.consecutive_ok++;
            s.consecutive_fail = 0;
            s.last_result = "ok";
        } else {
            s.failures++;
            s.consecutive_fail++;
            s.consecutive_ok = 0;
            s.last_result = reason;
        }
        if (ok && !s.up && (first || s.consecutive_ok >= c.rise)) {
            flip(t, true,
                 std::to_string(s.consecutive_ok) + (s.consecutive_ok == 1 ? " consecutive success"
                                                                           : " consecutive successes"),
                 now);
        } else if (!ok && s.up && (first || s.consecutive_fail >= c.fall)) {
            flip(t, false, reason, now);
        }
        set_timer(t, std::max(t.next_due_ns, now));
    }

    void flip(Target &t, bool up, const std::string &reason, uint64_t now)
    {
        t.status.up = up;
        t.status.last_change_ns = now;
        pending.push_back(HealthEvent{t.spec.pool, t.spec.backend_id, up, reason, now});
    }

    void start_probe(Target &t, uint64_t now)
    {
        const HealthConfig &c = t.spec.config;
        // Fixed rate from the backend's phase; a loop that fell behind skips the missed probes.
        t.next_due_ns += interval_ns(t);
        if (t.next_due_ns <= now)
            t.next_due_ns = now + interval_ns(t);
        t.started_ns = now;

        bool udp = c.kind == ProbeKind::udp;
        int family = t.spec.address.is_v4() ? AF_INET : AF_INET6;
        t.fd = socket(family, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (t.fd < 0)
            return complete(t, false, errno_reason(errno), now);
        if (c.source) {
            if (c.source->is_v4() != t.spec.address.is_v4())
                return complete(t, false, "probe source " + c.source->str() + " is of the other address family",
                                now);
            if (!udp) {
                // Pick the source port at connect(), per destination, not at bind(): bind alone would need a
                // port free towards every destination at once.
                int one = 1;
                setsockopt(t.fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
            }
            sockaddr_storage src;
            socklen_t len = to_sockaddr(*c.source, 0, src);
            if (bind(t.fd, reinterpret_cast<sockaddr *>(&src), len) != 0)
                return complete(t, false, errno_reason(errno), now);
        }
        sockaddr_storage dst;
        socklen_t len = to_sockaddr(t.spec.address, c.port, dst);
        int rc = connect(t.fd, reinterpret_cast<sockaddr *>(&dst), len);
        if (rc != 0 && errno != EINPROGRESS)
            return complete(t, false, errno_reason(errno), now);

        epoll_event ev{};
        ev.data.u64 = t.seq;
        if (udp) {
            if (send(t.fd, c.udp_payload.data(), c.udp_payload.size(), MSG_NOSIGNAL) < 0)
                return complete(t, false, errno_reason(errno), now);
            t.phase = Phase::reading;
            ev.events = EPOLLIN;
        } else {
            t.phase = Phase::connecting;
            ev.events = EPOLLOUT;
        }
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, t.fd, &ev) != 0)
            return complete(t, false, errno_reason(errno), now);
        set_timer(t, now + timeout_ns(t));
    }

    void watch(Target &t, uint32_t events)
    {
        epoll_event ev{};
        ev.data.u64 = t.seq;
        ev.events = events;
        epoll_ctl(epfd, EPOLL_CTL_MOD, t.fd, &ev);
    }

    void on_connected(Target &t, uint64_t now)
    {
        if (t.spec.config.kind == ProbeKind::tcp)
            return complete(t, true, "", now);
        t.phase = Phase::sending;
        on_writable(t, now);
    }

    void on_writable(Target &t, uint64_t now)
    {
        while (t.sent < t.request.size()) {
            ssize_t n = send(t.fd, t.request.data() + t.sent, t.request.size() - t.sent, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    watch(t, EPOLLOUT);
                    return;
                }
                if (errno == EINTR)
                    continue;
                return complete(t, false, errno_reason(errno), now);
            }
            t.sent += static_cast<size_t>(n);
        }
        t.phase = Phase::reading;
        watch(t, EPOLLIN | EPOLLRDHUP);
        on_readable_http(t, now);
    }

    void on_readable_http(Target &t, uint64_t now)
    {
        for (;;) {
            char buf[kMaxStatusLine];
            ssize_t n = recv(t.fd, buf, sizeof buf, 0);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    return;  // wait for more
                if (errno == EINTR)
                    continue;
                return complete(t, false, errno_reason(errno), now);
            }
            if (n == 0)
                return complete(t, false,
                                t.received.empty() ? "connection closed without HTTP response" : "bad HTTP response",
                                now);
            t.received.append(buf, static_cast<size_t>(n));
            size_t eol = t.received.find('\n');
            if (eol == std::string::npos) {
                if (t.received.size() >= kMaxStatusLine)
                    return complete(t, false, "bad HTTP response", now);
                continue;
            }
            int code = parse_status_line(std::string_view(t.received).substr(0, eol));
            const HealthConfig &c = t.spec.config;
            if (code < 0)
                return complete(t, false, "bad HTTP response", now);
            if (code < c.http_status_min || code > c.http_status_max)
                return complete(t, false, "HTTP status " + std::to_string(code), now);
            return complete(t, true, "", now);
        }
    }

    void on_readable_udp(Target &t, uint64_t now)
    {
        const std::string &expect = t.spec.config.udp_expect;
        std::array<char, 512> small;
        std::string large;
        char *buf = small.data();
        size_t size = small.size();
        if (expect.size() > size) {
            large.resize(expect.size());
            buf = large.data();
            size = large.size();
        }
        for (;;) {
            ssize_t n = recv(t.fd, buf, size, 0);
            if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    return;
                if (errno == EINTR)
                    continue;
                return complete(t, false, errno_reason(errno), now);  // ICMP port unreachable: ECONNREFUSED
            }
            bool match = static_cast<size_t>(n) >= expect.size() && std::memcmp(buf, expect.data(), expect.size()) == 0;
            return complete(t, match, match ? "" : "unexpected reply", now);
        }
    }

    void on_event(Target &t, uint32_t events, uint64_t now)
    {
        switch (t.phase) {
        case Phase::idle:
            return;
        case Phase::connecting: {
            // Writable without an error condition means connected; SO_ERROR is read only to name a failure.
            if (!(events & (EPOLLERR | EPOLLHUP)))
                return on_connected(t, now);
            int err = 0;
            socklen_t len = sizeof err;
            if (getsockopt(t.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
                err = errno;
            return complete(t, false, err != 0 ? errno_reason(err) : "connection failed", now);
        }
        case Phase::sending:
            return on_writable(t, now);
        case Phase::reading:
            if (t.spec.config.kind == ProbeKind::udp)
                return on_readable_udp(t, now);
            return on_readable_http(t, now);
        }
    }

    void on_timer(Target &t, uint64_t now)
    {
        if (t.fd >= 0)
            return complete(t, false, "timeout", now);
        start_probe(t, now);
    }

    void run(uint64_t now)
    {
        std::array<epoll_event, kEpollBatch> events;
        for (int round = 0; round < 64; ++round) {
            int n = epoll_wait(epfd, events.data(), kEpollBatch, 0);
            for (int i = 0; i < n; ++i) {
                auto it = by_seq.find(events[i].data.u64);
                if (it != by_seq.end() && it->second->fd >= 0)
                    on_event(*it->second, events[i].events, now);
            }
            if (n < kEpollBatch)
                break;
        }
        // Each entry handled is replaced by a later one and a backend starts at most one probe per interval,
        // so this ends.
        while (!timers.empty() && timers.begin()->first <= now) {
            auto [due, seq] = *timers.begin();
            timers.erase(timers.begin());
            Target &t = *by_seq.at(seq);
            t.timer_ns = 0;
            on_timer(t, now);
        }
        // Reported last (with those of set_targets()), so that a callback may call set_targets() or status().
        std::vector<HealthEvent> events_out;
        events_out.swap(pending);
        for (const auto &e : events_out)
            if (on_change)
                on_change(e);
    }
};

HealthChecker::HealthChecker(Callback on_change) : impl_(std::make_unique<Impl>())
{
    impl_->on_change = std::move(on_change);
    impl_->epfd = epoll_create1(EPOLL_CLOEXEC);
}

HealthChecker::~HealthChecker()
{
    for (auto &[key, t] : impl_->targets)
        impl_->close_probe(*t);
    if (impl_->epfd >= 0)
        close(impl_->epfd);
}

void HealthChecker::set_targets(const std::vector<ProbeTarget> &targets) { impl_->set_targets(targets); }

int HealthChecker::fd() const { return impl_->epfd; }

int HealthChecker::next_timeout_ms() const
{
    if (!impl_->pending.empty())
        return 0;  // events from set_targets() wait for run()
    if (impl_->timers.empty())
        return -1;
    uint64_t due = impl_->timers.begin()->first;
    uint64_t now = monotonic_ns();
    if (due <= now)
        return 0;
    due = (due + kTimerStepNs - 1) / kTimerStepNs * kTimerStepNs;
    uint64_t ms = (due - now + kNsPerMs - 1) / kNsPerMs;  // round up: never wake before it is due
    return static_cast<int>(std::min<uint64_t>(ms, INT_MAX));
}

void HealthChecker::run(uint64_t now_ns) { impl_->run(now_ns != 0 ? now_ns : monotonic_ns()); }

std::optional<HealthStatus> HealthChecker::status(const std::string &pool, uint32_t backend_id) const
{
    auto it = impl_->targets.find({pool, backend_id});
    if (it == impl_->targets.end())
        return std::nullopt;
    return it->second->status;
}

std::vector<ProbeTarget> probe_targets(const Config &config)
{
    std::vector<ProbeTarget> targets;
    for (const Pool &pool : config.pools) {
        uint16_t vip_port = 0;
        for (const Vip &v : config.vips)
            if (v.pool == pool.name && !vip_port)
                vip_port = v.port;
        for (const Backend &b : pool.backends) {
            ProbeTarget t{pool.name, b.id, b.address, b.health};
            if (t.config.port == 0)
                t.config.port = vip_port;
            if (t.config.port == 0)
                t.config.kind = ProbeKind::none;  // no VIP uses the pool yet: nothing to probe
            targets.push_back(t);
        }
    }
    return targets;
}

}  // namespace understudy
