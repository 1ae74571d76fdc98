// The userspace side of bpf/: loads the backend program from its libbpf skeleton, fills its maps from the
// ordering and table code, swaps whole bucket tables in, reads counters and attaches XDP programs to
// interfaces; creates or opens the pinned maps of the steering program that DPDK's net_af_xdp loads.
// libbpf only (no DPDK). Layouts: src/common/us_bpf_maps.h; meaning and update order: bpf/README.md.
#pragma once

#include <linux/if_link.h>

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "core/config.h"
#include "core/result.h"
#include "us_bpf_maps.h"

struct us_backend_bpf;  // the libbpf skeleton (us_backend.skel.h)

namespace understudy::bpf {

inline constexpr const char *kBackendCounterNames[] = {
#define US_X(name, help) #name,
    US_BACKEND_COUNTERS(US_X)
#undef US_X
};
inline constexpr const char *kBackendCounterHelp[] = {
#define US_X(name, help) help,
    US_BACKEND_COUNTERS(US_X)
#undef US_X
};
inline constexpr const char *kSteerCounterNames[] = {
#define US_X(name, help) #name,
    US_STEER_COUNTERS(US_X)
#undef US_X
};
inline constexpr const char *kSteerCounterHelp[] = {
#define US_X(name, help) help,
    US_STEER_COUNTERS(US_X)
#undef US_X
};

using BackendCounters = std::array<uint64_t, US_BCTR_MAX>;
using SteerCounters = std::array<uint64_t, US_SCTR_MAX>;

// An owned file descriptor.
class Fd {
  public:
    Fd() = default;
    explicit Fd(int fd) : fd_(fd) {}
    Fd(Fd &&o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    Fd &operator=(Fd &&o) noexcept
    {
        if (this != &o) {
            reset();
            fd_ = std::exchange(o.fd_, -1);
        }
        return *this;
    }
    Fd(const Fd &) = delete;
    Fd &operator=(const Fd &) = delete;
    ~Fd() { reset(); }
    int get() const { return fd_; }
    void reset();

  private:
    int fd_ = -1;
};

// A VIP key from an address as the session key holds it (IPv4 as ::ffff:a.b.c.d), a port in host byte order
// (0: the entry fragments use) and an IP protocol.
us_vip_key vip_key(const uint8_t addr[16], uint16_t port, uint8_t proto);

// The VIP map entries of a config, for the agent's us_vips and the steering map: each VIP's own key, and the
// port-0 key its fragments use (owned by the first VIP on that address and protocol), with the VIP's pool
// index. Keys as bytes, to compare and keep in sets.
struct VipEntry {
    std::vector<uint8_t> key;  // a us_vip_key
    uint16_t pool = 0;
};
std::vector<VipEntry> vip_entries(const Config &config);
us_vip_key vip_key_of(const std::vector<uint8_t> &bytes);

// Sums a per-CPU array of sum.size() u64 counters over the possible CPUs.
Status read_percpu_counters(int map_fd, std::span<uint64_t> sum);

// Makes prog_fd the XDP program of ifindex (native mode unless flags say otherwise). The attachment belongs to
// the interface, not to this process: an agent restart does not stop decapsulation. detach_xdp undoes it.
Status attach_xdp(int ifindex, int prog_fd, uint32_t flags = XDP_FLAGS_DRV_MODE);
Status detach_xdp(int ifindex, uint32_t flags = XDP_FLAGS_DRV_MODE);

// A new bucket table, filled and ready to be swapped in: an ARRAY of 2^k us_bucket_entry with the flags the
// template of us_tables has, filled through one mmap and memcpy (a table of 2^20 buckets is 8 MiB).
Result<Fd> make_table(std::span<const us_bucket_entry> entries);

// The writes the agent makes to the backend program's maps. The program implements them; the agent's tests
// implement them too, to fail any one write and check that the agent puts everything back.
class BackendMaps {
  public:
    virtual ~BackendMaps() = default;
    virtual Status set_config(const us_bpf_config &config) = 0;
    virtual Status put_vip(const us_vip_key &key, uint16_t pool) = 0;
    virtual Status delete_vip(const us_vip_key &key) = 0;
    virtual Status put_backend_id(uint32_t pool, uint32_t id, uint32_t slot) = 0;
    virtual Status delete_backend_id(uint32_t pool, uint32_t id) = 0;
    // addr as the session key holds it (IPv4 as ::ffff:a.b.c.d); prefixlen over those 16 bytes.
    virtual Status put_tunnel_source(const uint8_t addr[16], uint32_t prefixlen) = 0;
    virtual Status delete_tunnel_source(const uint8_t addr[16], uint32_t prefixlen) = 0;
    // Put a pool's backends first and its table next; its info (digest, my_slot) last.
    virtual Status put_pool(uint32_t pool, const us_bpf_pool &info) = 0;
    virtual Status put_backend(uint32_t pool, uint32_t slot, const us_bpf_backend &backend) = 0;
    // A whole new table for pool (2^table_bits entries, slots as in us_backends), built off to the side and
    // published with one update of us_tables: a packet sees the old table or the new one, never a mix.
    virtual Status swap_table(uint32_t pool, std::span<const us_bucket_entry> entries) = 0;
    // Packets of the pool are then served where they arrive (counted as no_table).
    virtual Status remove_table(uint32_t pool) = 0;
};

// The backend program (bpf/us_backend.bpf.c), loaded and verified, with its maps.
class BackendProgram : public BackendMaps {
  public:
    // Opens and loads the program. With pin_dir (a directory on a bpffs), its maps are pinned there, and reused
    // when already pinned, so that a restarted agent finds the state the attached program reads.
    static Result<std::unique_ptr<BackendProgram>> load(const std::string &pin_dir = "");

    ~BackendProgram() override;
    BackendProgram(const BackendProgram &) = delete;
    BackendProgram &operator=(const BackendProgram &) = delete;

    int prog_fd() const;
    us_backend_bpf *skeleton() { return skel_; }

    Status set_config(const us_bpf_config &config) override;
    Status put_vip(const us_vip_key &key, uint16_t pool) override;
    Status delete_vip(const us_vip_key &key) override;
    Status put_backend_id(uint32_t pool, uint32_t id, uint32_t slot) override;
    Status delete_backend_id(uint32_t pool, uint32_t id) override;
    Status put_tunnel_source(const uint8_t addr[16], uint32_t prefixlen) override;
    Status delete_tunnel_source(const uint8_t addr[16], uint32_t prefixlen) override;
    Status put_pool(uint32_t pool, const us_bpf_pool &info) override;
    Status put_backend(uint32_t pool, uint32_t slot, const us_bpf_backend &backend) override;
    Status swap_table(uint32_t pool, std::span<const us_bucket_entry> entries) override;
    Status remove_table(uint32_t pool) override;

    Result<BackendCounters> counters() const;

  private:
    explicit BackendProgram(us_backend_bpf *skel) : skel_(skel) {}
    us_backend_bpf *skel_;
};

// The maps of the steering program (bpf/us_steer.bpf.c) that the balancer fills and reads. DPDK's net_af_xdp
// loads the object itself (xdp_prog=PATH); libbpf then pins these maps by name under pin_root, or reuses the
// pins that are already there. Creating them before DPDK starts puts the VIPs in before the first packet.
class SteerMaps {
  public:
    static Result<SteerMaps> open_or_create(const std::string &pin_root = "/sys/fs/bpf");

    Status put_vip(const us_vip_key &key);
    Status delete_vip(const us_vip_key &key);
    Result<SteerCounters> counters() const;

  private:
    Fd vips_, stats_;
};

}  // namespace understudy::bpf
