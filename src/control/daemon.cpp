// The daemon's control thread: start-up, snapshot publication, neighbour refresh and clean shutdown on
// SIGINT/SIGTERM.
#include "daemon.h"

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cstring>
#include <iostream>

#include "core/table.h"
#include "dataplane/dataplane.h"
#include "neighbors.h"
#include "report.h"

namespace understudy {

static void log(const std::string &msg) { std::cerr << "understudy: " << msg << std::endl; }

namespace {

struct Control {
    Config config;
    dp::Dataplane dataplane;
    std::vector<std::unique_ptr<PoolTable>> tables;
    std::map<Address, MacAddress> neighbors;
    uint64_t generation = 0;

    Status publish()
    {
        std::vector<const PoolTable *> ptrs;
        for (auto &t : tables)
            ptrs.push_back(t.get());
        dp::SnapshotOptions sopt;
        sopt.port_mac = dataplane.port_mac(0);
        sopt.resolve_mac = [this](const Address &a) -> std::optional<rte_ether_addr> {
            auto it = neighbors.find(a);
            if (it == neighbors.end())
                return std::nullopt;
            rte_ether_addr mac;
            std::memcpy(mac.addr_bytes, it->second.data(), 6);
            return mac;
        };
        auto s = dp::build_snapshot(config, ptrs, sopt, ++generation);
        if (!s)
            return Error{s.error()};
        dataplane.publish(std::move(*s));
        return Ok{};
    }
};

}  // namespace

int run_daemon(const DaemonOptions &o)
{
    auto loaded = load_config(o.config);
    if (!loaded) {
        std::cerr << loaded.error() << "\n";
        return 2;
    }
    if (auto st = validate_for_dataplane(*loaded); !st) {
        std::cerr << st.error() << "\n";
        return 2;
    }
    auto control = std::make_unique<Control>();
    control->config = std::move(*loaded);
    const Config &config = control->config;

    // Block the signals before EAL starts its threads so that only the control thread's signalfd sees them.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    int sfd = signalfd(-1, &signals, SFD_CLOEXEC);

    dp::DataplaneOptions dopt;
    dopt.eal_args = config.dataplane.eal_args;
    dopt.eal_args.insert(dopt.eal_args.end(), o.eal_args.begin(), o.eal_args.end());
    for (const auto &p : config.dataplane.ports) {
        bool tap = config.dataplane.non_vip == NonVipPolicy::kernel;
        dopt.ports.push_back(dp::PortSpec{p.name, p.devargs, p.rx_queues, tap,
                                          config.dataplane.ports.size() == 1 ? config.dataplane.exception_iface
                                                                             : config.dataplane.exception_iface + std::to_string(dopt.ports.size())});
    }
    dopt.worker_lcores = config.dataplane.worker_lcores;
    dopt.non_vip = config.dataplane.non_vip;
    dopt.conn_table_size = config.dataplane.conn_table_size;
    if (auto st = control->dataplane.init(dopt); !st) {
        log(st.error());
        return 1;
    }

    for (const Pool &pool : config.pools) {
        control->tables.push_back(std::make_unique<PoolTable>(config.secret, pool.table_bits));
        control->tables.back()->build(members_of(pool, {}));
    }
    for (const Pool &pool : config.pools)
        for (const Backend &b : pool.backends)
            if (!b.mac)
                solicit_neighbor(b.address);
    control->neighbors = read_neighbors();
    if (auto st = control->publish(); !st) {
        log(st.error());
        return 1;
    }
    if (auto st = control->dataplane.start(); !st) {
        log(st.error());
        return 1;
    }
    log("forwarding: " + std::to_string(config.vips.size()) + " VIPs, " + std::to_string(config.pools.size()) +
        " pools, " + std::to_string(control->dataplane.workers()) + " workers");

    for (;;) {
        pollfd pfd{sfd, POLLIN, 0};
        int rc = poll(&pfd, 1, 1000);
        if (rc > 0) {
            signalfd_siginfo si;
            if (read(sfd, &si, sizeof si) == sizeof si) {
                if (si.ssi_signo == SIGHUP) {
                    log("SIGHUP: reload is not implemented yet; ignoring");
                    continue;
                }
                log(std::string("signal ") + strsignal(int(si.ssi_signo)) + ": stopping");
                break;
            }
        }
        // Next hops learnt by the kernel since the last look (probes and ARP go through the exception path);
        // ask the kernel to resolve the backends it does not know yet.
        auto neighbors = read_neighbors();
        for (const Pool &pool : config.pools)
            for (const Backend &b : pool.backends)
                if (!b.mac && !config.dataplane.gateway_mac && !neighbors.count(b.address))
                    solicit_neighbor(b.address);
        if (neighbors != control->neighbors) {
            control->neighbors = std::move(neighbors);
            if (auto st = control->publish(); !st)
                log("republish failed: " + st.error());
        }
    }
    control->dataplane.stop();
    std::cerr << stats_text(config, *control->dataplane.current(), control->dataplane.stats());
    control->dataplane.close();
    ::close(sfd);
    return 0;
}

}  // namespace understudy
