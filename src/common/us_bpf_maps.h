/* The maps of the XDP programs in bpf/ (us_backend: the backend agent; us_steer: AF_XDP steering on balancer
 * hosts): key and value layouts, sizes and counter lists, one definition for the BPF programs and for the
 * userspace that fills and reads them. C11 and C++, no kernel includes outside BPF; see bpf/README.md.
 * A BPF program includes this header before the other shared ones (it supplies uint16_t there). */
#ifndef US_BPF_MAPS_H
#define US_BPF_MAPS_H

#ifdef __BPF__
#include <linux/types.h>
typedef __u16 uint16_t; /* us_siphash.h gives BPF the other widths; C11 allows an identical typedef twice */
#endif
#include "us_key.h"

#ifdef __cplusplus
#define US_BPF_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define US_BPF_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

#define US_BPF_MAX_POOLS 64       /* us_pools, us_tables */
#define US_BPF_MAX_SLOTS 4096     /* backends per pool the BPF agent holds: table slots 0..4095 */
#define US_BPF_MAX_VIPS 4096      /* us_vips, us_steer_vips */
#define US_BPF_MAX_TABLE_BITS 24  /* as the config allows (src/core/config.h) */
#define US_BPF_MAX_QUEUES 256     /* xsks_map: RX queues of a steered NIC */

/* us_steer pins these two maps by name (libbpf LIBBPF_PIN_BY_NAME, under /sys/fs/bpf unless the loader
 * sets another root), so that the balancer fills and reads them while DPDK's net_af_xdp loads the object. */
#define US_STEER_VIPS_MAP "us_steer_vips"
#define US_STEER_STATS_MAP "us_steer_stats"

/* us_config[0]: this host. Addresses are outer sources when a packet is forwarded on. */
struct us_bpf_config {
    uint8_t own_v4[4];   /* network byte order */
    uint8_t own_v6[16];
    uint8_t own_mac[6];  /* Ethernet source of forwarded packets */
    uint16_t gue_port;   /* network byte order; 0 = GUE not handled (everything UDP goes to the kernel) */
    uint8_t max_hops;    /* a received hop budget above this is clamped to it ([dataplane] hop_budget) */
    uint8_t reserved[3];
};
US_BPF_ASSERT(sizeof(struct us_bpf_config) == 32, "us_bpf_config layout");
US_BPF_ASSERT(__builtin_offsetof(struct us_bpf_config, gue_port) == 26, "us_bpf_config layout");

/* us_vips and us_steer_vips key: the same as the balancer's VIP key. Port 0 is the entry fragments use
 * (they carry no ports), so a VIP's owner puts it in as well. */
struct us_vip_key {
    uint8_t addr[16];    /* IPv4 as ::ffff:a.b.c.d */
    uint16_t port;       /* network byte order */
    uint8_t proto;       /* 6 TCP, 17 UDP... */
    uint8_t pad;         /* 0: the whole key is hashed */
};
US_BPF_ASSERT(sizeof(struct us_vip_key) == 20, "us_vip_key layout");
US_BPF_ASSERT(__builtin_offsetof(struct us_vip_key, port) == 16, "us_vip_key layout");

struct us_vip_value {
    uint16_t pool;       /* index into us_pools and us_tables */
    uint16_t reserved;
};
US_BPF_ASSERT(sizeof(struct us_vip_value) == 4, "us_vip_value layout");

/* us_pools[pool]: this host's view of one pool. A pool with n_backends == 0 is not configured. */
struct us_bpf_pool {
    uint32_t pool_digest; /* host byte order: the digest of this host's view (docs/wire.md) */
    uint16_t my_slot;     /* this host's slot in the pool, US_NO_SERVER when it is not a member */
    uint16_t n_backends;  /* slots in use: highest slot + 1, free slots included; at most US_BPF_MAX_SLOTS */
    uint8_t table_bits;   /* the pool's table has 2^table_bits buckets; fixed for the pool's life */
    uint8_t reserved[3];
};
US_BPF_ASSERT(sizeof(struct us_bpf_pool) == 12, "us_bpf_pool layout");

/* us_backends[pool * US_BPF_MAX_SLOTS + slot]. */
struct us_bpf_backend {
    uint32_t id;          /* stable server ID */
    uint8_t operational;  /* health up and not disabled, in this host's view */
    uint8_t ip_version;   /* 4 or 6, of addr; 0 = free slot */
    uint8_t mac[6];       /* next hop towards it (its own on the same segment, else the gateway's) */
    uint8_t addr[16];     /* IPv4 as ::ffff:a.b.c.d */
};
US_BPF_ASSERT(sizeof(struct us_bpf_backend) == 28, "us_bpf_backend layout");
US_BPF_ASSERT(__builtin_offsetof(struct us_bpf_backend, addr) == 12, "us_bpf_backend layout");

/* us_backend_ids: (pool, server ID) -> slot, to find the primary server a GUE header names. */
struct us_backend_id_key {
    uint32_t pool;
    uint32_t id;
};
US_BPF_ASSERT(sizeof(struct us_backend_id_key) == 8, "us_backend_id_key layout");
#define US_BPF_MAX_IDS 65536

/* us_tunnel_sources: LPM trie of the outer source addresses GUE and IP-in-IP are accepted from (the
 * balancers' outer sources, the backends that forward to each other, [agent] tunnel_sources). */
struct us_source_key {
    uint32_t prefixlen;  /* over addr, IPv4 as ::ffff:a.b.c.d (an IPv4 /24 is prefixlen 96 + 24) */
    uint8_t addr[16];
};
US_BPF_ASSERT(sizeof(struct us_source_key) == 20, "us_source_key layout");
#define US_BPF_MAX_SOURCES 16384

/* Inner maps of us_tables: ARRAY of struct us_bucket_entry (us_key.h), 2^table_bits entries, created with
 * these flags (the kernel only accepts inner maps whose flags match the template's; BPF_F_INNER_MAP lets
 * their sizes differ, BPF_F_MMAPABLE lets userspace fill a table with one memcpy). */
#define US_BPF_TABLE_FLAGS ((1U << 12) | (1U << 10)) /* BPF_F_INNER_MAP | BPF_F_MMAPABLE */
US_BPF_ASSERT(sizeof(struct us_bucket_entry) == 8, "us_bucket_entry layout");

/* us_stats (PERCPU_ARRAY, one u64 per counter). A GUE packet counts exactly one of the decisions
 * (served: gue_served ... no_holder_served, quic_primary_served; forwarded: gue_forwarded,
 * misdirected_forwarded, quic_primary_forwarded; not handled: bad_gue, bad_inner, no_vip, untrusted_source),
 * plus digest_mismatch when views differ, hop_clamped when its hop budget was above this host's maximum and
 * quic_primary_fallback when a QUIC_PRIMARY packet was decided by the table. X(name, help) */
#define US_BACKEND_COUNTERS(X)                                                                             \
    X(passed, "not GUE on gue_port nor IP-in-IP (or a fragment, an ICMP error...): kernel, untouched")     \
    X(gue_served, "GUE: served here, this host is the bucket's serving server")                            \
    X(pinned_served, "GUE, not TCP: served here, the sender pinned the flow to this host (PINNED)")        \
    X(quic_primary_served, "GUE, QUIC: served here, this host is the server the connection ID names")       \
    X(quic_primary_forwarded, "GUE, QUIC: forwarded to the server the connection ID names (operational here)") \
    X(quic_primary_fallback,                                                                               \
      "GUE, QUIC: the server the connection ID names is unknown, down or unreachable here, or the hop "    \
      "budget is spent: this host's table decided (on top of the decision)")                                \
    X(local_socket_served, "GUE: TCP served here, this host holds the connection")                         \
    X(gue_last_resort, "GUE: served here, the hop budget is spent")                                        \
    X(gue_no_server, "GUE: served here, nobody is operational for the bucket in this host's view")         \
    X(cannot_forward, "GUE: served here, no way to forward (other family, free slot, no own address)")     \
    X(no_table, "GUE: served here, the pool has no bucket table or a smaller one than the bucket")         \
    X(no_holder_served, "GUE: TCP of a connection no candidate server is left to hold: served here (reset)") \
    X(gue_forwarded, "GUE: forwarded to the bucket's serving server (a SYN, UDP...)")                      \
    X(misdirected_forwarded, "GUE: TCP of a connection not held here, forwarded to the next candidate")    \
    X(digest_mismatch, "GUE: the sender's pool digest differs from this host's (on top of the decision)")  \
    X(hop_clamped, "GUE: hop budget above this host's maximum, clamped (on top of the decision)")          \
    X(bad_gue, "on gue_port but malformed or without understudy's private data: kernel, untouched")        \
    X(bad_inner, "encapsulated packet malformed: kernel, untouched")                                       \
    X(no_vip, "encapsulated packet for no known VIP or an unconfigured pool: kernel, untouched")           \
    X(untrusted_source, "GUE or IP-in-IP from an outer source outside us_tunnel_sources: dropped")         \
    X(ipip_decap, "IP-in-IP to a known VIP: decapsulated for the kernel")                                  \
    X(adjust_failed, "the kernel refused to move the packet start: kernel, untouched")

enum us_backend_counter {
#define US_X(name, help) US_BCTR_##name,
    US_BACKEND_COUNTERS(US_X)
#undef US_X
    US_BCTR_MAX
};

/* us_steer_stats (PERCPU_ARRAY). X(name, help) */
#define US_STEER_COUNTERS(X)                                                                               \
    X(steered, "VIP packets redirected to the AF_XDP socket of their RX queue")                            \
    X(no_socket, "VIP packets of an RX queue with no AF_XDP socket: kernel")                               \
    X(passed, "not for a VIP (or not IP, or malformed): kernel")

enum us_steer_counter {
#define US_X(name, help) US_SCTR_##name,
    US_STEER_COUNTERS(US_X)
#undef US_X
    US_SCTR_MAX
};

#endif /* US_BPF_MAPS_H */
