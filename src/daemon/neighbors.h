// The kernel's neighbour table (ARP and NDP), read over rtnetlink: next-hop MACs for backends and
// gateways. The kernel learns them through the exception path like any host would.
#pragma once

#include <array>
#include <map>
#include <optional>

#include "core/address.h"

namespace understudy {

using MacAddress = std::array<uint8_t, 6>;

// Reachable, stale or permanent entries; incomplete and failed ones are left out.
std::map<Address, MacAddress> read_neighbors();

// Makes the kernel resolve address (ARP/ND) by sending it an empty UDP datagram to the discard port.
void solicit_neighbor(const Address &address);

}  // namespace understudy
