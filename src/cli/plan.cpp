// understudyctl plan: what a new config would move, before it is applied. Offline from two config files, or
// live: the daemon runs the same plan_change() against its running config and current health.
#include <iostream>
#include <memory>
#include <string>

#include "core/config_diagnostics.h"
#include "daemon/json_text.h"
#include "client.h"
#include "commands.h"
#include "core/lookup.h"
#include "json/results.h"

namespace understudy::cli {

struct PlanOptions {
    std::string config, next, down;
    bool json = false;
};

// Offline, --down names server IDs in every pool, as lookup's --down does.
static std::set<std::pair<std::string, uint32_t>> down_pairs(const Config &config, const std::set<uint32_t> &ids)
{
    std::set<std::pair<std::string, uint32_t>> down;
    for (const Pool &p : config.pools)
        for (const Backend &b : p.backends)
            if (ids.count(b.id))
                down.emplace(p.name, b.id);
    return down;
}

static int print_plan(const PlanResult &plan, bool json)
{
    if (json)
        std::cout << json_text(to_json(plan)) << "\n";
    else
        std::cout << plan_text(plan);
    return 0;
}

static int run_live_plan(const PlanOptions &o)
{
    if (!o.down.empty()) {
        std::cerr << "plan: --down is for offline plans (--config); live plans use the daemon's health\n";
        return kUsage;
    }
    // Read once (a FIFO gives its text once; /dev/zero would never end) and checked here first, so errors
    // name the file as the user wrote it; the daemon gets the very text that was checked.
    auto text = read_config_text(o.next);
    if (!text) {
        std::cerr << text.error() << "\n";
        return kFailed;
    }
    if (auto next = parse_config(*text, o.next); !next) {
        std::cerr << next.error() << "\n";
        return kFailed;
    }
    Reply r = call({{"op", "plan"}, {"config_text", *text}, {"path", o.next}});
    if (r.exit_code != kOk)
        return report_failure(r);
    if (o.json) {
        r.body.erase("ok");
        r.body.erase("text");
        std::cout << json_text(r.body) << "\n";
    } else {
        std::cout << r.body["text"].get<std::string>();
    }
    return kOk;
}

static int run_plan(const PlanOptions &o)
{
    if (o.config.empty())
        return run_live_plan(o);
    std::set<uint32_t> down_ids;
    if (!o.down.empty()) {
        auto ids = parse_id_list(o.down);
        if (!ids) {
            std::cerr << "--down: " << ids.error() << "\n";
            return 2;
        }
        down_ids = *ids;
    }
    auto current = load_config(o.config);
    auto next = load_config(o.next);
    if (!current || !next) {
        if (!current)
            std::cerr << current.error() << "\n";
        if (!next)
            std::cerr << next.error() << "\n";
        return 1;
    }
    auto plan = plan_change(*current, *next, down_pairs(*current, down_ids));
    if (!plan) {
        std::cerr << plan.error() << "\n";
        return 1;
    }
    return print_plan(*plan, o.json);
}

void add_plan_command(CLI::App &app, Action &action)
{
    auto *cmd = app.add_subcommand("plan", "Show what a new config would move: per pool and backend, against the ideal");
    auto o = std::make_shared<PlanOptions>();
    cmd->add_option("--config,-c", o->config, "current config file (offline); without it, ask the running daemon");
    cmd->add_option("--new,-n", o->next, "the config to plan for")->required();
    cmd->add_option("--down", o->down, "server IDs not operational now (and after), comma-separated");
    cmd->add_flag("--json", o->json, "print one JSON object");
    cmd->callback([&action, o] { action = [o] { return run_plan(*o); }; });
}

}  // namespace understudy::cli
