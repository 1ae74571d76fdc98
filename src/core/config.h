// The configuration model: what config.toml says, validated. Loading never changes anything running;
// the daemon swaps in a new Config only when load_config() succeeded whole. Reference: docs/configuration.md.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "address.h"
#include "result.h"

namespace understudy {

enum class AdminState { enabled, drain, disabled };
enum class Method { gue, ipip, l2dsr };
enum class Affinity { flow, client };
enum class Protocol : uint8_t { tcp = 6, udp = 17 };
enum class ProbeKind { none, tcp, http, udp };
enum class NonVipPolicy { kernel, drop };

constexpr uint32_t kMaxWeight = 65535;
constexpr uint32_t kMinTableBits = 8;
constexpr uint32_t kMaxTableBits = 24;
constexpr size_t kMaxBackendsPerPool = 65535;  // table entries are 16-bit indices, one value is reserved

// Health probe settings. [health] gives defaults, [pool.health] overrides them per pool and
// [pool.backend.health] per backend: each level names only the fields it changes.
struct HealthConfig {
    ProbeKind kind = ProbeKind::tcp;
    uint16_t port = 0;                  // 0: the port of the first VIP using the pool
    std::string http_path = "/";        // kind = http
    uint16_t http_status_min = 200;     // kind = http: "expect" = "200-399"
    uint16_t http_status_max = 399;
    std::string udp_payload = "ping";   // kind = udp: sent as is
    std::string udp_expect;             // kind = udp: reply must start with this ("" = any reply)
    uint32_t interval_ms = 1000;
    uint32_t timeout_ms = 500;          // must be <= interval_ms
    uint32_t rise = 2;                  // consecutive successes to come up
    uint32_t fall = 3;                  // consecutive failures to go down
    std::optional<Address> source;      // probe source address (bind before connect)
};

struct Backend {
    uint32_t id = 0;                    // stable, unique within the pool, 1..2^32-2
    Address address;
    uint32_t weight = 100;              // 0..kMaxWeight, 0 = drain
    AdminState state = AdminState::enabled;
    std::optional<std::array<uint8_t, 6>> mac;  // next-hop MAC for l2dsr (else from the neighbour table)
    HealthConfig health;                // effective settings after overrides
    int line = 0;                       // where it was declared, for later messages
};

struct Pool {
    std::string name;
    uint32_t table_bits = 20;
    HealthConfig health;                // effective pool-level settings
    std::vector<Backend> backends;
    int line = 0;
};

// One QUIC-LB configuration of a UDP VIP (draft-ietf-quic-load-balancers-21, docs/quic-lb.md): the connection
// IDs whose first octet's 3 high bits are `codepoint` carry a server ID of server_id_len octets, encrypted
// when there is a key (plaintext without; one AES block when server_id_len + nonce_len = 16; else four-pass).
struct QuicLbConfig {
    uint8_t codepoint = 0;              // 0-6; 7 marks unroutable connection IDs
    uint8_t server_id_len = 0;          // octets, 1-15
    uint8_t nonce_len = 0;              // octets, 4-18; with server_id_len at most 19
    std::optional<std::array<uint8_t, 16>> key;  // AES-128
    bool encode_length = false;         // servers write the CID length into the first octet's low 5 bits
    std::map<uint32_t, std::vector<uint8_t>> server_ids;  // by backend id; the others' derive from their id
    int line = 0;
};

// The server ID of backend `backend_id` under `q`: its server_ids entry, else the id big-endian in
// server_id_len octets; empty when the id does not fit (validate_config() reports that).
inline std::vector<uint8_t> quic_server_id(const QuicLbConfig &q, uint32_t backend_id)
{
    if (auto it = q.server_ids.find(backend_id); it != q.server_ids.end())
        return it->second;
    if (q.server_id_len < 4 && backend_id >> (8 * q.server_id_len) != 0)
        return {};
    std::vector<uint8_t> id(q.server_id_len);
    for (size_t i = id.size(); i-- > 0; backend_id >>= 8)
        id[i] = uint8_t(backend_id);
    return id;
}

struct Vip {
    Address address;
    uint16_t port = 0;
    Protocol protocol = Protocol::tcp;
    std::string pool;
    Method method = Method::gue;
    Affinity affinity = Affinity::flow;
    bool conn_table = true;             // keep established flows on the server they started on
    uint32_t conn_idle_timeout_s = 300; // forget a flow after this much silence
    std::vector<QuicLbConfig> quic_lb;  // protocol udp only, at most 7 (one per codepoint)
    int line = 0;
};

struct PortConfig {
    std::string name;                   // for logs and stats
    std::string devargs;                // any PMD: "net_af_xdp0,iface=eth0", "0000:3b:00.0", ...
    uint16_t rx_queues = 1;             // one worker per RX queue; 0 for a port that only transmits
    std::string tx_port;                // forward out of this other port ("" = the port packets came in by)
};

// The outer sources of encapsulated packets when [dataplane] source_v4 / source_v6 are not set (the balancer
// sends from them; the agent trusts them).
inline constexpr const char *kDefaultSourceV4 = "198.18.0.1";
inline constexpr const char *kDefaultSourceV6 = "2001:db8:ffff::1";

struct DataplaneConfig {
    std::vector<std::string> eal_args;  // passed to rte_eal_init as is
    std::vector<PortConfig> ports;
    std::vector<unsigned> worker_lcores; // one per RX queue over all ports, in order
    std::optional<Address> source_v4;   // outer source of encapsulated packets (kDefaultSourceV4 when unset)
    std::optional<Address> source_v6;
    std::optional<std::array<uint8_t, 6>> gateway_mac;  // static next hop for encapsulated packets
    NonVipPolicy non_vip = NonVipPolicy::kernel;
    std::string exception_iface = "understudy0";  // net_tap interface of the exception path
    std::vector<std::string> exception_addresses;  // "ADDR/PREFIX" the daemon puts on that interface at start
    uint16_t gue_port = 6080;           // outer UDP destination port of gue
    uint32_t conn_table_size = 1u << 20;          // entries per worker lcore
    uint32_t mbufs = 0;                 // mbuf pool size; 0 = sized from the RX queues (a floor if set)
    uint8_t hop_budget = 3;             // forwards a packet may still take after the balancer
    uint16_t mtu = 1500;                // every port's MTU: the largest IP packet received or sent
    uint32_t mbuf_data_room = 0;        // frame bytes one mbuf holds (past DPDK's headroom); 0 = from mtu
    bool outer_df = true;               // DF on outer IPv4 headers; false: a per-worker identification counter
    uint32_t icmp_rate = 100;           // ICMP "too big" answers per second per worker (and burst); 0 = none

    // The largest frame a port receives: mtu + Ethernet header + two VLAN tags.
    uint32_t max_frame() const { return uint32_t(mtu) + 14 + 8; }
    // mbuf_data_room, or when 0 the smallest that holds max_frame(), at least DPDK's default 2048.
    uint32_t data_room() const { return mbuf_data_room ? mbuf_data_room : max_frame() > 2048 ? max_frame() : 2048; }
};

struct ControlConfig {
    std::string socket = "/run/understudy/understudy.sock";
    std::string socket_group;           // "" = root's group
    std::string metrics = "127.0.0.1:9273";  // Prometheus endpoint, "" = off
};

// understudy-agent, the backend side: where its XDP program attaches and who this host is.
struct AgentConfig {
    std::string interface;              // the NIC the balancers' packets arrive on
    std::vector<Address> addresses;     // this host's addresses as pools list them; empty = those of interface
    std::string socket = "/run/understudy/agent.sock";
    std::string xdp_mode = "native";    // native | generic (skb mode, for NICs without XDP support)
    // Outer sources tunnels (gue, ipip) are accepted from, besides [dataplane] source_v4/source_v6 and every
    // backend of every pool (which forward to each other): (address, prefix length).
    std::vector<std::pair<Address, int>> tunnel_sources;
    int line = 0;
};

// Input limits of the configuration reader (docs/operations.md): file size, and the nesting of arrays,
// inline tables and dotted keys.
inline constexpr size_t kMaxConfigBytes = 16u << 20;
inline constexpr size_t kMaxNesting = 64;

struct Config {
    std::string path;                   // file it came from
    std::array<uint8_t, 16> secret{};
    HealthConfig health;                // global defaults
    std::vector<Pool> pools;
    std::vector<Vip> vips;
    DataplaneConfig dataplane;
    ControlConfig control;
    AgentConfig agent;
    // The line of each key and table the file gave outside [[pool]] and [[vip]] (whose objects keep their own
    // line), by field ("dataplane.port[0].devargs"): messages of later checks point at it.
    std::map<std::string, int> lines;

    const Pool *find_pool(std::string_view name) const;
    const Vip *find_vip(const Address &address, uint16_t port, Protocol protocol) const;
};

// Parses and validates a whole file. On error, the message holds one line per problem, each
// "FILE:LINE: FIELD: what is wrong".
Result<Config> load_config(const std::string &path);
Result<Config> parse_config(std::string_view text, const std::string &path_for_messages);

// The text of a config file, at most kMaxConfigBytes of it whatever the file is (a character device, a pipe,
// a FIFO): past that, an error that says so. Read once, so that a FIFO's text can be both checked and sent.
Result<std::string> read_config_text(const std::string &path);

// Re-checks a model built or changed in code (the control API goes through this too).
Status validate_config(const Config &config);

// What the daemon needs on top of a valid config before it starts the data plane: at least one port,
// and dataplane.source_v4/_v6 for every family a gue or ipip VIP encapsulates in. Kept apart from
// validate_config() so that offline tools (understudyctl check/lookup) accept configs without [dataplane].
Status validate_for_dataplane(const Config &config);

// What understudy-agent needs on top of a valid config: [agent] interface, a known xdp_mode, and no more
// pools, backends, VIP entries or tunnel sources than its BPF maps hold (config_limits.h).
Status validate_for_agent(const Config &config);

// The kernel interface of the exception tap of port `port`: exception_iface with one port, else
// exception_iface followed by the port's index. validate_config() refuses names that are too long or
// collide with each other or with a port's own interface.
std::string exception_tap_name(const DataplaneConfig &dataplane, size_t port);

std::string_view to_string(AdminState);
std::string_view to_string(Method);
std::string_view to_string(Affinity);
std::string_view to_string(Protocol);
std::string_view to_string(ProbeKind);
Result<AdminState> parse_admin_state(std::string_view);
Result<Method> parse_method(std::string_view);
Result<Affinity> parse_affinity(std::string_view);
Result<Protocol> parse_protocol(std::string_view);
Result<ProbeKind> parse_probe_kind(std::string_view);

}  // namespace understudy
