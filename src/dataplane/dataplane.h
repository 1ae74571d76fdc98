// The data plane as the control code sees it: EAL, ports, the exception-path taps, worker lcores, RCU
// publication of snapshots, and the statistics sum. Cold code; the hot loop is in worker.cpp.
#pragma once

#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_mempool.h>
#include <rte_rcu_qsbr.h>
#include <sched.h>

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/config.h"
#include "snapshot.h"
#include "stats.h"
#include "worker.h"

namespace understudy::dp {

struct PortSpec {
    std::string name;
    std::string devargs;
    uint16_t rx_queues = 1;      // 0: transmit only
    bool exception_tap = false;  // create a net_tap for non-VIP traffic
    std::string tap_iface;
    std::string tx_port;         // name of the port to forward out of ("" = this one)
    // The port's own MAC when the device's is not the one its frames are sent to (replay: the address the
    // capture was taken at). Frames to other unicast MACs are dropped as not_for_us.
    std::optional<rte_ether_addr> mac;
};


struct DataplaneOptions {
    std::vector<std::string> eal_args;  // after argv[0]; devices are added from ports
    std::vector<PortSpec> ports;
    std::vector<unsigned> worker_lcores; // empty: every worker lcore EAL has, in order
    NonVipPolicy non_vip = NonVipPolicy::kernel;
    uint32_t conn_table_size = 1u << 20;
    uint32_t mbufs = 0;                  // the pool holds at least this many (0: sized from the RX queues)
    uint64_t stop_after_rx = 0;          // replay: each worker returns after this many packets
    uint16_t mtu = 1500;                 // set on every port ([dataplane] mtu)
    uint32_t data_room = 2048;           // frame bytes an mbuf holds past DPDK's headroom (>= mtu + 22)
    std::function<void(const std::string &)> log;  // start-up notes (ports); none when empty
};

class Dataplane {
  public:
    ~Dataplane();

    // EAL, mempool, ports, taps, workers' state. Errors name the port or the EAL step.
    Status init(const DataplaneOptions &options);
    rte_ether_addr port_mac(size_t port = 0) const;
    // Publishes s and frees the one it replaces after every worker has passed a quiescent state.
    void publish(std::unique_ptr<Snapshot> s);
    const Snapshot *current() const { return snapshot_.load(std::memory_order_acquire); }
    // When the last publish() swapped the pointer: the moment workers could see the new snapshot
    // (CLOCK_MONOTONIC and TSC), before the grace period that publish() then waits for.
    uint64_t last_swap_ns() const { return last_swap_ns_; }
    uint64_t last_swap_tsc() const { return last_swap_tsc_; }
    Status start();       // launches the workers
    void wait();          // replay: returns when every worker has returned
    void stop();          // asks workers to return and waits for them
    // Stops the workers, then stops and closes every port and tap (flushes pcap output, hands the drivers'
    // mbufs back to the pool). Idempotent; the EAL and the memory stay.
    void close_ports();
    // close_ports(), frees the snapshot, connection tables, RCU state and mbuf pool, then rte_eal_cleanup(),
    // which unmaps all hugepage memory: every other object holding DPDK memory (the controller's bucket
    // arrays, EntryArray) must be gone before. ~Dataplane calls it, so an owner declared after the Dataplane
    // is destroyed first.
    void close();
    StatsTotal stats() const;
    // Every port's own counters, in configuration order. Control thread only.
    std::vector<PortStats> port_stats() const;
    uint64_t conn_occupancy() const;
    size_t workers() const { return workers_.size(); }
    // CPUs the control thread may spread its own threads over (table builds): every CPU the process had
    // before EAL pinned this thread to the main lcore, less the workers' CPUs while they run. May be empty.
    cpu_set_t spare_cpus() const;
    // TSC of the first packet any worker handled under snapshot generation, or 0 if none yet.
    uint64_t first_packet_tsc(uint64_t generation) const;

  private:
    // socket: the port's NUMA socket, for its queues and the mbuf pool its RX queues take from.
    Status setup_port(uint16_t port, uint16_t rx_queues, uint16_t tx_queues, uint16_t mtu, const std::string &name,
                      int socket);
    Status create_pools(const DataplaneOptions &o, const std::vector<int> &port_sockets);
    rte_mempool *pool_on(int socket) const;
    // How a port gets [dataplane] mtu (dataplane.cpp): decided from the device's bounds and its kernel
    // interface, if any, before configuring it; applied after.
    struct MtuPlan {
        std::string iface;      // the kernel interface's name, "" when the device has none
        int kernel_mtu = -1;    // its MTU (-1: none, or unreadable)
        uint16_t configure_mtu = 0;  // rxmode.mtu (0: the driver's default)
        bool set = false;       // rte_eth_dev_set_mtu after configuring
    };
    Status plan_mtu(const rte_eth_dev_info &info, uint16_t mtu, const std::string &name, MtuPlan &plan);
    Status apply_mtu(uint16_t port, const MtuPlan &plan, uint16_t mtu);

    // Worker state lives in hugepage memory on its lcore's NUMA socket (rte_zmalloc_socket), not on
    // whichever node the control thread that creates it runs on.
    struct FreeWorker {
        void operator()(Worker *w) const;
    };
    std::vector<std::unique_ptr<Worker, FreeWorker>> workers_;
    std::vector<unsigned> lcores_;
    std::vector<uint16_t> port_ids_;
    std::vector<std::string> port_names_;
    std::vector<rte_ether_addr> port_macs_;
    std::function<void(const std::string &)> log_;
    std::vector<uint16_t> tap_ids_;
    cpu_set_t process_cpus_{};
    std::vector<std::pair<int, rte_mempool *>> pools_;  // one mbuf pool per NUMA socket with ports on it
    rte_rcu_qsbr *rcu_ = nullptr;
    std::atomic<const Snapshot *> snapshot_{nullptr};
    std::atomic<bool> stop_{false};
    bool eal_ = false, running_ = false, ports_started_ = false;
    uint64_t last_swap_ns_ = 0, last_swap_tsc_ = 0;
};

}  // namespace understudy::dp
