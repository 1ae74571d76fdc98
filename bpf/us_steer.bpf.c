/* us_steer: the XDP program of a balancer host that keeps the kernel on the NIC the data plane uses through
 * DPDK's net_af_xdp (xdp_prog=): packets for a VIP go to the AF_XDP socket of their RX queue, everything else
 * (and VIP packets of a queue without a socket) to the kernel. The VIP test is the balancer's: the shared
 * parser, the VIP key of us_bpf_maps.h, fragments by port 0, ICMP errors by the flow they quote. */
#include "us_bpf_maps.h" /* first: it gives the shared headers uint16_t */

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "us_parse.h"

/* DPDK's net_af_xdp looks this map up by name and puts the socket of queue i at index i. */
struct {
    __uint(type, BPF_MAP_TYPE_XSKMAP);
    __uint(max_entries, US_BPF_MAX_QUEUES);
    __type(key, __u32);
    __type(value, __u32);
} xsks_map SEC(".maps");

/* Filled by the balancer; pinned by name so that it can find the map of the object DPDK loaded. */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, US_BPF_MAX_VIPS);
    __type(key, struct us_vip_key);
    __type(value, struct us_vip_value);
    __uint(pinning, LIBBPF_PIN_BY_NAME);
} us_steer_vips SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, US_SCTR_MAX);
    __type(key, __u32);
    __type(value, __u64);
    __uint(pinning, LIBBPF_PIN_BY_NAME);
} us_steer_stats SEC(".maps");

static __always_inline void count(__u32 counter)
{
    __u64 *v = bpf_map_lookup_elem(&us_steer_stats, &counter);
    if (v)
        *v += 1;
}

static __always_inline int is_vip(const __u8 *data, const __u8 *end)
{
    struct us_parsed p;
    int reason = 0;
    /* Malformed packets go to the kernel: nothing tells whether they were meant for a VIP. */
    if (us_parse_packet(data, end, &p, &reason) != US_PARSE_OK)
        return 0;
    struct us_vip_key key = {};
    __builtin_memcpy(key.addr, p.dst, 16);
    if (!p.fragment)
        __builtin_memcpy(&key.port, p.dport, 2);
    key.proto = p.proto;
    return bpf_map_lookup_elem(&us_steer_vips, &key) != 0;
}

SEC("xdp")
int us_steer(struct xdp_md *ctx)
{
    if (!is_vip((const __u8 *)(long)ctx->data, (const __u8 *)(long)ctx->data_end)) {
        count(US_SCTR_passed);
        return XDP_PASS;
    }
    long verdict = bpf_redirect_map(&xsks_map, ctx->rx_queue_index, XDP_PASS);
    count(verdict == XDP_REDIRECT ? US_SCTR_steered : US_SCTR_no_socket);
    return (int)verdict;
}

char LICENSE[] SEC("license") = "GPL";
