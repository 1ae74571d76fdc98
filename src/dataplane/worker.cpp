// The fast path: rx burst -> parse -> VIP -> session hash -> connection table / bucket -> rewrite -> tx.
// No locks, no allocation, no system calls, no logging. Shared state arrives only as the RCU-published
// Snapshot; the worker reports quiescence once per loop.
#include "worker.h"

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_prefetch.h>
#include <rte_tcp.h>

#include <algorithm>
#include <cstddef>

#include "encap.h"
#include "icmp.h"
#include "us_parse.h"

namespace understudy::dp {

static inline void drop(Worker &w, rte_mbuf *m, int reason)
{
    count(w.stats.drops[reason]);
    rte_pktmbuf_free(m);
}

// What the first pass learns about a VIP packet, for the second.
struct Pending {
    us_parsed p;
    rte_mbuf *m;
    const Vip *vip;
    const Pool *pool;
    const us_bucket_entry *entry;
    const QuicVip *quic;  // nullptr unless the VIP routes QUIC by connection ID
    ConnSet *set;  // nullptr when the VIP keeps no connection table
    uint64_t tag;   // connection-table tag: the session hash mixed with the VIP's identity
    uint64_t hash;
};

// The session key is the parser's output up to the protocol: hash it in place.
static_assert(offsetof(us_parsed, src) == offsetof(us_session_key, src) &&
              offsetof(us_parsed, dst) == offsetof(us_session_key, dst) &&
              offsetof(us_parsed, sport) == offsetof(us_session_key, sport) &&
              offsetof(us_parsed, dport) == offsetof(us_session_key, dport) &&
              offsetof(us_parsed, proto) == offsetof(us_session_key, proto) &&
              offsetof(us_session_key, proto) + 1 == US_KEY_LEN);

enum class Verdict { dropped, kernel, pending };

// Whether a frame's destination MAC is this port's own or a group address (broadcast, multicast: ARP and
// IPv6 neighbour discovery need them). The port is promiscuous, so frames for other hosts arrive too.
static inline bool for_this_host(const uint8_t *dst, const rte_ether_addr &own)
{
    uint32_t a, b;
    uint16_t c, d;
    std::memcpy(&a, dst, 4);
    std::memcpy(&c, dst + 4, 2);
    std::memcpy(&b, own.addr_bytes, 4);
    std::memcpy(&d, own.addr_bytes + 4, 2);
    return (dst[0] & 1) || (a == b && c == d);
}

// Pass 1: parse and find the VIP.
static inline Verdict classify(Worker &w, const Snapshot &s, rte_mbuf *m, Pending &q)
{
    if (m->nb_segs != 1) {
        drop(w, m, US_DROP_multi_segment);
        return Verdict::dropped;
    }
    const uint8_t *data = rte_pktmbuf_mtod(m, const uint8_t *);
    const uint16_t len = rte_pktmbuf_data_len(m);
    if (len >= US_ETH_HLEN && !for_this_host(data, w.cfg.mac)) {
        drop(w, m, US_DROP_not_for_us);
        return Verdict::dropped;
    }
    us_parsed &p = q.p;
    int reason = 0;
    int verdict = us_parse_packet(data, data + len, &p, &reason);
    if (verdict == US_PARSE_DROP) {
        drop(w, m, reason);
        return Verdict::dropped;
    }
    if (verdict == US_PARSE_NOT_IP) {
        if (w.cfg.non_vip == NonVipPolicy::kernel)
            return Verdict::kernel;
        drop(w, m, US_DROP_not_ip);
        return Verdict::dropped;
    }

    uint64_t a0, a1;
    std::memcpy(&a0, p.dst, 8);
    std::memcpy(&a1, p.dst + 8, 8);
    uint16_t port;
    std::memcpy(&port, p.dport, 2);
    int32_t vip_index = vip_find(s.vip_slots, s.vip_slot_mask, a0, a1, vip_port_proto(p.fragment ? 0 : port, p.proto));
    if (vip_index < 0) {
        if (w.cfg.non_vip == NonVipPolicy::kernel)
            return Verdict::kernel;
        drop(w, m, US_DROP_no_vip);
        return Verdict::dropped;
    }
    q.m = m;
    q.vip = &s.vips[vip_index];
    q.pool = &s.pools[q.vip->pool];
    q.quic = s.quic_by_vip[vip_index];
    if (q.vip->affinity == uint8_t(Affinity::client))
        std::memset(p.sport, 0, 4);  // the ports are not read after this
    return Verdict::pending;
}

// Pass 1, with the session hash: start loading the bucket entry and the connection set.
static inline void locate(Worker &w, Pending &q, uint64_t hash)
{
    q.hash = hash;
    q.entry = &q.pool->entries[hash & q.pool->mask];
    rte_prefetch0(q.entry);
    q.set = nullptr;
    if (q.vip->conn_table) {
        q.tag = conn_tag(hash, q.vip->conn_key);
        q.set = &conn_set(w.conn, q.tag);
        rte_prefetch0(q.set);
    }
}

// Whether the packet is a TCP segment with SYN set: it opens a flow (or repeats the opening) and never
// confirms a connection-table entry. The parser has checked the whole TCP header of such packets.
static inline bool tcp_syn(const Pending &q)
{
    if (q.p.proto != US_IPPROTO_TCP || q.p.fragment || q.p.icmp_error)
        return false;
    return rte_pktmbuf_mtod(q.m, const uint8_t *)[q.p.l4_offset + 13] & RTE_TCP_SYN_FLAG;
}

// Where a VIP packet goes: the connection table's server for an established flow while it stays
// operational, else the bucket's serving server. A new flow's entry starts unconfirmed; a later packet that
// is not a TCP SYN confirms it, and new flows evict confirmed entries only from sets with no other room, and
// never with a SYN (conn_insert).
static inline uint16_t choose_server(Worker &w, const Pending &q, const us_bucket_entry &e, uint32_t now,
                                     uint8_t &flags)
{
    if (!q.set)
        return e.serving;
    const Pool &pool = *q.pool;
    ConnEntry *c = conn_find(*q.set, q.tag, now, q.vip->idle_ticks);
    bool syn = tcp_syn(q);
    bool confirmed = false;
    if (c) {
        confirmed = conn_confirmed(*c) || !syn;
        if (c->slot < pool.n_backends && pool.backends[c->slot].operational &&
            uint16_t(pool.backends[c->slot].id) == c->id_check) {
            count(w.stats.counters[US_CTR_conn_hits]);
            c->last_seen = conn_stamp(now, confirmed);
            if (c->slot != e.serving)
                flags |= US_GUE_F_PINNED;
            return c->slot;
        }
        count(w.stats.counters[US_CTR_conn_stale]);
    } else {
        count(w.stats.counters[US_CTR_conn_misses]);
    }
    if (e.serving != US_NO_SERVER) {
        ConnInsert done = conn_insert(*q.set, q.tag, e.serving, uint16_t(pool.backends[e.serving].id), now,
                                      q.vip->idle_ticks, confirmed, syn);
        count(w.stats.counters[US_CTR_conn_evictions],
              done == ConnInsert::evicted_unconfirmed || done == ConnInsert::evicted_confirmed);
        count(w.stats.counters[US_CTR_conn_evictions_confirmed], done == ConnInsert::evicted_confirmed);
    }
    return e.serving;
}

// A QUIC VIP's packet (docs/quic-lb.md): the server its destination connection ID names is its primary.
// While that server is operational the packet goes there, before and without the connection table (a
// migrated client's new 4-tuple has no entry, and the CID outranks an old pin). When that server is down the
// 4-tuple decides as for any packet. Either way the header names the CID's primary with QUIC_PRIMARY, so the
// backend's agent applies the same rule by its own view (no PINNED: the agent re-checks). An unroutable CID,
// or a packet that is not QUIC, an ICMP error or a fragment, goes by the 4-tuple.
static uint16_t quic_choose(Worker &w, const Pending &q, const us_bucket_entry &e, uint32_t now, uint8_t &flags,
                            uint16_t &primary)
{
    if (q.p.fragment || q.p.icmp_error || q.p.proto != US_IPPROTO_UDP)
        return choose_server(w, q, e, now, flags);
    const uint8_t *data = rte_pktmbuf_mtod(q.m, const uint8_t *);
    size_t end = std::min<size_t>(q.p.l3_offset + q.p.l3_len, rte_pktmbuf_data_len(q.m));
    size_t payload = q.p.l4_offset + 8u;  // after the UDP header
    uint64_t *counters = w.stats.vip_quic[q.vip->stat_index];
    int reason;
    uint16_t slot = quic_primary_slot(*q.quic, data + payload, end > payload ? end - payload : 0, &reason);
    if (slot == US_NO_SERVER) {
        count(counters[reason]);
        return choose_server(w, q, e, now, flags);
    }
    primary = slot;
    flags |= US_GUE_F_QUIC_PRIMARY;
    if (!q.pool->backends[slot].operational) {
        count(counters[US_QUIC_primary_down]);
        return choose_server(w, q, e, now, flags);
    }
    count(counters[US_QUIC_cid_routed]);
    return slot;
}

// A VIP packet larger than the MTU once encapsulated for its backend (limit: the largest inner packet that
// fits). An IPv4 packet with DF set, or any IPv6 packet, is answered with ICMP frag-needed / packet-too-big,
// within the worker's rate; a packet the balancer could fragment (IPv4, DF clear) is dropped unanswered, as
// is an ICMP error (RFC 1122 3.2.2, RFC 4443 2.4 (e)): the balancer never fragments. Returns true when m
// now holds the answer.
static bool too_big(Worker &w, const Snapshot &s, const Pending &q, uint16_t limit)
{
    rte_mbuf *m = q.m;
    const uint8_t *ip = rte_pktmbuf_mtod(m, const uint8_t *) + q.p.l3_offset;
    if (q.p.icmp_error) {
        drop(w, m, US_DROP_too_big_icmp_error);
        return false;
    }
    if (q.p.ip_version == 4 && !(ip[6] & (RTE_IPV4_HDR_DF_FLAG >> 8))) {
        drop(w, m, US_DROP_too_big_df_clear);
        return false;
    }
    // Token bucket in TSC cycles: one message costs icmp_interval, at most icmp_full is saved up.
    uint64_t tsc = rte_rdtsc();
    uint64_t credit = std::min(w.icmp_credit + (tsc - w.icmp_last_tsc), s.source.icmp_full);
    w.icmp_last_tsc = tsc;
    if (credit < s.source.icmp_interval) {
        w.icmp_credit = credit;
        drop(w, m, US_DROP_icmp_rate_limited);
        return false;
    }
    w.icmp_credit = credit - s.source.icmp_interval;
    if (int err = make_too_big(m, q.p, w.cfg.mac, limit)) {
        drop(w, m, err);
        return false;
    }
    count(w.stats.drops[US_DROP_too_big]);  // the packet itself is dropped; icmp_too_big_sent counts the answer
    return true;
}

enum class Sent { dropped, forwarded, answered };

// Pass 2: choose the server and rewrite (or answer a packet too big for the MTU).
static inline Sent forward(Worker &w, const Snapshot &s, const Pending &q, uint32_t now)
{
    rte_mbuf *m = q.m;
    const Pool &pool = *q.pool;
    const us_bucket_entry e = *q.entry;
    uint8_t flags = 0;
    uint16_t primary = e.primary;
    uint16_t slot = q.quic ? quic_choose(w, q, e, now, flags, primary) : choose_server(w, q, e, now, flags);
    if (slot == US_NO_SERVER) {
        drop(w, m, US_DROP_no_server);
        return Sent::dropped;
    }
    const Backend &b = pool.backends[slot];
    if (!b.mac_known) {
        drop(w, m, US_DROP_no_next_hop);
        return Sent::dropped;
    }
    uint16_t limit = s.source.max_inner[q.vip->method][b.ip_version == 6];
    if (q.p.l3_len > limit)
        return too_big(w, s, q, limit) ? Sent::answered : Sent::dropped;
    uint32_t primary_id = pool.backends[primary].id;
    if (b.id != primary_id) {
        flags |= US_GUE_F_FAILOVER;
        count(w.stats.counters[US_CTR_failovers]);
    }
    uint32_t in_len = rte_pktmbuf_pkt_len(m);
    EncapInfo info{q.hash, primary_id, pool.digest, flags, s.source.hop_budget,
                   rte_cpu_to_be_16(uint16_t(w.ip_id & s.source.ip_id_mask))};
    w.ip_id = uint16_t(w.ip_id + w.ip_id_stride);
    int err = kEncap[q.vip->method](m, q.p, b, s.source, info);
    if (err) {
        drop(w, m, err);
        return Sent::dropped;
    }
    count(w.stats.counters[US_CTR_fragments], q.p.fragment);
    count(w.stats.counters[US_CTR_icmp_errors], q.p.icmp_error);
    count(w.stats.vip_packets[q.vip->stat_index]);
    count(w.stats.vip_bytes[q.vip->stat_index], in_len);
    count(w.stats.backend_packets[b.stat_index]);
    count(w.stats.backend_bytes[b.stat_index], rte_pktmbuf_pkt_len(m));
    return Sent::forwarded;
}

// In passes over the burst: parse and find the VIPs; hash the sessions two at a time and prefetch their
// per-flow state; choose and rewrite. The per-flow reads of a whole burst (bucket entries, connection
// sets) are then in flight together: with many flows each is a cache miss, and handled one packet at a
// time every miss would wait alone.
uint16_t process_burst(Worker &w, const Snapshot &s, rte_mbuf **pkts, uint16_t n, uint32_t now, BurstOut &out)
{
    out.n_tx = out.n_exc = out.n_icmp = 0;
    Pending pending[kBurst];
    uint16_t n_pending = 0;
    constexpr uint16_t kAhead = 4;
    n = std::min(n, kBurst);
    count(w.stats.counters[US_CTR_rx_packets], n);
    uint64_t rx_bytes = 0;
    for (uint16_t i = 0; i < n && i < kAhead; i++)
        rte_prefetch0(rte_pktmbuf_mtod(pkts[i], void *));
    for (uint16_t i = 0; i < n; i++) {
        if (i + kAhead < n)
            rte_prefetch0(rte_pktmbuf_mtod(pkts[i + kAhead], void *));
        rte_mbuf *m = pkts[i];
        rx_bytes += rte_pktmbuf_pkt_len(m);
        switch (classify(w, s, m, pending[n_pending])) {
        case Verdict::pending:
            n_pending++;
            break;
        case Verdict::kernel:
            out.exc[out.n_exc++] = m;
            break;
        case Verdict::dropped:
            break;
        }
    }
    count(w.stats.counters[US_CTR_rx_bytes], rx_bytes);

    const uint8_t *secret = s.secret.data();
    uint16_t i = 0;
    for (; i + 1 < n_pending; i += 2) {
        uint64_t h[2];
        us_session_hash_x2(secret, reinterpret_cast<const uint8_t *>(&pending[i].p),
                           reinterpret_cast<const uint8_t *>(&pending[i + 1].p), &h[0], &h[1]);
        locate(w, pending[i], h[0]);
        locate(w, pending[i + 1], h[1]);
    }
    if (i < n_pending)
        locate(w, pending[i],
               us_siphash(secret, reinterpret_cast<const uint8_t *>(&pending[i].p), US_KEY_LEN, US_SESSION_C,
                          US_SESSION_D));

    for (i = 0; i < n_pending; i++) {
        switch (forward(w, s, pending[i], now)) {
        case Sent::forwarded:
            out.tx[out.n_tx++] = pending[i].m;
            break;
        case Sent::answered:
            out.icmp[out.n_icmp++] = pending[i].m;
            break;
        case Sent::dropped:
            break;
        }
    }
    return n;
}

// Sends what it can; the rest is freed and counted under `reason`.
static inline uint16_t send(Worker &w, uint16_t port, uint16_t queue, rte_mbuf **pkts, uint16_t n, int reason)
{
    uint16_t sent = rte_eth_tx_burst(port, queue, pkts, n);
    for (uint16_t i = sent; i < n; i++)
        drop(w, pkts[i], reason);
    return sent;
}

int worker_main(void *arg)
{
    Worker &w = *static_cast<Worker *>(arg);
    rte_mbuf *rx[kBurst];
    BurstOut out;
    rte_rcu_qsbr_thread_online(w.rcu, w.cfg.rcu_id);

    while (!w.stop->load(std::memory_order_relaxed)) {
        const Snapshot *s = w.snapshot->load(std::memory_order_acquire);
        uint32_t now = uint32_t(rte_rdtsc() / w.tsc_per_tick);
        uint16_t n = rte_eth_rx_burst(w.cfg.port, w.cfg.queue, rx, kBurst);
        if (n) {
            if (s->generation != w.seen_generation.load(std::memory_order_relaxed)) {
                w.first_packet_tsc.store(rte_rdtsc(), std::memory_order_relaxed);
                w.seen_generation.store(s->generation, std::memory_order_release);
            }
            process_burst(w, *s, rx, n, now, out);
            if (out.n_tx) {
                uint64_t bytes = 0;  // summed before sending: the driver owns what it sent
                for (uint16_t i = 0; i < out.n_tx; i++)
                    bytes += rte_pktmbuf_pkt_len(out.tx[i]);
                uint16_t sent = rte_eth_tx_burst(w.cfg.tx_port, w.cfg.tx_queue, out.tx, out.n_tx);
                for (uint16_t i = sent; i < out.n_tx; i++) {
                    bytes -= rte_pktmbuf_pkt_len(out.tx[i]);
                    drop(w, out.tx[i], US_DROP_tx_full);
                }
                count(w.stats.counters[US_CTR_tx_packets], sent);
                count(w.stats.counters[US_CTR_tx_bytes], bytes);
            }
            if (out.n_icmp)  // back to the sender, by the port the packet came in by
                count(w.stats.counters[US_CTR_icmp_too_big_sent],
                      send(w, w.cfg.port, w.cfg.tx_queue, out.icmp, out.n_icmp, US_DROP_tx_full));
            if (out.n_exc) {
                if (w.cfg.tap_port == kNoPort) {
                    for (uint16_t i = 0; i < out.n_exc; i++)
                        drop(w, out.exc[i], US_DROP_exception_full);
                } else {
                    count(w.stats.counters[US_CTR_exception_packets],
                          send(w, w.cfg.tap_port, w.cfg.tx_queue, out.exc, out.n_exc, US_DROP_exception_full));
                }
            }
        }
        if (w.cfg.poll_tap) {
            // What the kernel sends (ARP replies, ICMP, probe traffic, BGP) leaves by the NIC.
            uint16_t k = rte_eth_rx_burst(w.cfg.tap_port, 0, out.exc, kBurst);
            if (k)
                count(w.stats.counters[US_CTR_kernel_packets],
                      send(w, w.cfg.port, w.cfg.tx_queue, out.exc, k, US_DROP_tx_full));
        }
        rte_rcu_qsbr_quiescent(w.rcu, w.cfg.rcu_id);
        if (w.cfg.stop_after_rx && read(w.stats.counters[US_CTR_rx_packets]) >= w.cfg.stop_after_rx)
            break;
    }
    rte_rcu_qsbr_thread_offline(w.rcu, w.cfg.rcu_id);
    return 0;
}

}  // namespace understudy::dp
