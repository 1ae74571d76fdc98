// The fast path: rx burst -> parse -> VIP -> session hash -> connection table / bucket -> rewrite -> tx.
// No locks, no allocation, no system calls, no logging. Shared state arrives only as the RCU-published
// Snapshot; the worker reports quiescence once per loop.
#include "worker.h"

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_prefetch.h>

#include "encap.h"
#include "us_parse.h"

namespace understudy::dp {

static inline void drop(Worker &w, rte_mbuf *m, int reason)
{
    w.stats.drops[reason]++;
    rte_pktmbuf_free(m);
}

// Where a VIP packet goes: the connection table's server for an established flow while it stays
// operational, else the bucket's serving server.
static inline uint16_t choose_server(Worker &w, const Vip &vip, const Pool &pool, uint16_t vip_index,
                                     uint64_t hash, const us_bucket_entry &e, uint32_t now, uint8_t &flags)
{
    if (!vip.conn_table)
        return e.serving;
    uint64_t tag = conn_tag(hash, vip_index);
    ConnSet &set = conn_set(w.conn, tag);
    ConnEntry *c = conn_find(set, tag, now, vip.idle_ticks);
    if (c) {
        if (c->slot < pool.n_backends && pool.backends[c->slot].operational &&
            uint16_t(pool.backends[c->slot].id) == c->id_check) {
            w.stats.counters[US_CTR_conn_hits]++;
            c->last_seen = now;
            if (c->slot != e.serving)
                flags |= US_GUE_F_PINNED;
            return c->slot;
        }
        w.stats.counters[US_CTR_conn_stale]++;
    } else {
        w.stats.counters[US_CTR_conn_misses]++;
    }
    if (e.serving != US_NO_SERVER) {
        bool evicted = conn_insert(set, tag, e.serving, uint16_t(pool.backends[e.serving].id), now, vip.idle_ticks);
        w.stats.counters[US_CTR_conn_evictions] += evicted;
    }
    return e.serving;
}

// Returns 1 when m went to tx, 2 when to the kernel, 0 when it was dropped.
static inline int process_one(Worker &w, const Snapshot &s, rte_mbuf *m, uint32_t now)
{
    if (m->nb_segs != 1) {
        drop(w, m, US_DROP_multi_segment);
        return 0;
    }
    const uint8_t *data = rte_pktmbuf_mtod(m, const uint8_t *);
    us_parsed p;
    int reason = 0;
    int verdict = us_parse_packet(data, data + rte_pktmbuf_data_len(m), &p, &reason);
    if (verdict == US_PARSE_DROP) {
        drop(w, m, reason);
        return 0;
    }
    if (verdict == US_PARSE_NOT_IP) {
        if (w.cfg.non_vip == NonVipPolicy::kernel)
            return 2;
        drop(w, m, US_DROP_not_ip);
        return 0;
    }

    VipKey key;
    std::memcpy(key.addr, p.dst, 16);
    std::memcpy(&key.port, p.fragment ? (const uint8_t *)"\0\0" : p.dport, 2);
    key.proto = p.proto;
    key.pad = 0;
    void *found;
    if (rte_hash_lookup_data(s.vip_hash, &key, &found) < 0) {
        if (w.cfg.non_vip == NonVipPolicy::kernel)
            return 2;
        drop(w, m, US_DROP_no_vip);
        return 0;
    }
    uint16_t vip_index = uint16_t(reinterpret_cast<uintptr_t>(found));
    const Vip &vip = s.vips[vip_index];
    const Pool &pool = s.pools[vip.pool];

    us_session_key sk;
    std::memcpy(sk.src, p.src, 16);
    std::memcpy(sk.dst, p.dst, 16);
    if (vip.affinity == uint8_t(Affinity::client)) {
        std::memset(sk.sport, 0, 4);
    } else {
        std::memcpy(sk.sport, p.sport, 2);
        std::memcpy(sk.dport, p.dport, 2);
    }
    sk.proto = p.proto;
    uint64_t hash = us_session_hash(s.secret.data(), &sk);
    const us_bucket_entry &e = pool.entries[hash & pool.mask];

    uint8_t flags = 0;
    uint16_t slot = choose_server(w, vip, pool, vip_index, hash, e, now, flags);
    if (slot == US_NO_SERVER) {
        drop(w, m, US_DROP_no_server);
        return 0;
    }
    const Backend &b = pool.backends[slot];
    if (!b.mac_known) {
        drop(w, m, US_DROP_no_next_hop);
        return 0;
    }
    uint32_t primary_id = pool.backends[e.primary].id;
    if (b.id != primary_id) {
        flags |= US_GUE_F_FAILOVER;
        w.stats.counters[US_CTR_failovers]++;
    }
    uint32_t in_len = rte_pktmbuf_pkt_len(m);
    EncapInfo info{hash, primary_id, pool.digest, flags, s.source.hop_budget};
    int err = kEncap[vip.method](m, p, b, s.source, info);
    if (err) {
        drop(w, m, err);
        return 0;
    }
    w.stats.counters[US_CTR_fragments] += p.fragment;
    w.stats.counters[US_CTR_icmp_errors] += p.icmp_error;
    w.stats.vip_packets[vip.stat_index]++;
    w.stats.vip_bytes[vip.stat_index] += in_len;
    w.stats.backend_packets[b.stat_index]++;
    w.stats.backend_bytes[b.stat_index] += rte_pktmbuf_pkt_len(m);
    return 1;
}

BurstResult process_burst(Worker &w, const Snapshot &s, rte_mbuf **pkts, uint16_t n, uint32_t now,
                          rte_mbuf **tx, rte_mbuf **exc)
{
    BurstResult r;
    constexpr uint16_t kAhead = 4;
    for (uint16_t i = 0; i < n && i < kAhead; i++)
        rte_prefetch0(rte_pktmbuf_mtod(pkts[i], void *));
    for (uint16_t i = 0; i < n; i++) {
        if (i + kAhead < n)
            rte_prefetch0(rte_pktmbuf_mtod(pkts[i + kAhead], void *));
        rte_mbuf *m = pkts[i];
        w.stats.counters[US_CTR_rx_packets]++;
        w.stats.counters[US_CTR_rx_bytes] += rte_pktmbuf_pkt_len(m);
        switch (process_one(w, s, m, now)) {
        case 1:
            tx[r.n_tx++] = m;
            break;
        case 2:
            exc[r.n_exc++] = m;
            break;
        default:
            break;
        }
    }
    return r;
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
    rte_mbuf *rx[kBurst], *tx[kBurst], *exc[kBurst];
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
            BurstResult r = process_burst(w, *s, rx, n, now, tx, exc);
            if (r.n_tx) {
                uint64_t bytes = 0;  // summed before sending: the driver owns what it sent
                for (uint16_t i = 0; i < r.n_tx; i++)
                    bytes += rte_pktmbuf_pkt_len(tx[i]);
                uint16_t sent = rte_eth_tx_burst(w.cfg.tx_port, w.cfg.tx_queue, tx, r.n_tx);
                for (uint16_t i = sent; i < r.n_tx; i++) {
                    bytes -= rte_pktmbuf_pkt_len(tx[i]);
                    drop(w, tx[i], US_DROP_tx_full);
                }
                w.stats.counters[US_CTR_tx_packets] += sent;
                w.stats.counters[US_CTR_tx_bytes] += bytes;
            }
            if (r.n_exc) {
                if (w.cfg.tap_port == kNoPort) {
                    for (uint16_t i = 0; i < r.n_exc; i++)
                        drop(w, exc[i], US_DROP_exception_full);
                } else {
                    w.stats.counters[US_CTR_exception_packets] +=
                        send(w, w.cfg.tap_port, w.cfg.tx_queue, exc, r.n_exc, US_DROP_exception_full);
                }
            }
        }
        if (w.cfg.poll_tap) {
            // What the kernel sends (ARP replies, ICMP, probe traffic, BGP) leaves by the NIC.
            uint16_t k = rte_eth_rx_burst(w.cfg.tap_port, 0, exc, kBurst);
            if (k)
                w.stats.counters[US_CTR_kernel_packets] += send(w, w.cfg.port, w.cfg.tx_queue, exc, k, US_DROP_tx_full);
        }
        rte_rcu_qsbr_quiescent(w.rcu, w.cfg.rcu_id);
        if (w.cfg.stop_after_rx && w.stats.counters[US_CTR_rx_packets] >= w.cfg.stop_after_rx)
            break;
    }
    rte_rcu_qsbr_thread_offline(w.rcu, w.cfg.rcu_id);
    return 0;
}

}  // namespace understudy::dp
