// understudy-agent: loads and attaches the backend XDP program, keeps its maps in step with this host's
// view (health probes, table builder), answers the same kind of control socket as the balancer, and
// detaches on SIGINT/SIGTERM. SIGHUP reloads the config.
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstring>
#include <utility>

#include "agent.h"
#include "daemon/api.h"
#include "daemon/control_loop.h"
#include "daemon/log.h"
#include "daemon/notify.h"
#include "json/results.h"

namespace understudy {

static void log(const std::string &msg) { write_log(LogPriority::info, "understudy-agent: " + msg + "\n"); }
static void log_warning(const std::string &msg) { write_log(LogPriority::warning, "understudy-agent: " + msg + "\n"); }
static void log_error(const std::string &msg) { write_log(LogPriority::error, "understudy-agent: " + msg + "\n"); }

// The agent's control API: the read-only operations of the balancer's, with its own view, and reload.
class AgentApi : public ApiHandler {
  public:
    using Reload = std::function<void(std::function<void(Status)>)>;
    AgentApi(Agent &agent, Reload reload) : agent_(agent), reload_(std::move(reload)) {}

    bool start(const std::string &op, const nlohmann::json &, Completion done) override
    {
        if (op != "reload")
            return false;
        reload_([this, done](Status s) {
            if (!s)
                return done(Error{s.error()});
            done(Json{{"reloaded", true}, {"generation", agent_.generation()}});
        });
        return true;
    }

    Result<nlohmann::ordered_json> handle(const std::string &op, const nlohmann::json &r) override
    {
        auto pool = [&r]() -> std::string {
            if (!r.contains("pool"))
                return "";
            if (!r["pool"].is_string())
                throw std::invalid_argument("field \"pool\" must be a string");
            return r["pool"].get<std::string>();
        };
        if (op == "status")
            return agent_.status_json();
        if (op == "backend.list")
            return Json{{"backends", agent_.backends_json(pool())}};
        if (op == "health")
            return Json{{"health", agent_.health_json(pool())}};
        if (op == "stats")
            return agent_.stats_json();
        if (op == "lookup")
            return lookup_request(Lookup(agent_.config(), agent_.down_pairs()), r);
        return Error{"unknown op \"" + op + "\" for the agent; known: status, backend.list, health, stats, lookup, reload"};
    }

  private:
    Agent &agent_;
    Reload reload_;
};

static int run(const std::string &path, const std::string &socket_override)
{
    auto config = load_config(path);
    if (!config) {
        write_log(LogPriority::error, config.error() + "\n");
        return 2;
    }
    if (auto s = validate_for_agent(*config); !s) {
        write_log(LogPriority::error, s.error() + "\n");
        return 2;
    }
    int sfd = block_control_signals();
    raise_descriptor_limit();

    EventLoop loop;
    Agent agent(loop, log);
    std::string socket = socket_override.empty() ? config->agent.socket : socket_override;
    if (auto s = agent.start(std::move(*config)); !s) {
        log_error(s.error());
        return 1;
    }
    AgentApi::Reload reload = [&](std::function<void(Status)> done) {
        auto next = load_config(path);
        if (!next)
            return done(Error{next.error()});
        agent.change(std::move(*next), "reload", std::move(done));
    };
    AgentApi handler(agent, reload);
    ApiServer api(loop, handler);
    if (auto s = api.listen(socket, ""); !s) {
        log_error(s.error());
        return 1;
    }
    log("control socket " + socket);
    // Ready: the program is attached with this host's view in its maps, and the control socket answers.
    notify::send("READY=1\nSTATUS=attached to " + agent.config().agent.interface + "; control socket " + socket);
    // Housekeeping every 500 ms: next hops of the backends this host forwards to, maps a write left behind.
    // A SIGHUP while a change is being built is kept and served once that change is live; the first waiting
    // SIGHUP's done (it logs the outcome and tells the service manager READY=1) is kept for that reload.
    std::function<void(Status)> sighup_waiting;
    AgentApi::Reload sighup = [&](std::function<void(Status)> done) {
        if (!agent.changing())
            return reload(std::move(done));
        if (!sighup_waiting)
            sighup_waiting = std::move(done);
        log("SIGHUP while a change is being built: the file is read again once that change is live");
    };
    auto after_events = [&] {
        agent.flush_health();
        if (sighup_waiting && !agent.changing())
            reload(std::exchange(sighup_waiting, nullptr));
    };
    ControlLoop{loop, sfd, agent.health(), sighup, log, 500,
                [&] {
                    agent.refresh_neighbors();
                    api.sweep(monotonic_ns() / 1'000'000);
                },
                after_events, &agent.pauses(), log_warning}
        .run();
    agent.stop();
    ::close(sfd);
    return 0;
}

}  // namespace understudy

int main(int argc, char **argv)
{
    CLI::App app{"understudy-agent: the backend side of understudy (XDP re-check, forward, decapsulate)"};
    std::string config, socket;
    app.add_option("--config,-c", config, "config file (the cluster's, with an [agent] section)")->required();
    app.add_option("--socket", socket, "control socket, instead of [agent] socket (several agents on one host)");
    app.set_version_flag("--version", "understudy-agent 0.1.0");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError &e) {
        return app.exit(e) == 0 ? 0 : 2;
    }
    return understudy::run(config, socket);
}
