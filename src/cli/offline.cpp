// Offline subcommands: check a config file, and explain where flows go without a running daemon.
#include <cctype>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include "core/config_diagnostics.h"
#include "quiclb/quic_lb.h"
#include "daemon/json_text.h"
#include "client.h"
#include "commands.h"
#include "json/results.h"

namespace understudy::cli {

void add_check_command(CLI::App &app, Action &action)
{
    auto *cmd = app.add_subcommand("check", "Validate a config file; exit 0 when valid, 1 with every problem otherwise");
    auto path = std::make_shared<std::string>();
    auto agent = std::make_shared<bool>(false), dataplane = std::make_shared<bool>(false);
    cmd->add_option("--config,-c", *path, "config file")->required();
    cmd->add_flag("--agent", *agent, "also what understudy-agent needs: [agent], and what its BPF maps hold");
    cmd->add_flag("--dataplane", *dataplane, "also what the balancer's data plane needs to start: ports, sources");
    cmd->callback([&action, path, agent, dataplane] {
        action = [path, agent, dataplane] {
            auto config = load_config(*path);
            if (!config) {
                std::cerr << config.error() << "\n";
                return 1;
            }
            std::string problems;
            for (auto [wanted, check] : {std::pair{*agent, &validate_for_agent}, {*dataplane, &validate_for_dataplane}})
                if (Status s = wanted ? check(*config) : Status(Ok{}); !s)
                    problems += s.error() + "\n";
            if (!problems.empty()) {
                std::cerr << problems;
                return 1;
            }
            size_t backends = 0;
            for (const auto &p : config->pools)
                backends += p.backends.size();
            std::cout << escape_text(*path) << ": valid (" << config->pools.size() << " pools, " << backends << " backends, "
                      << config->vips.size() << " VIPs)\n";
            return 0;
        };
    });
}

struct LookupOptions {
    std::string config, vip, src, down, quic_cid;
    bool batch = false, json = false;
};

static std::string describe(const Pool &pool, uint32_t id, const Lookup &lookup)
{
    for (const Backend &b : pool.backends) {
        if (b.id != id)
            continue;
        std::string s = std::to_string(id) + " (" + b.address.str() + ")";
        if (b.state != AdminState::enabled)
            s += " " + std::string(to_string(b.state));
        if (!lookup.operational(pool, b))
            s += " not operational";
        return s;
    }
    return std::to_string(id);
}

static void print_human(const LookupResult &r, const Endpoint &client, const Lookup &lookup)
{
    const Vip &vip = *r.vip;
    Endpoint vip_ep{vip.address, vip.port};
    std::cout << "vip           " << vip_ep.str() << "/" << to_string(vip.protocol) << "  pool " << r.pool->name
              << ", affinity " << to_string(vip.affinity) << ", method " << to_string(vip.method) << "\n"
              << "client        " << client.str() << "\n"
              << "session hash  " << hex16(r.session_hash) << "\n"
              << "bucket        " << r.bucket << " of " << (1u << r.pool->table_bits) << "\n"
              << "ordering     ";
    for (uint32_t id : r.ordering)
        std::cout << " " << id;
    std::cout << "\nprimary       " << (r.primary ? describe(*r.pool, *r.primary, lookup) : "none (empty pool)")
              << "\nserving       " << (r.serving ? describe(*r.pool, *r.serving, lookup) : "none: no server is operational")
              << "\n";
}

// Live: the daemon runs the same lookup with its current config and health.
static int run_live_lookup(const LookupOptions &o)
{
    if (!o.down.empty()) {
        std::cerr << "lookup: --down is for offline lookups (--config); live lookups use the daemon's health\n";
        return kUsage;
    }
    if (o.batch) {
        std::vector<std::string> lines;
        std::string line;
        int rc = kOk;
        auto flush = [&] {
            if (lines.empty())
                return true;
            Reply r = call({{"op", "lookup"}, {"lines", lines}});
            if (r.exit_code != kOk) {
                rc = report_failure(r);
                return false;
            }
            for (auto &res : r.body["results"]) {
                if (res.contains("error"))
                    rc = kFailed;
                std::cout << json_text(res) << "\n";
            }
            lines.clear();
            return true;
        };
        while (std::getline(std::cin, line)) {
            lines.push_back(line);
            if (lines.size() == 10000 && !flush())
                return rc;
        }
        flush();
        return rc;
    }
    if (o.vip.empty() || o.src.empty()) {
        std::cerr << "lookup: give --vip ADDR:PORT/PROTO and --src ADDR:PORT, or --batch\n";
        return kUsage;
    }
    Reply r = call({{"op", "lookup"}, {"vip", o.vip}, {"src", o.src}});
    if (r.exit_code != kOk)
        return report_failure(r);
    nlohmann::ordered_json out;
    for (const char *k : {"session_hash", "bucket", "ordering", "primary", "serving"})
        out[k] = r.body[k];
    if (o.json) {
        std::cout << json_text(out) << "\n";
    } else {
        auto text = [](const nlohmann::ordered_json &v) {
            return v.is_string() ? escape_text(v.get<std::string>()) : json_text(v);
        };
        std::cout << "vip           " << escape_text(o.vip) << "  pool " << text(r.body["pool"]) << "\n"
                  << "client        " << escape_text(o.src) << "\n"
                  << "session hash  " << text(out["session_hash"]) << "\n"
                  << "bucket        " << text(out["bucket"]) << "\n"
                  << "ordering      " << text(out["ordering"]) << "\n"
                  << "primary       " << text(out["primary"]) << "\n"
                  << "serving       " << (out["serving"].is_null() ? "none: no server is operational" : text(out["serving"]))
                  << "\n";
    }
    return kOk;
}

// What the data plane does with a QUIC packet whose destination CID is `cid` (docs/quic-lb.md): the backend
// its server ID names is the primary; the packet goes there while it is operational, else by the 4-tuple.
struct QuicLookup {
    bool routable = false;
    std::string reason;               // when not routable
    int codepoint = -1;
    std::string server_id;            // hex, when decoded
    std::optional<uint32_t> primary;  // the backend the server ID names
    std::optional<uint32_t> server;   // where the packet goes
};

static Result<QuicLookup> quic_lookup(const LookupResult &r, const Lookup &lookup, const std::string &cid_hex)
{
    std::vector<uint8_t> cid;
    if (cid_hex.size() % 2)
        return Error{"--quic-cid: an even number of hex digits"};
    for (size_t i = 0; i < cid_hex.size(); i += 2) {
        auto digit = [](char c) { return std::isxdigit(uint8_t(c)) ? std::stoi(std::string(1, c), nullptr, 16) : -1; };
        int hi = digit(cid_hex[i]), lo = digit(cid_hex[i + 1]);
        if (hi < 0 || lo < 0)
            return Error{"--quic-cid: not hex: " + cid_hex};
        cid.push_back(uint8_t(hi << 4 | lo));
    }
    QuicLookup q;
    q.server = r.serving;
    if (r.vip->quic_lb.empty()) {
        q.reason = "the VIP has no [[vip.quic_lb]]";
        return q;
    }
    if (cid.empty() || cid.size() > QUIC_LB_MAX_CID_LEN) {
        q.reason = "a CID of 1 to 20 octets";
        return q;
    }
    q.codepoint = int(quic_lb_cid_codepoint(cid.data()));
    const QuicLbConfig *c = nullptr;
    for (const QuicLbConfig &each : r.vip->quic_lb)
        if (each.codepoint == q.codepoint)
            c = &each;
    if (!c) {
        q.reason = "codepoint " + std::to_string(q.codepoint) + (q.codepoint == 7 ? " is unroutable" : " has no configuration");
        return q;
    }
    quic_lb_config lb;
    if (auto st = quic_lb_config_init(&lb, c->codepoint, c->server_id_len, c->nonce_len, c->key ? c->key->data() : nullptr))
        return Error{std::string("--quic-cid: ") + quic_lb_strerror(st)};
    uint8_t sid[QUIC_LB_MAX_SERVER_ID_LEN];
    if (auto st = quic_lb_decode(&lb, cid.data(), cid.size(), sid)) {
        q.reason = quic_lb_strerror(st);
        return q;
    }
    std::vector<uint8_t> server_id(sid, sid + c->server_id_len);
    static const char digits[] = "0123456789abcdef";
    for (uint8_t b : server_id)
        q.server_id += {digits[b >> 4], digits[b & 15]};
    for (const Backend &b : r.pool->backends)
        if (quic_server_id(*c, b.id) == server_id) {
            q.routable = true;
            q.primary = b.id;
            if (lookup.operational(*r.pool, b))
                q.server = b.id;
        }
    if (!q.routable)
        q.reason = "server ID " + q.server_id + " names no backend of pool '" + r.pool->name + "'";
    return q;
}

static nlohmann::ordered_json quic_json(const QuicLookup &q)
{
    nlohmann::ordered_json j{{"routable", q.routable}};
    if (!q.routable)
        j["reason"] = q.reason;
    j["codepoint"] = q.codepoint >= 0 ? nlohmann::ordered_json(q.codepoint) : nlohmann::ordered_json(nullptr);
    j["server_id"] = q.server_id.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(q.server_id);
    j["primary"] = q.primary ? nlohmann::ordered_json(*q.primary) : nlohmann::ordered_json(nullptr);
    j["server"] = q.server ? nlohmann::ordered_json(*q.server) : nlohmann::ordered_json(nullptr);
    return j;
}

static void print_quic(const QuicLookup &q, const LookupResult &r, const Lookup &lookup)
{
    std::cout << "quic cid      ";
    if (q.routable)
        std::cout << "codepoint " << q.codepoint << ", server ID " << q.server_id << ": primary "
                  << describe(*r.pool, *q.primary, lookup) << "\n";
    else
        std::cout << "unroutable: " << q.reason << " (routed by the 4-tuple)\n";
    std::cout << "goes to       "
              << (q.server ? describe(*r.pool, *q.server, lookup) : "none: no server is operational")
              << (q.routable && q.server != q.primary ? " (the CID's primary is down: the 4-tuple's serving server)"
                                                     : "")
              << "\n";
}

static int run_lookup(const LookupOptions &o)
{
    if (!o.quic_cid.empty() && (o.config.empty() || o.batch)) {
        std::cerr << "lookup: --quic-cid is for offline lookups of one flow (--config, --vip, --src)\n";
        return 2;
    }
    if (o.config.empty())
        return run_live_lookup(o);
    auto config = load_config(o.config);
    if (!config) {
        std::cerr << config.error() << "\n";
        return 2;
    }
    std::set<uint32_t> down;
    if (!o.down.empty()) {
        auto ids = parse_id_list(o.down);
        if (!ids) {
            std::cerr << "--down: " << ids.error() << "\n";
            return 2;
        }
        down = *ids;
    }
    Lookup lookup(*config, down);

    if (o.batch) {
        std::ios::sync_with_stdio(false);
        std::string line;
        int rc = 0;
        while (std::getline(std::cin, line)) {
            auto r = lookup.lookup_line(line);
            if (r) {
                std::cout << json_text(to_json(*r)) << "\n";
            } else {
                std::cout << json_text(nlohmann::ordered_json{{"error", r.error()}}) << "\n";
                rc = 1;
            }
        }
        return rc;
    }

    if (o.vip.empty() || o.src.empty()) {
        std::cerr << "lookup: give --vip ADDR:PORT/PROTO and --src ADDR:PORT, or --batch\n";
        return 2;
    }
    auto vip = parse_vip_spec(o.vip);
    if (!vip) {
        std::cerr << "--vip: " << vip.error() << "\n";
        return 2;
    }
    auto client = Endpoint::parse(o.src);
    if (!client) {
        std::cerr << "--src: " << client.error() << "\n";
        return 2;
    }
    auto r = lookup.lookup(vip->first, vip->second, *client);
    if (!r) {
        std::cerr << r.error() << "\n";
        return 1;
    }
    std::optional<QuicLookup> quic;
    if (!o.quic_cid.empty()) {
        auto q = quic_lookup(*r, lookup, o.quic_cid);
        if (!q) {
            std::cerr << q.error() << "\n";
            return 2;
        }
        quic = *q;
    }
    if (o.json) {
        auto j = to_json(*r);
        if (quic)
            j["quic"] = quic_json(*quic);
        std::cout << json_text(j) << "\n";
    } else {
        print_human(*r, *client, lookup);
        if (quic)
            print_quic(*quic, *r, lookup);
    }
    return 0;
}

void add_lookup_command(CLI::App &app, Action &action)
{
    auto *cmd = app.add_subcommand("lookup", "Show the session hash, bucket, ordering, primary and serving server of a flow");
    auto o = std::make_shared<LookupOptions>();
    cmd->add_option("--config,-c", o->config, "config file (offline); without it, ask the running daemon");
    cmd->add_option("--vip", o->vip, "VIP as ADDR:PORT/PROTO, IPv6 as [ADDR]:PORT/PROTO");
    cmd->add_option("--src", o->src, "client as ADDR:PORT, IPv6 as [ADDR]:PORT");
    cmd->add_option("--down", o->down, "server IDs to treat as not operational, comma-separated");
    cmd->add_option("--quic-cid", o->quic_cid,
                    "offline: a QUIC packet's destination connection ID (hex): the primary it names and where it goes");
    cmd->add_flag("--batch", o->batch, "read 'SRC_ADDR SRC_PORT DST_ADDR DST_PORT PROTO' lines from stdin, write JSON lines");
    cmd->add_flag("--json", o->json, "print one JSON object");
    cmd->callback([&action, o] { action = [o] { return run_lookup(*o); }; });
}

}  // namespace understudy::cli
