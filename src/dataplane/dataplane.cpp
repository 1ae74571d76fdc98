// EAL and port bring-up, worker launch, snapshot publication and statistics: see dataplane.h.
#include "dataplane.h"

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>

#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <map>

namespace understudy::dp {

static_assert(kMaxEthdevs == RTE_MAX_ETHPORTS && kMaxLcore == RTE_MAX_LCORE,
              "src/core/config_limits.h must state this DPDK's limits, which check enforces");

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
    log_ = o.log;
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

    // Each port's NUMA socket: where its device is, or for a device on none (virtual devices) that of the
    // first worker that polls it. Its RX queues take mbufs from the pool on that socket.
    std::vector<int> port_sockets;
    for (size_t i = 0, worker = 0; i < o.ports.size(); i++) {
        uint16_t id;
        if (rte_eth_dev_get_port_by_name(device_name(o.ports[i].devargs).c_str(), &id) != 0)
            return Error{"port " + o.ports[i].name + ": no device '" + device_name(o.ports[i].devargs) +
                         "' after EAL start"};
        int socket = rte_eth_dev_socket_id(id);
        if (socket < 0)
            socket = int(rte_lcore_to_socket_id(o.ports[i].rx_queues ? lcores_[worker] : rte_get_main_lcore()));
        port_sockets.push_back(socket);
        worker += o.ports[i].rx_queues;
    }
    if (auto st = create_pools(o, port_sockets); !st)
        return st;

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
        rte_eth_dev_get_port_by_name(device_name(p.devargs).c_str(), &id);  // found above
        if (auto st = setup_port(id, p.rx_queues, tx_queues, o.mtu, p.name, port_sockets[i]); !st)
            return Error{"port " + p.name + ": " + st.error()};
        port_ids_.push_back(id);
        port_names_.push_back(p.name);
        rte_ether_addr own;
        rte_eth_macaddr_get(id, &own);
        if (p.mac) {
            own = *p.mac;
            rte_eth_dev_default_mac_addr_set(id, &own);  // where the driver can; the workers use it anyway
        }
        port_macs_.push_back(own);
        uint16_t tap = kNoPort;
        if (p.exception_tap) {
            std::string tap_name = "net_tap" + std::to_string(i);
            if (rte_eth_dev_get_port_by_name(tap_name.c_str(), &tap) != 0)
                return Error{"port " + p.name + ": exception tap did not come up"};
            // Worker 0 of the port drains the kernel's packets. The tap keeps its own MTU (the host's traffic).
            if (auto st = setup_port(tap, 1, tx_queues, 0, p.name + " exception tap", port_sockets[i]); !st)
                return Error{"port " + p.name + " exception tap: " + st.error()};
            rte_ether_addr mac = own;
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
            int socket = int(rte_lcore_to_socket_id(lcores_[workers_.size()]));
            void *mem = rte_zmalloc_socket("worker", sizeof(Worker), RTE_CACHE_LINE_SIZE, socket);
            if (!mem)
                return Error{"cannot allocate worker state (" + std::to_string(sizeof(Worker) >> 10) +
                             " KiB) on NUMA socket " + std::to_string(socket) + ": reserve more hugepages"};
            std::unique_ptr<Worker, FreeWorker> w(new (mem) Worker());
            w->cfg.port = port_ids_[i];
            w->cfg.queue = q;
            w->cfg.tx_port = tx;
            w->cfg.tx_queue = uint16_t(workers_.size());
            w->cfg.tap_port = tap_ids_[i];
            w->cfg.mac = port_macs_[i];
            w->cfg.poll_tap = tap_ids_[i] != kNoPort && q == 0;
            w->cfg.rcu_id = unsigned(workers_.size());
            w->cfg.non_vip = o.non_vip;
            w->cfg.stop_after_rx = o.stop_after_rx;
            w->rcu = rcu_;
            w->snapshot = &snapshot_;
            w->stop = &stop_;
            w->tsc_per_tick = tsc_per_tick;
            if (!conn_table_create(w->conn, o.conn_table_size, socket))
                return Error{"cannot allocate the connection table (" + std::to_string(o.conn_table_size) +
                             " entries): reserve more hugepages or lower conn_table_size"};
            rte_rcu_qsbr_thread_register(rcu_, w->cfg.rcu_id);
            workers_.push_back(std::move(w));
        }
    }
    for (size_t k = 0; k < workers_.size(); k++) {
        workers_[k]->ip_id = uint16_t(k + 1);
        workers_[k]->ip_id_stride = uint16_t(workers_.size());
    }
    return Ok{};
}

void Dataplane::FreeWorker::operator()(Worker *w) const
{
    w->~Worker();
    rte_free(w);
}

// One mbuf pool per NUMA socket that has ports, sized for the RX queues on it (an exception tap's one
// included). One mbuf holds a whole frame of the MTU (with two VLAN tags): the workers handle single
// segments only.
Status Dataplane::create_pools(const DataplaneOptions &o, const std::vector<int> &port_sockets)
{
    const uint32_t max_frame = uint32_t(o.mtu) + RTE_ETHER_HDR_LEN + 2 * RTE_VLAN_HLEN;
    if (o.data_room < max_frame || o.data_room + RTE_PKTMBUF_HEADROOM > UINT16_MAX)
        return Error{"mbuf data room of " + std::to_string(o.data_room) + " bytes: frames of MTU " +
                     std::to_string(o.mtu) + " need " + std::to_string(max_frame) + " (at most " +
                     std::to_string(UINT16_MAX - RTE_PKTMBUF_HEADROOM) + ")"};
    const uint16_t buf_size = uint16_t(RTE_PKTMBUF_HEADROOM + o.data_room);
    std::map<int, unsigned> queues_on;
    for (size_t i = 0; i < o.ports.size(); i++)
        queues_on[port_sockets[i]] += std::max<unsigned>(1, o.ports[i].rx_queues) + (o.ports[i].exception_tap ? 1 : 0);
    for (const auto &[socket, queues] : queues_on) {
        const unsigned needed = std::max(8191u, queues * 4096 + 4095);
        const unsigned mbufs = std::max(needed, o.mbufs);
        std::string name = "mbufs_s" + std::to_string(socket);
        rte_mempool *pool = rte_pktmbuf_pool_create(name.c_str(), mbufs, 256, 0, buf_size, socket);
        if (!pool) {
            uint32_t each = rte_mempool_calc_obj_size(sizeof(rte_mbuf) + buf_size, 0, nullptr);
            uint64_t mib = (uint64_t(mbufs) * each + (1u << 20) - 1) >> 20;
            return Error{"cannot allocate the mbuf pool on NUMA socket " + std::to_string(socket) + " (" +
                         std::to_string(mbufs) + " mbufs, " + std::to_string(mib) + " MiB): " +
                         rte_error(rte_errno) + "; reserve more hugepages on that socket (tools/setup.sh)" +
                         (mbufs > needed ? " or lower [dataplane] mbufs" : "")};
        }
        pools_.emplace_back(socket, pool);
    }
    return Ok{};
}

rte_mempool *Dataplane::pool_on(int socket) const
{
    for (const auto &[s, pool] : pools_)
        if (s == socket)
            return pool;
    return pools_.front().second;
}

// The MTU of a kernel network interface, or -1.
static int kernel_mtu(unsigned if_index, std::string &name)
{
    char buf[IF_NAMESIZE] = {};
    if (!if_indextoname(if_index, buf))
        return -1;
    name = buf;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    ifreq ifr{};
    std::memcpy(ifr.ifr_name, buf, IF_NAMESIZE);
    int rc = ioctl(fd, SIOCGIFMTU, &ifr);
    ::close(fd);
    return rc == 0 ? ifr.ifr_mtu : -1;
}

// The MTU of a port ([dataplane] mtu), decided before rte_eth_dev_configure and applied after it.
//  - A device on a kernel interface (net_af_packet, net_af_xdp, net_tap, net_pcap iface=) whose MTU is
//    already at least ours is left as it is: the interface is the host's, and lowering it would shrink the
//    host's own traffic; the balancer still sends nothing larger than ours. One below ours is raised by the
//    driver (rte_eth_dev_set_mtu sets the interface's MTU), or the start fails when the driver cannot.
//  - Any other device (a NIC, memory) gets ours through its configuration and its MTU operation; a driver
//    without one (-ENOTSUP: capture files, rings) has no MTU of its own and takes it as it is.
Status Dataplane::plan_mtu(const rte_eth_dev_info &info, uint16_t mtu, const std::string &name, MtuPlan &plan)
{
    // ethdev's own bounds (as rte_eth_dev_configure checks them), for the message.
    uint32_t overhead = info.max_mtu != UINT16_MAX && info.max_rx_pktlen > info.max_mtu
                            ? info.max_rx_pktlen - info.max_mtu
                            : RTE_ETHER_HDR_LEN + RTE_ETHER_CRC_LEN;
    uint32_t most = std::min<uint32_t>(info.max_mtu, info.max_rx_pktlen > overhead ? info.max_rx_pktlen - overhead : 0);
    bool takes = mtu <= most && mtu >= info.min_mtu;
    plan = MtuPlan{};
    if (info.if_index != 0) {
        plan.iface = "#" + std::to_string(info.if_index);
        plan.kernel_mtu = kernel_mtu(info.if_index, plan.iface);
    }
    std::string range = std::to_string(info.min_mtu) + "-" + std::to_string(most);
    if (plan.kernel_mtu >= int(mtu)) {
        plan.configure_mtu = takes ? mtu : 0;
        if (log_ && plan.kernel_mtu > int(mtu))
            log_("port " + name + ": interface " + plan.iface + " has MTU " + std::to_string(plan.kernel_mtu) +
                 ", above [dataplane] mtu = " + std::to_string(mtu) + ": left as it is; the balancer sends at most " +
                 std::to_string(mtu) + "-byte packets");
        else if (log_ && !takes)
            log_("port " + name + ": the driver takes MTUs of " + range + " only; interface " + plan.iface +
                 " has MTU " + std::to_string(plan.kernel_mtu) + " = [dataplane] mtu: left as it is");
        return Ok{};
    }
    if (!takes)
        return Error{"[dataplane] mtu = " + std::to_string(mtu) + " is outside what the device takes (" + range + ")" +
                     (plan.kernel_mtu >= 0 ? ", and interface " + plan.iface + " has MTU " +
                                                 std::to_string(plan.kernel_mtu)
                                           : std::string())};
    plan.configure_mtu = mtu;
    plan.set = true;
    return Ok{};
}

Status Dataplane::apply_mtu(uint16_t port, const MtuPlan &plan, uint16_t mtu)
{
    if (!plan.set)
        return Ok{};
    int rc = rte_eth_dev_set_mtu(port, mtu);
    if (rc == 0)
        return Ok{};
    if (rc != -ENOTSUP)
        return Error{"cannot set the MTU to " + std::to_string(mtu) + ": " + rte_error(rc)};
    if (plan.kernel_mtu >= 0)  // below ours, or plan_mtu would have left it
        return Error{"its driver cannot set the MTU, and interface " + plan.iface + " has MTU " +
                     std::to_string(plan.kernel_mtu) + ", below [dataplane] mtu = " + std::to_string(mtu) +
                     ": raise it first (ip link set dev " + plan.iface + " mtu " + std::to_string(mtu) +
                     ") or lower [dataplane] mtu"};
    if (plan.kernel_mtu == -1 && plan.iface.empty())
        return Ok{};  // no interface: nothing but the configuration limits its frames
    return Error{"its driver cannot set the MTU, and the MTU of interface " + plan.iface + " cannot be read"};
}

std::vector<PortStats> Dataplane::port_stats() const
{
    std::vector<PortStats> out;
    for (size_t i = 0; i < port_ids_.size(); i++) {
        PortStats p;
        p.name = port_names_[i];
        rte_eth_stats st{};
        if (rte_eth_stats_get(port_ids_[i], &st) == 0) {
            p.rx_packets = st.ipackets;
            p.rx_bytes = st.ibytes;
            p.rx_missed = st.imissed;
            p.rx_errors = st.ierrors;
            p.rx_nombuf = st.rx_nombuf;
            p.tx_packets = st.opackets;
            p.tx_bytes = st.obytes;
            p.tx_errors = st.oerrors;
        }
        out.push_back(std::move(p));
    }
    return out;
}

// mtu 0 leaves the device's MTU as it is.
Status Dataplane::setup_port(uint16_t port, uint16_t rx_queues, uint16_t tx_queues, uint16_t mtu,
                             const std::string &name, int socket)
{
    rte_eth_dev_info info;
    int rc = rte_eth_dev_info_get(port, &info);
    if (rc != 0)
        return Error{"cannot read device info: " + rte_error(rc)};
    rte_eth_conf conf{};
    MtuPlan plan;
    if (mtu) {
        if (auto st = plan_mtu(info, mtu, name, plan); !st)
            return st;
        conf.rxmode.mtu = plan.configure_mtu;
    }
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
    if (mtu)
        if (auto st = apply_mtu(port, plan, mtu); !st)
            return st;
    uint16_t rx_desc = 1024, tx_desc = 1024;
    rte_eth_dev_adjust_nb_rx_tx_desc(port, &rx_desc, &tx_desc);
    for (uint16_t q = 0; q < rxq; q++)
        if ((rc = rte_eth_rx_queue_setup(port, q, rx_desc, socket, nullptr, pool_on(socket))) != 0)
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
    return port < port_macs_.size() ? port_macs_[port] : rte_ether_addr{};
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

void Dataplane::close_ports()
{
    stop();  // no worker may poll a port being stopped
    if (!ports_started_)
        return;
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

// The hugepage files of EAL file prefix `prefix` left in every hugetlbfs mount: DPDK 22.11 removes a page's
// file when the page is freed, but memory its libraries never free (ethdev's rte_eth_dev_data memzone) keeps
// one file, and with it one hugepage, until some later primary process reclaims it. Called after
// rte_eal_cleanup(), when nothing maps them any more.
static void remove_hugepage_files(const std::string &prefix)
{
    FILE *mounts = fopen("/proc/mounts", "re");
    if (!mounts || prefix.empty()) {
        if (mounts)
            fclose(mounts);
        return;
    }
    const std::string stem = prefix + "map_";
    char line[4096];
    while (fgets(line, sizeof line, mounts)) {
        char dev[512], dir[1024], type[64];
        if (sscanf(line, "%511s %1023s %63s", dev, dir, type) != 3 || std::strcmp(type, "hugetlbfs") != 0)
            continue;
        std::error_code ec;
        for (const auto &entry : std::filesystem::directory_iterator(dir, ec)) {
            std::string name = entry.path().filename().string();
            // <prefix>map_N, or <prefix>map_S-L with --single-file-segments
            if (name.size() > stem.size() && name.compare(0, stem.size(), stem) == 0 &&
                name.find_first_not_of("0123456789-", stem.size()) == std::string::npos)
                std::filesystem::remove(entry.path(), ec);
        }
    }
    fclose(mounts);
}

void Dataplane::close()
{
    if (!eal_)
        return;
    close_ports();
    delete snapshot_.exchange(nullptr);
    for (auto &w : workers_)
        conn_table_free(w->conn);
    workers_.clear();
    rte_free(rcu_);
    rcu_ = nullptr;
    for (auto &[socket, pool] : pools_)
        rte_mempool_free(pool);  // after the ports: closing them returned the mbufs their queues held
    pools_.clear();
    const std::string prefix = std::filesystem::path(rte_eal_get_runtime_dir()).filename().string();
    rte_eal_cleanup();
    eal_ = false;
    remove_hugepage_files(prefix);
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
