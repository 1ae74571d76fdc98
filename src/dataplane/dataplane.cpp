// EAL and port bring-up, worker launch, snapshot publication and statistics: see dataplane.h.
#include "dataplane.h"

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>

#include <cstring>
#include <ctime>

namespace understudy::dp {

static std::string rte_error(int rc) { return std::string(rte_strerror(rc < 0 ? -rc : rc)); }

// Virtual devices are created by EAL from --vdev; anything else (a PCI address...) is allow-listed.
static bool is_vdev(const std::string &devargs) { return devargs.rfind("net_", 0) == 0; }
static std::string device_name(const std::string &devargs) { return devargs.substr(0, devargs.find(',')); }

Dataplane::~Dataplane()
{
    stop();
    close();
}

Status Dataplane::init(const DataplaneOptions &o)
{
    std::vector<std::string> args{"understudy"};
    args.insert(args.end(), o.eal_args.begin(), o.eal_args.end());
    for (size_t i = 0; i < o.ports.size(); i++) {
        const PortSpec &p = o.ports[i];
        args.push_back(is_vdev(p.devargs) ? "--vdev=" + p.devargs : "--allow=" + p.devargs);
        if (p.exception_tap)
            args.push_back("--vdev=net_tap" + std::to_string(i) + ",iface=" + p.tap_iface);
    }
    std::vector<char *> argv;
    for (auto &a : args)
        argv.push_back(a.data());
    argv.push_back(nullptr);
    if (sched_getaffinity(0, sizeof process_cpus_, &process_cpus_) != 0)
        CPU_ZERO(&process_cpus_);
    if (rte_eal_init(int(args.size()), argv.data()) < 0)
        return Error{"EAL initialisation failed: " + rte_error(rte_errno) + " (arguments: see the log above)"};
    eal_ = true;

    if (o.worker_lcores.empty()) {
        unsigned lc;
        RTE_LCORE_FOREACH_WORKER(lc)
        lcores_.push_back(lc);
    } else {
        for (unsigned lc : o.worker_lcores) {
            if (!rte_lcore_is_enabled(lc) || lc == rte_get_main_lcore())
                return Error{"worker lcore " + std::to_string(lc) + " is not a worker lcore of EAL (-l/--lcores)"};
            lcores_.push_back(lc);
        }
    }
    size_t queues = 0;
    for (const auto &p : o.ports)
        queues += p.rx_queues;
    if (queues == 0)
        return Error{"no ports configured ([[dataplane.port]])"};
    if (lcores_.size() < queues)
        return Error{std::to_string(queues) + " RX queues need as many worker lcores; EAL has " +
                     std::to_string(lcores_.size()) + " (give more with -l)"};
    lcores_.resize(queues);

    const unsigned needed = std::max(8191u, unsigned(queues) * 4096 + 4095);
    const unsigned mbufs = std::max(needed, o.mbufs);
    pool_ = rte_pktmbuf_pool_create("mbufs", mbufs, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE, int(rte_socket_id()));
    if (!pool_) {
        uint32_t each = rte_mempool_calc_obj_size(sizeof(rte_mbuf) + RTE_MBUF_DEFAULT_BUF_SIZE, 0, nullptr);
        uint64_t mib = (uint64_t(mbufs) * each + (1u << 20) - 1) >> 20;
        return Error{"cannot allocate the mbuf pool (" + std::to_string(mbufs) + " mbufs, " + std::to_string(mib) +
                     " MiB): " + rte_error(rte_errno) + "; reserve more hugepages (tools/setup.sh)" +
                     (mbufs > needed ? " or lower [dataplane] mbufs" : "")};
    }

    size_t rcu_size = rte_rcu_qsbr_get_memsize(uint32_t(queues));
    rcu_ = static_cast<rte_rcu_qsbr *>(rte_zmalloc("rcu", rcu_size, RTE_CACHE_LINE_SIZE));
    if (!rcu_ || rte_rcu_qsbr_init(rcu_, uint32_t(queues)) != 0)
        return Error{"cannot set up RCU"};

    uint64_t tsc_per_tick = std::max<uint64_t>(1, rte_get_tsc_hz() / 1024);
    ports_started_ = true;
    // Every port gets a TX queue per worker: worker i transmits on queue i of whichever port it sends by.
    const uint16_t tx_queues = uint16_t(queues);
    for (size_t i = 0; i < o.ports.size(); i++) {
        const PortSpec &p = o.ports[i];
        uint16_t id;
        if (rte_eth_dev_get_port_by_name(device_name(p.devargs).c_str(), &id) != 0)
            return Error{"port " + p.name + ": no device '" + device_name(p.devargs) + "' after EAL start"};
        if (auto st = setup_port(id, p.rx_queues, tx_queues); !st)
            return Error{"port " + p.name + ": " + st.error()};
        port_ids_.push_back(id);
        uint16_t tap = kNoPort;
        if (p.exception_tap) {
            std::string tap_name = "net_tap" + std::to_string(i);
            if (rte_eth_dev_get_port_by_name(tap_name.c_str(), &tap) != 0)
                return Error{"port " + p.name + ": exception tap did not come up"};
            if (auto st = setup_port(tap, 1, tx_queues); !st)  // worker 0 of the port drains the kernel's packets
                return Error{"port " + p.name + " exception tap: " + st.error()};
            rte_ether_addr mac;
            rte_eth_macaddr_get(id, &mac);
            rte_eth_dev_default_mac_addr_set(tap, &mac);  // the kernel answers ARP with the NIC's MAC
        }
        tap_ids_.push_back(tap);
    }
    for (size_t i = 0; i < o.ports.size(); i++) {
        const PortSpec &p = o.ports[i];
        uint16_t tx = port_ids_[i];
        for (size_t j = 0; j < o.ports.size(); j++)
            if (!p.tx_port.empty() && o.ports[j].name == p.tx_port)
                tx = port_ids_[j];
        for (uint16_t q = 0; q < p.rx_queues; q++) {
            auto w = std::make_unique<Worker>();
            std::memset(&w->stats, 0, sizeof w->stats);
            w->cfg.port = port_ids_[i];
            w->cfg.queue = q;
            w->cfg.tx_port = tx;
            w->cfg.tx_queue = uint16_t(workers_.size());
            w->cfg.tap_port = tap_ids_[i];
            w->cfg.poll_tap = tap_ids_[i] != kNoPort && q == 0;
            w->cfg.rcu_id = unsigned(workers_.size());
            w->cfg.non_vip = o.non_vip;
            w->cfg.stop_after_rx = o.stop_after_rx;
            w->rcu = rcu_;
            w->snapshot = &snapshot_;
            w->stop = &stop_;
            w->tsc_per_tick = tsc_per_tick;
            if (!conn_table_create(w->conn, o.conn_table_size, int(rte_lcore_to_socket_id(lcores_[workers_.size()]))))
                return Error{"cannot allocate the connection table (" + std::to_string(o.conn_table_size) +
                             " entries): reserve more hugepages or lower conn_table_size"};
            rte_rcu_qsbr_thread_register(rcu_, w->cfg.rcu_id);
            workers_.push_back(std::move(w));
        }
    }
    return Ok{};
}

Status Dataplane::setup_port(uint16_t port, uint16_t rx_queues, uint16_t tx_queues)
{
    rte_eth_dev_info info;
    int rc = rte_eth_dev_info_get(port, &info);
    if (rc != 0)
        return Error{"cannot read device info: " + rte_error(rc)};
    rte_eth_conf conf{};
    if (rx_queues > 1 && info.flow_type_rss_offloads) {
        conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
        conf.rx_adv_conf.rss_conf.rss_hf = (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP) & info.flow_type_rss_offloads;
    }
    // A transmit-only port still gets one RX queue, which nobody polls: some drivers need one.
    uint16_t rxq = std::max<uint16_t>(1, rx_queues);
    if (rxq > info.max_rx_queues || tx_queues > info.max_tx_queues)
        return Error{"device supports " + std::to_string(info.max_rx_queues) + " RX and " +
                     std::to_string(info.max_tx_queues) + " TX queues; " + std::to_string(rxq) + " and " +
                     std::to_string(tx_queues) + " needed"};
    if ((rc = rte_eth_dev_configure(port, rxq, tx_queues, &conf)) != 0)
        return Error{"configure: " + rte_error(rc)};
    uint16_t rx_desc = 1024, tx_desc = 1024;
    rte_eth_dev_adjust_nb_rx_tx_desc(port, &rx_desc, &tx_desc);
    int socket = rte_eth_dev_socket_id(port);
    for (uint16_t q = 0; q < rxq; q++)
        if ((rc = rte_eth_rx_queue_setup(port, q, rx_desc, socket, nullptr, pool_)) != 0)
            return Error{"RX queue " + std::to_string(q) + ": " + rte_error(rc)};
    for (uint16_t q = 0; q < tx_queues; q++)
        if ((rc = rte_eth_tx_queue_setup(port, q, tx_desc, socket, nullptr)) != 0)
            return Error{"TX queue " + std::to_string(q) + ": " + rte_error(rc)};
    if ((rc = rte_eth_dev_start(port)) != 0)
        return Error{"start: " + rte_error(rc)};
    rte_eth_promiscuous_enable(port);  // VIPs are not the port's own address; best effort on virtual devices
    return Ok{};
}

rte_ether_addr Dataplane::port_mac(size_t port) const
{
    rte_ether_addr mac{};
    if (port < port_ids_.size())
        rte_eth_macaddr_get(port_ids_[port], &mac);
    return mac;
}

void Dataplane::publish(std::unique_ptr<Snapshot> s)
{
    const Snapshot *old = snapshot_.exchange(s.release(), std::memory_order_acq_rel);
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    last_swap_ns_ = uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
    last_swap_tsc_ = rte_rdtsc();
    if (old) {
        // Every worker reports quiescence once per loop, so this waits for at most one burst each.
        if (running_)
            rte_rcu_qsbr_synchronize(rcu_, RTE_QSBR_THRID_INVALID);
        delete old;
    }
}

Status Dataplane::start()
{
    if (!current())
        return Error{"no snapshot published before start"};
    for (size_t i = 0; i < workers_.size(); i++) {
        int rc = rte_eal_remote_launch(worker_main, workers_[i].get(), lcores_[i]);
        if (rc != 0)
            return Error{"cannot launch worker on lcore " + std::to_string(lcores_[i]) + ": " + rte_error(rc)};
    }
    running_ = true;
    return Ok{};
}

void Dataplane::wait()
{
    if (!running_)
        return;
    for (unsigned lc : lcores_)
        rte_eal_wait_lcore(lc);
    running_ = false;
}

void Dataplane::stop()
{
    stop_.store(true, std::memory_order_relaxed);
    wait();
}

void Dataplane::close()
{
    if (!eal_)
        return;
    if (ports_started_) {
        for (uint16_t id : port_ids_) {
            rte_eth_dev_stop(id);
            rte_eth_dev_close(id);
        }
        for (uint16_t id : tap_ids_) {
            if (id != kNoPort) {
                rte_eth_dev_stop(id);
                rte_eth_dev_close(id);
            }
        }
        ports_started_ = false;
    }
    delete snapshot_.exchange(nullptr);
    for (auto &w : workers_)
        conn_table_free(w->conn);
    workers_.clear();
    rte_free(rcu_);
    rcu_ = nullptr;
    if (pool_)
        rte_mempool_free(pool_);
    pool_ = nullptr;
    rte_eal_cleanup();
    eal_ = false;
}

cpu_set_t Dataplane::spare_cpus() const
{
    cpu_set_t cpus = process_cpus_;
    if (running_)
        for (unsigned lc : lcores_) {
            rte_cpuset_t busy = rte_lcore_cpuset(lc);
            for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
                if (CPU_ISSET(cpu, &busy))
                    CPU_CLR(cpu, &cpus);
        }
    return cpus;
}

StatsTotal Dataplane::stats() const
{
    StatsTotal t;
    for (const auto &w : workers_)
        t.add(w->stats);
    return t;
}

uint64_t Dataplane::first_packet_tsc(uint64_t generation) const
{
    uint64_t first = 0;
    for (const auto &w : workers_) {
        if (w->seen_generation.load(std::memory_order_acquire) != generation)
            continue;
        uint64_t t = w->first_packet_tsc.load(std::memory_order_relaxed);
        if (first == 0 || t < first)
            first = t;
    }
    return first;
}

uint64_t Dataplane::conn_occupancy() const
{
    uint64_t now = rte_rdtsc() / std::max<uint64_t>(1, rte_get_tsc_hz() / 1024);
    uint64_t n = 0;
    for (const auto &w : workers_)
        n += conn_table_occupancy(w->conn, uint32_t(now), 3600u * 1024u);
    return n;
}

}  // namespace understudy::dp
