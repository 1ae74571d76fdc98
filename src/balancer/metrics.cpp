// Prometheus endpoint and DPDK telemetry: see metrics.h.
#include "metrics.h"

#include <netinet/in.h>
#include <rte_telemetry.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <sstream>

#include "dataplane/stats.h"

namespace understudy {

static std::string label(const std::string &v)
{
    std::string out;
    for (char c : v) {
        if (c == '"' || c == '\\')
            out += '\\';
        out += c;
    }
    return out;
}

std::string render_prometheus(const Controller &c)
{
    std::ostringstream o;
    Json stats = c.stats_json();
    auto family = [&o](const std::string &name, const char *type, std::string_view help) {
        o << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n";
    };
    for (int i = 0; i < US_CTR_MAX; i++) {
        std::string name = "understudy_" + std::string(dp::counter_name(i)) + "_total";
        family(name, "counter", dp::counter_help(i));
        o << name << " " << stats["counters"][std::string(dp::counter_name(i))].get<uint64_t>() << "\n";
    }
    family("understudy_drops_total", "counter", "packets dropped, by reason (docs/dataplane.md)");
    for (int i = 0; i < US_DROP_MAX; i++)
        o << "understudy_drops_total{reason=\"" << dp::drop_name(i) << "\"} "
          << stats["drops"][std::string(dp::drop_name(i))].get<uint64_t>() << "\n";
    // The ports' own counters, as their drivers keep them: what never reached a worker (missed, nombuf,
    // errors) and what the NIC failed to send.
    struct PortMetric {
        const char *name, *field, *help;
    };
    static constexpr PortMetric kPortMetrics[] = {
        {"understudy_port_rx_packets_total", "rx_packets", "packets the port received (driver's ipackets)"},
        {"understudy_port_rx_bytes_total", "rx_bytes", "bytes the port received (ibytes)"},
        {"understudy_port_rx_missed_total", "rx_missed", "packets the NIC dropped: RX queue full (imissed)"},
        {"understudy_port_rx_errors_total", "rx_errors", "erroneous packets received (ierrors)"},
        {"understudy_port_rx_nombuf_total", "rx_nombuf", "receives that found the mbuf pool empty (rx_nombuf)"},
        {"understudy_port_tx_packets_total", "tx_packets", "packets the port sent (opackets)"},
        {"understudy_port_tx_bytes_total", "tx_bytes", "bytes the port sent (obytes)"},
        {"understudy_port_tx_errors_total", "tx_errors", "packets the port failed to send (oerrors)"},
    };
    for (const PortMetric &m : kPortMetrics) {
        family(m.name, "counter", m.help);
        for (auto &p : stats["ports"])
            o << m.name << "{port=\"" << label(p["port"]) << "\"} " << p[m.field].get<uint64_t>() << "\n";
    }
    family("understudy_vip_packets_total", "counter", "packets received for a VIP and forwarded");
    for (auto &v : stats["vips"])
        o << "understudy_vip_packets_total{vip=\"" << label(v["vip"]) << "\",pool=\"" << label(v["pool"]) << "\"} "
          << v["packets"].get<uint64_t>() << "\n";
    family("understudy_vip_bytes_total", "counter", "bytes received for a VIP and forwarded");
    for (auto &v : stats["vips"])
        o << "understudy_vip_bytes_total{vip=\"" << label(v["vip"]) << "\",pool=\"" << label(v["pool"]) << "\"} "
          << v["bytes"].get<uint64_t>() << "\n";
    bool any_quic = false;
    for (auto &v : stats["vips"])
        any_quic = any_quic || v.contains("quic");
    if (any_quic)
        family("understudy_vip_quic_packets_total", "counter",
               "QUIC VIPs' packets by how their connection ID routed them (result: docs/quic-lb.md)");
    for (auto &v : stats["vips"])
        if (v.contains("quic"))
            for (auto &[result, n] : v["quic"].items())
                o << "understudy_vip_quic_packets_total{vip=\"" << label(v["vip"]) << "\",pool=\"" << label(v["pool"])
                  << "\",result=\"" << result << "\"} " << n.get<uint64_t>() << "\n";
    family("understudy_backend_packets_total", "counter", "packets forwarded to a backend");
    for (auto &b : stats["backends"])
        o << "understudy_backend_packets_total{pool=\"" << label(b["pool"]) << "\",id=\"" << b["id"].get<uint32_t>()
          << "\",address=\"" << label(b["address"]) << "\"} " << b["packets"].get<uint64_t>() << "\n";
    family("understudy_backend_bytes_total", "counter", "bytes forwarded to a backend, after encapsulation");
    for (auto &b : stats["backends"])
        o << "understudy_backend_bytes_total{pool=\"" << label(b["pool"]) << "\",id=\"" << b["id"].get<uint32_t>()
          << "\",address=\"" << label(b["address"]) << "\"} " << b["bytes"].get<uint64_t>() << "\n";

    Json backends = c.backends_json("");
    family("understudy_backend_health_up", "gauge", "1 when the health probes find the backend up");
    for (auto &b : backends)
        o << "understudy_backend_health_up{pool=\"" << label(b["pool"]) << "\",id=\"" << b["id"].get<uint32_t>()
          << "\"} " << (b["health"] == "up" ? 1 : 0) << "\n";
    family("understudy_backend_operational", "gauge", "1 when the backend may serve (health up, not disabled)");
    for (auto &b : backends)
        o << "understudy_backend_operational{pool=\"" << label(b["pool"]) << "\",id=\"" << b["id"].get<uint32_t>()
          << "\"} " << (b["operational"].get<bool>() ? 1 : 0) << "\n";
    family("understudy_backend_weight", "gauge", "configured weight (0 while draining counts as drain state)");
    for (auto &b : backends)
        o << "understudy_backend_weight{pool=\"" << label(b["pool"]) << "\",id=\"" << b["id"].get<uint32_t>()
          << "\",state=\"" << label(b["state"]) << "\"} " << b["weight"].get<uint32_t>() << "\n";
    family("understudy_backend_bucket_share", "gauge", "fraction of the pool's buckets the backend serves");
    for (auto &b : backends)
        o << "understudy_backend_bucket_share{pool=\"" << label(b["pool"]) << "\",id=\"" << b["id"].get<uint32_t>()
          << "\"} " << b["share"].get<double>() << "\n";

    family("understudy_table_generation", "gauge", "snapshots published since start");
    o << "understudy_table_generation " << c.generation() << "\n";
    const UpdateRecord &u = c.last_update();
    family("understudy_table_update_publish_seconds", "gauge",
           "last update: from its cause (probe verdict, request) to the new table being live");
    o << "understudy_table_update_publish_seconds " << double(u.published_ns - u.verdict_ns) / 1e9 << "\n";
    family("understudy_table_update_first_packet_seconds", "gauge",
           "last update: from its cause to the first packet forwarded with the new table (-1: none yet)");
    o << "understudy_table_update_first_packet_seconds " << c.last_update_first_packet_seconds() << "\n";
    const ControlPauses &p = c.pauses();
    family("understudy_control_longest_pause_seconds", "gauge",
           "longest time the control thread was busy between two waits (nothing probed or answered meanwhile)");
    o << "understudy_control_longest_pause_seconds " << p.longest_ms / 1e3 << "\n";
    family("understudy_control_pauses_total", "counter", "control-thread busy periods longer than the threshold");
    o << "understudy_control_pauses_total{over=\"10ms\"} " << p.over_10ms << "\n";
    o << "understudy_control_pauses_total{over=\"100ms\"} " << p.over_100ms << "\n";
    family("understudy_conn_table_entries", "gauge", "live connection-table entries over all workers");
    o << "understudy_conn_table_entries " << stats["conn_table_entries"].get<uint64_t>() << "\n";
    return o.str();
}

MetricsServer::MetricsServer(EventLoop &loop, std::function<std::string()> render)
    : loop_(loop), render_(std::move(render))
{
}

MetricsServer::~MetricsServer()
{
    while (!requests_.empty())
        close_client(requests_.begin()->first);
    if (listen_fd_ >= 0) {
        loop_.remove(listen_fd_);
        ::close(listen_fd_);
    }
}

Status MetricsServer::listen(const std::string &address_port)
{
    auto ep = Endpoint::parse(address_port);
    if (!ep)
        return Error{"control.metrics: " + ep.error()};
    sockaddr_storage ss{};
    socklen_t len;
    if (ep->address.is_v4()) {
        auto *sa = reinterpret_cast<sockaddr_in *>(&ss);
        sa->sin_family = AF_INET;
        sa->sin_port = htons(ep->port);
        std::memcpy(&sa->sin_addr, ep->address.bytes.data() + 12, 4);
        len = sizeof *sa;
    } else {
        auto *sa = reinterpret_cast<sockaddr_in6 *>(&ss);
        sa->sin6_family = AF_INET6;
        sa->sin6_port = htons(ep->port);
        std::memcpy(&sa->sin6_addr, ep->address.bytes.data(), 16);
        len = sizeof *sa;
    }
    listen_fd_ = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (listen_fd_ < 0 || bind(listen_fd_, reinterpret_cast<sockaddr *>(&ss), len) != 0 ||
        ::listen(listen_fd_, 256) != 0)
        return Error{"cannot serve metrics on " + address_port + ": " + std::strerror(errno)};
    loop_.add(listen_fd_, EPOLLIN, [this](uint32_t) {
        for (;;) {
            int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0)
                return;
            if (requests_.size() >= kMaxMetricsClients) {
                auto oldest = std::min_element(requests_.begin(), requests_.end(), [](const auto &a, const auto &b) {
                    return a.second.since_ms < b.second.since_ms;
                });
                close_client(oldest->first);
            }
            requests_[fd] = Request{"", monotonic_ns() / 1'000'000};
            loop_.add(fd, EPOLLIN | EPOLLRDHUP, [this, fd](uint32_t ev) { on_client(fd, ev); });
        }
    });
    return Ok{};
}

void MetricsServer::close_client(int fd)
{
    loop_.remove(fd);
    ::close(fd);
    requests_.erase(fd);
}

void MetricsServer::sweep(uint64_t now_ms)
{
    std::vector<int> late;
    for (const auto &[fd, r] : requests_)
        if (now_ms - r.since_ms > kMetricsRequestMs)
            late.push_back(fd);
    for (int fd : late)
        close_client(fd);
}

// HTTP/1.0 just enough for scrapers: one GET, one response, close.
void MetricsServer::on_client(int fd, uint32_t)
{
    auto it = requests_.find(fd);
    if (it == requests_.end())
        return;
    std::string &req = it->second.text;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0)
        req.append(buf, size_t(n));
    if (req.find("\r\n\r\n") == std::string::npos && req.find("\n\n") == std::string::npos) {
        if (n == 0 || req.size() > 8192)
            close_client(fd);
        return;
    }
    std::string status = "200 OK", body;
    // The path exactly (a query string allowed): /metricsXYZ is not /metrics.
    if (req.rfind("GET /metrics ", 0) == 0 || req.rfind("GET /metrics?", 0) == 0 || req.rfind("GET / ", 0) == 0) {
        body = render_();
    } else {
        status = "404 Not Found";
        body = "understudy serves metrics at /metrics\n";
    }
    std::string resp = "HTTP/1.0 " + status + "\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: " +
                       std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
    // The response is small enough for the socket buffer; a scraper that does not read it loses it.
    size_t off = 0;
    for (int tries = 0; off < resp.size() && tries < 1000; tries++) {
        ssize_t w = ::write(fd, resp.data() + off, resp.size() - off);
        if (w > 0)
            off += size_t(w);
        else if (errno != EAGAIN && errno != EINTR)
            break;
        else
            usleep(100);
    }
    close_client(fd);
}

TelemetryExport &TelemetryExport::instance()
{
    // Never destroyed: DPDK's telemetry thread may still call in while the process's statics are torn down
    // at exit (rte_eal_cleanup does not join it).
    static TelemetryExport *t = new TelemetryExport;
    return *t;
}

void TelemetryExport::update(const Json &stats, const Json &backends)
{
    std::lock_guard<std::mutex> lock(mutex_);
    stats_ = stats;
    backends_ = backends;
}

static int telemetry_stats(const char *, const char *, rte_tel_data *d)
{
    auto &t = TelemetryExport::instance();
    std::lock_guard<std::mutex> lock(t.mutex_);
    rte_tel_data_start_dict(d);
    if (t.stats_.is_null())
        return 0;
    for (auto &[k, v] : t.stats_["counters"].items())
        rte_tel_data_add_dict_u64(d, k.c_str(), v.get<uint64_t>());
    for (auto &[k, v] : t.stats_["drops"].items())
        rte_tel_data_add_dict_u64(d, ("drop_" + k).c_str(), v.get<uint64_t>());
    rte_tel_data_add_dict_u64(d, "conn_table_entries", t.stats_["conn_table_entries"].get<uint64_t>());
    rte_tel_data_add_dict_u64(d, "table_generation", t.stats_["generation"].get<uint64_t>());
    return 0;
}

static int telemetry_backends(const char *, const char *, rte_tel_data *d)
{
    auto &t = TelemetryExport::instance();
    std::lock_guard<std::mutex> lock(t.mutex_);
    rte_tel_data_start_dict(d);
    if (t.stats_.is_null())
        return 0;
    for (auto &b : t.stats_["backends"]) {
        std::string key = b["pool"].get<std::string>() + "/" + std::to_string(b["id"].get<uint32_t>());
        rte_tel_data_add_dict_u64(d, key.c_str(), b["packets"].get<uint64_t>());
    }
    return 0;
}

static int telemetry_ports(const char *, const char *, rte_tel_data *d)
{
    auto &t = TelemetryExport::instance();
    std::lock_guard<std::mutex> lock(t.mutex_);
    rte_tel_data_start_dict(d);
    if (t.stats_.is_null() || !t.stats_.contains("ports"))
        return 0;
    for (auto &p : t.stats_["ports"]) {
        rte_tel_data *port = rte_tel_data_alloc();
        if (!port)
            return -ENOMEM;
        rte_tel_data_start_dict(port);
        for (auto &[k, v] : p.items())
            if (v.is_number_unsigned())
                rte_tel_data_add_dict_u64(port, k.c_str(), v.get<uint64_t>());
        rte_tel_data_add_dict_container(d, p["port"].get<std::string>().c_str(), port, 0);
    }
    return 0;
}

void TelemetryExport::register_commands()
{
    rte_telemetry_register_cmd("/understudy/stats", telemetry_stats,
                               "understudy counters and drop reasons. No parameters");
    rte_telemetry_register_cmd("/understudy/backends", telemetry_backends,
                               "Packets forwarded per backend (pool/id). No parameters");
    rte_telemetry_register_cmd("/understudy/ports", telemetry_ports,
                               "Each port's own counters (rte_eth_stats_get), by port name. No parameters");
}

}  // namespace understudy
