// Summing per-lcore counters, and their names from the X-macro lists.
#include "stats.h"

namespace understudy::dp {

void StatsTotal::add(const LcoreStats &s)
{
    for (int i = 0; i < US_CTR_MAX; i++)
        counters[i] += read(s.counters[i]);
    for (int i = 0; i < US_DROP_MAX; i++)
        drops[i] += read(s.drops[i]);
    for (uint32_t i = 0; i < kMaxVips; i++) {
        vip_packets[i] += read(s.vip_packets[i]);
        vip_bytes[i] += read(s.vip_bytes[i]);
        for (int c = 0; c < US_QUIC_MAX; c++)
            vip_quic[i][c] += read(s.vip_quic[i][c]);
    }
    for (uint32_t i = 0; i < kMaxBackendStats; i++) {
        backend_packets[i] += read(s.backend_packets[i]);
        backend_bytes[i] += read(s.backend_bytes[i]);
    }
}

uint64_t StatsTotal::total_drops() const
{
    uint64_t n = 0;
    for (auto d : drops)
        n += d;
    return n;
}

static constexpr std::string_view kCounterNames[] = {
#define US_X(name, help) #name,
    US_COUNTERS(US_X)
#undef US_X
};
static constexpr std::string_view kCounterHelp[] = {
#define US_X(name, help) help,
    US_COUNTERS(US_X)
#undef US_X
};
static constexpr std::string_view kDropNames[] = {
#define US_X(name, help) #name,
    US_DROP_REASONS(US_X)
#undef US_X
};
static constexpr std::string_view kDropHelp[] = {
#define US_X(name, help) help,
    US_DROP_REASONS(US_X)
#undef US_X
};

static constexpr std::string_view kQuicNames[] = {
#define US_X(name, help) #name,
    US_QUIC_COUNTERS(US_X)
#undef US_X
};
static constexpr std::string_view kQuicHelp[] = {
#define US_X(name, help) help,
    US_QUIC_COUNTERS(US_X)
#undef US_X
};

std::string_view counter_name(int c) { return kCounterNames[c]; }
std::string_view counter_help(int c) { return kCounterHelp[c]; }
std::string_view drop_name(int r) { return kDropNames[r]; }
std::string_view drop_help(int r) { return kDropHelp[r]; }
std::string_view quic_counter_name(int c) { return kQuicNames[c]; }
std::string_view quic_counter_help(int c) { return kQuicHelp[c]; }

}  // namespace understudy::dp
