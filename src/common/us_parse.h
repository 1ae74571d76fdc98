/* The packet parser, written once for the DPDK data plane (an mbuf's first segment) and the XDP programs
 * (data, data_end): Ethernet, up to two VLAN tags, IPv4 with options, IPv6 with extension headers, TCP,
 * UDP, and ICMP/ICMPv6 errors that quote a packet; us_parse_ip starts at an IP header (the inner packet of
 * a tunnel). Every read is bounds-checked before it happens, in a form the BPF verifier accepts (see
 * US_PAST); every loop is bounded. C11, no DPDK or kernel includes. */
#ifndef US_PARSE_H
#define US_PARSE_H

#include "us_wire.h"

#ifndef US_INLINE
#define US_INLINE static inline __attribute__((always_inline))
#endif

#ifdef __BPF__
#define US_UNROLL _Pragma("unroll")
#define us_memcpy __builtin_memcpy
#define us_memset __builtin_memset
#else
#include <string.h>
#define US_UNROLL
#define us_memcpy memcpy
#define us_memset memset
#endif

#define US_ETH_HLEN 14
#define US_ETHERTYPE_IPV4 0x0800
#define US_ETHERTYPE_IPV6 0x86dd
#define US_ETHERTYPE_VLAN 0x8100
#define US_ETHERTYPE_QINQ 0x88a8
#define US_MAX_VLANS 2
#define US_MAX_EXT_HEADERS 8

#define US_IPPROTO_HOPOPTS 0
#define US_IPPROTO_ICMP 1
#define US_IPPROTO_IPIP 4
#define US_IPPROTO_TCP 6
#define US_IPPROTO_UDP 17
#define US_IPPROTO_IPV6 41
#define US_IPPROTO_ROUTING 43
#define US_IPPROTO_FRAGMENT 44
#define US_IPPROTO_ESP 50
#define US_IPPROTO_AH 51
#define US_IPPROTO_ICMPV6 58
#define US_IPPROTO_NONE 59
#define US_IPPROTO_DSTOPTS 60

enum us_parse_verdict {
    US_PARSE_OK = 0,     /* an IP packet: flow fields are filled in */
    US_PARSE_NOT_IP = 1, /* ARP, LLDP...: not ours, the kernel's */
    US_PARSE_DROP = 2,   /* malformed: *reason says why */
};

/* What the data plane needs from a packet. Addresses as the session key holds them (IPv4-mapped). */
struct us_parsed {
    uint8_t src[16];
    uint8_t dst[16];
    uint8_t sport[2]; /* network byte order; 0 for fragments and protocols without ports */
    uint8_t dport[2];
    uint8_t proto;      /* L4 protocol of the flow (for ICMP errors: of the quoted packet) */
    uint8_t ip_version; /* 4 or 6, of the outer packet */
    uint8_t fragment;   /* 1 when this is an IP fragment (first or not) */
    uint8_t icmp_error; /* 1 when the flow fields come from the quoted packet, reversed */
    uint16_t l3_offset; /* from the start of the frame */
    uint16_t l4_offset;
    uint16_t l3_len;    /* IP header + payload, as the IP header says (Ethernet padding excluded) */
    uint16_t vlan_count;
};

/* Whether n bytes at ptr run past end (where the enclosing header or packet stops, as its lengths say) or
 * past buf_end (the end of the buffer). In C the second test is implied by the first, since every such end
 * was itself checked against the buffer; the BPF verifier only learns packet bounds from comparisons with
 * data_end (buf_end there), so every read through a pointer needs one. */
#define US_PAST(ptr, n, end, buf_end) ((ptr) + (n) > (end) || (ptr) + (n) > (buf_end))

US_INLINE uint16_t us_be16(const uint8_t *p) { return (uint16_t)((uint16_t)p[0] << 8 | p[1]); }

US_INLINE void us_v4_mapped(uint8_t out[16], const uint8_t *v4)
{
#if !defined(__BPF__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* Two 8-byte stores: the data plane reads the address back as 8-byte words at once, and a load
     * that spans several small stores cannot be forwarded from them (a stall of ~15 cycles a packet). */
    uint32_t a;
    us_memcpy(&a, v4, 4);
    uint64_t hi = 0, lo = 0xffff0000u | (uint64_t)a << 32;
    us_memcpy(out, &hi, 8);
    us_memcpy(out + 8, &lo, 8);
#else
    us_memset(out, 0, 10);
    out[10] = 0xff;
    out[11] = 0xff;
    us_memcpy(out + 10 + 2, v4, 4);
#endif
}

/* IP header at ip (bounds: end, buffer: buf_end). Fills addresses, proto, fragment, l3_len and the L4
 * offset. Returns US_PARSE_OK or US_PARSE_DROP with *reason. */
US_INLINE int us_parse_ipv4(const uint8_t *ip, const uint8_t *end, const uint8_t *buf_end, struct us_parsed *p,
                            const uint8_t **l4, int *reason)
{
    if (US_PAST(ip, 20, end, buf_end)) {
        *reason = US_DROP_truncated_l3;
        return US_PARSE_DROP;
    }
    if ((ip[0] >> 4) != 4) {
        *reason = US_DROP_bad_ip_version;
        return US_PARSE_DROP;
    }
    uint32_t ihl = (uint32_t)(ip[0] & 0x0f) * 4;
    if (ihl < 20 || ip + ihl > end) {
        *reason = US_DROP_bad_ihl;
        return US_PARSE_DROP;
    }
    uint32_t total = us_be16(ip + 2);
    if (total < ihl) {
        *reason = US_DROP_bad_ip_length;
        return US_PARSE_DROP;
    }
    if (ip + total > end) { /* a sound header on a frame cut short: see us_parse_ip */
        *reason = US_DROP_truncated_frame;
        return US_PARSE_DROP;
    }
    uint16_t frag = us_be16(ip + 6);
    p->fragment = (frag & 0x3fff) != 0; /* MF set or offset non-zero */
    p->proto = ip[9];
    p->l3_len = (uint16_t)total;
    us_v4_mapped(p->src, ip + 12);
    us_v4_mapped(p->dst, ip + 16);
    *l4 = ip + ihl;
    return US_PARSE_OK;
}

US_INLINE int us_parse_ipv6(const uint8_t *ip, const uint8_t *end, const uint8_t *buf_end, struct us_parsed *p,
                            const uint8_t **l4, int *reason)
{
    if (US_PAST(ip, 40, end, buf_end)) {
        *reason = US_DROP_truncated_l3;
        return US_PARSE_DROP;
    }
    if ((ip[0] >> 4) != 6) {
        *reason = US_DROP_bad_ip_version;
        return US_PARSE_DROP;
    }
    uint32_t payload = us_be16(ip + 4);
    /* 0 would be a jumbogram (not supported); l3_len must fit 16 bits */
    if (payload == 0 || payload > 65535 - 40) {
        *reason = US_DROP_bad_ip_length;
        return US_PARSE_DROP;
    }
    if (ip + 40 + payload > end) {
        *reason = US_DROP_truncated_frame;
        return US_PARSE_DROP;
    }
    const uint8_t *pkt_end = ip + 40 + payload;
    us_memcpy(p->src, ip + 8, 16);
    us_memcpy(p->dst, ip + 24, 16);
    p->l3_len = (uint16_t)(40 + payload);
    p->fragment = 0;

    uint8_t next = ip[6];
    const uint8_t *h = ip + 40;
    /* One more round than headers walked: the last may only find the upper-layer protocol. */
    US_UNROLL
    for (int i = 0; i <= US_MAX_EXT_HEADERS; i++) {
        if (next != US_IPPROTO_HOPOPTS && next != US_IPPROTO_ROUTING && next != US_IPPROTO_FRAGMENT &&
            next != US_IPPROTO_DSTOPTS && next != US_IPPROTO_AH) {
            if (next == US_IPPROTO_ESP) {
                *reason = US_DROP_bad_ext_header;
                return US_PARSE_DROP;
            }
            p->proto = next;
            *l4 = h;
            return US_PARSE_OK;
        }
        if (i == US_MAX_EXT_HEADERS || US_PAST(h, 8, pkt_end, buf_end)) {
            *reason = US_DROP_bad_ext_header;
            return US_PARSE_DROP;
        }
        uint32_t len;
        if (next == US_IPPROTO_FRAGMENT) {
            uint16_t off_m = us_be16(h + 2);
            if ((off_m & 0xfff9) != 0) {
                /* A real fragment (an atomic one, offset 0 without M, is not). Every fragment of the
                 * datagram, first or later, takes its protocol from this header and stops here, so all
                 * of them hash alike whatever follows in the first one. */
                p->fragment = 1;
                p->proto = h[0];
                *l4 = h + 8;
                return US_PARSE_OK;
            }
            len = 8;
        } else if (next == US_IPPROTO_AH) {
            len = ((uint32_t)h[1] + 2) * 4;
        } else {
            len = ((uint32_t)h[1] + 1) * 8;
        }
        next = h[0];
        h += len;
        if (h > pkt_end) {
            *reason = US_DROP_bad_ext_header;
            return US_PARSE_DROP;
        }
    }
    *reason = US_DROP_bad_ext_header; /* not reached: the loop returns */
    return US_PARSE_DROP;
}

/* Ports of a TCP or UDP header at l4 (IP payload ends at l3_end). Non-first fragments have no ports. */
US_INLINE int us_parse_ports(const uint8_t *l4, const uint8_t *l3_end, const uint8_t *buf_end, struct us_parsed *p,
                             int *reason)
{
    if (p->proto == US_IPPROTO_TCP) {
        if (US_PAST(l4, 20, l3_end, buf_end)) {
            *reason = US_DROP_truncated_l4;
            return US_PARSE_DROP;
        }
        uint32_t doff = (uint32_t)(l4[12] >> 4) * 4;
        if (doff < 20 || l4 + doff > l3_end) {
            *reason = US_DROP_bad_l4_header;
            return US_PARSE_DROP;
        }
    } else if (p->proto == US_IPPROTO_UDP) {
        if (US_PAST(l4, 8, l3_end, buf_end)) {
            *reason = US_DROP_truncated_l4;
            return US_PARSE_DROP;
        }
        uint32_t ulen = us_be16(l4 + 4);
        if (ulen < 8 || l4 + ulen > l3_end) {
            *reason = US_DROP_bad_l4_header;
            return US_PARSE_DROP;
        }
    } else {
        us_memset(p->sport, 0, 2);
        us_memset(p->dport, 0, 2);
        return US_PARSE_OK;
    }
    us_memcpy(p->sport, l4, 2);
    us_memcpy(p->dport, l4 + 2, 2);
    return US_PARSE_OK;
}

/* The packet an ICMP error quotes left the VIP towards a client: the flow is that packet reversed.
 * Only its IP header and the first 8 bytes of L4 are guaranteed to be there (RFC 792), so lengths in
 * the quoted header are not checked against the quote. */
US_INLINE int us_parse_quote(const uint8_t *q, const uint8_t *end, const uint8_t *buf_end, int v6, struct us_parsed *p,
                             int *reason)
{
    struct us_parsed inner;
    const uint8_t *l4 = 0;
    if (!v6) {
        if (US_PAST(q, 20, end, buf_end) || (q[0] >> 4) != 4 || (q[0] & 0x0f) < 5) {
            *reason = US_DROP_bad_icmp_quote;
            return US_PARSE_DROP;
        }
        l4 = q + (uint32_t)(q[0] & 0x0f) * 4;
        inner.proto = q[9];
        inner.fragment = (us_be16(q + 6) & 0x3fff) != 0;
        us_v4_mapped(inner.src, q + 12);
        us_v4_mapped(inner.dst, q + 16);
    } else {
        if (US_PAST(q, 40, end, buf_end) || (q[0] >> 4) != 6) {
            *reason = US_DROP_bad_icmp_quote;
            return US_PARSE_DROP;
        }
        l4 = q + 40; /* extension headers in a quote are not walked: such errors go the non-VIP way */
        inner.proto = q[6];
        inner.fragment = 0;
        us_memcpy(inner.src, q + 8, 16);
        us_memcpy(inner.dst, q + 24, 16);
    }
    /* A quoted fragment was hashed without ports when it went out: so is its error. */
    if (!inner.fragment && (inner.proto == US_IPPROTO_TCP || inner.proto == US_IPPROTO_UDP)) {
        if (US_PAST(l4, 8, end, buf_end)) {
            *reason = US_DROP_bad_icmp_quote;
            return US_PARSE_DROP;
        }
        us_memcpy(p->sport, l4 + 2, 2); /* reversed: the client's port is the quoted destination */
        us_memcpy(p->dport, l4, 2);
    } else {
        us_memset(p->sport, 0, 2);
        us_memset(p->dport, 0, 2);
    }
    us_memcpy(p->src, inner.dst, 16);
    us_memcpy(p->dst, inner.src, 16);
    p->proto = inner.proto;
    p->icmp_error = 1;
    return US_PARSE_OK;
}

/* Parses the IP packet at l3 whose version (4 or 6) the caller knows from an EtherType, a GUE header or an
 * outer IP protocol: everything us_parse_packet does after the L2 header. The packet ends at end at the
 * latest (for a tunnelled packet: where the outer packet or UDP datagram ends), buf_end is the end of the
 * buffer (the same as end for a frame). Offsets are from base; vlan_count is the caller's.
 * An IP length that cannot be (below the header, an IPv6 jumbogram) is bad_ip_length; one larger than the
 * bytes at hand is truncated_frame: a sound packet cut short on its way in, as net_af_packet hands over
 * GRO-merged frames cut to its ring's frame size, or a capture cut at its snap length. */
US_INLINE int us_parse_ip(const uint8_t *base, const uint8_t *l3, const uint8_t *end, const uint8_t *buf_end,
                          int ip_version, struct us_parsed *p, int *reason)
{
    const uint8_t *l4 = 0;
    int rc;
    p->icmp_error = 0;
    p->ip_version = (uint8_t)ip_version;
    if (ip_version == 4)
        rc = us_parse_ipv4(l3, end, buf_end, p, &l4, reason);
    else
        rc = us_parse_ipv6(l3, end, buf_end, p, &l4, reason);
    if (rc != US_PARSE_OK)
        return rc;
    p->l3_offset = (uint16_t)(l3 - base);
    p->l4_offset = (uint16_t)(l4 - base);
    const uint8_t *l3_end = l3 + p->l3_len;

    if (p->fragment) {
        /* Every fragment of a datagram, first or not, is hashed without ports so that all reach the same
         * server; the first one's transport header is not even looked at. */
        us_memset(p->sport, 0, 2);
        us_memset(p->dport, 0, 2);
        return US_PARSE_OK;
    }
    if (p->proto == US_IPPROTO_ICMP || p->proto == US_IPPROTO_ICMPV6) {
        if (US_PAST(l4, 8, l3_end, buf_end)) {
            *reason = US_DROP_truncated_l4;
            return US_PARSE_DROP;
        }
        uint8_t icmp_type = l4[0];
        /* ICMP belongs to IPv4 and ICMPv6 to IPv6; the other pairings are not errors we act on. */
        int is_error = p->ip_version == 4 ? p->proto == US_IPPROTO_ICMP && icmp_type == 3
                                          : p->proto == US_IPPROTO_ICMPV6 && (icmp_type == 1 || icmp_type == 2);
        if (is_error)
            return us_parse_quote(l4 + 8, l3_end, buf_end, p->proto == US_IPPROTO_ICMPV6, p, reason);
    }
    return us_parse_ports(l4, l3_end, buf_end, p, reason);
}

/* Parses the frame [data, end). */
US_INLINE int us_parse_packet(const uint8_t *data, const uint8_t *end, struct us_parsed *p, int *reason)
{
    if (data + US_ETH_HLEN > end) {
        *reason = US_DROP_truncated_l2;
        return US_PARSE_DROP;
    }
    uint16_t type = us_be16(data + 12);
    const uint8_t *l3 = data + US_ETH_HLEN;
    p->vlan_count = 0;
    p->icmp_error = 0;
    US_UNROLL
    for (int i = 0; i < US_MAX_VLANS + 1; i++) {
        if (type != US_ETHERTYPE_VLAN && type != US_ETHERTYPE_QINQ)
            break;
        if (i == US_MAX_VLANS) {
            *reason = US_DROP_vlan_too_deep;
            return US_PARSE_DROP;
        }
        if (l3 + 4 > end) {
            *reason = US_DROP_truncated_l2;
            return US_PARSE_DROP;
        }
        type = us_be16(l3 + 2);
        l3 += 4;
        p->vlan_count++;
    }
    if (type != US_ETHERTYPE_IPV4 && type != US_ETHERTYPE_IPV6)
        return US_PARSE_NOT_IP;
    return us_parse_ip(data, l3, end, end, type == US_ETHERTYPE_IPV4 ? 4 : 6, p, reason);
}

#endif /* US_PARSE_H */
