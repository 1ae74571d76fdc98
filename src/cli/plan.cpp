// understudyctl plan: what a new config would move, before it is applied. Offline, from two config files;
// the live mode (health and current config from the daemon) will reuse plan_change() and the printers.
#include <iostream>
#include <memory>
#include <string>

#include "commands.h"
#include "core/lookup.h"
#include "core/plan.h"

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
        std::cout << to_json(plan).dump() << "\n";
    else
        std::cout << plan_text(plan);
    return 0;
}

static int run_plan(const PlanOptions &o)
{
    if (o.config.empty()) {
        std::cerr << "plan: live mode needs the daemon (not yet available); give --config\n";
        return 2;
    }
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
    cmd->add_option("--config,-c", o->config, "current config file (offline mode)");
    cmd->add_option("--new,-n", o->next, "the config to plan for")->required();
    cmd->add_option("--down", o->down, "server IDs not operational now (and after), comma-separated");
    cmd->add_flag("--json", o->json, "print one JSON object");
    cmd->callback([&action, o] { action = [o] { return run_plan(*o); }; });
}

}  // namespace understudy::cli
