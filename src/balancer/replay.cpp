// understudy replay: builds the tables from a config (with --down), runs one worker over a net_pcap port
// reading IN and writing OUT, and prints the statistics when the input is drained.
#include "replay.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>

#include "core/lookup.h"
#include "daemon/health.h"
#include "daemon/json_text.h"
#include "core/table.h"
#include "dataplane/dataplane.h"
#include "capture.h"
#include "report.h"

namespace understudy {

// Copies the output that net_pcap wrote to where the user asked, every write checked.
static Status copy_out(const std::string &from, const std::string &to)
{
    std::unique_ptr<FILE, int (*)(FILE *)> in(fopen(from.c_str(), "rb"), fclose);
    if (!in)
        return Error{"cannot read the output the port wrote (" + from + ")"};
    FILE *raw = fopen(to.c_str(), "wb");
    if (!raw)
        return Error{"--out: cannot write " + to + ": " + std::strerror(errno)};
    char buf[1 << 16];
    size_t n;
    bool ok = true;
    while (ok && (n = fread(buf, 1, sizeof buf, in.get())) > 0)
        ok = fwrite(buf, 1, n, raw) == n;
    int write_errno = errno;
    ok = ok && !ferror(in.get()) && fflush(raw) == 0;
    if (!ok)
        write_errno = errno;
    if (fclose(raw) != 0 && ok) {
        ok = false;
        write_errno = errno;
    }
    if (!ok)
        return Error{"--out: writing " + to + " failed: " + std::strerror(write_errno)};
    return Ok{};
}

// The same file (device and inode), however it is named: writing the output must never truncate the input.
static bool same_file(const std::string &a, const std::string &b)
{
    struct stat x {}, y {};
    return stat(a.c_str(), &x) == 0 && stat(b.c_str(), &y) == 0 && x.st_dev == y.st_dev && x.st_ino == y.st_ino;
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
    if (same_file(o.in, o.out)) {
        std::cerr << "replay: --out " << o.out << " is the input capture; give another file\n";
        return 2;
    }
    struct stat out_st {};
    if (stat(o.out.c_str(), &out_st) == 0 && S_ISDIR(out_st.st_mode)) {
        std::cerr << "replay: --out " << o.out << " is a directory\n";
        return 2;
    }
    // net_pcap reads and writes files of ours (its device arguments cannot hold every path); the output is
    // copied to --out at the end, every write checked.
    char tmpl[] = "/tmp/understudy-replay-XXXXXX";
    if (!mkdtemp(tmpl)) {
        std::cerr << "replay: cannot create a directory in /tmp: " << std::strerror(errno) << "\n";
        return 2;
    }
    std::string work = tmpl;
    struct Cleanup {
        std::string dir;
        ~Cleanup() { std::filesystem::remove_all(dir); }
    } cleanup{work};
    const std::string in_copy = work + "/in.pcap", out_copy = work + "/out.pcap";
    auto capture = normalize_capture(o.in, in_copy);
    if (!capture) {
        std::cerr << "--in: " << capture.error() << "\n";
        return 2;
    }
    long records = long(capture->records);

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
    dp::PortSpec port{"pcap", "net_pcap_replay,rx_pcap=" + in_copy + ",tx_pcap=" + out_copy, 1, false, "", "", {}};
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
        // Every record read is either forwarded or dropped, so the worker returns after `records`; should the
        // port ever deliver fewer, the replay stops after 5 s without progress instead of waiting forever.
        uint64_t seen = 0, last_progress = monotonic_ns();
        for (;;) {
            uint64_t rx = dataplane.stats().counters[US_CTR_rx_packets];
            if (rx >= uint64_t(records))
                break;
            if (rx != seen)
                seen = rx, last_progress = monotonic_ns();
            else if (monotonic_ns() - last_progress > 5'000'000'000ull) {
                dataplane.stop();
                dataplane.close();
                std::cerr << "replay: the port delivered " << rx << " of " << records << " records and then nothing "
                          << "for 5 s (the others could not be received: see rx_errors); stopped\n";
                return 1;
            }
            usleep(10'000);
        }
        dataplane.wait();
    }
    dp::StatsTotal stats = dataplane.stats();
    auto json = stats_json(*config, *dataplane.current(), stats, dataplane.port_stats());
    std::string text = stats_text(*config, *dataplane.current(), stats, dataplane.port_stats());
    dataplane.close();  // flushes net_pcap's output
    if (auto st = copy_out(out_copy, o.out); !st) {
        std::cerr << "replay: " << st.error() << "\n";
        return 1;
    }
    if (o.json)
        std::cout << json_text(json) << "\n";
    else
        std::cout << "replayed " << records << " packets from " << o.in << " into " << o.out << "\n" << text;
    return 0;
}

}  // namespace understudy
