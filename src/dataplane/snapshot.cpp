// Building a Snapshot (control side, cold): the VIP hash, the per-pool backend arrays and bucket tables.
#include "snapshot.h"

#include <rte_jhash.h>
#include <rte_lcore.h>

#include <cstring>
#include <string>

namespace understudy::dp {

Snapshot::~Snapshot()
{
    if (vip_hash)
        rte_hash_free(vip_hash);
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

static VipKey vip_key(const Address &addr, uint16_t port, Protocol proto)
{
    VipKey k{};
    std::memcpy(k.addr, addr.bytes.data(), 16);
    k.port = rte_cpu_to_be_16(port);
    k.proto = uint8_t(proto);
    return k;
}

Result<std::unique_ptr<Snapshot>> build_snapshot(const Config &config, const std::vector<const PoolTable *> &tables,
                                                 const SnapshotOptions &options, uint64_t generation)
{
    if (config.vips.size() > kMaxVips)
        return Error{"at most " + std::to_string(kMaxVips) + " VIPs are supported"};
    auto s = std::make_unique<Snapshot>();
    s->secret = config.secret;
    s->generation = generation;

    std::string name = "vips_" + std::to_string(generation);
    rte_hash_parameters hp{};
    hp.name = name.c_str();
    hp.entries = std::max<uint32_t>(64, uint32_t(config.vips.size() * 4));
    hp.key_len = sizeof(VipKey);
    hp.hash_func = rte_jhash;
    hp.socket_id = int(rte_socket_id());
    s->vip_hash = rte_hash_create(&hp);
    if (!s->vip_hash)
        return Error{"cannot create the VIP hash table (hugepage memory exhausted?)"};

    uint16_t backend_stat = 0;
    for (size_t p = 0; p < config.pools.size(); p++) {
        const understudy::Pool &cp = config.pools[p];
        const PoolTable &t = *tables[p];
        std::vector<Backend> backends(t.members().size());
        std::vector<ServerRef> refs;
        for (size_t slot = 0; slot < t.members().size(); slot++) {
            const Member &m = t.members()[slot];
            Backend &b = backends[slot];
            b = Backend{};
            if (!m.present)
                continue;
            refs.push_back(ServerRef{m.id, m.weight});
            const understudy::Backend *cb = nullptr;
            for (const auto &x : cp.backends)
                if (x.id == m.id)
                    cb = &x;
            if (!cb)
                return Error{"pool " + cp.name + ": table member " + std::to_string(m.id) + " is not in the config"};
            b.id = m.id;
            b.operational = m.operational;
            b.ip_version = cb->address.is_v4() ? 4 : 6;
            std::memcpy(b.addr, cb->address.bytes.data(), 16);
            b.stat_index = backend_stat < kMaxBackendStats - 1 ? backend_stat++ : uint16_t(kMaxBackendStats - 1);
            std::optional<rte_ether_addr> mac;
            if (cb->mac)
                mac = to_ether(*cb->mac);
            else if (config.dataplane.gateway_mac)
                mac = to_ether(*config.dataplane.gateway_mac);
            else if (options.resolve_mac)
                mac = options.resolve_mac(cb->address);
            b.mac = mac ? *mac : default_backend_mac(m.id);
            b.mac_known = mac.has_value() || !options.resolve_mac;
        }
        s->backends.push_back(std::move(backends));
        s->entries.emplace_back(t.entries().begin(), t.entries().end());
        Pool pool{};
        pool.entries = s->entries.back().data();
        pool.mask = t.buckets() - 1;
        pool.digest = pool_digest(config.secret, refs);
        pool.backends = s->backends.back().data();
        pool.n_backends = uint16_t(s->backends.back().size());
        s->pools.push_back(pool);
    }

    for (size_t i = 0; i < config.vips.size(); i++) {
        const understudy::Vip &cv = config.vips[i];
        size_t pool = 0;
        while (pool < config.pools.size() && config.pools[pool].name != cv.pool)
            pool++;
        if (pool == config.pools.size())
            return Error{"VIP names unknown pool " + cv.pool};
        Vip v{};
        v.pool = uint16_t(pool);
        v.method = uint8_t(cv.method);
        v.affinity = uint8_t(cv.affinity);
        v.conn_table = cv.conn_table;
        v.ip_version = cv.address.is_v4() ? 4 : 6;
        v.stat_index = uint16_t(i);
        v.idle_ticks = cv.conn_idle_timeout_s * 1024u;
        s->vips.push_back(v);
        void *data = reinterpret_cast<void *>(uintptr_t(i));
        VipKey k = vip_key(cv.address, cv.port, cv.protocol);
        if (rte_hash_add_key_data(s->vip_hash, &k, data) < 0)
            return Error{"cannot add VIP to the hash table"};
        // Fragments carry no ports: they belong to the first VIP on their address and protocol.
        VipKey frag = vip_key(cv.address, 0, cv.protocol);
        if (rte_hash_lookup(s->vip_hash, &frag) < 0 && rte_hash_add_key_data(s->vip_hash, &frag, data) < 0)
            return Error{"cannot add VIP to the hash table"};
    }

    auto v4 = config.dataplane.source_v4 ? *config.dataplane.source_v4 : *Address::parse(kDefaultSourceV4);
    auto v6 = config.dataplane.source_v6 ? *config.dataplane.source_v6 : *Address::parse(kDefaultSourceV6);
    std::memcpy(s->source.v4, v4.bytes.data() + 12, 4);
    std::memcpy(s->source.v6, v6.bytes.data(), 16);
    s->source.port_mac = options.port_mac;
    s->source.gue_port = rte_cpu_to_be_16(US_GUE_PORT_DEFAULT);
    s->source.hop_budget = config.dataplane.hop_budget;
    return s;
}

}  // namespace understudy::dp
