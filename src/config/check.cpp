// The semantic checks of a configuration: what makes a Config consistent (validate_config, run by the reader
// on every file and by the control API on every change), and what the data plane and the agent need on top
// (validate_for_dataplane, validate_for_agent), their limits included (config_limits.h). Each check is linear
// in the size of the configuration: lookups by name or address go through maps built once.
#include "core/config.h"
#include "check.h"
#include "core/config_diagnostics.h"
#include "core/config_limits.h"
#include "quiclb/quic_lb.h"

#include <algorithm>
#include <cctype>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <tuple>
#include <unordered_map>
#include <utility>

namespace understudy {

using namespace config_detail;

static_assert(kMaxTableBits <= US_BPF_MAX_TABLE_BITS, "the agent's tables must hold every table_bits the config allows");
static_assert(kMaxBackendsPerPool <= 65535, "table entries are 16-bit backend indices, 0xffff is US_NO_SERVER");

namespace {

std::string family(const Address &a) { return a.is_v4() ? "IPv4" : "IPv6"; }

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

// A pool's backends of each address family, for the VIP checks: the first few named, all counted. Built once
// per pool, so that checking V VIPs of a pool of B backends costs V + B, not V x B.
struct FamilyBackends {
    size_t count[2] = {0, 0};            // [is_v4]
    std::vector<std::string> named[2];   // "pool[0].backend[3] 10.0.1.13", at most kNamed
    static constexpr size_t kNamed = 3;
};

FamilyBackends family_backends(const Pool &pool, size_t pool_index, const Report &report)
{
    FamilyBackends f;
    for (size_t j = 0; j < pool.backends.size(); j++) {
        std::string bpath = index("pool", pool_index) + "." + index("backend", j);
        if (!report.known(bpath + ".address"))
            continue;
        bool v4 = pool.backends[j].address.is_v4();
        if (f.count[v4]++ < FamilyBackends::kNamed)
            f.named[v4].push_back(bpath + " " + pool.backends[j].address.str());
    }
    return f;
}

// A probe source of the wrong family is reported once where the source is set ([health], [pool.health] or
// [pool.backend.health]), naming the backends it cannot reach, not once per backend that inherits it.
struct SourceMismatch {
    Address source;
    std::vector<std::string> backends;  // "pool[0].backend[1] fd00::12 at line 10", at most three
    size_t count = 0;
    bool other_is_v6 = false;
};

void check_backends(const Config &config, size_t pool_index, const HealthProblems &pool_health,
                    const std::map<Address, size_t> &vip_addresses,
                    std::map<std::string, SourceMismatch> &source_mismatches, Report &report)
{
    const Pool &pool = config.pools[pool_index];
    std::string path = index("pool", pool_index);
    if (pool.backends.size() > kMaxBackendsPerPool)
        report.problem(path + ".backend", std::to_string(pool.backends.size()) + " backends, at most " +
                                              std::to_string(kMaxBackendsPerPool) + " per pool");
    std::unordered_map<uint32_t, size_t> ids;
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
        if (b.health.source && report.known(bpath + ".address") && report.known(bpath + ".health.source") &&
            b.health.source->is_v4() != b.address.is_v4()) {
            std::string origin = b.health.source != pool.health.source ? bpath + ".health.source"
                                 : pool.health.source != config.health.source ? path + ".health.source"
                                                                               : std::string("health.source");
            SourceMismatch &m = source_mismatches[origin];
            m.source = *b.health.source;
            m.other_is_v6 = !b.address.is_v4();
            if (m.count++ < 3)
                m.backends.push_back(b.address.str() + " (" + report.ref(bpath) + ")");
        }
    }
}

void report_source_mismatches(const std::map<std::string, SourceMismatch> &mismatches, Report &report)
{
    for (const auto &[origin, m] : mismatches) {
        std::string list;
        for (const auto &b : m.backends)
            list += (list.empty() ? "" : ", ") + b;
        if (m.count > m.backends.size())
            list += " and " + std::to_string(m.count - m.backends.size()) + " more";
        report.problem(origin, "probe source " + m.source.str() + " is " + family(m.source) + " but the backend" +
                                   (m.count > 1 ? "s " : " ") + list + (m.count > 1 ? " are " : " is ") +
                                   (m.other_is_v6 ? "IPv6" : "IPv4") +
                                   " (set health.source per backend in a mixed pool)");
    }
}

void check_pools(const Config &config, const HealthProblems &global_health, Report &report)
{
    std::map<Address, size_t> vip_addresses;
    for (size_t i = 0; i < config.vips.size(); i++)
        if (report.known(index("vip", i) + ".address"))
            vip_addresses.emplace(config.vips[i].address, i);

    if (config.pools.size() > kMaxDataplanePools)
        report.problem(index("pool", kMaxDataplanePools),
                       "is pool number " + std::to_string(kMaxDataplanePools + 1) + " of " +
                           std::to_string(config.pools.size()) + "; the data plane holds at most " +
                           std::to_string(kMaxDataplanePools) + " pools (16-bit pool index)");
    std::unordered_map<std::string, size_t> names;
    std::map<std::string, SourceMismatch> source_mismatches;
    HealthProblems no_problems;
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
        check_backends(config, i, pool_health, vip_addresses, source_mismatches, report);
    }
    report_source_mismatches(source_mismatches, report);
}

void check_vip_backends(const Vip &v, size_t i, const Pool &pool, const FamilyBackends &families, Report &report)
{
    bool other = !v.address.is_v4();  // index of the other family in FamilyBackends (is_v4)
    if (v.method == Method::gue || families.count[other] == 0)
        return;
    std::string list;
    for (const auto &b : families.named[other])
        list += (list.empty() ? "" : ", ") + b;
    if (families.count[other] > families.named[other].size())
        list += " and " + std::to_string(families.count[other] - families.named[other].size()) + " more";
    report.problem(index("vip", i) + ".method",
                   std::string(to_string(v.method)) + " cannot change the address family, but this " +
                       family(v.address) + " VIP's pool " + quote(pool.name) + " has " +
                       (v.address.is_v4() ? "IPv6" : "IPv4") + " backends: " + list);
}

// The pools by name (the first of a duplicated name, as Config::find_pool), built once for every VIP.
std::unordered_map<std::string, size_t> pools_by_name(const Config &config)
{
    std::unordered_map<std::string, size_t> out;
    out.reserve(config.pools.size());
    for (size_t i = 0; i < config.pools.size(); i++)
        out.emplace(config.pools[i].name, i);
    return out;
}

// " (did you mean 'web'?)" or " (pools: 'api', 'web')": near names are looked for among the first unknown
// names only, and at most ten pools are listed, so that many bad VIPs cost no more than a few.
class PoolHints {
  public:
    explicit PoolHints(const Config &config) : config_(config) {}

    std::string operator()(const std::string &name)
    {
        if (config_.pools.empty())
            return " (no [[pool]] is defined)";
        if (auto it = cache_.find(name); it != cache_.end())
            return it->second;
        if (names_.empty())
            for (const auto &p : config_.pools)
                names_.insert(p.name);
        std::string hint;
        if (cache_.size() < kSearched)
            for (const auto &n : names_)
                if (edit_distance(n, name) <= 2) {
                    hint = " (did you mean " + quote(n) + "?)";
                    break;
                }
        if (hint.empty()) {
            size_t listed = 0;
            for (auto it = names_.begin(); it != names_.end() && listed < kListed; ++it, ++listed)
                hint += (hint.empty() ? "" : ", ") + quote(*it);
            if (names_.size() > listed)
                hint += " and " + std::to_string(names_.size() - listed) + " more";
            hint = " (pools: " + hint + ")";
        }
        if (cache_.size() < kSearched)
            cache_.emplace(name, hint);
        return hint;
    }

  private:
    static constexpr size_t kSearched = 16, kListed = 10;
    const Config &config_;
    std::set<std::string> names_;
    std::map<std::string, std::string> cache_;
};

std::string hex_text(const std::vector<uint8_t> &bytes)
{
    static const char digits[] = "0123456789abcdef";
    std::string out;
    for (uint8_t b : bytes)
        out += {digits[b >> 4], digits[b & 15]};
    return out;
}

// The lengths of one QUIC-LB configuration, as the draft bounds them; false when they are not usable.
bool check_quic_lb_lengths(const QuicLbConfig &q, const std::string &qpath, Report &report)
{
    bool sid_ok = report.known(qpath + ".server_id_len"), nonce_ok = report.known(qpath + ".nonce_len");
    if (sid_ok && (q.server_id_len < QUIC_LB_MIN_SERVER_ID_LEN || q.server_id_len > QUIC_LB_MAX_SERVER_ID_LEN)) {
        report.problem(qpath + ".server_id_len",
                       range_message(QUIC_LB_MIN_SERVER_ID_LEN, QUIC_LB_MAX_SERVER_ID_LEN, q.server_id_len));
        sid_ok = false;
    }
    if (nonce_ok && (q.nonce_len < QUIC_LB_MIN_NONCE_LEN || q.nonce_len > QUIC_LB_MAX_NONCE_LEN)) {
        report.problem(qpath + ".nonce_len", range_message(QUIC_LB_MIN_NONCE_LEN, QUIC_LB_MAX_NONCE_LEN, q.nonce_len));
        nonce_ok = false;
    }
    if (sid_ok && nonce_ok && q.server_id_len + q.nonce_len > QUIC_LB_MAX_PLAINTEXT_LEN) {
        report.problem(qpath + ".nonce_len", "server_id_len " + std::to_string(q.server_id_len) + " + nonce_len " +
                                                 std::to_string(q.nonce_len) + " = " +
                                                 std::to_string(q.server_id_len + q.nonce_len) +
                                                 " octets; QUIC-LB allows at most 19 (CIDs are at most 20 octets)");
        return false;
    }
    return sid_ok && nonce_ok;
}

// The server IDs of one configuration over the VIP's pool: explicit ones of the right length and naming a
// backend of the pool, derived ones that fit, and no two backends with the same.
void check_quic_lb_server_ids(const QuicLbConfig &q, const std::string &qpath, const Pool &pool, size_t pool_index,
                              Report &report)
{
    std::string ids_path = qpath + ".server_ids";
    std::unordered_map<uint32_t, size_t> backends;  // id -> index in the pool
    for (size_t j = 0; j < pool.backends.size(); j++)
        if (report.known(index("pool", pool_index) + "." + index("backend", j) + ".id"))
            backends.emplace(pool.backends[j].id, j);
    for (const auto &[id, sid] : q.server_ids) {
        std::string field = join(ids_path, std::to_string(id));
        if (!backends.count(id))
            report.problem(field, "pool " + quote(pool.name) + " has no backend with id " + std::to_string(id));
        else if (sid.size() != q.server_id_len)
            report.problem(field, "server ID " + hex_text(sid) + " is " + std::to_string(sid.size()) +
                                      " octets; server_id_len is " + std::to_string(q.server_id_len));
    }
    std::map<std::vector<uint8_t>, size_t> seen;  // server ID -> backend index
    for (size_t j = 0; j < pool.backends.size(); j++) {
        const Backend &b = pool.backends[j];
        std::string bpath = index("pool", pool_index) + "." + index("backend", j);
        if (!report.known(bpath + ".id") || backends.at(b.id) != j)
            continue;
        bool explicit_id = q.server_ids.count(b.id) != 0;
        std::vector<uint8_t> sid = quic_server_id(q, b.id);
        // Where the server ID comes from: its server_ids entry, else the configuration (whose length it misses).
        std::string field = explicit_id ? join(ids_path, std::to_string(b.id)) : qpath + ".server_id_len";
        if (sid.empty()) {
            report.problem(field, "backend id " + std::to_string(b.id) + " (" + report.ref(bpath) + ") does not fit " +
                                      std::to_string(q.server_id_len) + (q.server_id_len == 1 ? " octet" : " octets") +
                                      " as a server ID: give it one in server_ids");
            continue;
        }
        if (sid.size() != q.server_id_len)
            continue;  // reported above
        auto [it, fresh] = seen.emplace(sid, j);
        if (!fresh) {
            const Backend &other = pool.backends[it->second];
            if (!explicit_id)
                field = q.server_ids.count(other.id) ? join(ids_path, std::to_string(other.id)) : qpath;
            report.problem(field, "server ID " + hex_text(sid) + " of backend " + std::to_string(b.id) +
                                      " is also that of backend " + std::to_string(other.id) + " (" +
                                      (q.server_ids.count(other.id) ? "given in server_ids" : "derived from its id") +
                                      "): server IDs must be unique within a configuration");
        }
    }
}

// A VIP's QUIC-LB configurations: UDP only, at most one per codepoint 0-6, lengths the draft allows, and a
// distinct server ID for every backend of the pool under each.
void check_quic_lb(const Vip &v, size_t vip_index, const Pool *pool, size_t pool_index, Report &report)
{
    std::string path = index("vip", vip_index);
    if (v.quic_lb.empty())
        return;
    if (report.known(path + ".protocol") && v.protocol != Protocol::udp)
        report.problem(path + ".quic_lb", "QUIC-LB needs protocol = \"udp\" (QUIC runs over UDP); this VIP is " +
                                              std::string(to_string(v.protocol)));
    if (v.quic_lb.size() > QUIC_LB_CODEPOINTS)
        report.problem(path + ".quic_lb", std::to_string(v.quic_lb.size()) +
                                              " configurations; at most 7, one per codepoint 0-6");
    std::map<unsigned, size_t> codepoints;
    for (size_t k = 0; k < v.quic_lb.size(); k++) {
        const QuicLbConfig &q = v.quic_lb[k];
        std::string qpath = path + "." + index("quic_lb", k);
        if (!report.known(qpath))
            continue;
        if (report.known(qpath + ".codepoint")) {
            if (q.codepoint == QUIC_LB_UNROUTABLE_CODEPOINT)
                report.problem(qpath + ".codepoint",
                               "codepoint 7 is reserved: it marks connection IDs of servers with no configuration "
                               "(unroutable); use 0-6");
            else if (q.codepoint >= QUIC_LB_CODEPOINTS)
                report.problem(qpath + ".codepoint", range_message(0, QUIC_LB_CODEPOINTS - 1, q.codepoint));
            else if (auto [it, fresh] = codepoints.emplace(q.codepoint, k); !fresh)
                report.problem(qpath + ".codepoint", "duplicate codepoint " + std::to_string(q.codepoint) +
                                                         ", also used by " +
                                                         report.ref(path + "." + index("quic_lb", it->second)));
        }
        if (check_quic_lb_lengths(q, qpath, report) && pool)
            check_quic_lb_server_ids(q, qpath, *pool, pool_index, report);
    }
}

void check_vips(const Config &config, Report &report)
{
    if (config.vips.size() > kMaxDataplaneVips)
        report.problem(index("vip", kMaxDataplaneVips),
                       "is VIP number " + std::to_string(kMaxDataplaneVips + 1) + " of " +
                           std::to_string(config.vips.size()) + "; the data plane holds at most " +
                           std::to_string(kMaxDataplaneVips) + " VIPs");
    auto by_name = pools_by_name(config);
    bool names_known = true;  // else the pool a VIP names may be the one whose name was unreadable
    for (size_t k = 0; k < config.pools.size() && names_known; k++)
        names_known = report.known(index("pool", k) + ".name");
    PoolHints hint(config);
    std::vector<std::optional<FamilyBackends>> families(config.pools.size());
    std::map<std::tuple<Address, uint16_t, Protocol>, size_t> seen;
    for (size_t i = 0; i < config.vips.size(); i++) {
        const Vip &v = config.vips[i];
        std::string path = index("vip", i);
        if (!report.known(path))
            continue;
        if (v.port == 0)
            report.problem(path + ".port", range_message(1, 65535, v.port));
        if (v.conn_idle_timeout_s == 0 || v.conn_idle_timeout_s > kMaxConnIdleTimeoutS)
            report.problem(path + ".conn_idle_timeout_s", range_message(1, kMaxConnIdleTimeoutS, v.conn_idle_timeout_s));
        bool address_known = report.known(path + ".address");
        if (address_known && report.known(path + ".port") && report.known(path + ".protocol")) {
            auto [it, fresh] = seen.emplace(std::tuple{v.address, v.port, v.protocol}, i);
            if (!fresh)
                report.problem(path + ".address", "duplicate VIP " + vip_text(v) + ", also defined by " +
                                                      report.ref(index("vip", it->second)));
        }
        auto pool = report.known(path + ".pool") ? by_name.find(v.pool) : by_name.end();
        if (pool == by_name.end())
            check_quic_lb(v, i, nullptr, 0, report);
        else
            check_quic_lb(v, i, &config.pools[pool->second], pool->second, report);
        if (!report.known(path + ".pool"))
            continue;
        if (pool == by_name.end()) {
            if (names_known)
                report.problem(path + ".pool", "no pool named " + quote(v.pool) + hint(v.pool));
            continue;
        }
        if (address_known && report.known(path + ".method") && v.method != Method::gue) {
            auto &f = families[pool->second];
            if (!f)
                f = family_backends(config.pools[pool->second], pool->second, report);
            check_vip_backends(v, i, config.pools[pool->second], *f, report);
        }
    }
}

// The kernel interface names and DPDK device names the exception path creates must be new and distinct:
// net_tap truncates an interface name to IFNAMSIZ, and EAL refuses two devices of one name.
void check_exception_taps(const Config &config, Report &report)
{
    const DataplaneConfig &d = config.dataplane;
    if (d.non_vip != NonVipPolicy::kernel || !report.known("dataplane.exception_iface") || d.exception_iface.empty() ||
        d.exception_iface.size() > kMaxIfaceName)  // reported by check_dataplane()
        return;
    auto option = [](const std::string &devargs, const std::string &key) -> std::string {
        for (size_t start = devargs.find(',') == std::string::npos ? devargs.size() : devargs.find(',') + 1;
             start < devargs.size();) {
            size_t end = std::min(devargs.find(',', start), devargs.size());
            if (devargs.compare(start, key.size() + 1, key + "=") == 0)
                return devargs.substr(start + key.size() + 1, end - start - key.size() - 1);
            start = end + 1;
        }
        return "";
    };
    std::unordered_map<std::string, size_t> ifaces, devices;  // a port's kernel interface and DPDK device
    for (size_t j = 0; j < d.ports.size(); j++) {
        if (std::string iface = option(d.ports[j].devargs, "iface"); !iface.empty())
            ifaces.emplace(iface, j);
        devices.emplace(d.ports[j].devargs.substr(0, d.ports[j].devargs.find(',')), j);
    }
    std::unordered_map<std::string, size_t> taps;
    for (size_t i = 0; i < d.ports.size(); i++) {
        if (d.ports[i].rx_queues == 0)
            continue;
        std::string name = exception_tap_name(d, i), port = "dataplane." + index("port", i);
        if (name.size() > kMaxIfaceName) {
            report.problem("dataplane.exception_iface",
                           "the exception tap of " + report.ref(port) + " would be named " + quote(name) + " (" +
                               std::to_string(name.size()) + " characters), longer than an interface name can be (" +
                               std::to_string(kMaxIfaceName) + "): shorten exception_iface");
            return;
        }
        if (auto [it, fresh] = taps.emplace(name, i); !fresh)
            report.problem("dataplane.exception_iface",
                           "the exception taps of " + report.ref("dataplane." + index("port", it->second)) +
                               " and " + report.ref(port) + " would both be named " + quote(name));
        if (auto it = ifaces.find(name); it != ifaces.end())
            report.problem("dataplane." + index("port", it->second) + ".devargs",
                           "iface " + quote(name) + " is the name of the exception tap of " + report.ref(port) +
                               " (exception_iface " + quote(d.exception_iface) + "): rename one");
        std::string device = "net_tap" + std::to_string(i);
        if (auto it = devices.find(device); it != devices.end())
            report.problem("dataplane." + index("port", it->second) + ".devargs",
                           "device " + quote(device) + " is the DPDK name of the exception tap of " +
                               report.ref(port) + ": give this net_tap another number");
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
        else if (d.exception_iface.size() > kMaxIfaceName)
            report.problem("dataplane.exception_iface",
                           quote(d.exception_iface) + " is longer than " + std::to_string(kMaxIfaceName) + " characters (IFNAMSIZ)");
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
    size_t ethdevs = d.ports.size();
    if (d.non_vip == NonVipPolicy::kernel)
        for (const PortConfig &p : d.ports)
            ethdevs += p.rx_queues > 0;  // each receiving port's exception tap
    if (ethdevs > kMaxEthdevs)
        report.problem("dataplane.port", std::to_string(d.ports.size()) + " ports need " + std::to_string(ethdevs) +
                                             " DPDK ports with their exception taps; DPDK has room for " +
                                             std::to_string(kMaxEthdevs) + " (RTE_MAX_ETHPORTS)");
    std::map<unsigned, size_t> lcores;
    for (size_t i = 0; i < d.worker_lcores.size(); i++)
        if (d.worker_lcores[i] >= kMaxLcore)
            report.problem("dataplane." + index("workers", i),
                           "lcore " + std::to_string(d.worker_lcores[i]) + " is past DPDK's last lcore (" +
                               std::to_string(kMaxLcore - 1) + ", RTE_MAX_LCORE)");
        else if (auto [it, fresh] = lcores.emplace(d.worker_lcores[i], i); !fresh)
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

void check_config_model(const Config &config, Report &report)
{
    if (config.secret == std::array<uint8_t, 16>{})
        report.problem("cluster.secret", "is all zeros: set a random secret (`openssl rand -hex 16`)");
    HealthProblems global_health = report_health(config.health, "health", nullptr, report);
    check_pools(config, global_health, report);
    check_vips(config, report);
    check_dataplane(config, report);
    check_exception_taps(config, report);
    check_control(config, report);
}

// What running the data plane needs beyond a consistent model: something to receive on, and an outer
// source address for every family that gue or ipip encapsulates in.
void check_dataplane_ready(const Config &config, Report &report)
{
    const DataplaneConfig &d = config.dataplane;
    if (d.ports.empty())
        report.problem("dataplane.port", "at least one [[dataplane.port]] is needed to run the data plane");
    // Per pool: whether it has IPv4 and IPv6 backends (gue's outer header has the backend's family).
    std::vector<std::array<bool, 2>> has(config.pools.size(), {false, false});  // [is_v4]
    for (size_t p = 0; p < config.pools.size(); p++)
        for (const Backend &b : config.pools[p].backends)
            has[p][b.address.is_v4()] = true;
    auto by_name = pools_by_name(config);
    std::optional<size_t> need_v4, need_v6;  // the first VIP that encapsulates in each family
    for (size_t i = 0; i < config.vips.size(); i++) {
        const Vip &v = config.vips[i];
        auto pool = by_name.find(v.pool);
        if (pool == by_name.end() || v.method == Method::l2dsr)
            continue;
        // ipip's outer header has the VIP's family (validate_config() made the backends' the same).
        bool v4 = v.method == Method::gue ? has[pool->second][true] : v.address.is_v4() && has[pool->second][true];
        bool v6 = v.method == Method::gue ? has[pool->second][false] : !v.address.is_v4() && has[pool->second][false];
        if (v4 && !need_v4)
            need_v4 = i;
        if (v6 && !need_v6)
            need_v6 = i;
    }
    auto require = [&](const std::optional<Address> &source, const std::optional<size_t> &need, const char *field,
                       const char *fam) {
        if (source || !need)
            return;
        // At [dataplane] when the file has one, else at the VIP that needs the address.
        std::string vip = index("vip", *need);
        int line = report.has_line("dataplane") ? report.line_of(field) : report.line_of(vip);
        report.problem_at(line, field,
                          std::string("is required: ") + report.ref(vip) + " (" + vip_text(config.vips[*need]) +
                              ", " + std::string(to_string(config.vips[*need].method)) + ") encapsulates in " + fam +
                              " and needs an outer source address");
    };
    require(d.source_v4, need_v4, "dataplane.source_v4", "IPv4");
    require(d.source_v6, need_v6, "dataplane.source_v6", "IPv6");
}

// What the agent's BPF maps hold (config_limits.h); each problem points at the first thing past the limit.
void check_agent_limits(const Config &config, Report &report)
{
    if (config.pools.size() > kMaxAgentPools)
        report.problem(index("pool", kMaxAgentPools),
                       "is pool number " + std::to_string(kMaxAgentPools + 1) + " of " +
                           std::to_string(config.pools.size()) + "; the agent holds at most " +
                           std::to_string(kMaxAgentPools) + " pools (US_BPF_MAX_POOLS)");
    size_t backends = 0;
    bool ids_reported = false;
    for (size_t i = 0; i < config.pools.size(); i++) {
        const Pool &p = config.pools[i];
        if (p.backends.size() > kMaxAgentBackendsPerPool)
            report.problem(index("pool", i) + "." + index("backend", kMaxAgentBackendsPerPool),
                           "is backend number " + std::to_string(kMaxAgentBackendsPerPool + 1) + " of " +
                               std::to_string(p.backends.size()) + " in pool " + quote(p.name) +
                               "; the agent holds at most " + std::to_string(kMaxAgentBackendsPerPool) +
                               " backends per pool (US_BPF_MAX_SLOTS)");
        if (!ids_reported && backends + p.backends.size() > kMaxAgentBackendIds) {
            report.problem(index("pool", i) + "." + index("backend", kMaxAgentBackendIds - backends),
                           "is backend number " + std::to_string(kMaxAgentBackendIds + 1) +
                               " over all pools; the agent holds at most " + std::to_string(kMaxAgentBackendIds) +
                               " backends in all (US_BPF_MAX_IDS)");
            ids_reported = true;
        }
        backends += p.backends.size();
    }
    // us_vips: each VIP, and the fragments' entry of each VIP address and protocol.
    std::set<std::tuple<Address, uint16_t, Protocol>> entries;
    for (size_t i = 0; i < config.vips.size(); i++) {
        const Vip &v = config.vips[i];
        entries.emplace(v.address, v.port, v.protocol);
        entries.emplace(v.address, 0, v.protocol);
        if (entries.size() > kMaxAgentVipEntries) {
            report.problem(index("vip", i), "needs VIP map entry number " + std::to_string(entries.size()) +
                                                " (one per VIP and one per VIP address and protocol); the agent "
                                                "holds at most " +
                                                std::to_string(kMaxAgentVipEntries) + " (US_BPF_MAX_VIPS)");
            break;
        }
    }
    // us_tunnel_sources: the balancers' outer sources, every backend, [agent] tunnel_sources.
    const DataplaneConfig &d = config.dataplane;
    std::set<std::pair<Address, int>> sources;
    sources.emplace(d.source_v4 ? *d.source_v4 : *Address::parse(kDefaultSourceV4), 128);
    sources.emplace(d.source_v6 ? *d.source_v6 : *Address::parse(kDefaultSourceV6), 128);
    for (const Pool &p : config.pools)
        for (const Backend &b : p.backends)
            sources.emplace(b.address, 128);
    for (const auto &[addr, prefix] : config.agent.tunnel_sources)
        sources.emplace(addr, addr.is_v4() ? 96 + prefix : prefix);
    if (sources.size() > kMaxAgentTunnelSources)
        report.problem("agent.tunnel_sources",
                       std::to_string(sources.size()) +
                           " tunnel sources (the balancers' two outer sources, every backend address and [agent] "
                           "tunnel_sources); the agent holds at most " +
                           std::to_string(kMaxAgentTunnelSources) + " (US_BPF_MAX_SOURCES)");
}

// A report that knows the lines the reader stored in the model; an object added in code (line 0) points at
// its enclosing one.
Report model_report(const Config &config)
{
    Report report(config.path.empty() ? "<config>" : config.path);
    for (const auto &[field, line] : config.lines)
        report.set_line(field, line);
    auto set_line = [&](const std::string &field, int line) {
        if (line > 0)
            report.set_line(field, line);
    };
    for (size_t i = 0; i < config.pools.size(); i++) {
        set_line(index("pool", i), config.pools[i].line);
        for (size_t j = 0; j < config.pools[i].backends.size(); j++)
            set_line(index("pool", i) + "." + index("backend", j), config.pools[i].backends[j].line);
    }
    for (size_t i = 0; i < config.vips.size(); i++) {
        set_line(index("vip", i), config.vips[i].line);
        for (size_t k = 0; k < config.vips[i].quic_lb.size(); k++)
            set_line(index("vip", i) + "." + index("quic_lb", k), config.vips[i].quic_lb[k].line);
    }
    set_line("agent", config.agent.line);
    return report;
}

}  // namespace

namespace config_detail {

void check_config(const Config &config, Report &report) { check_config_model(config, report); }

}  // namespace config_detail

Status validate_config(const Config &config)
{
    Report report = model_report(config);
    check_config_model(config, report);
    return report.finish();
}

Status validate_for_agent(const Config &config)
{
    Report report = model_report(config);
    if (config.agent.interface.empty())
        report.problem("agent.interface", "is required: the interface the balancers' packets arrive on");
    else if (config.agent.interface.size() > kMaxIfaceName)
        report.problem("agent.interface", quote(config.agent.interface) + " is longer than " +
                                              std::to_string(kMaxIfaceName) + " characters (IFNAMSIZ)");
    if (config.agent.xdp_mode != "native" && config.agent.xdp_mode != "generic")
        report.problem("agent.xdp_mode", quote(config.agent.xdp_mode) + " is not one of: native, generic");
    if (config.agent.socket.empty())
        report.problem("agent.socket", "must not be empty");
    check_agent_limits(config, report);
    return report.finish();
}

Status validate_for_dataplane(const Config &config)
{
    Report report = model_report(config);
    check_dataplane_ready(config, report);
    return report.finish();
}

std::string exception_tap_name(const DataplaneConfig &dataplane, size_t port)
{
    return dataplane.ports.size() == 1 ? dataplane.exception_iface : dataplane.exception_iface + std::to_string(port);
}

}  // namespace understudy
