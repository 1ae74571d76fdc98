// understudy: the load balancer daemon (run) and the same pipeline over a capture (replay).
#include <CLI/CLI.hpp>

#include "daemon.h"
#include "replay.h"

int main(int argc, char **argv)
{
    CLI::App app{"understudy: kernel-bypass L4 load balancer"};
    app.require_subcommand(1);
    app.set_version_flag("--version", "understudy 0.1.0");

    understudy::ReplayOptions replay;
    auto *rp = app.add_subcommand("replay", "Run the data plane over a pcap file and write what it would transmit");
    rp->add_option("--config,-c", replay.config, "config file")->required();
    rp->add_option("--in", replay.in, "input capture (pcap or pcapng)")->required();
    rp->add_option("--out", replay.out, "output capture (pcap), overwritten")->required();
    rp->add_option("--down", replay.down, "server IDs to treat as not operational, comma-separated");
    rp->add_option("--port-mac", replay.port_mac,
                   "the balancer port's MAC in the capture: frames to other unicast MACs are dropped "
                   "(default: the net_pcap port's, 02:70:63:61:70:00)");
    rp->add_flag("--json", replay.json, "print the statistics as one JSON object");
    rp->add_option("eal", replay.eal_args, "EAL arguments after --, replacing the defaults");

    understudy::DaemonOptions daemon;
    auto *run = app.add_subcommand("run", "Run the load balancer");
    run->add_option("--config,-c", daemon.config, "config file")->required();
    run->add_option("eal", daemon.eal_args, "extra EAL arguments after --");

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError &e) {
        return app.exit(e) == 0 ? 0 : 2;
    }
    if (rp->parsed())
        return understudy::run_replay(replay);
    return understudy::run_daemon(daemon);
}
