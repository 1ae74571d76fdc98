// The forwarding methods, applied to a parsed packet in place: the L2 header (and any VLAN tags and
// Ethernet padding) is replaced by new outer headers. Hot code: inline, no allocation, no branches on
// configuration beyond the method chosen per VIP. Byte layouts: docs/wire.md.
#pragma once

#include <rte_byteorder.h>
#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_udp.h>

#include <cstring>

#include "snapshot.h"
#include "us_parse.h"

namespace understudy::dp {

struct EncapInfo {
    uint64_t session_hash;
    uint32_t primary_id;
    uint32_t pool_digest;
    uint8_t flags;
    uint8_t hop_budget;
    uint16_t ip_id;  // outer IPv4 identification, network byte order (0 while DF is set)
};

// Replaces what precedes the IP header (Ethernet, VLAN tags) by `outer` bytes for the new headers and cuts
// Ethernet padding after the IP packet, in one move of the data offset (single-segment mbufs only).
// Returns where the new headers start, or nullptr with the drop reason in err.
inline uint8_t *reframe(rte_mbuf *m, const us_parsed &p, uint16_t outer, int &err)
{
    if (uint32_t(p.l3_offset) + p.l3_len > rte_pktmbuf_data_len(m)) {
        err = US_DROP_truncated_frame;  // the parser saw to it already
        return nullptr;
    }
    uint32_t start = uint32_t(m->data_off) + p.l3_offset;
    if (start < outer) {
        err = US_DROP_no_headroom;
        return nullptr;
    }
    m->data_off = uint16_t(start - outer);
    m->data_len = uint16_t(outer + p.l3_len);
    m->pkt_len = m->data_len;
    return rte_pktmbuf_mtod(m, uint8_t *);
}

// DSCP and ECN of the inner packet: the outer header carries them too (the uniform tunnel model).
inline uint8_t inner_tos(const uint8_t *ip)
{
    return (ip[0] >> 4) == 4 ? ip[1] : uint8_t((ip[0] << 4) | (ip[1] >> 4));
}

inline void write_eth(uint8_t *at, const Backend &b, const Source &src, uint16_t ether_type)
{
    auto *eth = reinterpret_cast<rte_ether_hdr *>(at);
    eth->dst_addr = b.mac;
    eth->src_addr = src.port_mac;
    eth->ether_type = rte_cpu_to_be_16(ether_type);
}

// Identification and flags: DF and identification 0 by default (an atomic datagram, RFC 6864); with
// outer_df = false no DF and the worker's counter, for paths that must fragment.
inline void write_ipv4(uint8_t *at, const Backend &b, const Source &src, uint8_t tos, uint8_t proto, uint16_t total,
                       uint16_t id_be)
{
    auto *ip = reinterpret_cast<rte_ipv4_hdr *>(at);
    ip->version_ihl = 0x45;
    ip->type_of_service = tos;
    ip->total_length = rte_cpu_to_be_16(total);
    ip->packet_id = id_be;
    ip->fragment_offset = src.outer_frag;
    ip->time_to_live = kOuterTtl;
    ip->next_proto_id = proto;
    std::memcpy(&ip->src_addr, src.v4, 4);
    std::memcpy(&ip->dst_addr, b.addr + 12, 4);
    // The backend's precomputed sum of the fixed fields (flags included) plus the four that vary.
    uint32_t sum = uint32_t(b.ip4_sum) + rte_cpu_to_be_16(uint16_t(tos)) + rte_cpu_to_be_16(total) +
                   rte_cpu_to_be_16(uint16_t(proto)) + id_be;
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    ip->hdr_checksum = uint16_t(~sum);
}

inline void write_ipv6(uint8_t *at, const Backend &b, const Source &src, uint8_t tos, uint8_t proto,
                       uint16_t payload, uint32_t flow_label)
{
    auto *ip = reinterpret_cast<rte_ipv6_hdr *>(at);
    ip->vtc_flow = rte_cpu_to_be_32(6u << 28 | uint32_t(tos) << 20 | (flow_label & 0xfffff));
    ip->payload_len = rte_cpu_to_be_16(payload);
    ip->proto = proto;
    ip->hop_limits = kOuterTtl;
    std::memcpy(ip->src_addr, src.v6, 16);
    std::memcpy(ip->dst_addr, b.addr, 16);
}

// Outer IPv4/IPv6 + UDP + GUE with understudy's private data. Returns 0 or a drop reason.
inline int encap_gue(rte_mbuf *m, const us_parsed &p, const Backend &b, const Source &src, const EncapInfo &info)
{
    bool v6 = b.ip_version == 6;
    uint16_t ip_len = v6 ? sizeof(rte_ipv6_hdr) : sizeof(rte_ipv4_hdr);
    uint16_t hdr = uint16_t(sizeof(rte_ether_hdr) + ip_len + sizeof(rte_udp_hdr) + US_GUE_HDR_LEN);
    int err = 0;
    uint8_t *out = reframe(m, p, hdr, err);
    if (!out)
        return err;
    uint8_t tos = inner_tos(out + hdr);
    uint16_t inner_len = p.l3_len;

    uint16_t udp_len = uint16_t(sizeof(rte_udp_hdr) + US_GUE_HDR_LEN + inner_len);
    write_eth(out, b, src, v6 ? RTE_ETHER_TYPE_IPV6 : RTE_ETHER_TYPE_IPV4);
    uint8_t *l3 = out + sizeof(rte_ether_hdr);
    if (v6)
        write_ipv6(l3, b, src, tos, IPPROTO_UDP, udp_len, uint32_t(info.session_hash));
    else
        write_ipv4(l3, b, src, tos, IPPROTO_UDP, uint16_t(ip_len + udp_len), info.ip_id);

    auto *udp = reinterpret_cast<rte_udp_hdr *>(l3 + ip_len);
    // Backends spread received tunnels over their queues by the outer source port: take it from the hash.
    udp->src_port = rte_cpu_to_be_16(uint16_t(0xc000 | ((info.session_hash >> 32) & 0x3fff)));
    udp->dst_port = src.gue_port;
    udp->dgram_len = rte_cpu_to_be_16(udp_len);
    udp->dgram_cksum = 0;

    auto *gue = reinterpret_cast<us_gue_hdr *>(udp + 1);
    gue->base.ver_c_hlen = US_GUE_HLEN_WORDS;
    gue->base.proto = p.ip_version == 6 ? US_IPPROTO_IPV6 : US_IPPROTO_IPIP;
    gue->base.flags[0] = gue->base.flags[1] = 0;
    gue->pd.magic[0] = US_GUE_PD_MAGIC >> 8;
    gue->pd.magic[1] = US_GUE_PD_MAGIC & 0xff;
    gue->pd.version = US_GUE_PD_VERSION;
    gue->pd.flags = info.flags;
    uint32_t primary = rte_cpu_to_be_32(info.primary_id);
    std::memcpy(gue->pd.primary_id, &primary, 4);
    uint64_t hash = rte_cpu_to_be_64(info.session_hash);
    std::memcpy(gue->pd.session_hash, &hash, 8);
    uint32_t digest = rte_cpu_to_be_32(info.pool_digest);
    std::memcpy(gue->pd.pool_digest, &digest, 4);
    gue->pd.hop_budget = info.hop_budget;
    gue->pd.walked = 0;
    gue->pd.reserved[0] = gue->pd.reserved[1] = 0;

    // IPv6 forbids a zero UDP checksum in general; IPv4 allows it and receivers skip the check.
    if (v6)
        udp->dgram_cksum = rte_ipv6_udptcp_cksum(reinterpret_cast<rte_ipv6_hdr *>(l3), udp);
    return 0;
}

// IPv4-in-IPv4 or IPv6-in-IPv6 (or across families if the backend's address differs).
inline int encap_ipip(rte_mbuf *m, const us_parsed &p, const Backend &b, const Source &src, const EncapInfo &info)
{
    bool v6 = b.ip_version == 6;
    uint16_t ip_len = v6 ? sizeof(rte_ipv6_hdr) : sizeof(rte_ipv4_hdr);
    int err = 0;
    uint8_t *out = reframe(m, p, uint16_t(sizeof(rte_ether_hdr) + ip_len), err);
    if (!out)
        return err;
    uint8_t tos = inner_tos(out + sizeof(rte_ether_hdr) + ip_len);
    uint16_t inner_len = p.l3_len;
    uint8_t proto = p.ip_version == 6 ? US_IPPROTO_IPV6 : US_IPPROTO_IPIP;
    write_eth(out, b, src, v6 ? RTE_ETHER_TYPE_IPV6 : RTE_ETHER_TYPE_IPV4);
    if (v6)
        write_ipv6(out + sizeof(rte_ether_hdr), b, src, tos, proto, inner_len, uint32_t(info.session_hash));
    else
        write_ipv4(out + sizeof(rte_ether_hdr), b, src, tos, proto, uint16_t(ip_len + inner_len), info.ip_id);
    return 0;
}

// Direct server return on the same segment: only the Ethernet header changes.
inline int encap_l2dsr(rte_mbuf *m, const us_parsed &p, const Backend &b, const Source &src, const EncapInfo &)
{
    int err = 0;
    uint8_t *out = reframe(m, p, sizeof(rte_ether_hdr), err);
    if (!out)
        return err;
    write_eth(out, b, src, p.ip_version == 6 ? RTE_ETHER_TYPE_IPV6 : RTE_ETHER_TYPE_IPV4);
    return 0;
}

using EncapFn = int (*)(rte_mbuf *, const us_parsed &, const Backend &, const Source &, const EncapInfo &);

// Indexed by understudy::Method: the variant is picked per VIP through this table, not by a branch.
inline constexpr EncapFn kEncap[] = {encap_gue, encap_ipip, encap_l2dsr};

}  // namespace understudy::dp
