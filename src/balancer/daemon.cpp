// The daemon's control thread: start-up, then one event loop for signals (SIGINT/SIGTERM stop, SIGHUP
// reloads), health probes, the control API, the metrics endpoint and a 1-second housekeeping timer.
#include "daemon.h"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <utility>

#include "daemon/api.h"
#include "balancer_api.h"
#include "daemon/control_loop.h"
#include "controller.h"
#include "daemon/event_loop.h"
#include "daemon/log.h"
#include "daemon/notify.h"
#include "metrics.h"
#include "report.h"
#include "steering.h"

namespace understudy {

static void log(const std::string &msg) { write_log(LogPriority::info, "understudy: " + msg + "\n"); }
static void log_warning(const std::string &msg) { write_log(LogPriority::warning, "understudy: " + msg + "\n"); }
static void log_error(const std::string &msg) { write_log(LogPriority::error, "understudy: " + msg + "\n"); }

static dp::DataplaneOptions dataplane_options(const Config &config, const std::vector<std::string> &extra)
{
    dp::DataplaneOptions o;
    o.eal_args = config.dataplane.eal_args;
    o.eal_args.insert(o.eal_args.end(), extra.begin(), extra.end());
    for (const auto &p : config.dataplane.ports) {
        bool tap = config.dataplane.non_vip == NonVipPolicy::kernel;
        std::string iface = exception_tap_name(config.dataplane, o.ports.size());  // the name check looked at
        o.ports.push_back(dp::PortSpec{p.name, p.devargs, p.rx_queues, tap && p.rx_queues > 0, iface, p.tx_port, {}});
    }
    o.worker_lcores = config.dataplane.worker_lcores;
    o.non_vip = config.dataplane.non_vip;
    o.conn_table_size = config.dataplane.conn_table_size;
    o.mbufs = config.dataplane.mbufs;
    o.mtu = config.dataplane.mtu;
    o.data_room = config.dataplane.data_room();
    o.log = log;
    return o;
}

// What a reload cannot change without a restart: the ports, lcores, EAL, the exception path and the control
// endpoints. Each is named: a reload that says ok has applied everything it was given.
static Status restart_only_changes(const Config &a, const Config &b)
{
    const auto &x = a.dataplane, &y = b.dataplane;
    std::vector<std::string> what;
    if (x.ports.size() != y.ports.size())
        what.push_back("dataplane.port (how many)");
    for (size_t i = 0; i < std::min(x.ports.size(), y.ports.size()); i++) {
        const PortConfig &p = x.ports[i], &q = y.ports[i];
        std::string at = "dataplane.port[" + std::to_string(i) + "].";
        if (p.name != q.name)
            what.push_back(at + "name");
        if (p.devargs != q.devargs)
            what.push_back(at + "devargs");
        if (p.rx_queues != q.rx_queues)
            what.push_back(at + "rx_queues");
        if (p.tx_port != q.tx_port)
            what.push_back(at + "tx_port");
    }
    if (x.eal_args != y.eal_args)
        what.push_back("dataplane.eal_args");
    if (x.worker_lcores != y.worker_lcores)
        what.push_back("dataplane.workers");
    if (x.non_vip != y.non_vip)
        what.push_back("dataplane.non_vip");
    if (x.exception_iface != y.exception_iface)
        what.push_back("dataplane.exception_iface");
    if (x.exception_addresses != y.exception_addresses)
        what.push_back("dataplane.exception_addresses");
    if (x.conn_table_size != y.conn_table_size)
        what.push_back("dataplane.conn_table_size");
    if (x.mbufs != y.mbufs)
        what.push_back("dataplane.mbufs");
    if (x.mtu != y.mtu)
        what.push_back("dataplane.mtu");
    if (x.data_room() != y.data_room())
        what.push_back("dataplane.mbuf_data_room");
    if (a.control.socket != b.control.socket)
        what.push_back("control.socket");
    if (a.control.socket_group != b.control.socket_group)
        what.push_back("control.socket_group");
    if (a.control.metrics != b.control.metrics)
        what.push_back("control.metrics");
    if (what.empty())
        return Ok{};
    std::string list;
    for (const auto &w : what)
        list += " " + w;
    return Error{"reload: these settings only change with a restart:" + list +
                 "; nothing was applied (restore them, or restart the daemon)"};
}

extern "C" char **environ;

// Runs a command (iproute2) and waits for it; returns its exit status.
static int run_command(std::vector<std::string> argv)
{
    std::vector<char *> args;
    for (auto &a : argv)
        args.push_back(a.data());
    args.push_back(nullptr);
    pid_t pid;
    if (posix_spawnp(&pid, args[0], nullptr, nullptr, args.data(), environ) != 0)
        return -1;
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// The host's own addresses on the exception interface, before probes start: the kernel answers ARP and
// ICMP for them and sources health probes from them.
static Status configure_exception_iface(const Config &config)
{
    if (config.dataplane.non_vip != NonVipPolicy::kernel || config.dataplane.exception_addresses.empty())
        return Ok{};
    const std::string &iface = config.dataplane.exception_iface;
    for (const std::string &a : config.dataplane.exception_addresses)
        if (run_command({"ip", "addr", "replace", a, "dev", iface}) != 0)
            return Error{"cannot add " + a + " to " + iface + " (ip addr replace failed)"};
    if (run_command({"ip", "link", "set", iface, "up"}) != 0)
        return Error{"cannot bring " + iface + " up"};
    return Ok{};
}

int run_daemon(const DaemonOptions &o)
{
    auto loaded = load_config(o.config);
    if (!loaded) {
        write_log(LogPriority::error, loaded.error() + "\n");
        return 2;
    }
    if (auto st = validate_for_dataplane(*loaded); !st) {
        write_log(LogPriority::error, st.error() + "\n");
        return 2;
    }
    Config initial = std::move(*loaded);

    // Block the signals before EAL starts its threads so that only the control thread's signalfd sees them.
    int sfd = block_control_signals();
    raise_descriptor_limit();

    // The steering program's maps exist, with the VIPs in, before net_af_xdp loads the program.
    Steering steering;
    if (Steering::wanted(initial)) {
        if (auto st = steering.open(); !st) {
            log_error(st.error());
            return 1;
        }
        if (auto st = steering.sync(initial); !st) {
            log_error(st.error());
            return 1;
        }
    }

    dp::Dataplane dataplane;
    if (auto st = dataplane.init(dataplane_options(initial, o.eal_args)); !st) {
        log_error(st.error());
        return 1;
    }
    TelemetryExport::instance().register_commands();
    if (auto st = configure_exception_iface(initial); !st) {
        log_error(st.error());
        return 1;
    }

    EventLoop loop;
    Controller controller(dataplane, loop, log);
    controller.on_config_applied = [&](const Config &c) {
        if (auto st = steering.sync(c); !st)
            log_error(st.error());
    };
    controller.extend_stats = [&](Json &j) {
        if (Steering::wanted(controller.config()))
            j["steering"] = steering.counters_json();
    };
    if (auto st = controller.start(initial); !st) {
        log_error(st.error());
        return 1;
    }
    Reload reload = [&](std::function<void(Status)> done) {
        auto next = load_config(o.config);
        if (!next)
            return done(Error{next.error()});
        if (auto st = validate_for_dataplane(*next); !st)
            return done(st);
        if (auto st = restart_only_changes(controller.config(), *next); !st)
            return done(st);
        controller.change(std::move(*next), "reload", monotonic_ns(), std::move(done));
    };

    BalancerApi api_handler(controller, loop, reload);
    ApiServer api(loop, api_handler);
    if (auto st = api.listen(initial.control.socket, initial.control.socket_group); !st) {
        log_error(st.error());
        return 1;
    }
    std::unique_ptr<MetricsServer> metrics;
    if (!initial.control.metrics.empty()) {
        metrics = std::make_unique<MetricsServer>(loop, [&controller] { return render_prometheus(controller); });
        if (auto st = metrics->listen(initial.control.metrics); !st) {
            log_error(st.error());
            return 1;
        }
    }
    if (auto st = dataplane.start(); !st) {
        log_error(st.error());
        return 1;
    }
    std::string forwarding = "forwarding: " + std::to_string(initial.vips.size()) + " VIPs, " +
                             std::to_string(initial.pools.size()) + " pools, " + std::to_string(dataplane.workers()) +
                             " workers; control socket " + initial.control.socket +
                             (initial.control.metrics.empty() ? "" : "; metrics http://" + initial.control.metrics + "/metrics");
    log(forwarding);
    // Ready only now: the ports are started and the workers poll them (systemd's Type=notify; no-op elsewhere).
    notify::send("READY=1\nSTATUS=" + forwarding);

    // Housekeeping every 200 ms: next hops (so a new backend is reachable quickly), and once a second the
    // copy of the counters DPDK telemetry reads.
    unsigned ticks = 0;
    // A SIGHUP while a change is being built is kept and served once that change is live (an API reload is
    // refused instead: its caller gets the answer). The first waiting SIGHUP's done (it logs the outcome and
    // tells the service manager READY=1) is kept for that reload; later ones are served by the same reload.
    std::function<void(Status)> sighup_waiting;
    Reload sighup = [&](std::function<void(Status)> done) {
        if (!controller.changing())
            return reload(std::move(done));
        if (!sighup_waiting)
            sighup_waiting = std::move(done);
        log("SIGHUP while a change is being built: the file is read again once that change is live");
    };
    auto after_events = [&] {
        controller.flush_health();
        if (sighup_waiting && !controller.changing())
            reload(std::exchange(sighup_waiting, nullptr));
    };
    ControlLoop{loop, sfd, controller.health(), sighup, log, 200,
                [&] {
                    controller.refresh_neighbors();
                    uint64_t now_ms = monotonic_ns() / 1'000'000;
                    api.sweep(now_ms);
                    if (metrics)
                        metrics->sweep(now_ms);
                    if (ticks++ % 5 == 0)
                        TelemetryExport::instance().update(controller.stats_json(), controller.backends_json(""));
                },
                after_events, &controller.pauses(), log_warning}
        .run();
    // Stop: workers joined, then the ports stopped and closed. The EAL goes last, in ~Dataplane, once the
    // objects declared after the dataplane (the controller's bucket arrays are hugepage memory) are gone:
    // rte_eal_cleanup() unmaps that memory, and freeing into it afterwards crashed the daemon (exit 139).
    dataplane.stop();
    write_log(LogPriority::info, stats_text(controller.config(), *dataplane.current(), dataplane.stats()));
    dataplane.close_ports();
    ::close(sfd);
    return 0;
}

}  // namespace understudy
