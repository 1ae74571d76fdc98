// See steering.h.
#include "steering.h"

#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/vfs.h>

#include <cerrno>
#include <cstring>

namespace understudy {

bool Steering::wanted(const Config &config)
{
    for (const PortConfig &p : config.dataplane.ports)
        if (p.devargs.rfind("net_af_xdp", 0) == 0 && p.devargs.find("xdp_prog=") != std::string::npos)
            return true;
    return false;
}

// The steering maps are pinned by name under /sys/fs/bpf, where DPDK's libbpf looks for them; mount a bpf
// filesystem there when the host (or a network namespace's fresh /sys) has none, as bpftool does.
static Status ensure_bpffs()
{
    struct statfs st{};
    if (statfs("/sys/fs/bpf", &st) == 0 && st.f_type == BPF_FS_MAGIC)
        return Ok{};
    if (mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700") != 0)
        return Error{std::string("AF_XDP steering: cannot mount a bpf filesystem on /sys/fs/bpf: ") + std::strerror(errno)};
    return Ok{};
}

Status Steering::open()
{
    if (auto st = ensure_bpffs(); !st)
        return st;
    auto maps = bpf::SteerMaps::open_or_create();
    if (!maps)
        return Error{"AF_XDP steering: " + maps.error()};
    maps_ = std::move(*maps);
    return Ok{};
}

Status Steering::sync(const Config &config)
{
    if (!maps_)
        return Ok{};
    std::set<std::vector<uint8_t>> keys;
    for (const auto &e : bpf::vip_entries(config)) {
        if (auto s = maps_->put_vip(bpf::vip_key_of(e.key)); !s)
            return s;
        keys.insert(e.key);
    }
    for (const auto &raw : keys_) {
        if (keys.count(raw))
            continue;
        if (auto s = maps_->delete_vip(bpf::vip_key_of(raw)); !s)
            return s;
    }
    keys_ = std::move(keys);
    return Ok{};
}

nlohmann::ordered_json Steering::counters_json() const
{
    nlohmann::ordered_json j = nlohmann::ordered_json::object();
    if (!maps_)
        return j;
    if (auto c = maps_->counters())
        for (int i = 0; i < US_SCTR_MAX; i++)
            j[bpf::kSteerCounterNames[i]] = (*c)[size_t(i)];
    return j;
}

}  // namespace understudy
