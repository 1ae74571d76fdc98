// The offline (and later live) flow explainer, built only on ordering.h: the plain statement of the contract.
#include "lookup.h"

#include <charconv>
#include <cstdio>
#include <sstream>

namespace understudy {

Lookup::Lookup(const Config &config, std::set<uint32_t> down) : config_(config), down_(std::move(down)) {}

Lookup::Lookup(const Config &config, std::set<std::pair<std::string, uint32_t>> down_in_pool)
    : config_(config), down_in_pool_(std::move(down_in_pool))
{
}

bool Lookup::operational(const Pool &pool, const Backend &backend) const
{
    return backend.state != AdminState::disabled && !down_.count(backend.id) &&
           !down_in_pool_.count({pool.name, backend.id});
}

Result<LookupResult> Lookup::lookup(const Endpoint &vip_ep, Protocol protocol, const Endpoint &client) const
{
    const Vip *vip = config_.find_vip(vip_ep.address, vip_ep.port, protocol);
    if (!vip)
        return Error{"no VIP " + vip_ep.str() + "/" + std::string(to_string(protocol)) + " in " + config_.path};
    const Pool *pool = config_.find_pool(vip->pool);
    if (!pool)
        return Error{"VIP " + vip_ep.str() + " names unknown pool '" + vip->pool + "'"};

    LookupResult r;
    r.vip = vip;
    r.pool = pool;
    us_session_key key = make_session_key(client.address, client.port, vip->address, vip->port,
                                          uint8_t(vip->protocol), vip->affinity);
    r.session_hash = session_hash(config_.secret, key);
    r.bucket = us_bucket_of(r.session_hash, pool->table_bits);

    std::vector<ServerRef> servers;
    for (const Backend &b : pool->backends)
        servers.push_back(ServerRef{b.id, b.state == AdminState::drain ? 0u : b.weight});
    for (uint32_t pos : ordering(config_.secret, r.bucket, servers)) {
        const Backend &b = pool->backends[pos];
        r.ordering.push_back(b.id);
        if (!r.serving && operational(*pool, b))
            r.serving = b.id;
    }
    if (!r.ordering.empty())
        r.primary = r.ordering.front();
    return r;
}

static bool parse_port(std::string_view text, uint16_t &port)
{
    unsigned v = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc() || end != text.data() + text.size() || v > 65535)
        return false;
    port = uint16_t(v);
    return true;
}

Result<LookupResult> Lookup::lookup_line(std::string_view line) const
{
    std::istringstream in{std::string(line)};
    std::string src, sport, dst, dport, proto, extra;
    if (!(in >> src >> sport >> dst >> dport >> proto) || (in >> extra))
        return Error{"expected 'SRC_ADDR SRC_PORT DST_ADDR DST_PORT PROTO'"};
    auto src_addr = Address::parse(src);
    if (!src_addr)
        return Error{"source: " + src_addr.error()};
    auto dst_addr = Address::parse(dst);
    if (!dst_addr)
        return Error{"destination: " + dst_addr.error()};
    Endpoint client{*src_addr, 0}, vip{*dst_addr, 0};
    if (!parse_port(sport, client.port))
        return Error{"source port '" + sport + "' is not 0-65535"};
    if (!parse_port(dport, vip.port))
        return Error{"destination port '" + dport + "' is not 0-65535"};
    auto protocol = parse_protocol(proto);
    if (!protocol)
        return Error{protocol.error()};
    return lookup(vip, *protocol, client);
}

std::string hex16(uint64_t value)
{
    char buf[17];
    snprintf(buf, sizeof buf, "%016llx", (unsigned long long)value);
    return buf;
}

Result<std::pair<Endpoint, Protocol>> parse_vip_spec(std::string_view text)
{
    auto slash = text.rfind('/');
    if (slash == std::string_view::npos)
        return Error{"'" + std::string(text) + "' is not ADDR:PORT/PROTO (for example 192.0.2.10:80/tcp)"};
    auto ep = Endpoint::parse(text.substr(0, slash));
    if (!ep)
        return Error{ep.error()};
    auto proto = parse_protocol(text.substr(slash + 1));
    if (!proto)
        return Error{proto.error()};
    return std::make_pair(*ep, *proto);
}

Result<std::set<uint32_t>> parse_id_list(std::string_view text)
{
    std::set<uint32_t> ids;
    size_t start = 0;
    while (start <= text.size()) {
        size_t comma = text.find(',', start);
        std::string_view item = text.substr(start, comma == std::string_view::npos ? std::string_view::npos
                                                                                    : comma - start);
        uint32_t id = 0;
        auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), id);
        if (item.empty() || ec != std::errc() || end != item.data() + item.size())
            return Error{"'" + std::string(item) + "' is not a server ID (IDs are numbers, comma-separated)"};
        ids.insert(id);
        if (comma == std::string_view::npos)
            break;
        start = comma + 1;
    }
    return ids;
}

}  // namespace understudy
