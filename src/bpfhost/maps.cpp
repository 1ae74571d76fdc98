// The userspace side of bpf/: see maps.h.
#include "maps.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <algorithm>
#include <map>
#include <set>
#include <vector>

#include "us_backend.skel.h"

namespace understudy::bpf {

static_assert(US_BPF_TABLE_FLAGS == (BPF_F_INNER_MAP | BPF_F_MMAPABLE), "us_bpf_maps.h: table flags");

static Error os_error(const std::string &what, int err)
{
    return Error{what + ": " + std::strerror(err < 0 ? -err : err)};
}

void Fd::reset()
{
    if (fd_ >= 0)
        ::close(fd_);
    fd_ = -1;
}

us_vip_key vip_key(const uint8_t addr[16], uint16_t port, uint8_t proto)
{
    us_vip_key key{};
    std::memcpy(key.addr, addr, 16);
    key.port = htons(port);
    key.proto = proto;
    return key;
}

std::vector<VipEntry> vip_entries(const Config &config)
{
    std::vector<VipEntry> out;
    std::set<std::vector<uint8_t>> seen;
    std::map<std::string, uint16_t> pool_index;
    for (size_t i = 0; i < config.pools.size(); i++)
        pool_index.emplace(config.pools[i].name, uint16_t(i));
    for (const Vip &v : config.vips) {
        for (uint16_t port : {v.port, uint16_t(0)}) {
            us_vip_key k = vip_key(v.address.bytes.data(), port, uint8_t(v.protocol));
            std::vector<uint8_t> raw(reinterpret_cast<uint8_t *>(&k), reinterpret_cast<uint8_t *>(&k) + sizeof k);
            if (!seen.insert(raw).second)
                continue;  // port 0: the first VIP on the address and protocol owns the fragments
            out.push_back(VipEntry{std::move(raw), pool_index[v.pool]});
        }
    }
    return out;
}

us_vip_key vip_key_of(const std::vector<uint8_t> &bytes)
{
    us_vip_key k{};
    std::memcpy(&k, bytes.data(), std::min(bytes.size(), sizeof k));
    return k;
}

Status read_percpu_counters(int map_fd, std::span<uint64_t> sum)
{
    int cpus = libbpf_num_possible_cpus();
    if (cpus <= 0)
        return os_error("counting CPUs", cpus);
    std::vector<uint64_t> values(static_cast<size_t>(cpus));
    for (uint32_t i = 0; i < sum.size(); i++) {
        sum[i] = 0;
        if (bpf_map_lookup_elem(map_fd, &i, values.data()) != 0)
            return os_error("reading counter " + std::to_string(i), errno);
        for (uint64_t v : values)
            sum[i] += v;
    }
    return Ok{};
}

Status attach_xdp(int ifindex, int prog_fd, uint32_t flags)
{
    int err = bpf_xdp_attach(ifindex, prog_fd, flags, nullptr);
    if (err)
        return os_error("attaching XDP program to ifindex " + std::to_string(ifindex), err);
    return Ok{};
}

Status detach_xdp(int ifindex, uint32_t flags)
{
    int err = bpf_xdp_detach(ifindex, flags, nullptr);
    if (err)
        return os_error("detaching XDP program from ifindex " + std::to_string(ifindex), err);
    return Ok{};
}

Result<Fd> make_table(std::span<const us_bucket_entry> entries)
{
    size_t n = entries.size();
    if (n == 0 || (n & (n - 1)) != 0 || n > (size_t(1) << US_BPF_MAX_TABLE_BITS))
        return Error{"a bucket table holds 2^k entries, k <= " + std::to_string(US_BPF_MAX_TABLE_BITS) + ", not " +
                     std::to_string(n)};
    bpf_map_create_opts opts{};
    opts.sz = sizeof(opts);
    opts.map_flags = US_BPF_TABLE_FLAGS;
    int fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "us_table", sizeof(uint32_t), sizeof(us_bucket_entry),
                            uint32_t(n), &opts);
    if (fd < 0)
        return os_error("creating a bucket table of " + std::to_string(n) + " entries", fd);
    Fd table(fd);
    size_t page = size_t(sysconf(_SC_PAGESIZE));
    size_t bytes = (n * sizeof(us_bucket_entry) + page - 1) / page * page;
    void *mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, table.get(), 0);
    if (mem == MAP_FAILED)
        return os_error("mapping a bucket table", errno);
    std::memcpy(mem, entries.data(), n * sizeof(us_bucket_entry));
    munmap(mem, bytes);
    return table;
}

static Status update(const bpf_map *map, const void *key, const void *value, const char *name)
{
    if (bpf_map_update_elem(bpf_map__fd(map), key, value, BPF_ANY) != 0)
        return os_error(std::string("updating ") + name, errno);
    return Ok{};
}

static Status erase(const bpf_map *map, const void *key, const std::string &what)
{
    if (bpf_map_delete_elem(bpf_map__fd(map), key) != 0 && errno != ENOENT)
        return os_error(what, errno);
    return Ok{};
}

Result<std::unique_ptr<BackendProgram>> BackendProgram::load(const std::string &pin_dir)
{
    us_backend_bpf *skel = us_backend_bpf__open();
    if (!skel)
        return os_error("opening the us_backend skeleton", errno);
    std::unique_ptr<BackendProgram> p(new BackendProgram(skel));
    if (!pin_dir.empty()) {
        bpf_map *map;
        bpf_object__for_each_map(map, skel->obj)
        {
            std::string path = pin_dir + "/" + bpf_map__name(map);
            int err = bpf_map__set_pin_path(map, path.c_str());
            if (err)
                return os_error("pinning " + path, err);
        }
    }
    int err = us_backend_bpf__load(skel);
    if (err)
        return os_error("loading us_backend (the verifier log is on stderr)", err);
    return p;
}

BackendProgram::~BackendProgram() { us_backend_bpf__destroy(skel_); }

int BackendProgram::prog_fd() const { return bpf_program__fd(skel_->progs.us_backend); }

Status BackendProgram::set_config(const us_bpf_config &config)
{
    uint32_t zero = 0;
    return update(skel_->maps.us_config, &zero, &config, "us_config");
}

Status BackendProgram::put_vip(const us_vip_key &key, uint16_t pool)
{
    us_vip_value value{pool, 0};
    return update(skel_->maps.us_vips, &key, &value, "us_vips");
}

Status BackendProgram::delete_vip(const us_vip_key &key)
{
    return erase(skel_->maps.us_vips, &key, "deleting from us_vips");
}

Status BackendProgram::put_backend_id(uint32_t pool, uint32_t id, uint32_t slot)
{
    us_backend_id_key key{pool, id};
    return update(skel_->maps.us_backend_ids, &key, &slot, "us_backend_ids");
}

Status BackendProgram::delete_backend_id(uint32_t pool, uint32_t id)
{
    us_backend_id_key key{pool, id};
    return erase(skel_->maps.us_backend_ids, &key, "deleting from us_backend_ids");
}

Status BackendProgram::put_tunnel_source(const uint8_t addr[16], uint32_t prefixlen)
{
    us_source_key key{prefixlen, {}};
    std::memcpy(key.addr, addr, 16);
    uint8_t one = 1;
    return update(skel_->maps.us_tunnel_sources, &key, &one, "us_tunnel_sources");
}

Status BackendProgram::delete_tunnel_source(const uint8_t addr[16], uint32_t prefixlen)
{
    us_source_key key{prefixlen, {}};
    std::memcpy(key.addr, addr, 16);
    return erase(skel_->maps.us_tunnel_sources, &key, "deleting from us_tunnel_sources");
}

Status BackendProgram::put_pool(uint32_t pool, const us_bpf_pool &info)
{
    if (pool >= US_BPF_MAX_POOLS || info.n_backends > US_BPF_MAX_SLOTS || info.table_bits > US_BPF_MAX_TABLE_BITS)
        return Error{"pool " + std::to_string(pool) + ": past the BPF agent's limits"};
    return update(skel_->maps.us_pools, &pool, &info, "us_pools");
}

Status BackendProgram::put_backend(uint32_t pool, uint32_t slot, const us_bpf_backend &backend)
{
    if (pool >= US_BPF_MAX_POOLS || slot >= US_BPF_MAX_SLOTS)
        return Error{"backend slot " + std::to_string(slot) + " of pool " + std::to_string(pool) +
                     ": past the BPF agent's limits"};
    uint32_t index = pool * US_BPF_MAX_SLOTS + slot;
    return update(skel_->maps.us_backends, &index, &backend, "us_backends");
}

// The kernel frees the old table when the last program run that holds it is done.
Status BackendProgram::swap_table(uint32_t pool, std::span<const us_bucket_entry> entries)
{
    auto table = make_table(entries);
    if (!table)
        return Error{table.error()};
    int fd = table->get();
    return update(skel_->maps.us_tables, &pool, &fd, "us_tables");
}

Status BackendProgram::remove_table(uint32_t pool)
{
    return erase(skel_->maps.us_tables, &pool, "removing the table of pool " + std::to_string(pool));
}

Result<BackendCounters> BackendProgram::counters() const
{
    BackendCounters c;
    if (auto s = read_percpu_counters(bpf_map__fd(skel_->maps.us_stats), c); !s)
        return Error{s.error()};
    return c;
}

static Result<Fd> open_or_create_one(const std::string &path, bpf_map_type type, const char *name,
                                     uint32_t key_size, uint32_t value_size, uint32_t max_entries)
{
    int fd = bpf_obj_get(path.c_str());
    if (fd >= 0) {
        Fd map(fd);
        bpf_map_info info{};
        uint32_t len = sizeof(info);
        if (bpf_obj_get_info_by_fd(map.get(), &info, &len) != 0)
            return os_error("inspecting " + path, errno);
        if (info.type != uint32_t(type) || info.key_size != key_size || info.value_size != value_size ||
            info.max_entries != max_entries)
            return Error{path + ": pinned by another version of us_steer (layout differs): remove it"};
        return map;
    }
    if (errno != ENOENT)
        return os_error("opening " + path, errno);
    fd = bpf_map_create(type, name, key_size, value_size, max_entries, nullptr);
    if (fd < 0)
        return os_error("creating " + path, fd);
    Fd map(fd);
    if (bpf_obj_pin(map.get(), path.c_str()) != 0)
        return os_error("pinning " + path, errno);
    return map;
}

Result<SteerMaps> SteerMaps::open_or_create(const std::string &pin_root)
{
    SteerMaps m;
    auto vips = open_or_create_one(pin_root + "/" US_STEER_VIPS_MAP, BPF_MAP_TYPE_HASH, US_STEER_VIPS_MAP,
                                   sizeof(us_vip_key), sizeof(us_vip_value), US_BPF_MAX_VIPS);
    if (!vips)
        return Error{vips.error()};
    auto stats = open_or_create_one(pin_root + "/" US_STEER_STATS_MAP, BPF_MAP_TYPE_PERCPU_ARRAY,
                                    US_STEER_STATS_MAP, sizeof(uint32_t), sizeof(uint64_t), US_SCTR_MAX);
    if (!stats)
        return Error{stats.error()};
    m.vips_ = std::move(*vips);
    m.stats_ = std::move(*stats);
    return m;
}

Status SteerMaps::put_vip(const us_vip_key &key)
{
    us_vip_value value{};
    if (bpf_map_update_elem(vips_.get(), &key, &value, BPF_ANY) != 0)
        return os_error("updating " US_STEER_VIPS_MAP, errno);
    return Ok{};
}

Status SteerMaps::delete_vip(const us_vip_key &key)
{
    if (bpf_map_delete_elem(vips_.get(), &key) != 0 && errno != ENOENT)
        return os_error("deleting from " US_STEER_VIPS_MAP, errno);
    return Ok{};
}

Result<SteerCounters> SteerMaps::counters() const
{
    SteerCounters c;
    if (auto s = read_percpu_counters(stats_.get(), c); !s)
        return Error{s.error()};
    return c;
}

}  // namespace understudy::bpf
