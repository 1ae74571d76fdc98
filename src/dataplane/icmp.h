// The answer to a packet too big for the path to its backend: ICMP "fragmentation needed" (RFC 792, 1191)
// or ICMPv6 "packet too big" (RFC 4443), built in the packet's own mbuf. The slow path: called only for
// packets over the MTU, after the worker has decided an answer is due and allowed (worker.cpp).
#pragma once

#include <rte_ether.h>
#include <rte_mbuf.h>

#include <cstdint>

#include "us_parse.h"

namespace understudy::dp {

// How much of the offending packet an answer quotes at most: an ICMP error over IPv4 is kept within 576
// bytes (RFC 1812 4.3.2.3), an ICMPv6 error within the IPv6 minimum MTU of 1280 (RFC 4443 2.4 (c)).
constexpr uint16_t kIcmp4MaxQuote = 576 - 20 - 8;
constexpr uint16_t kIcmp6MaxQuote = 1280 - 40 - 8;
constexpr uint16_t kIpv6MinMtu = 1280;

// Rewrites m (a single-segment frame, parsed into p) into the answer to its sender: Ethernet to the frame's
// source MAC from port_mac, untagged; IP from the address the packet was sent to (the VIP) to its source;
// the MTU field says mtu (at least 1280 for IPv6); then the start of the packet, from its IP header.
// Returns 0, or US_DROP_no_headroom when the buffer cannot hold the new headers in front of the quote.
int make_too_big(rte_mbuf *m, const us_parsed &p, const rte_ether_addr &port_mac, uint16_t mtu);

}  // namespace understudy::dp
