/* us_backend: the XDP program of a backend, the receiving server of the idea in DESIGN.md. A GUE packet from a
 * balancer (or from another backend) is checked again against this host's view of the pool's table and is
 * either served here (decapsulated and handed to the kernel) or forwarded once more; IP-in-IP to a known VIP
 * is decapsulated. Everything else reaches the kernel untouched. Decision order and limits: bpf/README.md;
 * map layouts: src/common/us_bpf_maps.h. */
#include "us_bpf_maps.h" /* first: it gives the shared headers uint16_t */

#include <linux/bpf.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "us_parse.h"

/* The longest outer headers (Ethernet, VLAN tags, IP options or extension headers) of a tunnelled packet
 * this program handles; longer ones reach the kernel untouched. Bounds the offsets the verifier tracks. */
#define US_MAX_OUTER_L4 256
/* Where an inner TCP header may start for its flags to be read (1 KiB of inner extension headers is far
 * beyond anything real; past it a packet is treated as a new connection's). */
#define US_MAX_INNER_L4 1024

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct us_bpf_config);
} us_config SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, US_BPF_MAX_VIPS);
    __type(key, struct us_vip_key);
    __type(value, struct us_vip_value);
} us_vips SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, US_BPF_MAX_POOLS);
    __type(key, __u32);
    __type(value, struct us_bpf_pool);
} us_pools SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, US_BPF_MAX_POOLS * US_BPF_MAX_SLOTS);
    __type(key, __u32);
    __type(value, struct us_bpf_backend);
} us_backends SEC(".maps");

/* The template of the bucket tables; the real ones are made by userspace, 2^table_bits entries each. Sizes,
 * not types: clang 14 emits the value type of an inner map as a BTF forward declaration, which libbpf
 * cannot size (the tables userspace creates carry no BTF either). */
struct us_table {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __uint(map_flags, US_BPF_TABLE_FLAGS);
    __uint(key_size, sizeof(__u32));
    __uint(value_size, sizeof(struct us_bucket_entry));
};

/* One table per pool, swapped whole: a packet sees the old table or the new one, never a mix. */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
    __uint(max_entries, US_BPF_MAX_POOLS);
    __type(key, __u32);
    __array(values, struct us_table);
} us_tables SEC(".maps");

/* (pool, server ID) -> slot: the primary a GUE header names, in this host's slots. */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, US_BPF_MAX_IDS);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, struct us_backend_id_key);
    __type(value, __u32);
} us_backend_ids SEC(".maps");

/* The outer sources tunnels are accepted from; anything else on gue_port or IP-in-IP is dropped. */
struct {
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __uint(max_entries, US_BPF_MAX_SOURCES);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, struct us_source_key);
    __type(value, __u8);
} us_tunnel_sources SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, US_BCTR_MAX);
    __type(key, __u32);
    __type(value, __u64);
} us_stats SEC(".maps");

/* What the decision needs from the GUE header. */
struct us_gue_info {
    __u64 session_hash;
    __u32 primary_id;
    __u32 pool_digest;
    __u8 flags;
    __u8 hop_budget;
    __u8 walked;
    __u8 inner_version;
};

static __always_inline void count(__u32 counter)
{
    __u64 *v = bpf_map_lookup_elem(&us_stats, &counter);
    if (v)
        *v += 1;
}

static __always_inline int pass(__u32 counter)
{
    count(counter);
    return XDP_PASS;
}

static __always_inline __u32 load_be32(const __u8 *p)
{
    return (__u32)p[0] << 24 | (__u32)p[1] << 16 | (__u32)p[2] << 8 | p[3];
}

static __always_inline __u64 load_be64(const __u8 *p)
{
    return (__u64)load_be32(p) << 32 | load_be32(p + 4);
}

/* RFC 1624 incremental checksum update, HC' = ~(~HC + ~m + m'): the 16-bit words of m leave the sum and
 * those of m' join it. n is even and constant. */
static __always_inline __u32 csum_add(__u32 sum, const __u8 *p, int n)
{
#pragma unroll
    for (int i = 0; i < n; i += 2)
        sum += (__u32)p[i] << 8 | p[i + 1];
    return sum;
}

static __always_inline __u32 csum_sub(__u32 sum, const __u8 *p, int n)
{
#pragma unroll
    for (int i = 0; i < n; i += 2)
        sum += ~((__u32)p[i] << 8 | p[i + 1]) & 0xffff;
    return sum;
}

static __always_inline __u16 csum_fold(__u32 sum)
{
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return (__u16)sum;
}

/* Removes the len bytes that follow the L2 header (l3_offset bytes: Ethernet and any VLAN tags, kept as they
 * are) and gives the L2 header the EtherType of what now follows it. */
static __always_inline int strip(struct xdp_md *ctx, __u32 l3_offset, __u32 len, __u16 ether_type,
                                 __u32 counter)
{
    __u8 l2[US_ETH_HLEN + 4 * US_MAX_VLANS];
    __u8 *data = (__u8 *)(long)ctx->data;
    __u8 *end = (__u8 *)(long)ctx->data_end;
    if (data + sizeof(l2) > end)
        return pass(US_BCTR_adjust_failed);
    __builtin_memcpy(l2, data, sizeof(l2));
    if (bpf_xdp_adjust_head(ctx, (int)len))
        return pass(US_BCTR_adjust_failed);

    data = (__u8 *)(long)ctx->data;
    end = (__u8 *)(long)ctx->data_end;
    if (data + sizeof(l2) > end) /* not reached: an L2 header and an IP header are left */
        return XDP_DROP;
    __u16 type = bpf_htons(ether_type);
    if (l3_offset == US_ETH_HLEN) {
        __builtin_memcpy(data, l2, US_ETH_HLEN - 2);
        __builtin_memcpy(data + US_ETH_HLEN - 2, &type, 2);
    } else if (l3_offset == US_ETH_HLEN + 4) {
        __builtin_memcpy(data, l2, US_ETH_HLEN + 4 - 2);
        __builtin_memcpy(data + US_ETH_HLEN + 4 - 2, &type, 2);
    } else {
        __builtin_memcpy(data, l2, US_ETH_HLEN + 8 - 2);
        __builtin_memcpy(data + US_ETH_HLEN + 8 - 2, &type, 2);
    }
    count(counter);
    return XDP_PASS;
}

/* Serve here: the inner packet at inner_offset goes to the kernel behind the received L2 header. */
static __always_inline int serve(struct xdp_md *ctx, const struct us_parsed *outer, __u32 inner_offset,
                                 __u8 inner_version, __u32 counter)
{
    return strip(ctx, outer->l3_offset, inner_offset - outer->l3_offset,
                 inner_version == 4 ? US_ETHERTYPE_IPV4 : US_ETHERTYPE_IPV6, counter);
}

/* Whether the kernel here holds a TCP connection (not just a listener) for the inner flow: an established
 * socket, a request socket (handshake in progress) or one in TIME_WAIT. */
static __always_inline int has_local_socket(struct xdp_md *ctx, const struct us_parsed *in)
{
    struct bpf_sock_tuple t = {};
    __u32 size;
    if (in->ip_version == 4) {
        __builtin_memcpy(&t.ipv4.saddr, in->src + 12, 4);
        __builtin_memcpy(&t.ipv4.daddr, in->dst + 12, 4);
        __builtin_memcpy(&t.ipv4.sport, in->sport, 2);
        __builtin_memcpy(&t.ipv4.dport, in->dport, 2);
        size = sizeof(t.ipv4);
    } else {
        __builtin_memcpy(t.ipv6.saddr, in->src, 16);
        __builtin_memcpy(t.ipv6.daddr, in->dst, 16);
        __builtin_memcpy(&t.ipv6.sport, in->sport, 2);
        __builtin_memcpy(&t.ipv6.dport, in->dport, 2);
        size = sizeof(t.ipv6);
    }
    struct bpf_sock *sk = bpf_skc_lookup_tcp(ctx, &t, size, BPF_F_CURRENT_NETNS, 0);
    if (!sk)
        return 0;
    int held = sk->state != BPF_TCP_LISTEN;
    bpf_sk_release(sk);
    return held;
}

/* A TCP packet of a connection that may already exist somewhere: not a fragment (no flags to read), not a
 * SYN. An ICMP error quoting a TCP packet belongs to an existing connection. */
static __always_inline int tcp_existing(const struct us_parsed *in, const __u8 *data, const __u8 *end)
{
    if (in->proto != US_IPPROTO_TCP || in->fragment)
        return 0;
    if (in->icmp_error)
        return 1;
    __u32 l4 = in->l4_offset;
    if (l4 > US_MAX_INNER_L4)
        return 0;
    const __u8 *tcp = data + l4;
    if (tcp + 14 > end)
        return 0;
    return (tcp[13] & 0x02) == 0; /* SYN */
}

/* Whether this host has an address of the outer family to send from. */
static __always_inline int has_own_address(const struct us_bpf_config *cfg, __u8 version)
{
    __u64 a, b;
    if (version == 4)
        return cfg->own_v4[0] | cfg->own_v4[1] | cfg->own_v4[2] | cfg->own_v4[3];
    __builtin_memcpy(&a, cfg->own_v6, 8);
    __builtin_memcpy(&b, cfg->own_v6 + 8, 8);
    return (a | b) != 0;
}

/* The backend in slot of pool, if the outer header can be rewritten towards it from this host. */
static __always_inline const struct us_bpf_backend *reachable(const struct us_bpf_config *cfg, __u32 pool,
                                                              const struct us_bpf_pool *p, __u32 slot,
                                                              __u8 outer_version)
{
    if (slot >= p->n_backends || slot >= US_BPF_MAX_SLOTS || !has_own_address(cfg, outer_version))
        return 0;
    __u32 index = pool * US_BPF_MAX_SLOTS + slot;
    const struct us_bpf_backend *b = bpf_map_lookup_elem(&us_backends, &index);
    if (!b || b->ip_version != outer_version)
        return 0;
    return b;
}

/* Forward: the outer header now goes from this host to backend b, one hop of the budget spent. */
static __always_inline int forward(struct xdp_md *ctx, const struct us_bpf_config *cfg,
                                   const struct us_parsed *outer, const struct us_bpf_backend *b, __u8 budget,
                                   __u8 walked, __u32 counter)
{
    __u8 *data = (__u8 *)(long)ctx->data;
    __u8 *end = (__u8 *)(long)ctx->data_end;
    __u32 l3 = outer->l3_offset, l4 = outer->l4_offset;
    if (l3 > US_ETH_HLEN + 4 * US_MAX_VLANS || l4 > US_MAX_OUTER_L4)
        return pass(US_BCTR_bad_gue); /* not reached: checked on the way in */
    __u8 *ip = data + l3;
    __u8 *udp = data + l4;
    if (udp + 8 + US_GUE_HDR_LEN > end || ip + 40 > end || data + US_ETH_HLEN > end)
        return pass(US_BCTR_bad_gue);
    __u8 *hop = udp + 8 + 4 + __builtin_offsetof(struct us_gue_private, hop_budget);
    __u8 old_hop[2] = {hop[0], hop[1]};
    /* hop_budget and walked are adjacent: budget is the received one, clamped, > 0 */
    __u8 new_hop[2] = {(__u8)(budget - 1), walked};

    if (outer->ip_version == 4) {
        /* IPv4 header checksum over the new addresses; UDP checksum 0 (allowed over IPv4). */
        __u32 sum = ~((__u32)ip[10] << 8 | ip[11]) & 0xffff;
        sum = csum_sub(sum, ip + 12, 8);
        sum = csum_add(sum, cfg->own_v4, 4);
        sum = csum_add(sum, b->addr + 12, 4);
        __u16 check = bpf_htons((__u16)~csum_fold(sum));
        __builtin_memcpy(ip + 10, &check, 2);
        __builtin_memcpy(ip + 12, cfg->own_v4, 4);
        __builtin_memcpy(ip + 16, b->addr + 12, 4);
        udp[6] = 0;
        udp[7] = 0;
    } else {
        /* IPv6 forbids UDP checksum 0: update it for the new pseudo-header addresses and hop budget. */
        __u32 sum = ~((__u32)udp[6] << 8 | udp[7]) & 0xffff;
        sum = csum_sub(sum, ip + 8, 32);
        sum = csum_sub(sum, old_hop, 2);
        sum = csum_add(sum, cfg->own_v6, 16);
        sum = csum_add(sum, b->addr, 16);
        sum = csum_add(sum, new_hop, 2);
        __u16 check = (__u16)~csum_fold(sum);
        if (check == 0)
            check = 0xffff;
        check = bpf_htons(check);
        __builtin_memcpy(udp + 6, &check, 2);
        __builtin_memcpy(ip + 8, cfg->own_v6, 16);
        __builtin_memcpy(ip + 24, b->addr, 16);
    }
    hop[0] = new_hop[0];
    hop[1] = new_hop[1];
    __builtin_memcpy(data, b->mac, 6);
    __builtin_memcpy(data + 6, cfg->own_mac, 6);
    count(counter);
    return XDP_TX;
}

/* GUE variant 0 with understudy's private data, and nothing else. Returns 0 when it is not that. */
static __always_inline int read_gue(const __u8 *gue, const __u8 *end, const __u8 *udp_end, struct us_gue_info *g)
{
    if (gue + US_GUE_HDR_LEN > end || gue + US_GUE_HDR_LEN > udp_end)
        return 0;
    /* ver 0, C 0 (no control messages), hlen = the private data alone, no flags (no optional fields) */
    if (gue[0] != US_GUE_HLEN_WORDS || (gue[1] != US_IPPROTO_IPIP && gue[1] != US_IPPROTO_IPV6) || gue[2] ||
        gue[3])
        return 0;
    const __u8 *pd = gue + 4;
    if (us_be16(pd) != US_GUE_PD_MAGIC || pd[2] != US_GUE_PD_VERSION)
        return 0;
    g->flags = pd[3];
    g->primary_id = load_be32(pd + 4);
    g->session_hash = load_be64(pd + 8);
    g->pool_digest = load_be32(pd + 16);
    g->hop_budget = pd[20];
    g->walked = pd[21];
    g->inner_version = gue[1] == US_IPPROTO_IPIP ? 4 : 6;
    return 1;
}

/* The VIP of an inner packet, and its pool's index; 0 when it is none of ours. */
static __always_inline const struct us_bpf_pool *vip_pool(const struct us_parsed *in, __u32 *pool_index)
{
    struct us_vip_key key = {};
    __builtin_memcpy(key.addr, in->dst, 16);
    if (!in->fragment)
        __builtin_memcpy(&key.port, in->dport, 2);
    key.proto = in->proto;
    const struct us_vip_value *vip = bpf_map_lookup_elem(&us_vips, &key);
    if (!vip)
        return 0;
    __u32 index = vip->pool;
    const struct us_bpf_pool *pool = bpf_map_lookup_elem(&us_pools, &index);
    if (!pool || pool->n_backends == 0)
        return 0;
    *pool_index = index;
    return pool;
}

/* The entry of the packet's bucket in this host's table of the pool; 0 when there is no such entry. */
static __always_inline int bucket_entry(__u32 pool_index, const struct us_bpf_pool *pool, __u64 session_hash,
                                        struct us_bucket_entry *entry)
{
    void *table = bpf_map_lookup_elem(&us_tables, &pool_index);
    if (!table)
        return 0;
    __u32 bits = pool->table_bits;
    if (bits > US_BPF_MAX_TABLE_BITS)
        return 0;
    __u32 bucket = (__u32)(session_hash & ((1ULL << bits) - 1));
    const struct us_bucket_entry *e = bpf_map_lookup_elem(table, &bucket);
    if (!e)
        return 0;
    *entry = *e;
    return 1;
}

/* The servers that may hold an established flow of the bucket, in the order every host walks them: the
 * serving server, the two before it, the primary of this host's view and the primary the header names.
 * `walked` (GUE private data) marks the places already tried, by the hosts before this one; this host marks
 * its own, forwards to the first operational candidate not tried yet and marks it. Each forward marks one
 * more of five places, so no packet is forwarded more than five times, whatever the views. */
static __always_inline const struct us_bpf_backend *next_candidate(const struct us_bpf_config *cfg,
                                                                   __u32 pool_index, const struct us_bpf_pool *pool,
                                                                   const struct us_bucket_entry *e,
                                                                   __u32 header_primary, __u8 outer_version,
                                                                   __u8 *walked)
{
    __u16 c[5] = {e->serving, e->previous, e->previous2, e->primary, US_NO_SERVER};
    struct us_backend_id_key key = {pool_index, header_primary};
    const __u32 *slot = bpf_map_lookup_elem(&us_backend_ids, &key);
    if (slot)
        c[4] = (__u16)*slot;
    __u16 me = pool->my_slot;
    __u8 tried = *walked;
#pragma unroll
    for (int i = 0; i < 5; i++)
        if (me != US_NO_SERVER && c[i] == me)
            tried |= 1 << i;
#pragma unroll
    for (int i = 0; i < 5; i++) {
        if ((tried >> i) & 1 || c[i] == US_NO_SERVER)
            continue;
        int seen = 0; /* an earlier place of the same server: tried, refused or chosen before this one */
#pragma unroll
        for (int j = 0; j < i; j++)
            seen |= c[j] == c[i];
        if (seen)
            continue;
        const struct us_bpf_backend *b = reachable(cfg, pool_index, pool, c[i], outer_version);
        if (b && b->operational) {
#pragma unroll
            for (int j = 0; j < 5; j++)
                if (c[j] == c[i])
                    tried |= 1 << j;
            *walked = tried;
            return b;
        }
    }
    return 0;
}

/* A QUIC_PRIMARY packet (docs/quic-lb.md): served here when this host is the server its connection ID
 * names (the connection lives there), forwarded there while that server is operational and reachable in this
 * view and the hop budget allows. Returns 0 when neither (this host's table decides, as for any UDP packet),
 * else 1 with *counter and *to set (to = 0: serve here). */
static __always_inline int quic_primary(const struct us_bpf_config *cfg, __u32 pool_index,
                                        const struct us_bpf_pool *pool, __u32 primary_id, __u8 budget,
                                        __u8 outer_version, const struct us_bpf_backend **to, __u32 *counter)
{
    struct us_backend_id_key key = {pool_index, primary_id};
    const __u32 *slot = bpf_map_lookup_elem(&us_backend_ids, &key);
    if (!slot)
        return 0;
    __u32 primary = *slot;
    if (pool->my_slot != US_NO_SERVER && primary == pool->my_slot) {
        *counter = US_BCTR_quic_primary_served;
        return 1;
    }
    if (budget == 0)
        return 0;
    const struct us_bpf_backend *b = reachable(cfg, pool_index, pool, primary, outer_version);
    if (!b || !b->operational)
        return 0;
    *to = b;
    *counter = US_BCTR_quic_primary_forwarded;
    return 1;
}

/* Whether the outer source may send tunnels here. */
static __always_inline int trusted_source(const struct us_parsed *outer)
{
    struct us_source_key key = {.prefixlen = 128};
    __builtin_memcpy(key.addr, outer->src, 16);
    return bpf_map_lookup_elem(&us_tunnel_sources, &key) != 0;
}

static __always_inline int on_gue(struct xdp_md *ctx, const struct us_bpf_config *cfg, const struct us_parsed *outer)
{
    const __u8 *data = (const __u8 *)(long)ctx->data;
    const __u8 *end = (const __u8 *)(long)ctx->data_end;
    __u32 l4 = outer->l4_offset;
    if (l4 > US_MAX_OUTER_L4)
        return pass(US_BCTR_bad_gue);
    const __u8 *udp = data + l4;
    if (udp + 8 > end)
        return pass(US_BCTR_bad_gue);
    const __u8 *udp_end = udp + us_be16(udp + 4); /* within the outer packet: the parser checked it */
    struct us_gue_info g;
    if (!read_gue(udp + 8, end, udp_end, &g))
        return pass(US_BCTR_bad_gue);

    __u32 inner_offset = l4 + 8 + US_GUE_HDR_LEN;
    struct us_parsed in;
    int reason = 0;
    in.vlan_count = 0;
    if (us_parse_ip(data, udp + 8 + US_GUE_HDR_LEN, udp_end, end, g.inner_version, &in, &reason) != US_PARSE_OK)
        return pass(US_BCTR_bad_inner);
    __u32 pool_index = 0;
    const struct us_bpf_pool *pool = vip_pool(&in, &pool_index);
    if (!pool)
        return pass(US_BCTR_no_vip);
    if (g.pool_digest != pool->pool_digest)
        count(US_BCTR_digest_mismatch);

    __u8 budget = g.hop_budget;
    if (budget > cfg->max_hops) {
        budget = cfg->max_hops;
        count(US_BCTR_hop_clamped);
    }
    struct us_bucket_entry entry;
    if (!bucket_entry(pool_index, pool, g.session_hash, &entry))
        return serve(ctx, outer, inner_offset, in.ip_version, US_BCTR_no_table);
    const struct us_bucket_entry *e = &entry;
    __u16 me = pool->my_slot;

    if (in.proto == US_IPPROTO_TCP && !in.fragment && tcp_existing(&in, data, end)) {
        /* A connection's segment: a local socket decides, whatever the table or the header say. */
        if (has_local_socket(ctx, &in))
            return serve(ctx, outer, inner_offset, in.ip_version, US_BCTR_local_socket_served);
        /* Misdirected by some view: on to the next candidate that may hold it. */
        if (budget == 0)
            return serve(ctx, outer, inner_offset, in.ip_version, US_BCTR_gue_last_resort);
        __u8 walked = g.walked;
        const struct us_bpf_backend *b =
            next_candidate(cfg, pool_index, pool, e, g.primary_id, outer->ip_version, &walked);
        if (!b)
            return serve(ctx, outer, inner_offset, in.ip_version, US_BCTR_no_holder_served);
        return forward(ctx, cfg, outer, b, budget, walked, US_BCTR_misdirected_forwarded);
    }
    /* A SYN: this host's view places the new connection (never on an earlier server: the walk is for
     * established flows). PINNED does not apply to TCP: a socket, not a flag, says where a flow lives. */
    int tcp = in.proto == US_IPPROTO_TCP && !in.fragment;

    /* Not TCP (or a fragment): no socket to ask. The server a QUIC connection ID names, then the sender's
     * pin, then this host's view. One serve and one forward site: each inlined copy costs the verifier. */
    const struct us_bpf_backend *to = 0;
    __u32 counter;
    int quic = !tcp && (g.flags & US_GUE_F_QUIC_PRIMARY);
    if (quic && quic_primary(cfg, pool_index, pool, g.primary_id, budget, outer->ip_version, &to, &counter)) {
        /* counter and to are set */
    } else {
        if (quic)
            count(US_BCTR_quic_primary_fallback);
        if (!tcp && (g.flags & US_GUE_F_PINNED))
            counter = US_BCTR_pinned_served;
        else if (me != US_NO_SERVER && e->serving == me)
            counter = US_BCTR_gue_served;
        else if (budget == 0)
            counter = US_BCTR_gue_last_resort;
        else if (e->serving == US_NO_SERVER)
            counter = US_BCTR_gue_no_server;
        else {
            to = reachable(cfg, pool_index, pool, e->serving, outer->ip_version);
            counter = to ? US_BCTR_gue_forwarded : US_BCTR_cannot_forward;
        }
    }
    if (to)
        return forward(ctx, cfg, outer, to, budget, g.walked, counter);
    return serve(ctx, outer, inner_offset, in.ip_version, counter);
}

/* IP-in-IP (either family in either): decapsulated for the kernel if the inner packet is for a VIP. */
static __always_inline int on_ipip(struct xdp_md *ctx, const struct us_parsed *outer)
{
    const __u8 *data = (const __u8 *)(long)ctx->data;
    const __u8 *end = (const __u8 *)(long)ctx->data_end;
    __u32 l4 = outer->l4_offset;
    if (l4 > US_MAX_OUTER_L4)
        return pass(US_BCTR_passed);
    const __u8 *outer_end = data + outer->l3_offset + outer->l3_len;
    struct us_parsed in;
    int reason = 0;
    in.vlan_count = 0;
    if (us_parse_ip(data, data + l4, outer_end, end, outer->proto == US_IPPROTO_IPIP ? 4 : 6, &in, &reason) !=
        US_PARSE_OK)
        return pass(US_BCTR_bad_inner);
    __u32 pool_index;
    if (!vip_pool(&in, &pool_index))
        return pass(US_BCTR_no_vip);
    return serve(ctx, outer, l4, in.ip_version, US_BCTR_ipip_decap);
}

SEC("xdp")
int us_backend(struct xdp_md *ctx)
{
    const __u8 *data = (const __u8 *)(long)ctx->data;
    const __u8 *end = (const __u8 *)(long)ctx->data_end;
    __u32 zero = 0;
    const struct us_bpf_config *cfg = bpf_map_lookup_elem(&us_config, &zero);
    if (!cfg)
        return pass(US_BCTR_passed);

    struct us_parsed outer;
    int reason = 0;
    /* Malformed frames, fragments and ICMP errors are the kernel's, whatever they carry. */
    if (us_parse_packet(data, end, &outer, &reason) != US_PARSE_OK || outer.fragment || outer.icmp_error)
        return pass(US_BCTR_passed);
    if (outer.proto == US_IPPROTO_UDP) {
        __u16 dport;
        __builtin_memcpy(&dport, outer.dport, 2);
        if (cfg->gue_port != 0 && dport == cfg->gue_port) {
            if (!trusted_source(&outer)) {
                count(US_BCTR_untrusted_source);
                return XDP_DROP;
            }
            return on_gue(ctx, cfg, &outer);
        }
    } else if (outer.proto == US_IPPROTO_IPIP || outer.proto == US_IPPROTO_IPV6) {
        if (!trusted_source(&outer)) {
            count(US_BCTR_untrusted_source);
            return XDP_DROP;
        }
        return on_ipip(ctx, &outer);
    }
    return pass(US_BCTR_passed);
}

char LICENSE[] SEC("license") = "GPL";
