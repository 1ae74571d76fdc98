// "Explain this flow": the whole ordering decision for one client of one VIP, as understudyctl lookup
// prints it offline (from a config) and, later, live (with the daemon's health).
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>


#include "config.h"
#include "ordering.h"

namespace understudy {

struct LookupResult {
    const Vip *vip = nullptr;
    const Pool *pool = nullptr;
    uint64_t session_hash = 0;
    uint32_t bucket = 0;
    std::vector<uint32_t> ordering;   // server IDs, best first
    std::optional<uint32_t> primary;  // empty only for a pool with no backends
    std::optional<uint32_t> serving;  // empty when no server is operational
};

class Lookup {
  public:
    // down: server IDs to treat as not operational, in every pool. Backends whose admin state is
    // disabled are never operational; draining ones rank with weight 0.
    Lookup(const Config &config, std::set<uint32_t> down);
    // Live form: (pool, id) pairs that health checks found down.
    Lookup(const Config &config, std::set<std::pair<std::string, uint32_t>> down_in_pool);

    Result<LookupResult> lookup(const Endpoint &vip, Protocol protocol, const Endpoint &client) const;
    // One batch line: "SRC_ADDR SRC_PORT DST_ADDR DST_PORT PROTO".
    Result<LookupResult> lookup_line(std::string_view line) const;
    bool operational(const Pool &pool, const Backend &backend) const;

  private:
    const Config &config_;
    std::set<uint32_t> down_;
    std::set<std::pair<std::string, uint32_t>> down_in_pool_;
};

std::string hex16(uint64_t value);

// "ADDR:PORT/PROTO" with IPv6 as "[ADDR]:PORT/PROTO".
Result<std::pair<Endpoint, Protocol>> parse_vip_spec(std::string_view text);
Result<std::set<uint32_t>> parse_id_list(std::string_view text);

}  // namespace understudy
