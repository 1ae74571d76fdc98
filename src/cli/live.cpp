// Live subcommands: they talk to the daemon over its control socket. Tables for people, --json for
// scripts. Exit codes: 0 done, 1 the daemon refused (the message says why), 2 usage, 3 daemon unreachable.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <thread>

#include "core/config_diagnostics.h"
#include "daemon/json_text.h"
#include "client.h"
#include "commands.h"

namespace understudy::cli {

using Json = nlohmann::ordered_json;

// A plain text table: columns sized to their widest cell. Cells may hold what the daemon was told or saw
// (names, a probe's reply): they are printed escaped, so no terminal escape sequence gets through.
static void print_table(const std::vector<std::string> &header, std::vector<std::vector<std::string>> rows)
{
    for (auto &r : rows)
        for (auto &cell : r)
            cell = escape_text(cell);
    std::vector<size_t> width(header.size());
    for (size_t i = 0; i < header.size(); i++)
        width[i] = header[i].size();
    for (const auto &r : rows)
        for (size_t i = 0; i < r.size() && i < width.size(); i++)
            width[i] = std::max(width[i], r[i].size());
    auto line = [&](const std::vector<std::string> &cells) {
        std::string out;
        for (size_t i = 0; i < cells.size(); i++) {
            out += cells[i];
            if (i + 1 < cells.size())
                out += std::string(width[i] - cells[i].size() + 2, ' ');
        }
        std::cout << out << "\n";
    };
    line(header);
    for (const auto &r : rows)
        line(r);
}

static std::string pct(double f)
{
    char b[32];
    snprintf(b, sizeof b, "%.1f%%", f * 100);
    return b;
}

// A value of the daemon's reply for a line of text: strings escaped, anything else as JSON.
static std::string text(const Json &v) { return v.is_string() ? escape_text(v.get<std::string>()) : json_text(v); }

static std::string seconds(const Json &v)
{
    if (v.is_null())
        return "n/a";
    double s = v.get<double>();
    char b[32];
    if (s < 1e-3)
        snprintf(b, sizeof b, "%.0f us", s * 1e6);
    else if (s < 1)
        snprintf(b, sizeof b, "%.2f ms", s * 1e3);
    else
        snprintf(b, sizeof b, "%.1f s", s);
    return b;
}

// Runs a request; prints the reply as JSON or with the given printer.
static int run(const Json &request, bool json, const std::function<void(const Json &)> &print)
{
    Reply r = call(request);
    if (r.exit_code != kOk)
        return report_failure(r);
    if (json)
        std::cout << json_text(r.body) << "\n";
    else
        print(r.body);
    return kOk;
}

static void print_agent_status(const Json &b)
{
    std::cout << "understudy-agent " << text(b["version"]) << "  up " << seconds(b["uptime_s"]) << "  on "
              << text(b["interface"]) << " (" << text(b["xdp_mode"]) << " XDP)  addresses";
    for (auto &a : b["addresses"])
        std::cout << " " << text(a);
    std::cout << "\nconfig " << text(b["config"]) << "  tables swapped in: " << text(b["table_swaps"]) << "\n\n";
    std::vector<std::vector<std::string>> rows;
    for (auto &p : b["pools"])
        rows.push_back({p["name"].get<std::string>(), std::to_string(1u << p["table_bits"].get<unsigned>()),
                        std::to_string(p["backends"].get<unsigned>()), std::to_string(p["operational"].get<unsigned>()),
                        p["my_id"].is_null() ? "-" : std::to_string(p["my_id"].get<uint32_t>())});
    print_table({"POOL", "BUCKETS", "BACKENDS", "OPERATIONAL", "THIS HOST"}, rows);
}

static void print_status(const Json &b)
{
    if (b.value("role", "") == "agent")
        return print_agent_status(b);
    std::cout << "understudy " << text(b["version"]) << "  up " << seconds(b["uptime_s"]) << "  generation "
              << text(b["generation"]) << "  " << text(b["workers"]) << " worker(s)  " << text(b["vips"]) << " VIP(s)\n"
              << "config " << text(b["config"]) << "\n\n";
    std::vector<std::vector<std::string>> rows;
    for (auto &p : b["pools"])
        rows.push_back({p["name"].get<std::string>(), std::to_string(1u << p["table_bits"].get<unsigned>()),
                        std::to_string(p["backends"].get<unsigned>()), std::to_string(p["operational"].get<unsigned>())});
    print_table({"POOL", "BUCKETS", "BACKENDS", "OPERATIONAL"}, rows);
    auto &u = b["last_update"];
    std::cout << "\nlast update (generation " << text(u["generation"]) << "): " << text(u["cause"]) << "\n  "
              << text(u["buckets_changed"]) << " buckets changed; live " << seconds(u["publish_seconds"])
              << " after its cause; first packet with it " << seconds(u["first_packet_seconds"]) << " after\n";
}

static void print_backends(const Json &b)
{
    std::vector<std::vector<std::string>> rows;
    for (auto &x : b["backends"])
        rows.push_back({x["pool"].get<std::string>(), std::to_string(x["id"].get<uint32_t>()),
                        x["address"].get<std::string>(), std::to_string(x["weight"].get<uint32_t>()),
                        x["state"].get<std::string>(), x["health"].get<std::string>(),
                        x["operational"].get<bool>() ? "yes" : "no", pct(x["share"].get<double>())});
    print_table({"POOL", "ID", "ADDRESS", "WEIGHT", "STATE", "HEALTH", "SERVING", "SHARE"}, rows);
}

static void print_vips(const Json &b)
{
    std::vector<std::vector<std::string>> rows;
    for (auto &v : b["vips"])
        rows.push_back({v["address"].get<std::string>(), std::to_string(v["port"].get<unsigned>()),
                        v["protocol"].get<std::string>(), v["pool"].get<std::string>(), v["method"].get<std::string>(),
                        v["affinity"].get<std::string>(), v["conn_table"].get<bool>() ? "on" : "off"});
    print_table({"ADDRESS", "PORT", "PROTO", "POOL", "METHOD", "AFFINITY", "CONN-TABLE"}, rows);
}

static void print_health(const Json &b)
{
    std::vector<std::vector<std::string>> rows;
    for (auto &h : b["health"]) {
        rows.push_back({h["pool"].get<std::string>(), std::to_string(h["id"].get<uint32_t>()), h["address"].get<std::string>(),
                        h["kind"].get<std::string>(), h["up"].get<bool>() ? "up" : "DOWN",
                        h.contains("last_result") ? h["last_result"].get<std::string>() : "-",
                        h.contains("probes") ? std::to_string(h["probes"].get<uint64_t>()) : "-",
                        h.contains("failures") ? std::to_string(h["failures"].get<uint64_t>()) : "-",
                        h.contains("since_change_s") ? seconds(h["since_change_s"]) : "-"});
    }
    print_table({"POOL", "ID", "ADDRESS", "PROBE", "STATE", "LAST RESULT", "PROBES", "FAILED", "SINCE CHANGE"}, rows);
}

// Counters as totals, or as rates against a previous sample.
static void print_stats(const Json &now, const Json *before)
{
    double dt = before ? now["time_s"].get<double>() - (*before)["time_s"].get<double>() : 0;
    auto value = [&](const Json &cur, const Json *prev) -> std::string {
        char b[48];
        if (!prev || dt <= 0)
            snprintf(b, sizeof b, "%llu", (unsigned long long)cur.get<uint64_t>());
        else
            snprintf(b, sizeof b, "%.1f/s", double(cur.get<uint64_t>() - prev->get<uint64_t>()) / dt);
        return b;
    };
    std::vector<std::vector<std::string>> rows;
    for (auto &[k, v] : now["counters"].items())
        rows.push_back({k, value(v, before ? &(*before)["counters"][k] : nullptr)});
    if (!now.contains("drops")) {  // the agent: its XDP program's counters only
        print_table({"COUNTER", before ? "RATE" : "TOTAL"}, rows);
        return;
    }
    for (auto &[k, v] : now["drops"].items())
        if (v.get<uint64_t>() != 0)
            rows.push_back({"drop " + k, value(v, before ? &(*before)["drops"][k] : nullptr)});
    rows.push_back({"conn_table_entries", std::to_string(now["conn_table_entries"].get<uint64_t>())});
    print_table({"COUNTER", before ? "RATE" : "TOTAL"}, rows);
    std::cout << "\n";
    rows.clear();
    if (now.contains("ports")) {  // the ports' own counters, as their drivers keep them
        for (size_t i = 0; i < now["ports"].size(); i++) {
            auto &p = now["ports"][i];
            const Json *q = before && i < (*before)["ports"].size() ? &(*before)["ports"][i] : nullptr;
            std::vector<std::string> row{p["port"].get<std::string>()};
            for (const char *k : {"rx_packets", "rx_missed", "rx_errors", "rx_nombuf", "tx_packets", "tx_errors"})
                row.push_back(value(p[k], q ? &(*q)[k] : nullptr));
            rows.push_back(row);
        }
        print_table({"PORT", "RX", "RX MISSED", "RX ERRORS", "RX NOMBUF", "TX", "TX ERRORS"}, rows);
        std::cout << "\n";
        rows.clear();
    }
    for (size_t i = 0; i < now["vips"].size(); i++) {
        auto &v = now["vips"][i];
        const Json *p = before && i < (*before)["vips"].size() ? &(*before)["vips"][i] : nullptr;
        rows.push_back({v["vip"].get<std::string>(), v["pool"].get<std::string>(),
                        value(v["packets"], p ? &(*p)["packets"] : nullptr), value(v["bytes"], p ? &(*p)["bytes"] : nullptr)});
    }
    print_table({"VIP", "POOL", "PACKETS", "BYTES"}, rows);
    std::cout << "\n";
    rows.clear();
    for (size_t i = 0; i < now["backends"].size(); i++) {
        auto &b = now["backends"][i];
        const Json *p = before && i < (*before)["backends"].size() ? &(*before)["backends"][i] : nullptr;
        rows.push_back({b["pool"].get<std::string>(), std::to_string(b["id"].get<uint32_t>()), b["address"].get<std::string>(),
                        value(b["packets"], p ? &(*p)["packets"] : nullptr), value(b["bytes"], p ? &(*p)["bytes"] : nullptr)});
    }
    print_table({"POOL", "ID", "ADDRESS", "PACKETS", "BYTES"}, rows);
}

struct LiveOptions {
    bool json = false;
    std::string pool, address, protocol = "tcp", method, affinity, state, mac;
    int64_t id = -1, port = -1, weight = -1;
    double watch = 0;
    int count = 0;
};

void add_live_commands(CLI::App &app, Action &action)
{
    auto o = std::make_shared<LiveOptions>();
    auto set = [&action](Action a) { action = std::move(a); };

    auto *status = app.add_subcommand("status", "Daemon status: pools, workers, last table update");
    status->add_flag("--json", o->json, "print the reply as JSON");
    status->callback([=] { set([o] { return run({{"op", "status"}}, o->json, print_status); }); });

    auto *health = app.add_subcommand("health", "Health-probe detail per backend");
    health->add_option("--pool", o->pool, "only this pool");
    health->add_flag("--json", o->json, "print the reply as JSON");
    health->callback([=] {
        set([o] {
            Json r{{"op", "health"}};
            if (!o->pool.empty())
                r["pool"] = o->pool;
            return run(r, o->json, print_health);
        });
    });

    auto *stats = app.add_subcommand("stats", "Counters, drops by reason, per VIP and per backend");
    stats->add_flag("--json", o->json, "print the reply as JSON");
    stats->add_option("--watch", o->watch, "print rates per second every SECONDS")->expected(0, 1)->default_str("1");
    stats->add_option("--count", o->count, "with --watch: stop after N reports (default: until interrupted)");
    stats->callback([=] {
        set([o, stats] {
            if (stats->count("--watch") == 0)
                return run({{"op", "stats"}}, o->json, [](const Json &b) { print_stats(b, nullptr); });
            double every = o->watch > 0 ? o->watch : 1;
            Reply prev = call({{"op", "stats"}});
            if (prev.exit_code != kOk)
                return report_failure(prev);
            for (int i = 0; o->count == 0 || i < o->count; i++) {
                std::this_thread::sleep_for(std::chrono::duration<double>(every));
                Reply cur = call({{"op", "stats"}});
                if (cur.exit_code != kOk)
                    return report_failure(cur);
                if (o->json)
                    std::cout << json_text(cur.body) << std::endl;
                else {
                    print_stats(cur.body, &prev.body);
                    std::cout << "--" << std::endl;
                }
                prev = cur;
            }
            return int(kOk);
        });
    });

    auto *reload = app.add_subcommand("reload", "Re-read the config file; nothing changes if it has any error");
    reload->add_flag("--json", o->json, "print the reply as JSON");
    reload->callback([=] {
        set([o] {
            return run({{"op", "reload"}}, o->json,
                       [](const Json &b) {
                           // The balancer counts generations of its published state; the agent, of its config.
                           std::cout << "reloaded";
                           if (b.contains("generation"))
                               std::cout << ": generation " << text(b["generation"]);
                           std::cout << "\n";
                       });
        });
    });

    auto *vip = app.add_subcommand("vip", "List, add or remove VIPs (changes last until the next reload)");
    vip->require_subcommand(1);
    auto *vip_list = vip->add_subcommand("list", "List the VIPs");
    vip_list->add_flag("--json", o->json, "print the reply as JSON");
    vip_list->callback([=] { set([o] { return run({{"op", "vip.list"}}, o->json, print_vips); }); });
    auto *vip_add = vip->add_subcommand("add", "Add a VIP");
    auto *vip_remove = vip->add_subcommand("remove", "Remove a VIP");
    for (auto *c : {vip_add, vip_remove}) {
        c->add_option("--address", o->address, "VIP address")->required();
        c->add_option("--port", o->port, "port")->required();
        c->add_option("--protocol", o->protocol, "tcp or udp (default tcp)");
        c->add_flag("--json", o->json, "print the reply as JSON");
    }
    vip_add->add_option("--pool", o->pool, "pool that serves it")->required();
    vip_add->add_option("--method", o->method, "gue, ipip or l2dsr (default gue)");
    vip_add->add_option("--affinity", o->affinity, "flow or client (default flow)");
    auto done = [](const Json &b) { std::cout << "applied: generation " << text(b["generation"]) << "\n"; };
    vip_add->callback([=] {
        set([o, done] {
            Json r{{"op", "vip.add"}, {"address", o->address}, {"port", o->port}, {"protocol", o->protocol}, {"pool", o->pool}};
            if (!o->method.empty())
                r["method"] = o->method;
            if (!o->affinity.empty())
                r["affinity"] = o->affinity;
            return run(r, o->json, done);
        });
    });
    vip_remove->callback([=] {
        set([o, done] {
            return run({{"op", "vip.remove"}, {"address", o->address}, {"port", o->port}, {"protocol", o->protocol}},
                       o->json, done);
        });
    });

    auto *backend = app.add_subcommand("backend", "List, add, remove, reweight, drain, enable or disable backends");
    backend->require_subcommand(1);
    auto *b_list = backend->add_subcommand("list", "List backends with health and bucket share");
    b_list->add_option("--pool", o->pool, "only this pool");
    b_list->add_flag("--json", o->json, "print the reply as JSON");
    b_list->callback([=] {
        set([o] {
            Json r{{"op", "backend.list"}};
            if (!o->pool.empty())
                r["pool"] = o->pool;
            return run(r, o->json, print_backends);
        });
    });
    struct Verb {
        const char *name, *op, *help;
    };
    for (Verb v : {Verb{"add", "backend.add", "Add a backend"}, Verb{"remove", "backend.remove", "Remove a backend"},
                   Verb{"set", "backend.set", "Change weight and/or state"},
                   Verb{"drain", "backend.drain", "No new sessions; established ones stay (weight 0)"},
                   Verb{"enable", "backend.enable", "Back to normal service"},
                   Verb{"disable", "backend.disable", "Not operational: its sessions move to their next server"}}) {
        auto *c = backend->add_subcommand(v.name, v.help);
        c->add_option("--pool", o->pool, "pool")->required();
        c->add_option("--id", o->id, "backend ID")->required();
        c->add_flag("--json", o->json, "print the reply as JSON");
        std::string op = v.op;
        if (op == "backend.add") {
            c->add_option("--address", o->address, "backend address")->required();
            c->add_option("--weight", o->weight, "weight 0..65535 (default 100)");
            c->add_option("--state", o->state, "enabled, drain or disabled (default enabled)");
            c->add_option("--mac", o->mac, "next-hop MAC (default: neighbour table)");
        }
        if (op == "backend.set") {
            c->add_option("--weight", o->weight, "new weight 0..65535");
            c->add_option("--state", o->state, "enabled, drain or disabled");
        }
        c->callback([=] {
            set([o, op, done] {
                Json r{{"op", op}, {"pool", o->pool}, {"id", o->id}};
                if (!o->address.empty())
                    r["address"] = o->address;
                if (o->weight >= 0)
                    r["weight"] = o->weight;
                if (!o->state.empty())
                    r["state"] = o->state;
                if (!o->mac.empty())
                    r["mac"] = o->mac;
                return run(r, o->json, done);
            });
        });
    }
}

}  // namespace understudy::cli
