// understudyctl subcommands. Each registers itself on the CLI11 app and returns the process exit code:
// 0 success, 1 the thing checked is invalid or failed, 2 bad usage or unreadable input.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace understudy::cli {

using Action = std::function<int()>;

void add_check_command(CLI::App &app, Action &action);
void add_lookup_command(CLI::App &app, Action &action);  // offline, or live with --socket
void add_plan_command(CLI::App &app, Action &action);    // offline, or live with --socket
void add_live_commands(CLI::App &app, Action &action);   // status, vip, backend, health, stats, reload
void add_quic_cid_command(CLI::App &app, Action &action); // QUIC-LB connection IDs: encode, decode (offline)

}  // namespace understudy::cli
