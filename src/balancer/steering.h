// The balancer's side of the AF_XDP steering program (bpf/us_steer.bpf.c): on hosts that keep the kernel on
// the NIC, DPDK's net_af_xdp loads that program (devargs xdp_prog=...) and only VIP packets reach the
// workers. The daemon creates the program's pinned VIP map before DPDK starts and keeps it equal to the
// running config's VIPs.
#pragma once

#include <set>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/config.h"
#include "bpfhost/maps.h"

namespace understudy {

class Steering {
  public:
    // True when some port loads the steering program (net_af_xdp with xdp_prog=).
    static bool wanted(const Config &config);
    Status open();
    Status sync(const Config &config);  // VIPs and their fragment entries in, the others out
    nlohmann::ordered_json counters_json() const;

  private:
    std::optional<bpf::SteerMaps> maps_;
    std::set<std::vector<uint8_t>> keys_;
};

}  // namespace understudy
