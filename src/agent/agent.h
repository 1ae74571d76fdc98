// understudy-agent: the backend side of the idea. It keeps the same cluster view as the balancer (health probes,
// table builder: src/daemon/cluster_view.h) and writes it into the maps of the XDP program in bpf/ (which
// re-checks the ordering of every packet a balancer encapsulates, serves it here or forwards it on).
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bpfhost/maps.h"
#include "core/config.h"
#include "daemon/cluster_view.h"
#include "daemon/control_loop.h"
#include "daemon/health.h"
#include "daemon/off_thread.h"

namespace understudy {

using Logger = std::function<void(const std::string &)>;

class Agent {
  public:
    Agent(EventLoop &loop, Logger log);
    ~Agent();

    // Loads the XDP program, fills its maps from config and attaches it to [agent] interface.
    Status start(Config config);
    // The same without a program: writes go to maps, nothing is attached, own are this host's addresses.
    Status start_with(Config config, bpf::BackendMaps &maps, std::vector<Address> own);
    // A new config, validated whole first, built aside (off the control thread when heavy), then written;
    // when any map write fails, the previous state is written back and nothing changed. done is called on
    // the control thread. One change at a time.
    void change(Config next, const std::string &cause, std::function<void(Status)> done);
    bool changing() const { return builder_.busy(); }
    void on_health_event(const HealthEvent &event);
    void flush_health();  // the verdicts that came together, written together
    void refresh_neighbors();
    void stop();  // detaches the program

    HealthChecker &health() { return health_; }
    ControlPauses &pauses() { return pauses_; }
    const Config &config() const { return view_->config(); }
    const ClusterView &view() const { return *view_; }
    // Configurations applied: 1 after start, one more per successful change.
    uint64_t generation() const { return view_->generation(); }
    std::set<std::pair<std::string, uint32_t>> down_pairs() const { return view_->down_pairs(); }
    bool maps_in_sync() const { return dirty_.empty(); }

    Json status_json() const;
    Json backends_json(const std::string &pool_filter) const { return view_->backends_json(pool_filter); }
    Json health_json(const std::string &pool_filter) const { return view_->health_json(pool_filter, health_); }
    Json stats_json() const;

  private:
    Status write_all(size_t pools_before);
    Status write_pool(size_t index);
    Status write_vips();
    Status write_config();
    Status write_sources();
    Status write_backend_ids(uint32_t index, const PoolTable &table);
    Status forget_backend_ids(uint32_t index, const std::set<uint32_t> &keep);
    Status forget_pool(uint32_t index);
    Status clear_slots(uint32_t index, size_t from);
    void retry_dirty();

    Logger log_;
    std::unique_ptr<bpf::BackendProgram> program_;
    bpf::BackendMaps *maps_ = nullptr;  // program_, or a test's
    std::unique_ptr<ClusterView> view_;
    OffThread builder_;
    int ifindex_ = 0;
    uint32_t xdp_flags_ = 0;
    bool attached_ = false;
    std::array<uint8_t, 6> own_mac_{};
    // What the maps hold, updated write by write, so that writing a state again removes whatever else is there.
    std::set<std::vector<uint8_t>> vip_keys_;
    std::set<std::pair<Address, uint32_t>> source_keys_;
    std::map<uint32_t, std::set<uint32_t>> backend_ids_;  // pool index -> the IDs in us_backend_ids
    std::map<uint32_t, size_t> slots_written_;            // pool index -> us_backends entries not zero
    std::set<size_t> dirty_;  // pools whose maps a failed write left behind the view: written again each tick
    std::vector<HealthEvent> verdicts_;
    HealthChecker health_;
    ControlPauses pauses_;
    uint64_t started_ns_ = 0;
    uint64_t table_swaps_ = 0;
};

}  // namespace understudy
