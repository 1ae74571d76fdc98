// understudyctl quic-cid: mint and read QUIC-LB connection IDs with a VIP's configurations from a config file
// (docs/quic-lb.md), through the same library servers link (src/quiclb).
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "client.h"
#include "commands.h"
#include "core/config.h"
#include "core/config_diagnostics.h"
#include "core/lookup.h"
#include "daemon/json_text.h"
#include "quiclb/quic_lb.h"

namespace understudy::cli {

namespace {

struct QuicCidOptions {
    std::string config, vip, nonce, cid;
    unsigned codepoint = 0;
    uint32_t server = 0;
    bool json = false;
};

using Bytes = std::vector<uint8_t>;

std::string hex(const uint8_t *data, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    std::string out;
    for (size_t i = 0; i < n; i++)
        out += {digits[data[i] >> 4], digits[data[i] & 15]};
    return out;
}

std::string hex(const Bytes &b) { return hex(b.data(), b.size()); }

Result<Bytes> parse_hex(std::string_view text)
{
    auto digit = [](char c) {
        if (c >= '0' && c <= '9')
            return c - '0';
        c = char(c | 0x20);  // lower case
        return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    };
    if (text.size() % 2)
        return Error{quote(text) + " has an odd number of hex digits"};
    Bytes out;
    for (size_t i = 0; i < text.size(); i += 2) {
        int hi = digit(text[i]), lo = digit(text[i + 1]);
        if (hi < 0 || lo < 0)
            return Error{quote(text) + " is not hex (0-9, a-f)"};
        out.push_back(uint8_t(hi << 4 | lo));
    }
    return out;
}

// The config file, the VIP and its pool: what both subcommands start from.
struct Target {
    Config config;
    const Vip *vip = nullptr;
    const Pool *pool = nullptr;
};

Result<Target> load_target(const QuicCidOptions &o, int &rc)
{
    rc = kUsage;
    auto spec = parse_vip_spec(o.vip);
    if (!spec)
        return Error{"--vip: " + spec.error()};
    auto config = load_config(o.config);
    if (!config)
        return Error{config.error()};
    Target t{std::move(*config)};
    rc = kFailed;
    t.vip = t.config.find_vip(spec->first.address, spec->first.port, spec->second);
    if (!t.vip)
        return Error{"no VIP " + escape_text(o.vip) + " in " + escape_text(o.config)};
    if (t.vip->quic_lb.empty())
        return Error{"VIP " + escape_text(o.vip) + " has no QUIC-LB configuration ([[vip.quic_lb]])"};
    t.pool = t.config.find_pool(t.vip->pool);
    if (!t.pool)  // load_config() refuses a VIP without its pool: only a bug gets here
        return Error{"VIP " + escape_text(o.vip) + " names no pool"};
    return t;
}

const QuicLbConfig *find_codepoint(const Vip &vip, unsigned codepoint)
{
    for (const QuicLbConfig &q : vip.quic_lb)
        if (q.codepoint == codepoint)
            return &q;
    return nullptr;
}

Result<quic_lb_config> prepare(const QuicLbConfig &q)
{
    quic_lb_config c;
    const uint8_t *key = q.key ? q.key->data() : nullptr;
    quic_lb_status s = quic_lb_config_init(&c, q.codepoint, q.server_id_len, q.nonce_len, key);
    if (s != QUIC_LB_OK)
        return Error{"codepoint " + std::to_string(q.codepoint) + ": " + quic_lb_strerror(s)};
    return c;
}

std::string algorithm_name(const quic_lb_config &c) { return quic_lb_algorithm_name(quic_lb_algorithm(c.algorithm)); }

std::string describe(const QuicLbConfig &q, const quic_lb_config &c)
{
    return algorithm_name(c) + ", server ID " + std::to_string(q.server_id_len) + " octets, nonce " +
           std::to_string(q.nonce_len) + " octets" + (q.encode_length ? ", length in the first octet" : "");
}

int run_encode(const QuicCidOptions &o)
{
    int rc;
    auto target = load_target(o, rc);
    if (!target) {
        std::cerr << target.error() << "\n";
        return rc;
    }
    const QuicLbConfig *q = find_codepoint(*target->vip, o.codepoint);
    if (!q) {
        std::cerr << "VIP " << escape_text(o.vip) << " has no QUIC-LB configuration with codepoint " << o.codepoint
                  << "\n";
        return kFailed;
    }
    const Backend *backend = nullptr;
    for (const Backend &b : target->pool->backends)
        if (b.id == o.server)
            backend = &b;
    if (!backend) {
        std::cerr << "pool " << quote(target->pool->name) << " has no backend with id " << o.server << "\n";
        return kFailed;
    }
    auto config = prepare(*q);
    if (!config) {
        std::cerr << config.error() << "\n";
        return kFailed;
    }
    std::random_device random;
    Bytes nonce(q->nonce_len);
    if (!o.nonce.empty()) {
        auto given = parse_hex(o.nonce);
        if (!given || given->size() != q->nonce_len) {
            std::cerr << "--nonce: " << (given ? "must be " + std::to_string(q->nonce_len) + " octets (" +
                                                     std::to_string(2 * q->nonce_len) + " hex digits)"
                                               : given.error())
                      << "\n";
            return kUsage;
        }
        nonce = *given;
    } else {
        for (auto &b : nonce)
            b = uint8_t(random());
    }
    // Without length self-description the low bits must not link CIDs to each other: random ones.
    int low_bits = q->encode_length ? QUIC_LB_LENGTH_BITS : int(random() & 31);
    Bytes sid = quic_server_id(*q, backend->id);
    Bytes cid(quic_lb_cid_len(&*config));
    if (quic_lb_status s = quic_lb_encode(&*config, sid.data(), nonce.data(), low_bits, cid.data()); s != QUIC_LB_OK) {
        std::cerr << quic_lb_strerror(s) << "\n";
        return kFailed;
    }
    if (o.json) {
        nlohmann::ordered_json out{{"cid", hex(cid)},           {"codepoint", q->codepoint},
                                   {"algorithm", algorithm_name(*config)}, {"server", backend->id},
                                   {"address", backend->address.str()},    {"server_id", hex(sid)},
                                   {"nonce", hex(nonce)}};
        std::cout << json_text(out) << "\n";
    } else {
        std::cout << "cid           " << hex(cid) << "\n"
                  << "codepoint     " << unsigned(q->codepoint) << " (" << describe(*q, *config) << ")\n"
                  << "server        " << backend->id << " (" << backend->address.str() << "), server ID " << hex(sid)
                  << "\n"
                  << "nonce         " << hex(nonce) << "\n";
    }
    return kOk;
}

// What decoding found: the backend the CID names, or why it names none (unroutable: the data plane falls back
// to the ordering of the 4-tuple for such packets).
struct Decoded {
    const QuicLbConfig *q = nullptr;
    std::string algorithm;
    Bytes server_id, nonce;
    const Backend *backend = nullptr;
    std::string unroutable;
};

Decoded decode(const Target &t, const Bytes &cid)
{
    Decoded d;
    if (cid.empty()) {
        d.unroutable = quic_lb_strerror(QUIC_LB_ERR_CID_EMPTY);
        return d;
    }
    unsigned codepoint = quic_lb_cid_codepoint(cid.data());
    if (codepoint == QUIC_LB_UNROUTABLE_CODEPOINT) {
        d.unroutable = quic_lb_strerror(QUIC_LB_ERR_CID_UNROUTABLE);
        return d;
    }
    d.q = find_codepoint(*t.vip, codepoint);
    if (!d.q) {
        d.unroutable = "no QUIC-LB configuration with codepoint " + std::to_string(codepoint);
        return d;
    }
    auto config = prepare(*d.q);
    if (!config) {
        d.unroutable = config.error();
        return d;
    }
    d.algorithm = algorithm_name(*config);
    Bytes plain(size_t(d.q->server_id_len) + d.q->nonce_len);
    if (quic_lb_status s = quic_lb_decrypt(&*config, cid.data(), cid.size(), plain.data()); s != QUIC_LB_OK) {
        d.unroutable = quic_lb_strerror(s);
        return d;
    }
    d.server_id.assign(plain.begin(), plain.begin() + d.q->server_id_len);
    d.nonce.assign(plain.begin() + d.q->server_id_len, plain.end());
    for (const Backend &b : t.pool->backends)
        if (quic_server_id(*d.q, b.id) == d.server_id)
            d.backend = &b;
    if (!d.backend)
        d.unroutable = "server ID " + hex(d.server_id) + " names no backend of pool " + quote(t.pool->name);
    return d;
}

int run_decode(const QuicCidOptions &o)
{
    auto cid = parse_hex(o.cid);
    if (!cid) {
        std::cerr << "CID: " << cid.error() << "\n";
        return kUsage;
    }
    int rc;
    auto target = load_target(o, rc);
    if (!target) {
        std::cerr << target.error() << "\n";
        return rc;
    }
    Decoded d = decode(*target, *cid);
    if (o.json) {
        nlohmann::ordered_json out{{"cid", hex(*cid)}, {"routable", d.unroutable.empty()}};
        auto or_null = [](bool present, auto value) {
            return present ? nlohmann::ordered_json(value) : nlohmann::ordered_json();
        };
        out["codepoint"] = or_null(!cid->empty(), cid->empty() ? 0u : quic_lb_cid_codepoint(cid->data()));
        out["algorithm"] = or_null(!d.algorithm.empty(), d.algorithm);
        out["server_id"] = or_null(!d.server_id.empty(), hex(d.server_id));
        out["nonce"] = or_null(!d.nonce.empty(), hex(d.nonce));
        out["server"] = or_null(d.backend != nullptr, d.backend ? d.backend->id : 0u);
        out["address"] = or_null(d.backend != nullptr, d.backend ? d.backend->address.str() : std::string());
        if (!d.unroutable.empty())
            out["reason"] = d.unroutable;
        std::cout << json_text(out) << "\n";
    } else {
        std::cout << "cid           " << hex(*cid) << "\n";
        if (!cid->empty())
            std::cout << "codepoint     " << quic_lb_cid_codepoint(cid->data())
                      << (d.q ? " (" + d.algorithm + ")" : std::string()) << "\n";
        if (!d.server_id.empty())
            std::cout << "server ID     " << hex(d.server_id) << "\n"
                      << "nonce         " << hex(d.nonce) << "\n";
        if (d.backend)
            std::cout << "server        " << d.backend->id << " (" << d.backend->address.str() << ")\n";
        else
            std::cout << "unroutable    " << d.unroutable << " (the data plane routes by the 4-tuple's ordering)\n";
    }
    return d.unroutable.empty() ? kOk : kFailed;
}

}  // namespace

void add_quic_cid_command(CLI::App &app, Action &action)
{
    auto *cmd = app.add_subcommand("quic-cid", "Encode or decode QUIC-LB connection IDs with a VIP's configuration");
    cmd->require_subcommand(1);
    auto o = std::make_shared<QuicCidOptions>();
    auto common = [o](CLI::App *sub) {
        sub->add_option("--config,-c", o->config, "config file")->required();
        sub->add_option("--vip", o->vip, "UDP VIP as ADDR:PORT/udp, IPv6 as [ADDR]:PORT/udp")->required();
        sub->add_flag("--json", o->json, "print one JSON object");
    };
    auto *encode = cmd->add_subcommand("encode", "Mint a connection ID that names a backend");
    common(encode);
    encode->add_option("--codepoint", o->codepoint, "configuration (0-6)")->required()->check(CLI::Range(0, 6));
    encode->add_option("--server", o->server, "backend id")->required();
    encode->add_option("--nonce", o->nonce, "nonce in hex (default: random)");
    encode->callback([&action, o] { action = [o] { return run_encode(*o); }; });
    auto *decode = cmd->add_subcommand("decode", "Show the backend a connection ID names, or why it is unroutable");
    common(decode);
    decode->add_option("cid", o->cid, "connection ID in hex")->required();
    decode->callback([&action, o] { action = [o] { return run_decode(*o); }; });
}

}  // namespace understudy::cli
