// understudy-microbench: Google Benchmark over the fast path's parts and the table builder, after an EAL
// without hugepages (--no-huge --in-memory) and a small mbuf pool. Run by tools/bench (--micro); alone:
//   understudy-microbench [--tsc-hz] [--lcore N] [Google Benchmark flags, e.g. --benchmark_filter=encap]
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "bench_env.h"

namespace understudy::bench {

static rte_mempool *g_pool = nullptr;

rte_mempool *mbuf_pool() { return g_pool; }

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = uint8_t(v >> 8);
    p[1] = uint8_t(v);
}

static uint16_t source_port(uint32_t flow) { return uint16_t(1024 + (uint64_t(flow) * 7919) % 64000); }

void set_flow(uint8_t *f, bool v6, uint32_t flow)
{
    if (v6) {
        uint8_t *src = f + 14 + 8;  // 2001:db8:1:: + flow
        for (int i = 0; i < 4; i++)
            src[12 + i] = uint8_t(flow >> (24 - 8 * i));
        put16(f + 14 + 40, source_port(flow));
    } else {
        uint32_t a = (10u << 24) + flow;
        uint8_t *src = f + 14 + 12;
        for (int i = 0; i < 4; i++)
            src[i] = uint8_t(a >> (24 - 8 * i));
        put16(f + 14 + 20, source_port(flow));
    }
}

std::vector<uint8_t> make_frame(bool v6, uint32_t flow)
{
    static const uint8_t mac[12] = {2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1};
    std::vector<uint8_t> f(v6 ? 74 : 60, 0);
    std::memcpy(f.data(), mac, 12);
    uint8_t *ip = f.data() + 14;
    if (v6) {
        put16(f.data() + 12, 0x86dd);
        ip[0] = 0x60;
        put16(ip + 4, 20);  // UDP header + 12 bytes of payload
        ip[6] = 17;
        ip[7] = 64;
        const uint8_t src[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 1};
        const uint8_t dst[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10};
        std::memcpy(ip + 8, src, 16);
        std::memcpy(ip + 24, dst, 16);
        put16(ip + 40 + 2, kVipPort);
        put16(ip + 40 + 4, 20);
    } else {
        put16(f.data() + 12, 0x0800);
        ip[0] = 0x45;
        put16(ip + 2, 40);
        put16(ip + 6, 0x4000);
        ip[8] = 64;
        ip[9] = 6;
        const uint8_t dst[4] = {192, 0, 2, 10};
        std::memcpy(ip + 16, dst, 4);
        put16(ip + 20 + 2, kVipPort);
        ip[20 + 12] = 5 << 4;  // data offset
        ip[20 + 13] = 0x10;    // ACK
    }
    set_flow(f.data(), v6, flow);
    return f;
}

std::string bench_config(bool v6, uint32_t backends, uint32_t table_bits, const std::string &method, bool conn_table)
{
    std::string c = "[cluster]\nsecret = \"000102030405060708090a0b0c0d0e0f\"\n[health]\nkind = \"none\"\n";
    c += "[[pool]]\nname = \"bench\"\ntable_bits = " + std::to_string(table_bits) + "\n";
    for (uint32_t i = 1; i <= backends; i++) {
        std::string addr = v6 ? "2001:db8:2::" + std::to_string(i)
                              : "10.1." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1);
        c += "[[pool.backend]]\nid = " + std::to_string(i) + "\naddress = \"" + addr + "\"\n";
    }
    c += "[[vip]]\naddress = \"" + std::string(v6 ? "2001:db8::10" : "192.0.2.10") + "\"\nport = " +
         std::to_string(kVipPort) + "\nprotocol = \"" + (v6 ? "udp" : "tcp") + "\"\npool = \"bench\"\nmethod = \"" +
         method + "\"\nconn_table = " + (conn_table ? "true" : "false") + "\n";
    return c;
}

}  // namespace understudy::bench

int main(int argc, char **argv)
{
    bool tsc_only = false;
    std::string lcore = "0";
    std::vector<char *> rest{argv[0]};
    for (int i = 1; i < argc; i++) {
        if (std::strcmp(argv[i], "--tsc-hz") == 0)
            tsc_only = true;
        else if (std::strcmp(argv[i], "--lcore") == 0 && i + 1 < argc)
            lcore = argv[++i];
        else
            rest.push_back(argv[i]);
    }
    // The benchmarks run on the main lcore. --no-huge cannot go with --in-memory: --no-shconf and a
    // per-process prefix keep runs apart instead. -m covers the mbuf pool, one 2^20-entry connection table
    // and the VIP hash (tables and snapshots live on the C++ heap).
    std::vector<std::string> eal = {"understudy-microbench", "--no-huge", "--no-shconf", "-m", "512", "--no-pci",
                                    "--no-telemetry", "--file-prefix=understudy-microbench-" + std::to_string(getpid()),
                                    "-l", lcore, "--log-level=lib.*:error"};
    std::vector<char *> eal_argv;
    for (auto &a : eal)
        eal_argv.push_back(a.data());
    if (rte_eal_init(int(eal_argv.size()), eal_argv.data()) < 0) {
        std::fprintf(stderr, "understudy-microbench: EAL initialisation failed: %s\n", rte_strerror(rte_errno));
        return 1;
    }
    if (tsc_only) {
        std::printf("%llu\n", static_cast<unsigned long long>(rte_get_tsc_hz()));
        rte_eal_cleanup();
        return 0;
    }
    understudy::bench::g_pool =
        rte_pktmbuf_pool_create("bench", 4095, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, int(rte_socket_id()));
    if (!understudy::bench::g_pool) {
        std::fprintf(stderr, "understudy-microbench: cannot create the mbuf pool: %s\n", rte_strerror(rte_errno));
        return 1;
    }
    benchmark::AddCustomContext("tsc_hz", std::to_string(rte_get_tsc_hz()));
    benchmark::AddCustomContext("burst", std::to_string(understudy::bench::kBurst));
    int n = int(rest.size());
    rest.push_back(nullptr);
    benchmark::Initialize(&n, rest.data());
    if (benchmark::ReportUnrecognizedArguments(n, rest.data()))
        return 2;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    understudy::bench::release_fastpath_state();
    rte_mempool_free(understudy::bench::g_pool);
    rte_eal_cleanup();
    return 0;
}
