/* Wire formats and the names every data plane counts by: the GUE encapsulation with understudy's private
 * data, the drop reasons and the per-lcore counters. One definition for DPDK, control code and BPF; the
 * byte layouts are documented in docs/wire.md. C11, no DPDK or kernel includes. */
#ifndef US_WIRE_H
#define US_WIRE_H

#include "us_key.h"

#define US_GUE_PORT_DEFAULT 6080 /* outer UDP destination port of gue */
#define US_GUE_PD_MAGIC 0x5553   /* "US": marks understudy's private data */
#define US_GUE_PD_VERSION 1
#define US_HOP_BUDGET_MAX 15

/* GUE variant 0 base header (draft-ietf-intarea-gue): ver(2) C(1) hlen(5) | proto | flags(16).
 * hlen counts the 32-bit words after the base header: here, the private data only (no optional fields). */
struct us_gue_base {
    uint8_t ver_c_hlen;
    uint8_t proto; /* inner IP protocol: 4 (IPv4) or 41 (IPv6) */
    uint8_t flags[2];
} __attribute__((packed));

/* understudy's private data. Multi-byte fields in network byte order. */
struct us_gue_private {
    uint8_t magic[2];       /* US_GUE_PD_MAGIC */
    uint8_t version;        /* US_GUE_PD_VERSION */
    uint8_t flags;          /* US_GUE_F_* */
    uint8_t primary_id[4];  /* the session's primary server (stable server ID) */
    uint8_t session_hash[8];
    uint8_t pool_digest[4]; /* sender's view of the pool: membership and weights */
    uint8_t hop_budget;     /* forwards left after this one; 0 = the receiver must serve */
    uint8_t walked;         /* backends: candidate places tried by the walk (bpf/README.md); 0 from a balancer */
    uint8_t reserved[2];
} __attribute__((packed));

/* The sender's connection table chose this server for an established flow (its ordering may name another
 * now). Informational for TCP, which a backend decides by its sockets; a backend serves other pinned flows. */
#define US_GUE_F_PINNED 0x01
/* The server is not the session's primary (the primary is down, or the flow is pinned elsewhere). */
#define US_GUE_F_FAILOVER 0x02
/* primary_id is the server the packet's QUIC connection ID names (QUIC-LB), not the ordering's first: a
 * backend serves it if it is that server, forwards it there while it is operational, else uses its table. */
#define US_GUE_F_QUIC_PRIMARY 0x04

struct us_gue_hdr {
    struct us_gue_base base;
    struct us_gue_private pd;
} __attribute__((packed));

#define US_GUE_HDR_LEN 28
#define US_GUE_HLEN_WORDS ((US_GUE_HDR_LEN - 4) / 4)

/* Drop reasons: every drop path counts exactly one of these. X(name, help) */
#define US_DROP_REASONS(X)                                                                                  \
    X(truncated_l2, "shorter than its Ethernet or VLAN header")                                             \
    X(not_for_us, "unicast to another MAC address than the port's (the port is promiscuous)")               \
    X(multi_segment, "frame spans several buffers: raise [dataplane] mbuf_data_room")                       \
    X(vlan_too_deep, "more than two VLAN tags")                                                             \
    X(not_ip, "neither IPv4 nor IPv6, and the non-VIP policy is drop")                                      \
    X(truncated_l3, "shorter than its IP header")                                                           \
    X(bad_ip_version, "IP version field does not match the EtherType")                                      \
    X(bad_ihl, "IPv4 header length below 20 bytes or past the packet")                                      \
    X(bad_ip_length, "IP total length below the header length, or an IPv6 jumbogram (payload length 0)")    \
    X(truncated_frame, "IP length larger than the bytes received: a frame cut short (snap length, GRO)")    \
    X(bad_ext_header, "IPv6 extension header chain too long, truncated or not walkable (ESP)")              \
    X(truncated_l4, "shorter than its TCP, UDP or ICMP header")                                             \
    X(bad_l4_header, "TCP data offset or UDP length impossible")                                            \
    X(bad_icmp_quote, "ICMP error whose quoted packet is truncated or malformed")                           \
    X(no_vip, "for no VIP and the non-VIP policy is drop")                                                  \
    X(no_server, "the VIP's pool has no operational server")                                                \
    X(too_big, "over the MTU once encapsulated: answered with ICMP frag-needed / ICMPv6 packet-too-big")    \
    X(too_big_df_clear, "over the MTU once encapsulated, IPv4 with DF clear: not fragmented, not answered") \
    X(too_big_icmp_error, "an ICMP error over the MTU once encapsulated: never answered by another")        \
    X(icmp_rate_limited, "over the MTU once encapsulated; its ICMP answer exceeded [dataplane] icmp_rate")  \
    X(no_headroom, "the buffer's headroom cannot hold the new headers")                                     \
    X(no_next_hop, "no MAC known yet for the backend or gateway (neighbour table)")                         \
    X(tx_full, "the port's TX queue was full")                                                              \
    X(exception_full, "the exception path (kernel tap) was full or absent")

enum us_drop_reason {
#define US_X(name, help) US_DROP_##name,
    US_DROP_REASONS(US_X)
#undef US_X
    US_DROP_MAX
};

/* Per-lcore counters besides drops. X(name, help) */
#define US_COUNTERS(X)                                                                                      \
    X(rx_packets, "packets received")                                                                       \
    X(rx_bytes, "bytes received")                                                                           \
    X(tx_packets, "packets forwarded to a backend")                                                         \
    X(tx_bytes, "bytes forwarded to a backend, after encapsulation")                                        \
    X(exception_packets, "non-VIP packets handed to the kernel")                                            \
    X(kernel_packets, "packets from the kernel sent out of the port")                                       \
    X(failovers, "packets sent to a server other than their primary")                                       \
    X(fragments, "IP fragments forwarded, hashed without ports")                                            \
    X(icmp_errors, "ICMP errors forwarded to the server of the flow they quote")                            \
    X(conn_hits, "connection-table hits")                                                                   \
    X(conn_misses, "connection-table misses (new flows)")                                                   \
    X(conn_evictions, "connection-table entries replaced before they expired")                              \
    X(conn_evictions_confirmed, "of conn_evictions: entries of confirmed flows (seen again, not a SYN)")    \
    X(conn_stale, "connection-table entries whose server was no longer operational")                        \
    X(icmp_too_big_sent, "ICMP frag-needed / ICMPv6 packet-too-big sent to clients (drop reason too_big)")

enum us_counter {
#define US_X(name, help) US_CTR_##name,
    US_COUNTERS(US_X)
#undef US_X
    US_CTR_MAX
};

#endif /* US_WIRE_H */
