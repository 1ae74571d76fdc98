// Reading config.toml into the Config model: what only the file can tell (its size, syntax, unknown keys,
// value types, unparseable values, missing required keys), then the checks of config_check.cpp, so that a
// file and the control API obey one set of rules. Every problem is collected, one "FILE:LINE: FIELD: message"
// line each (config_diagnostics.cpp).
#include "core/config.h"
#include "check.h"
#include "core/config_diagnostics.h"
#include "core/config_limits.h"
#include "core/config_names.h"
#include "nesting.h"
#include "quiclb/quic_lb.h"

#include <toml++/toml.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <tuple>
#include <utility>

namespace understudy {

using namespace config_detail;

namespace {

std::string type_name(const toml::node &n)
{
    switch (n.type()) {
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
    default: return "nothing";
    }
}

int line_of(const toml::node &n) { return static_cast<int>(n.source().begin.line); }

// Strings with a NUL were reported by refuse_nul_strings(): the readers leave them out.
bool has_nul(const toml::node &n) { return n.is_string() && n.as_string()->get().find('\0') != std::string::npos; }

// "ADDR/PREFIX", or "ADDR" alone for the whole address; the prefix at most 32 (IPv4) or 128 (IPv6).
std::optional<std::pair<Address, int>> parse_prefix(const std::string &text)
{
    auto slash = text.find('/');
    auto addr = Address::parse(text.substr(0, slash));
    if (!addr)
        return std::nullopt;
    int max_prefix = addr->is_v4() ? 32 : 128;
    int prefix = slash == std::string::npos ? max_prefix : -1;
    if (slash != std::string::npos && slash + 1 < text.size() && slash + 4 >= text.size() &&
        text.find_first_not_of("0123456789", slash + 1) == std::string::npos)
        prefix = std::stoi(text.substr(slash + 1));
    if (prefix < 0 || prefix > max_prefix)
        return std::nullopt;
    return std::pair{*addr, prefix};
}

// One TOML table being read: reports its unknown keys once, records the line of every key, and offers
// typed getters that report wrong types and leave the model's default in place.
class Section {
  public:
    Section(const toml::table &table, std::string path, Report &report,
            std::initializer_list<std::string_view> keys)
        : table_(table), path_(std::move(path)), report_(report)
    {
        if (int line = line_of(table); line > 0)
            report_.set_line(path_, line);
        for (auto &&[key, node] : table) {
            report_.set_line(join(path_, key.str()), static_cast<int>(key.source().begin.line));
            if (std::find(keys.begin(), keys.end(), key.str()) == keys.end())
                report_.reject(join(path_, key.str()), unknown_key(key.str(), keys));
        }
    }

    const std::string &path() const { return path_; }
    std::string field(std::string_view key) const { return join(path_, key); }
    bool has(std::string_view key) const { return table_.get(key) != nullptr; }

    // False (and the field reported) when the key is absent.
    bool require(std::string_view key, std::string_view what)
    {
        if (has(key))
            return true;
        report_.reject(field(key), "is required (" + std::string(what) + ")");
        return false;
    }

    const toml::table *table(std::string_view key)
    {
        const toml::node *n = table_.get(key);
        if (!n)
            return nullptr;
        if (!n->is_table()) {
            wrong_type(key, *n, "a table");
            return nullptr;
        }
        return n->as_table();
    }

    // An array of tables ([[key]]); elements that are not tables are reported by the caller's loop.
    const toml::array *tables(std::string_view key)
    {
        const toml::node *n = table_.get(key);
        if (!n)
            return nullptr;
        if (!n->is_array()) {
            wrong_type(key, *n, "an array of tables ([[" + field(key) + "]])");
            return nullptr;
        }
        return n->as_array();
    }

    std::optional<std::string> string(std::string_view key)
    {
        const toml::node *n = table_.get(key);
        if (!n)
            return std::nullopt;
        if (!n->is_string()) {
            wrong_type(key, *n, "a string");
            return std::nullopt;
        }
        if (has_nul(*n))
            return std::nullopt;
        return n->as_string()->get();
    }

    void string(std::string_view key, std::string &out)
    {
        if (auto s = string(key))
            out = *s;
    }

    void boolean(std::string_view key, bool &out)
    {
        const toml::node *n = table_.get(key);
        if (!n)
            return;
        if (!n->is_boolean())
            wrong_type(key, *n, "a boolean (true or false)");
        else
            out = n->as_boolean()->get();
    }

    // lo..hi is the field's allowed range; values that fit the model's type are stored and left to the
    // semantic checks, so a file and an in-memory model get the same message.
    template <class T>
    void integer(std::string_view key, T &out, int64_t lo, int64_t hi)
    {
        static_assert(sizeof(T) <= 4, "int64_t must hold every value of T");
        const toml::node *n = table_.get(key);
        if (!n)
            return;
        if (!n->is_integer()) {
            wrong_type(key, *n, "an integer");
            return;
        }
        int64_t v = n->as_integer()->get();
        if (v < int64_t(std::numeric_limits<T>::min()) || v > int64_t(std::numeric_limits<T>::max()))
            report_.reject(field(key), range_message(lo, hi, v));
        else
            out = static_cast<T>(v);
    }

    template <class E, size_t N>
    void enumeration(std::string_view key, E &out, const EnumName<E> (&names)[N])
    {
        if (auto s = string(key)) {
            if (auto v = parse_enum(names, *s))
                out = *v;
            else
                report_.reject(field(key), v.error());
        }
    }

    void address(std::string_view key, Address &out)
    {
        if (auto s = string(key)) {
            if (auto a = Address::parse(*s))
                out = *a;
            else
                report_.reject(field(key), a.error());
        }
    }

    void address(std::string_view key, std::optional<Address> &out)
    {
        if (auto s = string(key)) {
            if (auto parsed = Address::parse(*s))
                out = *parsed;
            else
                report_.reject(field(key), parsed.error());
        }
    }

    void mac(std::string_view key, std::optional<std::array<uint8_t, 6>> &out)
    {
        if (auto s = string(key)) {
            if (auto m = parse_mac(*s))
                out = *m;
            else
                report_.reject(field(key), m.error());
        }
    }

    void reject(std::string_view key, const std::string &message) { report_.reject(field(key), message); }

  private:
    void wrong_type(std::string_view key, const toml::node &n, const std::string &want)
    {
        report_.reject(field(key), "must be " + want + ", not " + type_name(n));
    }

    static std::string unknown_key(std::string_view key, std::initializer_list<std::string_view> keys)
    {
        std::string_view best;
        size_t best_distance = 3;  // suggest only near misses: "wieght", "intervall_ms"
        for (auto k : keys)
            if (size_t d = edit_distance(key, k); d < best_distance)
                best = k, best_distance = d;
        if (!best.empty())
            return "unknown key (did you mean '" + std::string(best) + "'?)";
        std::string allowed;
        for (auto k : keys)
            allowed += (allowed.empty() ? "" : ", ") + std::string(k);
        return "unknown key (allowed here: " + allowed + ")";
    }

    const toml::table &table_;
    std::string path_;
    Report &report_;
};

// "200" or "200-399".
Result<std::pair<uint16_t, uint16_t>> parse_status_range(std::string_view text)
{
    auto number = [](std::string_view s) -> std::optional<uint16_t> {
        if (s.empty() || s.size() > 5 || s.find_first_not_of("0123456789") != std::string_view::npos)
            return std::nullopt;
        unsigned long v = std::stoul(std::string(s));
        if (v > 65535)
            return std::nullopt;
        return uint16_t(v);
    };
    size_t dash = text.find('-');
    auto lo = number(text.substr(0, dash));
    auto hi = dash == std::string_view::npos ? lo : number(text.substr(dash + 1));
    if (!lo || !hi)
        return Error{quote(text) + " is not a status code or range (\"200\" or \"200-399\")"};
    return std::pair{*lo, *hi};
}

void read_health(const toml::table &table, const std::string &path, HealthConfig &h, Report &report)
{
    Section s(table, path, report,
              {"kind", "port", "path", "expect", "payload", "reply", "interval_ms", "timeout_ms", "rise", "fall",
               "source"});
    s.enumeration("kind", h.kind, kProbeKinds);
    s.integer("port", h.port, 0, 65535);
    s.string("path", h.http_path);
    if (auto expect = s.string("expect")) {
        if (auto range = parse_status_range(*expect))
            std::tie(h.http_status_min, h.http_status_max) = *range;
        else
            s.reject("expect", range.error());
    }
    s.string("payload", h.udp_payload);
    s.string("reply", h.udp_expect);
    s.integer("interval_ms", h.interval_ms, 1, std::numeric_limits<uint32_t>::max());
    s.integer("timeout_ms", h.timeout_ms, 1, std::numeric_limits<uint32_t>::max());
    s.integer("rise", h.rise, 1, std::numeric_limits<uint32_t>::max());
    s.integer("fall", h.fall, 1, std::numeric_limits<uint32_t>::max());
    s.address("source", h.source);
}

// Reads table `key` of section `s` as health overrides on top of `h`, if present.
void read_health_overrides(Section &s, HealthConfig &h, Report &report)
{
    if (const toml::table *t = s.table("health"))
        read_health(*t, s.field("health"), h, report);
}

Backend read_backend(const toml::table &table, const std::string &path, const HealthConfig &pool_health,
                     Report &report)
{
    Backend b;
    b.line = line_of(table);
    b.health = pool_health;
    Section s(table, path, report, {"id", "address", "weight", "state", "mac", "health"});
    if (s.require("id", "a stable number 1-4294967294, unique within the pool"))
        s.integer("id", b.id, 1, 4294967294);
    if (s.require("address", "the backend's IPv4 or IPv6 address"))
        s.address("address", b.address);
    s.integer("weight", b.weight, 0, kMaxWeight);
    s.enumeration("state", b.state, kAdminStates);
    s.mac("mac", b.mac);
    read_health_overrides(s, b.health, report);
    return b;
}

// Calls fn(table, path) for every element of an array of tables; elements that are not tables are
// reported and stand in as nullptr so that indices in messages match the file.
template <class Fn>
void for_each_table(const toml::array &array, std::string_view name, const std::string &parent, Report &report,
                    Fn fn)
{
    for (size_t i = 0; i < array.size(); i++) {
        std::string path = join(parent, index(name, i));
        const toml::node &n = *array.get(i);
        report.set_line(path, line_of(n));
        if (!n.is_table()) {
            report.reject(path, "must be a table ([[" + join(parent, name) + "]]), not " + type_name(n));
            fn(nullptr, path);
        } else {
            fn(n.as_table(), path);
        }
    }
}

Pool read_pool(const toml::table &table, const std::string &path, const HealthConfig &global, Report &report)
{
    Pool p;
    p.line = line_of(table);
    p.health = global;
    Section s(table, path, report, {"name", "table_bits", "health", "backend"});
    if (s.require("name", "the name VIPs use to refer to the pool"))
        s.string("name", p.name);
    s.integer("table_bits", p.table_bits, kMinTableBits, kMaxTableBits);
    read_health_overrides(s, p.health, report);
    if (const toml::array *backends = s.tables("backend"))
        for_each_table(*backends, "backend", path, report, [&](const toml::table *t, const std::string &bpath) {
            p.backends.push_back(t ? read_backend(*t, bpath, p.health, report) : Backend{});
        });
    return p;
}

// "0a01" -> {0x0a, 0x01}: an even number of hex digits.
std::optional<std::vector<uint8_t>> parse_hex(std::string_view text)
{
    auto digit = [](char c) {
        if (c >= '0' && c <= '9')
            return c - '0';
        c = char(c | 0x20);  // lower case
        return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    };
    if (text.empty() || text.size() % 2)
        return std::nullopt;
    std::vector<uint8_t> out;
    for (size_t i = 0; i < text.size(); i += 2) {
        int hi = digit(text[i]), lo = digit(text[i + 1]);
        if (hi < 0 || lo < 0)
            return std::nullopt;
        out.push_back(uint8_t(hi << 4 | lo));
    }
    return out;
}

// server_ids = { 1 = "0a01", 2 = "0a02" }: backend id -> server ID in hex. Lengths are checked against
// server_id_len by check.cpp, so that a model built in code gets the same messages.
void read_server_ids(const toml::table &table, const std::string &path, QuicLbConfig &q, Report &report)
{
    for (auto &&[key, node] : table) {
        std::string field = join(path, key.str());
        report.set_line(field, static_cast<int>(key.source().begin.line));
        std::string_view id_text = key.str();
        uint32_t id = 0;
        bool id_ok = !id_text.empty() && id_text.size() <= 10 &&
                     id_text.find_first_not_of("0123456789") == std::string_view::npos;
        if (id_ok) {
            uint64_t v = std::stoull(std::string(id_text));
            id_ok = v >= 1 && v <= 4294967294;
            id = uint32_t(v);
        }
        if (!id_ok) {
            report.reject(field, "keys are backend ids (1-4294967294), not " + quote(id_text));
            continue;
        }
        if (has_nul(node))
            continue;
        auto sid = node.is_string() ? parse_hex(node.as_string()->get()) : std::nullopt;
        if (!node.is_string())
            report.reject(field, "must be a string of hex digits (the server ID), not " + type_name(node));
        else if (!sid)
            report.reject(field, quote(node.as_string()->get()) + " is not a server ID in hex (e.g. \"0a01\")");
        else
            q.server_ids[id] = *sid;
    }
}

QuicLbConfig read_quic_lb(const toml::table &table, const std::string &path, Report &report)
{
    QuicLbConfig q;
    q.line = line_of(table);
    Section s(table, path, report, {"codepoint", "server_id_len", "nonce_len", "key", "encode_length", "server_ids"});
    if (s.require("codepoint", "0-6, the first CID octet's 3 high bits"))
        s.integer("codepoint", q.codepoint, 0, QUIC_LB_CODEPOINTS - 1);
    if (s.require("server_id_len", "octets, 1-15"))
        s.integer("server_id_len", q.server_id_len, QUIC_LB_MIN_SERVER_ID_LEN, QUIC_LB_MAX_SERVER_ID_LEN);
    if (s.require("nonce_len", "octets, 4-18"))
        s.integer("nonce_len", q.nonce_len, QUIC_LB_MIN_NONCE_LEN, QUIC_LB_MAX_NONCE_LEN);
    if (auto text = s.string("key")) {
        if (auto key = parse_secret_hex(*text))
            q.key = *key;
        else
            s.reject("key", key.error() + " (an AES-128 key; leave it out for plaintext server IDs)");
    }
    s.boolean("encode_length", q.encode_length);
    if (const toml::table *ids = s.table("server_ids"))
        read_server_ids(*ids, s.field("server_ids"), q, report);
    return q;
}

Vip read_vip(const toml::table &table, const std::string &path, Report &report)
{
    Vip v;
    v.line = line_of(table);
    Section s(table, path, report,
              {"address", "port", "protocol", "pool", "method", "affinity", "conn_table", "conn_idle_timeout_s",
               "quic_lb"});
    if (s.require("address", "the VIP's IPv4 or IPv6 address"))
        s.address("address", v.address);
    if (s.require("port", "1-65535"))
        s.integer("port", v.port, 1, 65535);
    s.enumeration("protocol", v.protocol, kProtocols);
    if (s.require("pool", "the name of a [[pool]]"))
        s.string("pool", v.pool);
    s.enumeration("method", v.method, kMethods);
    s.enumeration("affinity", v.affinity, kAffinities);
    s.boolean("conn_table", v.conn_table);
    s.integer("conn_idle_timeout_s", v.conn_idle_timeout_s, 1, std::numeric_limits<uint32_t>::max());
    if (const toml::array *configs = s.tables("quic_lb"))
        for_each_table(*configs, "quic_lb", path, report, [&](const toml::table *t, const std::string &qpath) {
            v.quic_lb.push_back(t ? read_quic_lb(*t, qpath, report) : QuicLbConfig{});
        });
    return v;
}

PortConfig read_port(const toml::table &table, const std::string &path, Report &report)
{
    PortConfig p;
    Section s(table, path, report, {"name", "devargs", "rx_queues", "tx_port"});
    if (s.require("name", "a short name for logs and statistics"))
        s.string("name", p.name);
    if (s.require("devargs", "the DPDK device, e.g. \"net_af_xdp0,iface=eth0\" or a PCI address"))
        s.string("devargs", p.devargs);
    s.integer("rx_queues", p.rx_queues, 0, 65535);
    s.string("tx_port", p.tx_port);
    return p;
}

void read_dataplane(const toml::table &table, DataplaneConfig &d, Report &report)
{
    Section s(table, "dataplane", report,
              {"eal_args", "workers", "source_v4", "source_v6", "gateway_mac", "non_vip", "exception_iface",
               "exception_addresses", "gue_port", "conn_table_size", "mbufs", "hop_budget", "mtu", "mbuf_data_room",
               "outer_df", "icmp_rate", "port"});
    auto array = [&](std::string_view key) -> const toml::array * {
        const toml::node *n = table.get(key);
        if (n && !n->is_array())
            s.reject(key, "must be an array, not " + type_name(*n));
        return n ? n->as_array() : nullptr;
    };
    if (const toml::array *args = array("eal_args")) {
        for (size_t i = 0; i < args->size(); i++) {
            const toml::node &n = *args->get(i);
            std::string field = s.field(index("eal_args", i));
            report.set_line(field, line_of(n));
            if (has_nul(n))
                continue;
            if (n.is_string())
                d.eal_args.push_back(n.as_string()->get());
            else
                report.reject(field, "must be a string, not " + type_name(n));
        }
    }
    if (const toml::array *workers = array("workers")) {
        for (size_t i = 0; i < workers->size(); i++) {
            const toml::node &n = *workers->get(i);
            std::string field = s.field(index("workers", i));
            report.set_line(field, line_of(n));
            if (!n.is_integer()) {
                report.reject(field, "must be an integer (an lcore id), not " + type_name(n));
            } else if (int64_t v = n.as_integer()->get(); v < 0 || v > int64_t(std::numeric_limits<unsigned>::max())) {
                report.reject(field, "must be an lcore id, not " + std::to_string(v));
            } else {
                d.worker_lcores.push_back(unsigned(v));
                continue;
            }
            report.mark_bad(s.field("workers"));  // the list is incomplete: judge neither its size nor its order
        }
    }
    if (const toml::array *addrs = array("exception_addresses")) {
        for (size_t i = 0; i < addrs->size(); i++) {
            const toml::node &n = *addrs->get(i);
            std::string field = s.field(index("exception_addresses", i));
            report.set_line(field, line_of(n));
            if (has_nul(n))
                continue;
            if (!n.is_string()) {
                report.reject(field, "must be a string \"ADDR/PREFIX\", not " + type_name(n));
                continue;
            }
            std::string text = n.as_string()->get();
            if (text.find('/') == std::string::npos || !parse_prefix(text))
                report.reject(field, quote(text) + " is not ADDR/PREFIX (e.g. \"10.0.0.2/24\")");
            else
                d.exception_addresses.push_back(text);
        }
    }
    s.integer("gue_port", d.gue_port, 1, 65535);
    s.address("source_v4", d.source_v4);
    s.address("source_v6", d.source_v6);
    s.mac("gateway_mac", d.gateway_mac);
    s.enumeration("non_vip", d.non_vip, kNonVipPolicies);
    s.string("exception_iface", d.exception_iface);
    s.integer("conn_table_size", d.conn_table_size, 1, std::numeric_limits<uint32_t>::max());
    s.integer("mbufs", d.mbufs, 0, std::numeric_limits<uint32_t>::max());
    s.integer("hop_budget", d.hop_budget, 0, 15);
    s.integer("mtu", d.mtu, kMinMtu, kMaxMtu);
    s.integer("mbuf_data_room", d.mbuf_data_room, 0, kMaxDataRoom);
    s.boolean("outer_df", d.outer_df);
    s.integer("icmp_rate", d.icmp_rate, 0, kMaxIcmpRate);
    if (const toml::array *ports = s.tables("port"))
        for_each_table(*ports, "port", "dataplane", report, [&](const toml::table *t, const std::string &path) {
            d.ports.push_back(t ? read_port(*t, path, report) : PortConfig{});
        });
}

void read_control(const toml::table &table, ControlConfig &c, Report &report)
{
    Section s(table, "control", report, {"socket", "socket_group", "metrics"});
    s.string("socket", c.socket);
    s.string("socket_group", c.socket_group);
    s.string("metrics", c.metrics);
}

void read_agent(const toml::table &table, AgentConfig &a, Report &report)
{
    Section s(table, "agent", report, {"interface", "addresses", "socket", "xdp_mode", "tunnel_sources"});
    a.line = line_of(table);
    if (const toml::node *n = table.get("tunnel_sources")) {
        const toml::array *list = n->as_array();
        if (!list)
            s.reject("tunnel_sources", "must be an array of \"ADDR/PREFIX\" strings, not " + type_name(*n));
        for (size_t i = 0; list && i < list->size(); i++) {
            const toml::node &e = *list->get(i);
            std::string field = s.field(index("tunnel_sources", i));
            report.set_line(field, line_of(e));
            if (has_nul(e))
                continue;
            std::string text = e.is_string() ? e.as_string()->get() : "";
            auto prefix = parse_prefix(text);
            if (!e.is_string())
                report.reject(field, "must be a string \"ADDR/PREFIX\", not " + type_name(e));
            else if (!prefix)
                report.reject(field, quote(text) + " is not ADDR or ADDR/PREFIX (e.g. \"10.0.0.0/24\")");
            else if (a.tunnel_sources.size() >= kMaxTunnelSources)
                report.reject(field, "more than " + std::to_string(kMaxTunnelSources) + " tunnel sources");
            else
                a.tunnel_sources.push_back(*prefix);
        }
    }
    s.string("interface", a.interface);
    s.string("socket", a.socket);
    s.string("xdp_mode", a.xdp_mode);
    if (const toml::node *n = table.get("addresses")) {
        const toml::array *list = n->as_array();
        if (!list) {
            s.reject("addresses", "must be an array of addresses, not " + type_name(*n));
            return;
        }
        for (size_t i = 0; i < list->size(); i++) {
            const toml::node &e = *list->get(i);
            std::string field = s.field(index("addresses", i));
            report.set_line(field, line_of(e));
            if (has_nul(e))
                continue;
            auto addr = e.is_string() ? Address::parse(e.as_string()->get()) : Result<Address>(Error{"must be a string"});
            if (addr)
                a.addresses.push_back(*addr);
            else
                report.reject(field, addr.error());
        }
    }
}

void read_root(const toml::table &root, Config &config, Report &report)
{
    report.set_line("", 1);
    Section s(root, "", report, {"cluster", "health", "pool", "vip", "dataplane", "control", "agent"});

    const toml::table *cluster = s.table("cluster");
    if (cluster) {
        Section c(*cluster, "cluster", report, {"secret"});
        if (c.require("secret", "32 hex digits, the same on every node; make one with `openssl rand -hex 16`"))
            if (auto text = c.string("secret")) {
                if (auto secret = parse_secret_hex(*text))
                    config.secret = *secret;
                else
                    c.reject("secret", secret.error());
            }
    } else if (!s.has("cluster")) {
        report.reject("cluster.secret",
                      "is required ([cluster] secret = 32 hex digits, the same on every node; make one with "
                      "`openssl rand -hex 16`)");
    }

    if (const toml::table *health = s.table("health"))
        read_health(*health, "health", config.health, report);
    if (const toml::array *pools = s.tables("pool"))
        for_each_table(*pools, "pool", "", report, [&](const toml::table *t, const std::string &path) {
            config.pools.push_back(t ? read_pool(*t, path, config.health, report) : Pool{});
        });
    if (const toml::array *vips = s.tables("vip"))
        for_each_table(*vips, "vip", "", report, [&](const toml::table *t, const std::string &path) {
            config.vips.push_back(t ? read_vip(*t, path, report) : Vip{});
        });
    if (const toml::table *dataplane = s.table("dataplane"))
        read_dataplane(*dataplane, config.dataplane, report);
    if (const toml::table *control = s.table("control"))
        read_control(*control, config.control, report);
    if (const toml::table *agent = s.table("agent"))
        read_agent(*agent, config.agent, report);
}


// A NUL in a string would cut it short where it reaches C (addresses, paths, socket and interface names):
// every string value of the file is refused with one, wherever it is (keys with one are unknown keys).
void refuse_nul_strings(const toml::node &node, const std::string &path, Report &report)
{
    if (const toml::table *t = node.as_table()) {
        for (auto &&[key, value] : *t)
            refuse_nul_strings(value, join(path, key.str()), report);
    } else if (const toml::array *a = node.as_array()) {
        for (size_t i = 0; i < a->size(); i++)
            refuse_nul_strings(*a->get(i), path + "[" + std::to_string(i) + "]", report);
    } else if (has_nul(node)) {
        report.reject_at(line_of(node), path, "holds a NUL character (\\u0000), which would cut the value short");
        report.mark_bad(path);
    }
}

}  // namespace

Result<Config> parse_config(std::string_view text, const std::string &path_for_messages)
{
    Report report(path_for_messages);
    Config config;
    config.path = path_for_messages;
    toml::table root;
    // The TOML reader recurses per level and per key part: refuse what would exhaust its stack, and files
    // no configuration needs, before reading them.
    if (text.size() > kMaxConfigBytes) {
        report.reject_at(1, "file", "is " + std::to_string(text.size()) + " bytes; a configuration holds at most " +
                                        std::to_string(kMaxConfigBytes));
        return Error{report.finish().error()};
    }
    if (Nesting n = measure_toml(text); n.depth > kMaxNesting || n.key_parts > kMaxNesting) {
        report.reject_at(int(n.line), "syntax",
                         n.depth > kMaxNesting
                             ? "arrays, inline tables or headers nested " + std::to_string(n.depth) +
                                   " deep; at most " + std::to_string(kMaxNesting)
                             : "a dotted key of " + std::to_string(n.key_parts) + " parts; at most " +
                                   std::to_string(kMaxNesting));
        return Error{report.finish().error()};
    }
    try {
        root = toml::parse(text, std::string_view(path_for_messages));
    } catch (const toml::parse_error &e) {
        report.reject_at(static_cast<int>(e.source().begin.line), "syntax",
                         std::string(e.description()) + " (column " + std::to_string(e.source().begin.column) +
                             ")");
        return Error{report.finish().error()};
    }
    refuse_nul_strings(root, "", report);
    read_root(root, config, report);
    // The lines of what is not in [[pool]] or [[vip]] (whose objects keep their own), for the checks that
    // run later on the model (validate_for_dataplane, validate_for_agent).
    for (const auto &[field, line] : report.lines())
        if (field.rfind("pool", 0) != 0 && field.rfind("vip", 0) != 0)
            config.lines.emplace(field, line);
    check_config(config, report);
    if (Status status = report.finish(); !status)
        return Error{status.error()};
    return config;
}

Result<std::string> read_config_text(const std::string &path)
{
    auto fail = [&](const std::string &why) { return Error{escape_text(path) + ": cannot read the config file: " + why}; };
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail(std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
        int err = errno;
        ::close(fd);
        return fail(S_ISDIR(st.st_mode) ? "it is a directory" : std::strerror(err));
    }
    // A regular file says its size; anything else (a character device such as /dev/zero, a pipe, a FIFO)
    // is read up to the limit and no further.
    if (S_ISREG(st.st_mode) && uint64_t(st.st_size) > kMaxConfigBytes) {
        ::close(fd);
        return Error{escape_text(path) + ":1: file: is " + std::to_string(st.st_size) +
                     " bytes; a configuration holds at most " + std::to_string(kMaxConfigBytes)};
    }
    std::string text;
    char buf[65536];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int err = errno;
            ::close(fd);
            return fail(std::strerror(err));
        }
        if (n == 0)
            break;
        text.append(buf, size_t(n));
        if (text.size() > kMaxConfigBytes) {
            ::close(fd);
            return Error{escape_text(path) + ":1: file: holds more than " + std::to_string(kMaxConfigBytes) +
                         " bytes (stopped reading there); a configuration holds at most " +
                         std::to_string(kMaxConfigBytes)};
        }
    }
    ::close(fd);
    return text;
}

Result<Config> load_config(const std::string &path)
{
    auto text = read_config_text(path);
    if (!text)
        return Error{text.error()};
    return parse_config(*text, path);
}

}  // namespace understudy
