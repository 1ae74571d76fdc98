// QUIC-LB in the data plane (docs/quic-lb.md): what a QUIC VIP's snapshot holds (the prepared codec
// configurations and each configuration's server ID -> backend slot map) and the fast-path reading of a UDP
// payload's destination connection ID into the backend slot it names. No allocation, no system call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "quiclb/quic_lb.h"
#include "us_wire.h"

namespace understudy::dp {

// One server ID of a configuration, zero-padded to 16 octets and read as two words, and its backend's slot.
struct QuicSid {
    uint64_t key[2];
    uint16_t slot;
};

inline bool quic_sid_less(const QuicSid &a, const QuicSid &b)
{
    return a.key[0] != b.key[0] ? a.key[0] < b.key[0] : a.key[1] < b.key[1];
}

// A QUIC VIP's configurations by codepoint (control side builds it; workers only read it).
struct QuicVip {
    quic_lb_config config[QUIC_LB_CODEPOINTS];
    const QuicSid *sids[QUIC_LB_CODEPOINTS];  // sorted by quic_sid_less; into `owned`
    uint16_t n_sids[QUIC_LB_CODEPOINTS];
    uint8_t present;                          // bit c: codepoint c has a configuration
    std::vector<QuicSid> owned[QUIC_LB_CODEPOINTS];
};

// Per-VIP QUIC counters (LcoreStats::vip_quic): one line each, for stats and metrics.
#define US_QUIC_COUNTERS(X)                                                                                  \
    X(cid_routed, "sent to the operational primary that the destination connection ID names")              \
    X(primary_down, "the connection ID names a primary that is not operational: the 4-tuple's ordering chose") \
    X(unroutable_codepoint, "codepoint 7, or one without a configuration: routed by the 4-tuple")            \
    X(unroutable_length, "not QUIC, or the packet or its connection ID too short: routed by the 4-tuple")    \
    X(unroutable_server_id, "the server ID names no backend of the pool: routed by the 4-tuple")             \
    X(unroutable_initial, "long-header Initial or 0-RTT (DCID chosen by the client), or an unknown version: " \
                          "routed by the 4-tuple")

enum {
#define US_X(name, help) US_QUIC_##name,
    US_QUIC_COUNTERS(US_X)
#undef US_X
    US_QUIC_MAX
};

// The slot a server ID names, or US_NO_SERVER.
inline uint16_t quic_sid_slot(const QuicSid *sids, uint16_t n, const uint8_t *sid, unsigned sid_len)
{
    QuicSid k{};
    std::memcpy(k.key, sid, sid_len);
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (quic_sid_less(sids[mid], k))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && sids[lo].key[0] == k.key[0] && sids[lo].key[1] == k.key[1] ? sids[lo].slot : US_NO_SERVER;
}

// The backend slot the destination CID of a UDP payload names, or US_NO_SERVER with *reason set to the
// US_QUIC_unroutable_* counter that says why.
//  - Long header (first bit 1): version (4), DCID length (1), DCID. Initial and 0-RTT packets carry a DCID
//    the client may have chosen (its first flight), and the handshake keeps one 4-tuple (RFC 9000 section 9):
//    they all go by the 4-tuple, and so does a version whose packet types are unknown (v1 and v2 known).
//  - Short header (first bit 0): the DCID follows the first octet; its own first octet's codepoint names the
//    configuration, which gives its length.
inline uint16_t quic_primary_slot(const QuicVip &qv, const uint8_t *payload, size_t len, int *reason)
{
    *reason = US_QUIC_unroutable_length;
    if (len < 2)
        return US_NO_SERVER;
    const uint8_t *cid = payload + 1;
    size_t cid_len = len - 1;
    if (payload[0] & 0x80) {
        if (len < 6)
            return US_NO_SERVER;
        uint32_t version = uint32_t(payload[1]) << 24 | uint32_t(payload[2]) << 16 | uint32_t(payload[3]) << 8 |
                           payload[4];
        unsigned type = (payload[0] >> 4) & 3;
        bool initial_or_0rtt;
        if (version == 1)
            initial_or_0rtt = type == 0 || type == 1;   // v1: Initial 0, 0-RTT 1, Handshake 2, Retry 3
        else if (version == 0x6b3343cf)
            initial_or_0rtt = type == 1 || type == 2;   // v2 (RFC 9369): Initial 1, 0-RTT 2, Handshake 3
        else
            initial_or_0rtt = true;
        if (initial_or_0rtt) {
            *reason = US_QUIC_unroutable_initial;
            return US_NO_SERVER;
        }
        cid_len = payload[5];
        cid = payload + 6;
        if (cid_len == 0 || cid_len > QUIC_LB_MAX_CID_LEN || len < 6 + cid_len)
            return US_NO_SERVER;
    }
    unsigned codepoint = quic_lb_cid_codepoint(cid);
    if (codepoint >= QUIC_LB_CODEPOINTS || !(qv.present >> codepoint & 1)) {
        *reason = US_QUIC_unroutable_codepoint;
        return US_NO_SERVER;
    }
    const quic_lb_config &c = qv.config[codepoint];
    if (!(payload[0] & 0x80))
        cid_len = quic_lb_cid_len(&c);  // a short header says no length: the configuration's
    uint8_t sid[QUIC_LB_MAX_SERVER_ID_LEN];
    if (cid_len > len - 1 || quic_lb_decode(&c, cid, cid_len, sid) != QUIC_LB_OK)
        return US_NO_SERVER;
    uint16_t slot = quic_sid_slot(qv.sids[codepoint], qv.n_sids[codepoint], sid, c.server_id_len);
    if (slot == US_NO_SERVER)
        *reason = US_QUIC_unroutable_server_id;
    return slot;
}

}  // namespace understudy::dp
