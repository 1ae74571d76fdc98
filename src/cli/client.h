// understudyctl's side of the control socket: one JSON request line out, one reply line back.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace understudy::cli {

constexpr const char *kDefaultSocket = "/run/understudy/understudy.sock";

// Exit codes shared by every subcommand.
enum ExitCode { kOk = 0, kFailed = 1, kUsage = 2, kUnreachable = 3 };

// The socket path: --socket, else $UNDERSTUDY_SOCKET, else the default.
std::string &socket_path();

struct Reply {
    int exit_code = kOk;          // kOk, kFailed (the daemon said no) or kUnreachable
    nlohmann::ordered_json body;  // the reply object when the daemon answered
    std::string error;            // what to tell the user otherwise
};

Reply call(const nlohmann::json &request);

// Prints the error of a failed reply to stderr and returns its exit code.
int report_failure(const Reply &reply);

}  // namespace understudy::cli
