// Loads config.toml into the Config model and checks it. The reader reports what only the file can tell
// (syntax, unknown keys, value types, unparseable values, missing required keys); then the same semantic
// checks that validate_config() runs on an in-memory model, so a file and the control API obey one set of
// rules. Every problem is collected and reported, one "FILE:LINE: FIELD: message" line each.
#include "config.h"
#include "nesting.h"

#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <tuple>
#include <utility>

namespace understudy {

// ---------------------------------------------------------------------------------------------------------
// Enum names: one table per enum serves to_string, parse_* and the "allowed values" in messages.

namespace {

template <class E>
struct EnumName {
    E value;
    std::string_view name;
};

constexpr EnumName<AdminState> kAdminStates[] = {
    {AdminState::enabled, "enabled"}, {AdminState::drain, "drain"}, {AdminState::disabled, "disabled"}};
constexpr EnumName<Method> kMethods[] = {{Method::gue, "gue"}, {Method::ipip, "ipip"}, {Method::l2dsr, "l2dsr"}};
constexpr EnumName<Affinity> kAffinities[] = {{Affinity::flow, "flow"}, {Affinity::client, "client"}};
constexpr EnumName<Protocol> kProtocols[] = {{Protocol::tcp, "tcp"}, {Protocol::udp, "udp"}};
constexpr EnumName<ProbeKind> kProbeKinds[] = {
    {ProbeKind::none, "none"}, {ProbeKind::tcp, "tcp"}, {ProbeKind::http, "http"}, {ProbeKind::udp, "udp"}};
constexpr EnumName<NonVipPolicy> kNonVipPolicies[] = {{NonVipPolicy::kernel, "kernel"}, {NonVipPolicy::drop, "drop"}};

template <class E, size_t N>
std::string_view name_of(const EnumName<E> (&names)[N], E value)
{
    for (const auto &n : names)
        if (n.value == value)
            return n.name;
    return "?";
}

// Escapes what would break the one-problem-per-line format when echoing user text.
std::string quote(std::string_view text)
{
    std::string out = "'";
    for (char c : text) {
        if (c == '\n')
            out += "\\n";
        else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
            out += '?';
        else
            out += c;
    }
    return out + "'";
}

template <class E, size_t N>
Result<E> parse_enum(const EnumName<E> (&names)[N], std::string_view text)
{
    std::string allowed;
    for (const auto &n : names) {
        if (n.name == text)
            return n.value;
        allowed += (allowed.empty() ? "" : ", ") + std::string(n.name);
    }
    return Error{quote(text) + " is not one of: " + allowed};
}

}  // namespace

std::string_view to_string(AdminState v) { return name_of(kAdminStates, v); }
std::string_view to_string(Method v) { return name_of(kMethods, v); }
std::string_view to_string(Affinity v) { return name_of(kAffinities, v); }
std::string_view to_string(Protocol v) { return name_of(kProtocols, v); }
std::string_view to_string(ProbeKind v) { return name_of(kProbeKinds, v); }
Result<AdminState> parse_admin_state(std::string_view s) { return parse_enum(kAdminStates, s); }
Result<Method> parse_method(std::string_view s) { return parse_enum(kMethods, s); }
Result<Affinity> parse_affinity(std::string_view s) { return parse_enum(kAffinities, s); }
Result<Protocol> parse_protocol(std::string_view s) { return parse_enum(kProtocols, s); }
Result<ProbeKind> parse_probe_kind(std::string_view s) { return parse_enum(kProbeKinds, s); }

const Pool *Config::find_pool(std::string_view name) const
{
    for (const auto &p : pools)
        if (p.name == name)
            return &p;
    return nullptr;
}

const Vip *Config::find_vip(const Address &address, uint16_t port, Protocol protocol) const
{
    for (const auto &v : vips)
        if (v.address == address && v.port == port && v.protocol == protocol)
            return &v;
    return nullptr;
}

// ---------------------------------------------------------------------------------------------------------
// Problem collection.

namespace {

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

std::string index(std::string_view name, size_t i) { return std::string(name) + "[" + std::to_string(i) + "]"; }

std::string join(const std::string &path, std::string_view key)
{
    return path.empty() ? std::string(key) : path + "." + std::string(key);
}

// "pool[0].backend[2].weight" -> "pool[0].backend[2]" -> "pool[0].backend" -> "pool[0]" -> "pool" -> "".
std::string parent_of(const std::string &field)
{
    size_t dot = field.rfind('.'), bracket = field.rfind('[');
    size_t cut = dot == std::string::npos ? bracket
               : bracket == std::string::npos ? dot
                                               : std::max(dot, bracket);
    return cut == std::string::npos ? std::string() : field.substr(0, cut);
}

std::string range_message(int64_t lo, int64_t hi, int64_t value)
{
    return "must be " + std::to_string(lo) + "-" + std::to_string(hi) + ", not " + std::to_string(value);
}

std::string family(const Address &a) { return a.is_v4() ? "IPv4" : "IPv6"; }

class Report {
  public:
    explicit Report(std::string file) : file_(std::move(file)) {}

    void set_line(const std::string &field, int line) { lines_[field] = line; }

    // The line of the field, else of the nearest enclosing table that has one, else 0.
    int line_of(std::string field) const
    {
        for (;;) {
            if (auto it = lines_.find(field); it != lines_.end())
                return it->second;
            if (field.empty())
                return 0;
            field = parent_of(field);
        }
    }

    // "pool[0].backend[1] at line 12": how messages point at another place.
    std::string ref(const std::string &field) const
    {
        int line = line_of(field);
        return line > 0 ? field + " at line " + std::to_string(line) : field;
    }

    // The reader rejected this field: its value in the model is a default, so the semantic checks must
    // not judge it (or anything inside it) again.
    void reject(const std::string &field, const std::string &message)
    {
        bad_.insert(field);
        add(line_of(field), field, message);
    }
    void reject_at(int line, const std::string &field, const std::string &message) { add(line, field, message); }
    // Like reject() when the problem was already reported on a part of the field.
    void mark_bad(const std::string &field) { bad_.insert(field); }

    // A semantic problem; silent when the reader already rejected the field.
    void problem(const std::string &field, const std::string &message)
    {
        if (known(field))
            add(line_of(field), field, message);
    }

    // False when the reader rejected the field or a table that holds it.
    bool known(std::string field) const
    {
        for (;;) {
            if (bad_.count(field))
                return false;
            if (field.empty())
                return true;
            field = parent_of(field);
        }
    }

    Status finish()
    {
        if (problems_.empty())
            return Ok{};
        std::stable_sort(problems_.begin(), problems_.end(),
                         [](const auto &a, const auto &b) { return a.first < b.first; });
        std::string out;
        for (const auto &[line, text] : problems_)
            out += (out.empty() ? "" : "\n") + text;
        return Error{out};
    }

  private:
    void add(int line, const std::string &field, const std::string &message)
    {
        std::string text = file_ + ":" + std::to_string(line) + ": " + field + ": " + message;
        std::replace(text.begin(), text.end(), '\n', ' ');
        problems_.emplace_back(line, std::move(text));
    }

    std::string file_;
    std::map<std::string, int> lines_;
    std::set<std::string> bad_;
    std::vector<std::pair<int, std::string>> problems_;
};

// ---------------------------------------------------------------------------------------------------------
// Reading TOML into the model.

size_t edit_distance(std::string_view a, std::string_view b)
{
    std::vector<size_t> row(b.size() + 1);
    for (size_t j = 0; j <= b.size(); j++)
        row[j] = j;
    for (size_t i = 1; i <= a.size(); i++) {
        size_t diagonal = row[0];
        row[0] = i;
        for (size_t j = 1; j <= b.size(); j++) {
            size_t above = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
            diagonal = above;
        }
    }
    return row[b.size()];
}

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

Vip read_vip(const toml::table &table, const std::string &path, Report &report)
{
    Vip v;
    v.line = line_of(table);
    Section s(table, path, report,
              {"address", "port", "protocol", "pool", "method", "affinity", "conn_table", "conn_idle_timeout_s"});
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

// [dataplane] mtu: IPv6's minimum link MTU up to what DPDK calls a jumbo frame (16128 bytes) less the
// Ethernet header and two VLAN tags. mbuf_data_room: what an mbuf's 16-bit data room holds past DPDK's
// 128-byte headroom. icmp_rate: ICMP messages per second per worker.
constexpr int64_t kMinMtu = 1280, kMaxMtu = 16106, kMaxDataRoom = 65535 - 128, kMaxIcmpRate = 1000000;

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
            std::string text = e.is_string() ? e.as_string()->get() : "";
            auto prefix = parse_prefix(text);
            if (!e.is_string())
                report.reject(field, "must be a string \"ADDR/PREFIX\", not " + type_name(e));
            else if (!prefix)
                report.reject(field, quote(text) + " is not ADDR or ADDR/PREFIX (e.g. \"10.0.0.0/24\")");
            else if (a.tunnel_sources.size() >= 4096)
                report.reject(field, "more than 4096 tunnel sources");
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

// ---------------------------------------------------------------------------------------------------------
// Semantic checks, shared by the file loader and validate_config().

bool is_unicast(const std::array<uint8_t, 6> &mac)
{
    return (mac[0] & 1) == 0 && mac != std::array<uint8_t, 6>{};
}

std::string vip_text(const Vip &v)
{
    return Endpoint{v.address, v.port}.str() + "/" + std::string(to_string(v.protocol));
}

// Problems of one health level as (key, message); the caller prefixes the path and drops those its parent
// level already has, so a bad [health] value is reported once, not once per pool and backend.
using HealthProblems = std::vector<std::pair<std::string, std::string>>;

HealthProblems health_problems(const HealthConfig &h)
{
    HealthProblems out;
    if (h.http_path.empty() || h.http_path.front() != '/')
        out.emplace_back("path", quote(h.http_path) + " must start with '/'");
    else if (std::any_of(h.http_path.begin(), h.http_path.end(),
                         [](char c) { return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f; }))
        out.emplace_back("path", quote(h.http_path) + " must not contain spaces or control characters");
    if (h.http_status_min < 100 || h.http_status_max > 599 || h.http_status_min > h.http_status_max) {
        std::string range = std::to_string(h.http_status_min);
        if (h.http_status_max != h.http_status_min)
            range += "-" + std::to_string(h.http_status_max);
        out.emplace_back("expect", "status range " + range + " must lie within 100-599, low end first");
    }
    if (h.interval_ms < 1)
        out.emplace_back("interval_ms", range_message(1, std::numeric_limits<uint32_t>::max(), h.interval_ms));
    if (h.timeout_ms < 1)
        out.emplace_back("timeout_ms", range_message(1, std::numeric_limits<uint32_t>::max(), h.timeout_ms));
    else if (h.interval_ms >= 1 && h.timeout_ms > h.interval_ms)
        out.emplace_back("timeout_ms", std::to_string(h.timeout_ms) + " is greater than interval_ms " +
                                           std::to_string(h.interval_ms) + " (a probe must end before the next)");
    if (h.rise < 1)
        out.emplace_back("rise", range_message(1, std::numeric_limits<uint32_t>::max(), h.rise));
    if (h.fall < 1)
        out.emplace_back("fall", range_message(1, std::numeric_limits<uint32_t>::max(), h.fall));
    return out;
}

HealthProblems report_health(const HealthConfig &h, const std::string &path, const HealthProblems *parent,
                             Report &report)
{
    HealthProblems mine = health_problems(h);
    for (const auto &p : mine)
        if (!parent || std::find(parent->begin(), parent->end(), p) == parent->end())
            report.problem(path + "." + p.first, p.second);
    return mine;
}

bool valid_pool_name(std::string_view name)
{
    return !name.empty() && name.size() <= 63 && std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
    });
}

void check_backends(const Pool &pool, const std::string &path,
                    const HealthProblems &pool_health, const std::map<Address, size_t> &vip_addresses,
                    Report &report)
{
    if (pool.backends.size() > kMaxBackendsPerPool)
        report.problem(path + ".backend", std::to_string(pool.backends.size()) + " backends, at most " +
                                              std::to_string(kMaxBackendsPerPool) + " per pool");
    std::map<uint32_t, size_t> ids;
    std::map<Address, size_t> addresses;
    for (size_t j = 0; j < pool.backends.size(); j++) {
        const Backend &b = pool.backends[j];
        std::string bpath = path + "." + index("backend", j);
        if (!report.known(bpath))
            continue;
        if (b.id == 0 || b.id == std::numeric_limits<uint32_t>::max())
            report.problem(bpath + ".id", range_message(1, 4294967294, b.id));
        else if (report.known(bpath + ".id")) {
            auto [it, fresh] = ids.emplace(b.id, j);
            if (!fresh)
                report.problem(bpath + ".id", "duplicate id " + std::to_string(b.id) + ", also used by " +
                                                  report.ref(path + "." + index("backend", it->second)));
        }
        if (report.known(bpath + ".address")) {
            auto [it, fresh] = addresses.emplace(b.address, j);
            if (!fresh)
                report.problem(bpath + ".address", "duplicate address " + b.address.str() + ", also used by " +
                                                       report.ref(path + "." + index("backend", it->second)));
            if (auto vip = vip_addresses.find(b.address); vip != vip_addresses.end())
                report.problem(bpath + ".address", b.address.str() + " is the address of " +
                                                       report.ref(index("vip", vip->second)) +
                                                       "; packets would loop");
        }
        if (b.weight > kMaxWeight)
            report.problem(bpath + ".weight", range_message(0, kMaxWeight, b.weight));
        if (b.mac && !is_unicast(*b.mac))
            report.problem(bpath + ".mac", format_mac(*b.mac) + " is not a unicast MAC address");
        report_health(b.health, bpath + ".health", &pool_health, report);
        if (b.health.source && report.known(bpath + ".address") &&
            b.health.source->is_v4() != b.address.is_v4())
            report.problem(bpath + ".health.source",
                           "probe source " + b.health.source->str() + " is " + family(*b.health.source) +
                               " but the backend " + b.address.str() + " is " + family(b.address) +
                               " (set health.source per backend in a mixed pool)");
    }
}

void check_pools(const Config &config, const HealthProblems &global_health, Report &report)
{
    std::map<Address, size_t> vip_addresses;
    for (size_t i = 0; i < config.vips.size(); i++)
        if (report.known(index("vip", i) + ".address"))
            vip_addresses.emplace(config.vips[i].address, i);

    std::map<std::string, size_t> names;
    for (size_t i = 0; i < config.pools.size(); i++) {
        const Pool &p = config.pools[i];
        std::string path = index("pool", i);
        if (!report.known(path))
            continue;
        if (report.known(path + ".name")) {
            if (!valid_pool_name(p.name))
                report.problem(path + ".name", quote(p.name) +
                                                   " is not a valid pool name (1-63 letters, digits, '_', '-', '.')");
            else if (auto [it, fresh] = names.emplace(p.name, i); !fresh)
                report.problem(path + ".name", "duplicate pool name " + quote(p.name) + ", also used by " +
                                                   report.ref(index("pool", it->second)));
        }
        if (p.table_bits < kMinTableBits || p.table_bits > kMaxTableBits)
            report.problem(path + ".table_bits", range_message(kMinTableBits, kMaxTableBits, p.table_bits));
        HealthProblems pool_health = report_health(p.health, path + ".health", &global_health, report);
        check_backends(p, path, pool_health, vip_addresses, report);
    }
}

void check_vip_backends(const Vip &v, size_t i, const Pool &pool, size_t pool_index, Report &report)
{
    std::string path = index("vip", i);
    std::vector<std::string> mismatched;
    for (size_t j = 0; j < pool.backends.size(); j++) {
        const Backend &b = pool.backends[j];
        std::string bpath = index("pool", pool_index) + "." + index("backend", j);
        if (!report.known(bpath + ".address"))
            continue;
        if (v.method != Method::gue && b.address.is_v4() != v.address.is_v4())
            mismatched.push_back(bpath + " " + b.address.str());
    }
    if (!mismatched.empty()) {
        std::string list;
        for (size_t k = 0; k < mismatched.size() && k < 3; k++)
            list += (k ? ", " : "") + mismatched[k];
        if (mismatched.size() > 3)
            list += " and " + std::to_string(mismatched.size() - 3) + " more";
        report.problem(path + ".method", std::string(to_string(v.method)) +
                                             " cannot change the address family, but this " + family(v.address) +
                                             " VIP's pool " + quote(pool.name) + " has " +
                                             (v.address.is_v4() ? "IPv6" : "IPv4") + " backends: " + list);
    }
}

// " (did you mean 'web'?)" or " (pools: 'api', 'web')".
std::string pool_hint(const Config &config, const std::string &name)
{
    if (config.pools.empty())
        return " (no [[pool]] is defined)";
    std::set<std::string> names;
    for (const auto &p : config.pools)
        names.insert(p.name);
    for (const auto &n : names)
        if (edit_distance(n, name) <= 2)
            return " (did you mean " + quote(n) + "?)";
    std::string list;
    for (const auto &n : names)
        list += (list.empty() ? "" : ", ") + quote(n);
    return " (pools: " + list + ")";
}

void check_vips(const Config &config, Report &report)
{
    std::map<std::tuple<Address, uint16_t, Protocol>, size_t> seen;
    for (size_t i = 0; i < config.vips.size(); i++) {
        const Vip &v = config.vips[i];
        std::string path = index("vip", i);
        if (!report.known(path))
            continue;
        if (v.port == 0)
            report.problem(path + ".port", range_message(1, 65535, v.port));
        if (v.conn_idle_timeout_s == 0)
            report.problem(path + ".conn_idle_timeout_s",
                           range_message(1, std::numeric_limits<uint32_t>::max(), v.conn_idle_timeout_s));
        bool address_known = report.known(path + ".address");
        if (address_known && report.known(path + ".port") && report.known(path + ".protocol")) {
            auto [it, fresh] = seen.emplace(std::tuple{v.address, v.port, v.protocol}, i);
            if (!fresh)
                report.problem(path + ".address", "duplicate VIP " + vip_text(v) + ", also defined by " +
                                                      report.ref(index("vip", it->second)));
        }
        if (!report.known(path + ".pool"))
            continue;
        const Pool *pool = config.find_pool(v.pool);
        if (!pool) {
            bool names_known = true;  // else the pool it names may be the one whose name was unreadable
            for (size_t k = 0; k < config.pools.size(); k++)
                names_known = names_known && report.known(index("pool", k) + ".name");
            if (names_known)
                report.problem(path + ".pool", "no pool named " + quote(v.pool) + pool_hint(config, v.pool));
            continue;
        }
        if (address_known && report.known(path + ".method"))
            check_vip_backends(v, i, *pool, size_t(pool - config.pools.data()), report);
    }
}

void check_dataplane(const Config &config, Report &report)
{
    const DataplaneConfig &d = config.dataplane;
    if (d.source_v4 && !d.source_v4->is_v4())
        report.problem("dataplane.source_v4", "must be an IPv4 address, not " + d.source_v4->str());
    if (d.source_v6 && d.source_v6->is_v4())
        report.problem("dataplane.source_v6", "must be an IPv6 address, not " + d.source_v6->str());
    if (d.gateway_mac && !is_unicast(*d.gateway_mac))
        report.problem("dataplane.gateway_mac", format_mac(*d.gateway_mac) + " is not a unicast MAC address");
    if (d.non_vip == NonVipPolicy::kernel) {
        if (d.exception_iface.empty())
            report.problem("dataplane.exception_iface", "is required when non_vip = \"kernel\"");
        else if (d.exception_iface.size() > 15)
            report.problem("dataplane.exception_iface",
                           quote(d.exception_iface) + " is longer than 15 characters (IFNAMSIZ)");
    }
    if (d.conn_table_size == 0)
        report.problem("dataplane.conn_table_size", range_message(1, std::numeric_limits<uint32_t>::max(), 0));
    if (d.hop_budget > 15)
        report.problem("dataplane.hop_budget", range_message(0, 15, d.hop_budget));
    if (d.mtu < kMinMtu || d.mtu > kMaxMtu)
        report.problem("dataplane.mtu", range_message(kMinMtu, kMaxMtu, d.mtu));
    if (d.mbuf_data_room > kMaxDataRoom)
        report.problem("dataplane.mbuf_data_room", range_message(0, kMaxDataRoom, d.mbuf_data_room));
    else if (d.mbuf_data_room != 0 && d.mbuf_data_room < d.max_frame() && report.known("dataplane.mtu"))
        report.problem("dataplane.mbuf_data_room",
                       std::to_string(d.mbuf_data_room) + " bytes cannot hold a frame of mtu " + std::to_string(d.mtu) +
                           " (" + std::to_string(d.max_frame()) +
                           " bytes with the Ethernet header and two VLAN tags): raise it, or leave it out to size "
                           "it from the MTU");
    if (d.icmp_rate > kMaxIcmpRate)
        report.problem("dataplane.icmp_rate", range_message(0, kMaxIcmpRate, d.icmp_rate));

    std::map<std::string, size_t> names;
    size_t queues = 0;
    bool queues_known = true;
    for (size_t i = 0; i < d.ports.size(); i++) {
        const PortConfig &p = d.ports[i];
        std::string path = "dataplane." + index("port", i);
        if (!report.known(path)) {
            queues_known = false;
            continue;
        }
        if (report.known(path + ".name")) {
            if (p.name.empty())
                report.problem(path + ".name", "must not be empty");
            else if (auto [it, fresh] = names.emplace(p.name, i); !fresh)
                report.problem(path + ".name", "duplicate port name " + quote(p.name) + ", also used by " +
                                                   report.ref("dataplane." + index("port", it->second)));
        }
        if (p.devargs.empty())
            report.problem(path + ".devargs", "must not be empty");
        if (!report.known(path + ".rx_queues"))
            queues_known = false;
        queues += p.rx_queues;
    }
    for (size_t i = 0; i < d.ports.size(); i++) {
        const PortConfig &p = d.ports[i];
        std::string path = "dataplane." + index("port", i);
        if (!p.tx_port.empty() && !names.count(p.tx_port))
            report.problem(path + ".tx_port", "no port named " + quote(p.tx_port));
        else if (!p.tx_port.empty() && p.tx_port == p.name)
            report.problem(path + ".tx_port", "names the port itself: leave it out to transmit by the same port");
    }
    if (queues_known && !d.ports.empty() && queues == 0)
        report.problem("dataplane.port", "no port has an RX queue: give one rx_queues >= 1");
    std::map<unsigned, size_t> lcores;
    for (size_t i = 0; i < d.worker_lcores.size(); i++)
        if (auto [it, fresh] = lcores.emplace(d.worker_lcores[i], i); !fresh)
            report.problem("dataplane." + index("workers", i),
                           "lcore " + std::to_string(d.worker_lcores[i]) + " is listed twice");
    if (queues_known && report.known("dataplane.workers") && queues != d.worker_lcores.size())
        report.problem("dataplane.workers", "lists " + std::to_string(d.worker_lcores.size()) +
                                                " lcores but the ports have " + std::to_string(queues) +
                                                " RX queues in all (one worker per RX queue, in port order)");
}

void check_control(const Config &config, Report &report)
{
    const ControlConfig &c = config.control;
    if (c.socket.empty())
        report.problem("control.socket", "must not be empty");
    else if (c.socket.size() > 107)
        report.problem("control.socket", "is " + std::to_string(c.socket.size()) +
                                             " bytes, longer than a Unix socket path can be (107)");
    if (!c.metrics.empty()) {
        auto endpoint = Endpoint::parse(c.metrics);
        if (!endpoint)
            report.problem("control.metrics", endpoint.error() + " (\"\" turns metrics off)");
        else if (endpoint->port == 0)
            report.problem("control.metrics", quote(c.metrics) + " has port 0");
    }
}

void check_config(const Config &config, Report &report)
{
    if (config.secret == std::array<uint8_t, 16>{})
        report.problem("cluster.secret", "is all zeros: set a random secret (`openssl rand -hex 16`)");
    HealthProblems global_health = report_health(config.health, "health", nullptr, report);
    check_pools(config, global_health, report);
    check_vips(config, report);
    check_dataplane(config, report);
    check_control(config, report);
}

// What running the data plane needs beyond a consistent model: something to receive on, and an outer
// source address for every family that gue or ipip encapsulates in.
void check_dataplane_ready(const Config &config, Report &report)
{
    const DataplaneConfig &d = config.dataplane;
    if (d.ports.empty())
        report.problem("dataplane.port", "at least one [[dataplane.port]] is needed to run the data plane");
    std::optional<size_t> need_v4, need_v6;  // the first VIP that encapsulates in each family
    for (size_t i = 0; i < config.vips.size(); i++) {
        const Vip &v = config.vips[i];
        const Pool *pool = config.find_pool(v.pool);
        if (!pool || v.method == Method::l2dsr)
            continue;
        // gue's outer header has the backend's family; ipip's has the VIP's (validate_config() made them equal).
        for (const Backend &b : pool->backends) {
            auto &need = (v.method == Method::gue ? b.address.is_v4() : v.address.is_v4()) ? need_v4 : need_v6;
            if (!need)
                need = i;
        }
    }
    auto require = [&](const std::optional<Address> &source, const std::optional<size_t> &need, const char *field,
                       const char *fam) {
        if (!source && need)
            report.problem(field, std::string("is required: ") + report.ref(index("vip", *need)) + " (" +
                                      vip_text(config.vips[*need]) + ", " +
                                      std::string(to_string(config.vips[*need].method)) + ") encapsulates in " +
                                      fam + " and needs an outer source address");
    };
    require(d.source_v4, need_v4, "dataplane.source_v4", "IPv4");
    require(d.source_v6, need_v6, "dataplane.source_v6", "IPv6");
}

// A report that knows only the lines stored in the model; an object added in code (line 0) points at its
// enclosing one.
Report model_report(const Config &config)
{
    Report report(config.path.empty() ? "<config>" : config.path);
    auto set_line = [&](const std::string &field, int line) {
        if (line > 0)
            report.set_line(field, line);
    };
    for (size_t i = 0; i < config.pools.size(); i++) {
        set_line(index("pool", i), config.pools[i].line);
        for (size_t j = 0; j < config.pools[i].backends.size(); j++)
            set_line(index("pool", i) + "." + index("backend", j), config.pools[i].backends[j].line);
    }
    for (size_t i = 0; i < config.vips.size(); i++)
        set_line(index("vip", i), config.vips[i].line);
    return report;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------

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
    read_root(root, config, report);
    check_config(config, report);
    if (Status status = report.finish(); !status)
        return Error{status.error()};
    return config;
}

Result<Config> load_config(const std::string &path)
{
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec))
        return Error{path + ": cannot read the config file: it is a directory"};
    std::ifstream in(path, std::ios::binary);
    if (!in)
        return Error{path + ": cannot read the config file: " + std::strerror(errno)};
    // At most one byte past the limit: enough for parse_config to refuse it (a /dev/zero never ends).
    std::string text(kMaxConfigBytes + 1, '\0');
    in.read(text.data(), std::streamsize(text.size()));
    if (in.bad())
        return Error{path + ": cannot read the config file: " + std::strerror(errno)};
    text.resize(size_t(in.gcount()));
    return parse_config(text, path);
}

Status validate_config(const Config &config)
{
    Report report = model_report(config);
    check_config(config, report);
    return report.finish();
}

Status validate_for_agent(const Config &config)
{
    Report report = model_report(config);
    if (config.agent.line > 0)
        report.set_line("agent", config.agent.line);
    if (config.agent.interface.empty())
        report.problem("agent.interface", "is required: the interface the balancers' packets arrive on");
    else if (config.agent.interface.size() > 15)
        report.problem("agent.interface", quote(config.agent.interface) + " is longer than 15 characters (IFNAMSIZ)");
    if (config.agent.xdp_mode != "native" && config.agent.xdp_mode != "generic")
        report.problem("agent.xdp_mode", quote(config.agent.xdp_mode) + " is not one of: native, generic");
    if (config.agent.socket.empty())
        report.problem("agent.socket", "must not be empty");
    return report.finish();
}

Status validate_for_dataplane(const Config &config)
{
    Report report = model_report(config);
    check_dataplane_ready(config, report);
    return report.finish();
}

}  // namespace understudy
