// understudy replay: the real pipeline (EAL, net_pcap port, a worker lcore) over a capture.
#pragma once

#include <string>
#include <vector>

namespace understudy {

struct ReplayOptions {
    std::string config, in, out, down;
    std::string port_mac;  // the MAC the capture's frames were sent to ("" = the net_pcap port's own)
    bool json = false;
    std::vector<std::string> eal_args;  // replaces the defaults when given
};

int run_replay(const ReplayOptions &options);

}  // namespace understudy
