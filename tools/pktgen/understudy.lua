-- understudy benchmark traffic for Pktgen-DPDK, as a Lua script: the same range-mode shape as ipv4-tcp.pkt
-- and ipv6-udp.pkt (many clients, one VIP), then a fixed-length run that prints the rate sent and received.
--   pktgen -l 0-4 -n 4 -a <PCI> -- -P -m "[1-2:3-4].0" -f tools/pktgen/understudy.lua
-- Edit the settings below. Received traffic is only counted if the balancer's output comes back to this
-- port (for example the backends' switch port mirrored to it); the balancer's own counters are the reference.
package.path = package.path .. ";?.lua;test/?.lua;app/?.lua;"
require "Pktgen"

local cfg = {
    port = "0",
    family = "ipv4",               -- "ipv4": TCP 64-byte frames; "ipv6": UDP 78-byte frames
    dst_mac = "02:00:00:00:00:02",  -- EDIT: the balancer port's MAC
    src_mac = "02:00:00:00:00:01",  -- EDIT: this port's MAC
    rate = 100,                     -- percent of line rate
    seconds = 30,                   -- length of the run
}

local v4 = cfg.family == "ipv4"
local p = cfg.port
local size = v4 and 64 or 78

pktgen.stop(p)
pktgen.set(p, "size", size)
pktgen.set(p, "rate", cfg.rate)
pktgen.set(p, "count", 0)
pktgen.set_type(p, cfg.family)
pktgen.set_proto(p, v4 and "tcp" or "udp")

local function smmi(fn, start, min, max, inc)
    fn(p, "start", start)
    fn(p, "min", min)
    fn(p, "max", max)
    fn(p, "inc", inc)
end

smmi(pktgen.range.dst_mac, cfg.dst_mac, cfg.dst_mac, cfg.dst_mac, "00:00:00:00:00:00")
smmi(pktgen.range.src_mac, cfg.src_mac, cfg.src_mac, cfg.src_mac, "00:00:00:00:00:00")
if v4 then
    smmi(pktgen.range.dst_ip, "192.0.2.10", "192.0.2.10", "192.0.2.10", "0.0.0.0")
    smmi(pktgen.range.src_ip, "10.0.0.1", "10.0.0.1", "10.0.255.254", "0.0.0.1")
else
    smmi(pktgen.range.dst_ip, "2001:db8::10", "2001:db8::10", "2001:db8::10", "::")
    smmi(pktgen.range.src_ip, "2001:db8:1::1", "2001:db8:1::1", "2001:db8:1::ffff", "::1")
end
smmi(pktgen.range.dst_port, 80, 80, 80, 0)
smmi(pktgen.range.src_port, 1024, 1024, 2023, 1)
smmi(pktgen.range.pkt_size, size, size, size, 0)
pktgen.range.ip_proto(p, v4 and "tcp" or "udp")
pktgen.set_range(p, "on")

-- Packets sent and received so far on the port (the table's shape differs between Pktgen releases).
local function counters()
    local s = pktgen.portStats(p, "port")
    local row = s[tonumber(p)] or s[0]
    if row.curr then
        row = row.curr
    end
    return row.opackets, row.ipackets
end

pktgen.clr()
pktgen.start(p)
pktgen.delay(5000)   -- warm-up: let the balancer's connection tables fill
local out0, in0 = counters()
pktgen.delay(cfg.seconds * 1000)
local out1, in1 = counters()
pktgen.stop(p)
printf("understudy traffic %s: sent %.3f Mpps, received %.3f Mpps over %d s\n", cfg.family,
       (out1 - out0) / cfg.seconds / 1e6, (in1 - in0) / cfg.seconds / 1e6, cfg.seconds)
