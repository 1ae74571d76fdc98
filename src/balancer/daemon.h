// understudy run: the daemon. The control thread (this one) owns config, tables and publication;
// worker lcores forward.
#pragma once

#include <string>
#include <vector>

namespace understudy {

struct DaemonOptions {
    std::string config;
    std::vector<std::string> eal_args;  // appended to [dataplane] eal_args
};

int run_daemon(const DaemonOptions &options);

}  // namespace understudy
