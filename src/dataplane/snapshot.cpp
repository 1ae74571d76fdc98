// Building snapshots (control side, cold): the VIP hash, the per-pool backend arrays and the pointers to
// bucket tables the workers read.
#include "snapshot.h"

#include <rte_cycles.h>
#include <rte_ip.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_udp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include "core/config_limits.h"
#include "core/siphash.h"

namespace understudy::dp {

// The limits validate_config() checks (core/config_limits.h) are the ones the snapshot is built with.
static_assert(kMaxVips == understudy::kMaxDataplaneVips, "one VIP limit for the checks and the data plane");
static_assert(sizeof(Vip::pool) == 2 && understudy::kMaxDataplanePools <= 65536, "a VIP's pool is a 16-bit index");

uint16_t StatIndex::backend(const std::string &pool, uint32_t id)
{
    auto pit = backends_.find(pool);
    if (pit == backends_.end())
        pit = backends_.emplace(pool, std::unordered_map<uint32_t, uint16_t>{}).first;
    if (auto it = pit->second.find(id); it != pit->second.end())
        return it->second;
    uint16_t index;
    if (!free_backends_.empty()) {
        index = free_backends_.back();
        free_backends_.pop_back();
        recycled_.push_back(index);
    } else if (backend_count_ < kMaxBackendStats - 1) {
        index = uint16_t(backend_count_);
    } else {
        return uint16_t(kMaxBackendStats - 1);  // shared overflow slot
    }
    pit->second[id] = index;
    backend_count_++;
    return index;
}

void StatIndex::forget_backend(const std::string &pool, uint32_t id)
{
    auto pit = backends_.find(pool);
    if (pit == backends_.end())
        return;
    auto it = pit->second.find(id);
    if (it == pit->second.end())
        return;
    free_backends_.push_back(it->second);
    pit->second.erase(it);
    backend_count_--;
}

uint16_t StatIndex::vip(const Address &address, uint16_t port, Protocol protocol)
{
    auto key = std::make_tuple(address, port, uint8_t(protocol));
    if (auto it = vips_.find(key); it != vips_.end())
        return it->second;
    uint16_t index = uint16_t(std::min<size_t>(vips_.size(), kMaxVips - 1));
    vips_[key] = index;
    return index;
}

uint16_t encap_overhead(Method method, bool outer_v6)
{
    uint16_t ip = outer_v6 ? sizeof(rte_ipv6_hdr) : sizeof(rte_ipv4_hdr);
    switch (method) {
    case Method::gue: return uint16_t(ip + sizeof(rte_udp_hdr) + US_GUE_HDR_LEN);
    case Method::ipip: return ip;
    case Method::l2dsr: return 0;
    }
    return 0;
}

uint64_t vip_conn_key(const Secret &secret, const understudy::Vip &vip)
{
    std::vector<uint8_t> data{'v', 'i', 'p', 0};
    data.insert(data.end(), vip.address.bytes.begin(), vip.address.bytes.end());
    data.push_back(uint8_t(vip.port >> 8));
    data.push_back(uint8_t(vip.port));
    data.push_back(uint8_t(vip.protocol));
    data.insert(data.end(), vip.pool.begin(), vip.pool.end());
    return siphash13(secret, data);
}

rte_ether_addr default_backend_mac(uint32_t id)
{
    return rte_ether_addr{{0x02, 0x00, uint8_t(id >> 24), uint8_t(id >> 16), uint8_t(id >> 8), uint8_t(id)}};
}

static rte_ether_addr to_ether(const std::array<uint8_t, 6> &mac)
{
    rte_ether_addr a;
    std::memcpy(a.addr_bytes, mac.data(), 6);
    return a;
}

// Adds (address, port, protocol) -> vip unless the key is there already (fragment entries: the first VIP wins).
static void vip_insert(VipTable &t, const Address &addr, uint16_t port, Protocol proto, uint32_t vip)
{
    VipSlot k{};
    std::memcpy(k.addr, addr.bytes.data(), 16);
    k.port_proto = vip_port_proto(rte_cpu_to_be_16(port), uint8_t(proto));
    k.vip = vip;
    VipSlot &v = t.slots[vip_probe(t.slots.data(), uint32_t(t.slots.size() - 1), k.addr[0], k.addr[1], k.port_proto)];
    if (v.port_proto == kVipSlotEmpty)
        v = k;
}

EntryArray::EntryArray(std::span<const us_bucket_entry> from)
{
    size_t bytes = std::max<size_t>(1, from.size()) * sizeof(us_bucket_entry);
    data_ = static_cast<us_bucket_entry *>(rte_malloc("buckets", bytes, RTE_CACHE_LINE_SIZE));
    huge_ = data_ != nullptr;
    if (!data_)
        data_ = static_cast<us_bucket_entry *>(std::aligned_alloc(RTE_CACHE_LINE_SIZE, RTE_ALIGN_CEIL(bytes, 64)));
    if (!data_)
        throw std::bad_alloc();
    std::copy(from.begin(), from.end(), data_);
}

EntryArray::~EntryArray()
{
    if (huge_)
        rte_free(data_);
    else
        std::free(data_);
}

Result<std::shared_ptr<VipTable>> build_vip_table(const Config &config, StatIndex &stat_index)
{
    if (config.vips.size() > understudy::kMaxDataplaneVips)
        return Error{"at most " + std::to_string(understudy::kMaxDataplaneVips) + " VIPs are supported"};
    if (config.pools.size() > understudy::kMaxDataplanePools)
        return Error{"at most " + std::to_string(understudy::kMaxDataplanePools) + " pools are supported"};
    auto t = std::make_shared<VipTable>();
    // Two keys per VIP (its port, and port 0 for fragments), at most a quarter of the slots used.
    size_t slots = 16;
    while (slots < config.vips.size() * 2 * 4)
        slots *= 2;
    VipSlot empty{};
    empty.port_proto = kVipSlotEmpty;
    t->slots.assign(slots, empty);

    for (size_t i = 0; i < config.vips.size(); i++) {
        const understudy::Vip &cv = config.vips[i];
        size_t pool = 0;
        while (pool < config.pools.size() && config.pools[pool].name != cv.pool)
            pool++;
        if (pool == config.pools.size())
            return Error{"VIP names unknown pool " + cv.pool};
        Vip v{};
        v.conn_key = vip_conn_key(config.secret, cv);
        v.pool = uint16_t(pool);
        v.method = uint8_t(cv.method);
        v.affinity = uint8_t(cv.affinity);
        v.conn_table = cv.conn_table;
        v.ip_version = cv.address.is_v4() ? 4 : 6;
        v.stat_index = stat_index.vip(cv.address, cv.port, cv.protocol);
        v.idle_ticks = cv.conn_idle_timeout_s * 1024u;
        t->vips.push_back(v);
        vip_insert(*t, cv.address, cv.port, cv.protocol, uint32_t(i));
        // Fragments carry no ports: they belong to the first VIP on their address and protocol.
        vip_insert(*t, cv.address, 0, cv.protocol, uint32_t(i));
    }
    return t;
}

static Address source_v4(const Config &config)
{
    return config.dataplane.source_v4 ? *config.dataplane.source_v4 : *Address::parse(kDefaultSourceV4);
}

static uint16_t outer_frag(const Config &config)
{
    return config.dataplane.outer_df ? rte_cpu_to_be_16(RTE_IPV4_HDR_DF_FLAG) : 0;
}

// The outer IPv4 header's fields that do not change per packet (TOS, length, identification and protocol
// do), summed once per backend so that the fast path adds four words instead of walking the header.
static uint16_t ipv4_fixed_sum(const uint8_t src[4], const uint8_t dst[4], uint16_t frag_be)
{
    rte_ipv4_hdr h{};
    h.version_ihl = 0x45;
    h.fragment_offset = frag_be;
    h.time_to_live = kOuterTtl;
    std::memcpy(&h.src_addr, src, 4);
    std::memcpy(&h.dst_addr, dst, 4);
    return rte_raw_cksum(&h, sizeof h);
}

std::vector<Backend> build_backends(const Config &config, const understudy::Pool &cp, const PoolTable &t,
                                    const SnapshotOptions &options)
{
    std::unordered_map<uint32_t, const understudy::Backend *> by_id;
    by_id.reserve(cp.backends.size());
    for (const auto &b : cp.backends)
        by_id[b.id] = &b;
    const Address src_v4 = source_v4(config);
    std::vector<Backend> backends(t.members().size());
    for (size_t slot = 0; slot < t.members().size(); slot++) {
        const Member &m = t.members()[slot];
        Backend &b = backends[slot];
        b = Backend{};
        auto it = by_id.find(m.id);
        if (!m.present || it == by_id.end())
            continue;
        const understudy::Backend &cb = *it->second;
        b.id = m.id;
        b.operational = m.operational;
        b.ip_version = cb.address.is_v4() ? 4 : 6;
        std::memcpy(b.addr, cb.address.bytes.data(), 16);
        if (b.ip_version == 4)
            b.ip4_sum = ipv4_fixed_sum(src_v4.bytes.data() + 12, b.addr + 12, outer_frag(config));
        b.stat_index = options.stat_index->backend(cp.name, m.id);
        std::optional<rte_ether_addr> mac;
        if (cb.mac)
            mac = to_ether(*cb.mac);
        else if (config.dataplane.gateway_mac)
            mac = to_ether(*config.dataplane.gateway_mac);
        else if (options.resolve_mac)
            mac = options.resolve_mac(cb.address);
        b.mac = mac ? *mac : default_backend_mac(m.id);
        b.mac_known = mac.has_value() || !options.resolve_mac;
    }
    return backends;
}

Status build_quic_vip(QuicVip &out, const understudy::Vip &vip, const understudy::Pool &pool, const PoolTable &table)
{
    out.present = 0;
    std::unordered_map<uint32_t, bool> in_pool;
    for (const auto &b : pool.backends)
        in_pool[b.id] = true;
    for (const QuicLbConfig &q : vip.quic_lb) {
        const uint8_t *key = q.key ? q.key->data() : nullptr;
        quic_lb_config &c = out.config[q.codepoint < QUIC_LB_CODEPOINTS ? q.codepoint : 0];
        if (enum quic_lb_status st = quic_lb_config_init(&c, q.codepoint, q.server_id_len, q.nonce_len, key))
            return Error{"VIP " + vip.address.str() + ":" + std::to_string(vip.port) + " quic_lb codepoint " +
                         std::to_string(q.codepoint) + ": " + quic_lb_strerror(st)};
        std::vector<QuicSid> &sids = out.owned[q.codepoint];
        sids.clear();
        for (size_t slot = 0; slot < table.members().size(); slot++) {
            const Member &m = table.members()[slot];
            if (!m.present || !in_pool.count(m.id))
                continue;
            std::vector<uint8_t> sid = quic_server_id(q, m.id);
            if (sid.size() != q.server_id_len)
                continue;  // validate_config() refuses it; never a wrong match
            QuicSid e{};
            std::memcpy(e.key, sid.data(), sid.size());
            e.slot = uint16_t(slot);
            sids.push_back(e);
        }
        std::sort(sids.begin(), sids.end(), quic_sid_less);
        out.sids[q.codepoint] = sids.data();
        out.n_sids[q.codepoint] = uint16_t(sids.size());
        out.present = uint8_t(out.present | 1u << q.codepoint);
    }
    return Ok{};
}

Result<std::unique_ptr<Snapshot>> build_snapshot(const Config &config, std::shared_ptr<const VipTable> vips,
                                                 const std::vector<const PoolTable *> &tables,
                                                 const std::vector<const us_bucket_entry *> &entries,
                                                 const SnapshotOptions &options, uint64_t generation)
{
    auto s = std::make_unique<Snapshot>();
    s->secret = config.secret;
    s->generation = generation;
    s->vip_table = std::move(vips);
    s->vip_slots = s->vip_table->slots.data();
    s->vip_slot_mask = uint32_t(s->vip_table->slots.size() - 1);
    s->vips = s->vip_table->vips.data();
    s->backends.reserve(config.pools.size());
    for (size_t p = 0; p < config.pools.size(); p++) {
        const PoolTable &t = *tables[p];
        s->backends.push_back(build_backends(config, config.pools[p], t, options));
        std::vector<ServerRef> refs;
        for (const Member &m : t.members())
            if (m.present)
                refs.push_back(ServerRef{m.id, m.weight});
        Pool pool{};
        pool.entries = entries[p];
        pool.mask = t.buckets() - 1;
        pool.digest = pool_digest(config.secret, refs);
        pool.backends = s->backends.back().data();
        pool.n_backends = uint16_t(s->backends.back().size());
        s->pools.push_back(pool);
    }
    size_t n_quic = 0;
    for (const understudy::Vip &v : config.vips)
        n_quic += !v.quic_lb.empty();
    s->quic.resize(n_quic);  // not resized again: quic_by_vip and each QuicVip's sids point into it
    s->quic_by_vip.assign(config.vips.size(), nullptr);
    for (size_t i = 0, q = 0; i < config.vips.size(); i++) {
        const understudy::Vip &v = config.vips[i];
        if (v.quic_lb.empty())
            continue;
        uint16_t p = s->vips[i].pool;
        if (auto ok = build_quic_vip(s->quic[q], v, config.pools[p], *tables[p]); !ok)
            return Error{ok.error()};
        s->quic_by_vip[i] = &s->quic[q++];
    }

    auto v4 = source_v4(config);
    auto v6 = config.dataplane.source_v6 ? *config.dataplane.source_v6 : *Address::parse(kDefaultSourceV6);
    std::memcpy(s->source.v4, v4.bytes.data() + 12, 4);
    std::memcpy(s->source.v6, v6.bytes.data(), 16);
    s->source.port_mac = options.port_mac;
    s->source.gue_port = rte_cpu_to_be_16(config.dataplane.gue_port);
    s->source.hop_budget = config.dataplane.hop_budget;
    s->source.outer_frag = outer_frag(config);
    s->source.ip_id_mask = config.dataplane.outer_df ? 0 : 0xffff;
    for (int m = 0; m < kMethods; m++)
        for (int v6 = 0; v6 < 2; v6++) {
            int room = int(config.dataplane.mtu) - encap_overhead(Method(m), v6);
            s->source.max_inner[m][v6] = uint16_t(std::max(room, 0));
        }
    uint64_t hz = options.tsc_hz ? options.tsc_hz : rte_get_tsc_hz();
    uint32_t rate = config.dataplane.icmp_rate;
    s->source.icmp_interval = rate ? std::max<uint64_t>(1, hz / rate) : UINT64_MAX;
    s->source.icmp_full = rate ? s->source.icmp_interval * rate : 0;  // a burst of one second's worth
    return s;
}

Result<std::unique_ptr<Snapshot>> build_snapshot(const Config &config, const std::vector<const PoolTable *> &tables,
                                                 const SnapshotOptions &options, uint64_t generation)
{
    auto vips = build_vip_table(config, *options.stat_index);
    if (!vips)
        return Error{vips.error()};
    std::vector<std::vector<us_bucket_entry>> owned;
    std::vector<const us_bucket_entry *> entries;
    for (const PoolTable *t : tables) {
        owned.emplace_back(t->entries().begin(), t->entries().end());
        entries.push_back(owned.back().data());
    }
    auto s = build_snapshot(config, *vips, tables, entries, options, generation);
    if (s)
        (*s)->owned = std::move(owned);  // moving the vectors keeps their buffers
    return s;
}

}  // namespace understudy::dp
