// ICMP "fragmentation needed" and ICMPv6 "packet too big", built in place: see icmp.h.
#include "icmp.h"

#include <rte_byteorder.h>
#include <rte_icmp.h>
#include <rte_ip.h>

#include <algorithm>
#include <cstring>

namespace understudy::dp {

int make_too_big(rte_mbuf *m, const us_parsed &p, const rte_ether_addr &port_mac, uint16_t mtu)
{
    const bool v6 = p.ip_version == 6;
    const uint16_t ip_len = v6 ? sizeof(rte_ipv6_hdr) : sizeof(rte_ipv4_hdr);
    const uint16_t hdr = uint16_t(sizeof(rte_ether_hdr) + ip_len + 8);
    const uint16_t quote = std::min<uint16_t>(p.l3_len, v6 ? kIcmp6MaxQuote : kIcmp4MaxQuote);
    // The quote stays where it is; the new headers go in front of it, over the old Ethernet header and
    // VLAN tags and into the headroom.
    uint32_t quote_at = uint32_t(m->data_off) + p.l3_offset;
    if (quote_at < hdr)
        return US_DROP_no_headroom;
    const uint8_t *frame = rte_pktmbuf_mtod(m, const uint8_t *);
    const uint8_t *l3 = frame + p.l3_offset;
    rte_ether_addr sender;
    std::memcpy(&sender, frame + 6, 6);  // read before the new headers overwrite it

    m->data_off = uint16_t(quote_at - hdr);
    m->data_len = uint16_t(hdr + quote);
    m->pkt_len = m->data_len;
    m->ol_flags = 0;
    uint8_t *out = rte_pktmbuf_mtod(m, uint8_t *);
    auto *eth = reinterpret_cast<rte_ether_hdr *>(out);
    eth->dst_addr = sender;
    eth->src_addr = port_mac;
    eth->ether_type = rte_cpu_to_be_16(v6 ? RTE_ETHER_TYPE_IPV6 : RTE_ETHER_TYPE_IPV4);
    uint8_t *ip = out + sizeof(rte_ether_hdr);
    uint8_t *icmp = ip + ip_len;

    if (!v6) {
        auto *h = reinterpret_cast<rte_ipv4_hdr *>(ip);
        h->version_ihl = 0x45;
        h->type_of_service = 0;
        h->total_length = rte_cpu_to_be_16(uint16_t(ip_len + 8 + quote));
        h->packet_id = 0;
        h->fragment_offset = rte_cpu_to_be_16(RTE_IPV4_HDR_DF_FLAG);  // atomic: never fragmented (RFC 6864)
        h->time_to_live = 64;
        h->next_proto_id = IPPROTO_ICMP;
        std::memcpy(&h->src_addr, l3 + 16, 4);  // from the VIP the packet went to ...
        std::memcpy(&h->dst_addr, l3 + 12, 4);  // ... back to its source
        h->hdr_checksum = 0;
        h->hdr_checksum = rte_ipv4_cksum(h);
        // Type 3 (destination unreachable), code 4 (fragmentation needed and DF set), 16 unused bits, the
        // next-hop MTU (RFC 1191).
        icmp[0] = 3;
        icmp[1] = 4;
        icmp[2] = icmp[3] = 0;
        icmp[4] = icmp[5] = 0;
        icmp[6] = uint8_t(mtu >> 8);
        icmp[7] = uint8_t(mtu);
        uint16_t sum = uint16_t(~rte_raw_cksum(icmp, 8u + quote));
        std::memcpy(icmp + 2, &sum, 2);
        return 0;
    }

    auto *h = reinterpret_cast<rte_ipv6_hdr *>(ip);
    h->vtc_flow = rte_cpu_to_be_32(6u << 28);
    h->payload_len = rte_cpu_to_be_16(uint16_t(8 + quote));
    h->proto = IPPROTO_ICMPV6;
    h->hop_limits = 64;
    std::memcpy(h->src_addr, l3 + 24, 16);
    std::memcpy(h->dst_addr, l3 + 8, 16);
    // Type 2 (packet too big), code 0, the MTU as 32 bits: never below the IPv6 minimum, which every link
    // must carry (a smaller figure would only make the sender fragment, RFC 8200 5).
    uint32_t reported = std::max<uint32_t>(mtu, kIpv6MinMtu);
    icmp[0] = 2;
    icmp[1] = 0;
    icmp[2] = icmp[3] = 0;
    uint32_t mtu_be = rte_cpu_to_be_32(reported);
    std::memcpy(icmp + 4, &mtu_be, 4);
    uint16_t sum = rte_ipv6_udptcp_cksum(h, icmp);  // the pseudo-header sum over next header 58
    std::memcpy(icmp + 2, &sum, 2);
    return 0;
}

}  // namespace understudy::dp
