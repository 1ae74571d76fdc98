// Micro-benchmarks of the control plane's table builder (src/core/table.h): a full build of a pool's table,
// one health change and one weight change applied incrementally, and the memory a pool's table takes.
#include <sched.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bench_env.h"
#include "core/table.h"

namespace understudy::bench {
namespace {

const Secret kSecret = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

std::vector<Member> pool_members(uint32_t n)
{
    std::vector<Member> m;
    for (uint32_t i = 1; i <= n; i++)
        m.push_back(Member{i, 100, true, true});
    return m;
}

// threads = 0: one thread per CPU. This benchmark runs on EAL's main thread, which EAL pins to the main
// lcore's CPU; spread = true widens the affinity to every online CPU for the build, as the daemon does
// (src/balancer/controller.cpp); spread = false leaves the threads on that one CPU.
void build(benchmark::State &state, uint32_t backends, uint32_t bits, unsigned threads, bool spread)
{
    cpu_set_t saved, all;
    sched_getaffinity(0, sizeof saved, &saved);
    if (spread) {
        CPU_ZERO(&all);
        for (long c = 0; c < sysconf(_SC_NPROCESSORS_ONLN); c++)
            CPU_SET(int(c), &all);
        sched_setaffinity(0, sizeof all, &all);
    }
    size_t memory = 0;
    for (auto _ : state) {
        PoolTable t(kSecret, bits);
        t.build(pool_members(backends), threads);
        memory = t.memory_bytes();
        benchmark::DoNotOptimize(t.entries().data());
    }
    if (spread)
        sched_setaffinity(0, sizeof saved, &saved);
    state.counters["memory_bytes"] = double(memory);
    state.counters["entries_bytes"] = double((size_t(1) << bits) * sizeof(us_bucket_entry));
}

// Built tables, kept between the change benchmarks of the same size (a build of 10,000 x 2^20 takes long).
struct Built {
    std::unique_ptr<PoolTable> table;
    uint32_t cursor = 0;
    int64_t changed_slot = -1;  // the one backend currently down (or reweighted), -1 if none
};
std::map<std::pair<uint32_t, uint32_t>, Built> g_built;

Built &built(uint32_t backends, uint32_t bits)
{
    Built &b = g_built[{backends, bits}];
    if (!b.table) {
        b.table = std::make_unique<PoolTable>(kSecret, bits);
        b.table->build(pool_members(backends));
    }
    return b;
}

// One change per iteration, never more than one backend changed at a time: a backend goes down (its weight
// goes from 100 to 50), then the next iteration brings it back, then another one goes, in a scattered order.
void change(benchmark::State &state, uint32_t backends, uint32_t bits, bool health)
{
    Built &b = built(backends, bits);
    uint64_t buckets = 0;
    for (auto _ : state) {
        uint32_t slot;
        bool undo = b.changed_slot >= 0;
        if (undo)
            slot = uint32_t(b.changed_slot);
        else
            slot = uint32_t((uint64_t(b.cursor++) * 7919) % backends);
        const std::vector<uint32_t> &changed =
            health ? b.table->set_operational(slot, undo) : b.table->set_weight(slot, undo ? 100 : 50);
        b.changed_slot = undo ? -1 : int64_t(slot);
        buckets += changed.size();
    }
    state.counters["buckets_changed"] = state.iterations() ? double(buckets) / double(state.iterations()) : 0;
    state.counters["memory_bytes"] = double(b.table->memory_bytes());
}

int register_all()
{
    for (uint32_t bits : {16u, 20u}) {
        for (uint32_t n : {16u, 1000u, 10000u}) {
            std::string size = "/backends:" + std::to_string(n) + "/bits:" + std::to_string(bits);
            benchmark::RegisterBenchmark(("table_build" + size).c_str(), build, n, bits, 0u, true)
                ->Unit(benchmark::kMillisecond)
                ->MeasureProcessCPUTime()
                ->UseRealTime();
        }
    }
    benchmark::RegisterBenchmark("table_build/backends:1000/bits:20/one_cpu", build, 1000u, 20u, 0u, false)
        ->Unit(benchmark::kMillisecond)
        ->MeasureProcessCPUTime()
        ->UseRealTime();
    benchmark::RegisterBenchmark("table_build/backends:1000/bits:20/threads:1", build, 1000u, 20u, 1u, true)
        ->Unit(benchmark::kMillisecond)
        ->MeasureProcessCPUTime()
        ->UseRealTime();
    for (uint32_t bits : {16u, 20u}) {
        for (uint32_t n : {16u, 1000u, 10000u}) {
            std::string size = "/backends:" + std::to_string(n) + "/bits:" + std::to_string(bits);
            benchmark::RegisterBenchmark(("health_change" + size).c_str(), change, n, bits, true)
                ->Unit(benchmark::kMicrosecond);
            benchmark::RegisterBenchmark(("weight_change" + size).c_str(), change, n, bits, false)
                ->Unit(benchmark::kMicrosecond);
        }
    }
    return 0;
}

const int registered = register_all();

}  // namespace
}  // namespace understudy::bench
