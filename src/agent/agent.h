// understudy-agent: the backend side of the idea. It runs the same health prober and table builder as the
// balancer, and keeps the maps of the XDP program in bpf/ (which re-checks the ordering of every packet a
// balancer encapsulates, serves it here or forwards it on) in step with this host's view of every pool.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "daemon/health.h"
#include "daemon/neighbors.h"
#include "core/config.h"
#include "core/table.h"
#include "bpfhost/maps.h"

namespace understudy {

using Json = nlohmann::ordered_json;
using Logger = std::function<void(const std::string &)>;

class Agent {
  public:
    explicit Agent(Logger log);
    ~Agent();

    // Loads the XDP program, fills its maps from config and attaches it to [agent] interface.
    Status start(Config config);
    // A new config, validated whole first; on any error nothing changes.
    Status apply_config(Config next, const std::string &cause);
    void on_health_event(const HealthEvent &event);
    void refresh_neighbors();
    void stop();  // detaches the program

    HealthChecker &health() { return health_; }
    const Config &config() const { return config_; }
    // Configurations applied: 1 after start, one more per successful reload.
    uint64_t generation() const { return generation_; }
    std::set<std::pair<std::string, uint32_t>> down_pairs() const;

    Json status_json() const;
    Json backends_json(const std::string &pool_filter) const;
    Json health_json(const std::string &pool_filter) const;
    Json stats_json() const;

  private:
    struct PoolState {
        std::unique_ptr<PoolTable> table;
        uint16_t my_slot = US_NO_SERVER;
    };

    bool operational(const std::string &pool, const Backend &b) const;
    Status write_pool(size_t index);
    Status write_vips();
    Status write_config();
    Status write_sources();
    Status write_backend_ids(uint32_t index, const PoolTable &table);
    Status forget_backend_ids(uint32_t index, const std::set<uint32_t> &keep);
    std::unique_ptr<PoolState> build_pool(const Pool &pool) const;

    Logger log_;
    Config config_;
    std::unique_ptr<bpf::BackendProgram> program_;
    int ifindex_ = 0;
    uint32_t xdp_flags_ = 0;
    bool attached_ = false;
    std::vector<Address> own_;
    std::array<uint8_t, 6> own_mac_{};
    std::vector<std::unique_ptr<PoolState>> pools_;  // in config order: the index is the BPF pool index
    std::set<std::vector<uint8_t>> vip_keys_;        // what is in us_vips, to delete what a reload drops
    std::set<std::pair<Address, uint32_t>> source_keys_;  // what is in us_tunnel_sources
    std::map<uint32_t, std::set<uint32_t>> backend_ids_;  // pool index -> the IDs in us_backend_ids
    std::map<std::pair<std::string, uint32_t>, bool> health_up_;
    std::map<Address, MacAddress> neighbors_;
    HealthChecker health_;
    uint64_t started_ns_ = 0;
    uint64_t table_swaps_ = 0;
    uint64_t generation_ = 0;
};

}  // namespace understudy
