// understudy replay: builds the tables from a config (with --down), runs one worker over a net_pcap port
// reading IN and writing OUT, and prints the statistics when the input is drained.
#include "replay.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>

#include "core/lookup.h"
#include "core/table.h"
#include "dataplane/dataplane.h"
#include "report.h"

namespace understudy {

long count_pcap_records(const std::string &path, std::string &error)
{
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        error = "cannot open " + path;
        return -1;
    }
    uint8_t header[24];
    if (!in.read(reinterpret_cast<char *>(header), sizeof header)) {
        error = path + ": shorter than a pcap header";
        return -1;
    }
    uint32_t magic = uint32_t(header[0]) | uint32_t(header[1]) << 8 | uint32_t(header[2]) << 16 | uint32_t(header[3]) << 24;
    bool swapped;
    if (magic == 0xa1b2c3d4 || magic == 0xa1b23c4d)
        swapped = false;
    else if (magic == 0xd4c3b2a1 || magic == 0x4d3cb2a1)
        swapped = true;
    else {
        error = path + ": not a pcap file (pcapng is not supported: convert with editcap -F pcap)";
        return -1;
    }
    in.seekg(0, std::ios::end);
    const std::streamoff size = in.tellg();
    in.seekg(sizeof header, std::ios::beg);
    long n = 0;
    uint8_t rec[16];
    while (in.read(reinterpret_cast<char *>(rec), sizeof rec)) {
        uint32_t len = swapped ? uint32_t(rec[8]) << 24 | uint32_t(rec[9]) << 16 | uint32_t(rec[10]) << 8 | rec[11]
                               : uint32_t(rec[8]) | uint32_t(rec[9]) << 8 | uint32_t(rec[10]) << 16 | uint32_t(rec[11]) << 24;
        in.seekg(len, std::ios::cur);
        if (!in || in.tellg() > size) {
            error = path + ": record " + std::to_string(n + 1) + " is truncated";
            return -1;
        }
        n++;
    }
    return n;
}

int run_replay(const ReplayOptions &o)
{
    auto config = load_config(o.config);
    if (!config) {
        std::cerr << config.error() << "\n";
        return 2;
    }
    std::set<uint32_t> down;
    if (!o.down.empty()) {
        auto ids = parse_id_list(o.down);
        if (!ids) {
            std::cerr << "--down: " << ids.error() << "\n";
            return 2;
        }
        down = *ids;
    }
    std::string error;
    long records = count_pcap_records(o.in, error);
    if (records < 0) {
        std::cerr << "--in: " << error << "\n";
        return 2;
    }
    if (o.in.find(',') != std::string::npos || o.out.find(',') != std::string::npos) {
        std::cerr << "replay: file names must not contain ',' (they become DPDK device arguments)\n";
        return 2;
    }
    if (FILE *f = fopen(o.out.c_str(), "wb"))
        fclose(f);
    else {
        std::cerr << "--out: cannot write " << o.out << "\n";
        return 2;
    }

    std::vector<std::unique_ptr<PoolTable>> tables;
    std::vector<const PoolTable *> table_ptrs;
    for (const Pool &pool : config->pools) {
        tables.push_back(std::make_unique<PoolTable>(config->secret, pool.table_bits));
        tables.back()->build(members_of(pool, down));
        table_ptrs.push_back(tables.back().get());
    }

    dp::DataplaneOptions dopt;
    dopt.eal_args = o.eal_args;
    if (dopt.eal_args.empty()) {
        dopt.eal_args = {"--in-memory", "--no-pci", "--no-telemetry", "-l", "0,1", "--log-level=lib.*:warning",
                         "--file-prefix=understudy-replay-" + std::to_string(getpid())};
    }
    dp::PortSpec port{"pcap", "net_pcap_replay,rx_pcap=" + o.in + ",tx_pcap=" + o.out, 1, false, "", "", {}};
    if (!o.port_mac.empty()) {
        rte_ether_addr mac;
        if (rte_ether_unformat_addr(o.port_mac.c_str(), &mac) != 0 || !rte_is_unicast_ether_addr(&mac)) {
            std::cerr << "--port-mac: " << o.port_mac << " is not a unicast MAC address (aa:bb:cc:dd:ee:ff)\n";
            return 2;
        }
        port.mac = mac;
    }
    dopt.ports.push_back(port);
    dopt.worker_lcores = {};
    dopt.non_vip = NonVipPolicy::drop;  // counted, not written
    dopt.conn_table_size = config->dataplane.conn_table_size;
    dopt.mbufs = config->dataplane.mbufs;
    dopt.mtu = config->dataplane.mtu;
    dopt.data_room = config->dataplane.data_room();
    dopt.stop_after_rx = uint64_t(records);

    dp::Dataplane dataplane;
    if (auto st = dataplane.init(dopt); !st) {
        std::cerr << "replay: " << st.error() << "\n";
        return 2;
    }
    dp::StatIndex stat_index;
    dp::SnapshotOptions sopt;
    sopt.port_mac = dataplane.port_mac(0);
    sopt.stat_index = &stat_index;
    auto snapshot = dp::build_snapshot(*config, table_ptrs, sopt, 1);
    if (!snapshot) {
        std::cerr << "replay: " << snapshot.error() << "\n";
        return 2;
    }
    dataplane.publish(std::move(*snapshot));
    if (records > 0) {
        if (auto st = dataplane.start(); !st) {
            std::cerr << "replay: " << st.error() << "\n";
            return 2;
        }
        dataplane.wait();
    }
    dp::StatsTotal stats = dataplane.stats();
    if (o.json)
        std::cout << stats_json(*config, *dataplane.current(), stats, dataplane.port_stats()).dump() << "\n";
    else
        std::cout << "replayed " << records << " packets from " << o.in << " into " << o.out << "\n"
                  << stats_text(*config, *dataplane.current(), stats, dataplane.port_stats());
    dataplane.close();
    return 0;
}

}  // namespace understudy
