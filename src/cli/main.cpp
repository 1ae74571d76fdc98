// understudyctl: the operator's command line. Offline commands read a config file; live ones (later) talk
// to the daemon's control socket.
#include <cstdio>

#include "client.h"
#include "commands.h"

int main(int argc, char **argv)
{
    CLI::App app{"understudyctl: inspect and operate the understudy load balancer"};
    app.require_subcommand(1);
    app.set_version_flag("--version", "understudyctl 0.1.0");
    app.fallthrough();  // --socket may come after the subcommand too
    app.add_option("--socket", understudy::cli::socket_path(),
                   "control socket of the daemon (default $UNDERSTUDY_SOCKET or /run/understudy/understudy.sock)");
    understudy::cli::Action action;
    understudy::cli::add_check_command(app, action);
    understudy::cli::add_lookup_command(app, action);
    understudy::cli::add_plan_command(app, action);
    understudy::cli::add_live_commands(app, action);
    understudy::cli::add_quic_cid_command(app, action);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError &e) {
        int rc = app.exit(e);
        return rc == 0 ? 0 : 2;
    }
    return action ? action() : 2;
}
