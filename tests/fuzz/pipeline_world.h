// The world fuzz_pipeline runs in: the VIPs and pools of tests/dataplane/test_replay.py (so that the replay
// fixtures, from which tests/fuzz/pipeline_corpus/ is made, reach VIPs of every method and both families),
// with the default [dataplane] settings (mtu 1500: full-size fixtures over it are answered with ICMP).
//
// Input format of fuzz_pipeline: one byte (bit 0: non_vip = "drop" instead of "kernel"), then frames, each
// a 2-byte big-endian header and up to 4095 bytes: bits 0-11 the frame's length (cut at the end of the
// input), bits 12-13 the mbuf headroom (128, 64, 20 or 0 bytes), bits 14-15 the segments (1, 2, 3, or 1;
// more when the frame does not fit). At most 40 frames: beyond 32 the pipeline must leave them to the caller.
#pragma once

#include <cstdint>

namespace understudy::fuzz {

// Snapshot 0 and 1 differ by the backends that are down: flows pinned under 0 meet 1's table.
inline constexpr uint32_t kDown[2][3] = {{2, 12, 21}, {1, 13, 2}};

// The backend without a neighbour entry (its packets are no_next_hop drops).
inline constexpr const char *kNoMacBackend = "10.0.1.16";

inline constexpr const char *kPipelineConfig = R"(
[cluster]
secret = "3f1e0c2a9b8d7766554433221100ffee"

[dataplane]
conn_table_size = 65536
icmp_rate = 1000000

[[pool]]
name = "web4"
table_bits = 10
  [[pool.backend]]
  id = 1
  address = "10.0.1.11"
  [[pool.backend]]
  id = 2
  address = "10.0.1.12"
  weight = 200
  [[pool.backend]]
  id = 3
  address = "10.0.1.13"
  state = "drain"
  [[pool.backend]]
  id = 4
  address = "10.0.1.14"
  mac = "02:aa:bb:cc:dd:04"
  [[pool.backend]]
  id = 5
  address = "10.0.1.15"
  state = "disabled"
  [[pool.backend]]
  id = 6
  address = "10.0.1.16"
  weight = 30

[[pool]]
name = "web6"
table_bits = 10
  [[pool.backend]]
  id = 1
  address = "2001:db8:1::1"
  [[pool.backend]]
  id = 12
  address = "2001:db8:1::12"
  weight = 150
  [[pool.backend]]
  id = 13
  address = "2001:db8:1::13"
  mac = "02:aa:bb:cc:dd:0d"

[[pool]]
name = "tiny"
table_bits = 8
  [[pool.backend]]
  id = 21
  address = "10.0.3.21"
  [[pool.backend]]
  id = 22
  address = "10.0.3.22"
  state = "drain"

[[pool]]
name = "empty"
table_bits = 8

[[vip]]
address = "192.0.2.10"
port = 80
protocol = "tcp"
pool = "web4"

[[vip]]
address = "192.0.2.10"
port = 443
protocol = "tcp"
pool = "web4"
affinity = "client"

[[vip]]
address = "192.0.2.10"
port = 53
protocol = "udp"
pool = "web4"

[[vip]]
address = "2001:db8::10"
port = 80
protocol = "tcp"
pool = "web6"

[[vip]]
address = "2001:db8::10"
port = 53
protocol = "udp"
pool = "web6"

[[vip]]
address = "192.0.2.20"
port = 80
protocol = "tcp"
pool = "web4"
method = "ipip"

[[vip]]
address = "2001:db8::20"
port = 80
protocol = "tcp"
pool = "web6"
method = "ipip"

[[vip]]
address = "192.0.2.30"
port = 80
protocol = "tcp"
pool = "web4"
method = "l2dsr"

[[vip]]
address = "2001:db8::30"
port = 80
protocol = "tcp"
pool = "web6"
method = "l2dsr"

[[vip]]
address = "2001:db8::40"
port = 80
protocol = "tcp"
pool = "web4"

[[vip]]
address = "192.0.2.40"
port = 80
protocol = "tcp"
pool = "web6"

[[vip]]
address = "192.0.2.50"
port = 80
protocol = "tcp"
pool = "empty"

[[vip]]
address = "192.0.2.60"
port = 8080
protocol = "udp"
pool = "web4"
conn_table = false

[[vip]]
address = "192.0.2.70"
port = 80
protocol = "tcp"
pool = "tiny"
)";

}  // namespace understudy::fuzz
