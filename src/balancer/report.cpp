// Formatting of the summed statistics for understudy replay (and later the control API).
#include "report.h"

#include <cstdio>
#include <cstring>
#include <sstream>

namespace understudy {

static std::string vip_name(const Vip &v)
{
    return Endpoint{v.address, v.port}.str() + "/" + std::string(to_string(v.protocol));
}

static nlohmann::ordered_json port_json(const dp::PortStats &p)
{
    return {{"port", p.name},          {"rx_packets", p.rx_packets}, {"rx_bytes", p.rx_bytes},
            {"rx_missed", p.rx_missed}, {"rx_errors", p.rx_errors},   {"rx_nombuf", p.rx_nombuf},
            {"tx_packets", p.tx_packets}, {"tx_bytes", p.tx_bytes},   {"tx_errors", p.tx_errors}};
}

nlohmann::ordered_json stats_json(const Config &config, const dp::Snapshot &snapshot, const dp::StatsTotal &stats,
                                  const std::vector<dp::PortStats> &ports)
{
    nlohmann::ordered_json j;
    for (int c = 0; c < US_CTR_MAX; c++)
        j["counters"][std::string(dp::counter_name(c))] = stats.counters[c];
    for (int d = 0; d < US_DROP_MAX; d++)
        j["drops"][std::string(dp::drop_name(d))] = stats.drops[d];
    j["ports"] = nlohmann::ordered_json::array();
    for (const dp::PortStats &p : ports)
        j["ports"].push_back(port_json(p));
    j["vips"] = nlohmann::ordered_json::array();
    for (size_t i = 0; i < config.vips.size() && i < dp::kMaxVips; i++) {
        const Vip &v = config.vips[i];
        uint16_t index = snapshot.vips[i].stat_index;
        j["vips"].push_back({{"vip", vip_name(v)}, {"pool", v.pool}, {"packets", stats.vip_packets[index]},
                             {"bytes", stats.vip_bytes[index]}});
        if (!v.quic_lb.empty())  // QUIC VIPs only: the others' output stays as it was
            for (int c = 0; c < dp::US_QUIC_MAX; c++)
                j["vips"].back()["quic"][std::string(dp::quic_counter_name(c))] = stats.vip_quic[index][c];
    }
    j["backends"] = nlohmann::ordered_json::array();
    for (size_t p = 0; p < config.pools.size() && p < snapshot.backends.size(); p++) {
        for (const dp::Backend &b : snapshot.backends[p]) {
            if (b.id == 0)
                continue;  // a free slot
            Address a;
            std::memcpy(a.bytes.data(), b.addr, 16);
            j["backends"].push_back({{"pool", config.pools[p].name}, {"id", b.id}, {"address", a.str()},
                                     {"operational", bool(b.operational)},
                                     {"packets", stats.backend_packets[b.stat_index]},
                                     {"bytes", stats.backend_bytes[b.stat_index]}});
        }
    }
    return j;
}

std::string stats_text(const Config &config, const dp::Snapshot &snapshot, const dp::StatsTotal &stats,
                       const std::vector<dp::PortStats> &ports)
{
    std::ostringstream out;
    auto j = stats_json(config, snapshot, stats, ports);
    char line[256];
    out << "counters\n";
    for (auto &[name, value] : j["counters"].items()) {
        snprintf(line, sizeof line, "  %-24s %12llu\n", name.c_str(), (unsigned long long)value.get<uint64_t>());
        out << line;
    }
    out << "drops (non-zero)\n";
    bool any = false;
    for (auto &[name, value] : j["drops"].items()) {
        if (value.get<uint64_t>() == 0)
            continue;
        any = true;
        snprintf(line, sizeof line, "  %-24s %12llu\n", name.c_str(), (unsigned long long)value.get<uint64_t>());
        out << line;
    }
    if (!any)
        out << "  none\n";
    if (!j["ports"].empty())
        out << "ports (the drivers' own counters)\n";
    for (auto &p : j["ports"]) {
        snprintf(line, sizeof line, "  %-10s rx %10llu pkts missed %llu errors %llu nombuf %llu  tx %10llu pkts errors %llu\n",
                 p["port"].get<std::string>().c_str(), (unsigned long long)p["rx_packets"].get<uint64_t>(),
                 (unsigned long long)p["rx_missed"].get<uint64_t>(), (unsigned long long)p["rx_errors"].get<uint64_t>(),
                 (unsigned long long)p["rx_nombuf"].get<uint64_t>(), (unsigned long long)p["tx_packets"].get<uint64_t>(),
                 (unsigned long long)p["tx_errors"].get<uint64_t>());
        out << line;
    }
    out << "vips\n";
    for (auto &v : j["vips"]) {
        snprintf(line, sizeof line, "  %-28s pool %-10s %10llu pkts %12llu bytes\n", v["vip"].get<std::string>().c_str(),
                 v["pool"].get<std::string>().c_str(), (unsigned long long)v["packets"].get<uint64_t>(),
                 (unsigned long long)v["bytes"].get<uint64_t>());
        out << line;
        if (v.contains("quic")) {
            out << "    quic";
            for (auto &[name, value] : v["quic"].items())
                out << " " << name << " " << value.get<uint64_t>();
            out << "\n";
        }
    }
    out << "backends\n";
    for (auto &b : j["backends"]) {
        snprintf(line, sizeof line, "  %-10s id %-6u %-24s %-4s %10llu pkts %12llu bytes\n",
                 b["pool"].get<std::string>().c_str(), b["id"].get<uint32_t>(), b["address"].get<std::string>().c_str(),
                 b["operational"].get<bool>() ? "up" : "down", (unsigned long long)b["packets"].get<uint64_t>(),
                 (unsigned long long)b["bytes"].get<uint64_t>());
        out << line;
    }
    return out.str();
}

}  // namespace understudy
