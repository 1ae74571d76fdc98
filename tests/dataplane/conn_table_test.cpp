// The connection table's insertion and eviction rule (src/dataplane/conn_table.h, docs/dataplane.md) on one
// set, without DPDK memory: a new flow's entry starts unconfirmed and a later packet that is not a TCP SYN
// confirms it; a new flow takes its own or an empty way, else an expired one, else the stalest unconfirmed,
// and evicts a live confirmed entry (the stalest) only when all four ways are live and confirmed, and never
// with a SYN. Every expected value below follows from that rule as written, step by step.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>

#include "dataplane/conn_table.h"

namespace understudy::dp {
namespace {

constexpr uint32_t kIdle = 1000;  // ticks

// Tags for one set (the set index is not used here: a ConnSet is tested alone).
uint64_t established(int i) { return 0x1000 + uint64_t(i); }
uint64_t flood(int i) { return 0x10000000 + uint64_t(i); }

const ConnEntry *way_of(const ConnSet &set, uint64_t tag)
{
    for (const auto &e : set.way)
        if (e.tag == tag)
            return &e;
    return nullptr;
}

// A flow that sends its first packet at t0 and a confirming one (its ACK) at t0 + 1.
void open_flow(ConnSet &set, uint64_t tag, uint16_t slot, uint32_t t0)
{
    ASSERT_EQ(conn_find(set, tag, t0, kIdle), nullptr);
    conn_insert(set, tag, slot, uint16_t(100 + slot), t0, kIdle, false, true);
    ConnEntry *e = conn_find(set, tag, t0 + 1, kIdle);
    ASSERT_NE(e, nullptr);
    EXPECT_FALSE(conn_confirmed(*e));
    conn_touch(*e, t0 + 1, true);
    EXPECT_TRUE(conn_confirmed(*e));
}

TEST(ConnRule, EntrySizes)
{
    EXPECT_EQ(sizeof(ConnEntry), 16u);
    EXPECT_EQ(sizeof(ConnSet), 64u);
    EXPECT_EQ(alignof(ConnSet), 64u);
}

TEST(ConnRule, SynDoesNotConfirmLaterPacketDoesAndStays)
{
    ConnSet set{};
    EXPECT_EQ(conn_insert(set, 7, 1, 101, 10, kIdle, false, true), ConnInsert::added);
    ConnEntry *e = conn_find(set, 7, 11, kIdle);
    ASSERT_NE(e, nullptr);
    conn_touch(*e, 11, false);  // a retransmitted SYN
    EXPECT_FALSE(conn_confirmed(*e));
    conn_touch(*e, 12, true);  // the ACK
    EXPECT_TRUE(conn_confirmed(*e));
    conn_touch(*e, 13, false);  // a later SYN does not take it back
    EXPECT_TRUE(conn_confirmed(*e));
    EXPECT_EQ(conn_age(*e, 13), 0u);
    EXPECT_EQ(e->slot, 1);
    EXPECT_EQ(e->id_check, 101);
}

// Three established flows, quiet since t = 2; a flood of 10,000 one-packet flows (one per tick) into the
// same set. The flood only ever has the fourth way: each new flow evicts the one before it, and the three
// established flows stay, although every flood entry is fresher than they are.
TEST(ConnRule, EstablishedFlowsSurviveAFloodOfNewFlows)
{
    ConnSet set{};
    for (int i = 0; i < 3; i++)
        open_flow(set, established(i), uint16_t(i), 1);
    for (int i = 0; i < 10000; i++) {
        uint32_t now = 100 + uint32_t(i) / 16;  // ~600 ticks: nobody expires
        ConnInsert ev = conn_insert(set, flood(i), 9, 109, now, kIdle, false, true);
        EXPECT_EQ(ev, i == 0 ? ConnInsert::added : ConnInsert::evicted_unconfirmed) << "flood flow " << i;
        ASSERT_NE(way_of(set, flood(i)), nullptr);
        if (i > 0) {
            ASSERT_EQ(way_of(set, flood(i - 1)), nullptr);
        }
    }
    for (int i = 0; i < 3; i++) {
        ConnEntry *e = conn_find(set, established(i), 800, kIdle);
        ASSERT_NE(e, nullptr) << "established flow " << i << " lost its entry";
        EXPECT_EQ(e->slot, i);
        EXPECT_TRUE(conn_confirmed(*e));
    }
}

// With one established flow the flood has three ways and cycles through them, always evicting the stalest
// unconfirmed: flood flow i evicts flood flow i - 3 (one a tick, within the idle timeout of the first). No
// insert ever evicts a confirmed entry.
TEST(ConnRule, FloodLargerThanTheSetEvictsOnlyUnconfirmedStalestFirst)
{
    ConnSet set{};
    open_flow(set, established(0), 5, 1);
    for (int i = 0; i < 900; i++) {
        ConnInsert ev = conn_insert(set, flood(i), 9, 109, 10 + uint32_t(i), kIdle, false, true);
        EXPECT_NE(ev, ConnInsert::evicted_confirmed);
        EXPECT_EQ(ev, i < 3 ? ConnInsert::added : ConnInsert::evicted_unconfirmed);
        for (int k = std::max(0, i - 2); k <= i; k++)
            EXPECT_NE(way_of(set, flood(k)), nullptr) << "after " << i << ", flood flow " << k;
        if (i >= 3) {
            EXPECT_EQ(way_of(set, flood(i - 3)), nullptr) << "after " << i;
        }
    }
    EXPECT_NE(conn_find(set, established(0), 910, kIdle), nullptr);
}

// Unconfirmed entries are evicted by age, not by way: the stalest goes even when a fresher one sits in a
// lower way.
TEST(ConnRule, StalestUnconfirmedGoesFirst)
{
    ConnSet set{};
    open_flow(set, established(0), 0, 1);                    // way 0, confirmed
    conn_insert(set, flood(0), 9, 109, 50, kIdle, false, true);   // way 1
    conn_insert(set, flood(1), 9, 109, 20, kIdle, false, true);   // way 2: older than way 1 (clock read earlier)
    conn_insert(set, flood(2), 9, 109, 60, kIdle, false, true);   // way 3
    EXPECT_EQ(conn_insert(set, flood(3), 9, 109, 70, kIdle, false, true), ConnInsert::evicted_unconfirmed);
    EXPECT_EQ(way_of(set, flood(1)), nullptr);
    EXPECT_EQ(&set.way[2], way_of(set, flood(3)));
}

// Expiry still works: an entry idle for longer than the timeout is not found, and its way is taken first,
// confirmed or not, before any live entry, and without counting an eviction.
TEST(ConnRule, ExpiredEntriesAreForgottenAndReusedFirst)
{
    ConnSet set{};
    open_flow(set, established(0), 0, 1);  // confirmed, last seen at 2
    open_flow(set, established(1), 1, 500);
    conn_insert(set, flood(0), 9, 109, 600, kIdle, false, true);
    conn_insert(set, flood(1), 9, 109, 600, kIdle, false, true);
    uint32_t now = 2 + kIdle;  // flow 0 is exactly at the limit: still live
    EXPECT_NE(conn_find(set, established(0), now, kIdle), nullptr);
    now++;
    EXPECT_EQ(conn_find(set, established(0), now, kIdle), nullptr);
    EXPECT_EQ(conn_insert(set, flood(2), 9, 109, now, kIdle, false, true), ConnInsert::added);
    EXPECT_EQ(way_of(set, established(0)), nullptr);
    EXPECT_NE(way_of(set, flood(2)), nullptr);
    EXPECT_NE(conn_find(set, established(1), now, kIdle), nullptr);
    EXPECT_NE(conn_find(set, flood(0), now, kIdle), nullptr);
    EXPECT_NE(conn_find(set, flood(1), now, kIdle), nullptr);

    // Expired entries, confirmed (established(1), last seen at 501) or not (flood 0 and 1, at 600), all go
    // before the live unconfirmed flood(2) (1003), however stale it is.
    now = 1602;
    EXPECT_EQ(conn_find(set, established(1), now, kIdle), nullptr);
    EXPECT_EQ(conn_insert(set, flood(3), 9, 109, now, kIdle, false, true), ConnInsert::added);
    EXPECT_EQ(conn_insert(set, flood(4), 9, 109, now, kIdle, false, true), ConnInsert::added);
    EXPECT_EQ(conn_insert(set, flood(5), 9, 109, now, kIdle, false, true), ConnInsert::added);
    // Now the live ones are flood 2 (1003), 3, 4, 5 (1602): the next evicts flood 2, the stalest.
    EXPECT_EQ(conn_insert(set, flood(6), 9, 109, now, kIdle, false, true), ConnInsert::evicted_unconfirmed);
    EXPECT_EQ(way_of(set, flood(2)), nullptr);
}

// Four established flows fill the set; their last packets at 11, 21, 31 and 41 (flow 1 the stalest).
void fill_confirmed(ConnSet &set)
{
    open_flow(set, established(0), 0, 30);
    open_flow(set, established(1), 1, 10);
    open_flow(set, established(2), 2, 40);
    open_flow(set, established(3), 3, 20);
}

// A SYN never evicts a confirmed entry: a SYN flood into a set of four established flows is refused, all of
// it, and the four keep their entries.
TEST(ConnRule, SynNeverEvictsAConfirmedEntry)
{
    ConnSet set{};
    fill_confirmed(set);
    for (int i = 0; i < 1000; i++)
        EXPECT_EQ(conn_insert(set, flood(i), 9, 109, 100 + uint32_t(i) / 4, kIdle, false, true), ConnInsert::refused);
    for (int i = 0; i < 4; i++) {
        ConnEntry *e = conn_find(set, established(i), 400, kIdle);
        ASSERT_NE(e, nullptr) << "established flow " << i;
        EXPECT_EQ(e->slot, i);
    }
    EXPECT_EQ(way_of(set, flood(999)), nullptr);
}

// Only when all four ways hold live confirmed flows does a new flow's packet that is no SYN (a flow first
// seen mid-way, UDP) evict one of them: the stalest. Its entry starts unconfirmed.
TEST(ConnRule, AllConfirmedEvictsTheStalestConfirmed)
{
    ConnSet set{};
    fill_confirmed(set);
    EXPECT_EQ(conn_insert(set, flood(0), 9, 109, 100, kIdle, false, false), ConnInsert::evicted_confirmed);
    EXPECT_EQ(way_of(set, established(1)), nullptr);
    const ConnEntry *e = way_of(set, flood(0));
    ASSERT_NE(e, nullptr);
    EXPECT_FALSE(conn_confirmed(*e));
    // The set has an unconfirmed way again: new flows, SYN or not, go on in it, and the three left stay.
    for (int i = 1; i < 100; i++)
        EXPECT_EQ(conn_insert(set, flood(i), 9, 109, 100 + uint32_t(i), kIdle, false, i % 2 == 0),
                  ConnInsert::evicted_unconfirmed);
    for (int i : {0, 2, 3})
        EXPECT_NE(conn_find(set, established(i), 200, kIdle), nullptr);
    // Once that way's flow is confirmed too, the next new flow evicts the stalest of the four again: flow 3
    // (last seen at 21).
    conn_touch(*conn_find(set, flood(99), 200, kIdle), 200, true);
    EXPECT_EQ(conn_insert(set, flood(100), 9, 109, 201, kIdle, false, false), ConnInsert::evicted_confirmed);
    EXPECT_EQ(way_of(set, established(3)), nullptr);
}

// A flow's own entry is rewritten in place (a stale server replaced, or an expired entry renewed): no eviction.
TEST(ConnRule, OwnEntryIsRewrittenInPlace)
{
    ConnSet set{};
    for (int i = 0; i < 4; i++)
        open_flow(set, established(i), uint16_t(i), 10 + uint32_t(i));
    EXPECT_EQ(conn_insert(set, established(2), 7, 107, 50, kIdle, true, true), ConnInsert::added);
    const ConnEntry *e = way_of(set, established(2));
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->slot, 7);
    EXPECT_TRUE(conn_confirmed(*e));
    for (int i : {0, 1, 3})
        EXPECT_NE(way_of(set, established(i)), nullptr);
}

// The confirmed bit shares last_seen's word: ages stay right across the tick counter's wrap, whether or not
// an entry is confirmed.
TEST(ConnRule, AgesAcrossTheClockWrap)
{
    for (uint32_t start : {0x7ffffff0u, 0xfffffff0u, 0x80000000u}) {
        for (bool confirmed : {false, true}) {
            ConnSet set{};
            conn_insert(set, 3, 1, 101, start, kIdle, confirmed, true);
            ConnEntry *e = conn_find(set, 3, start + 32, kIdle);
            ASSERT_NE(e, nullptr) << start;
            EXPECT_EQ(conn_age(*e, start + 32), 32u);
            EXPECT_EQ(conn_confirmed(*e), confirmed);
            EXPECT_EQ(conn_find(set, 3, start + kIdle + 1, kIdle), nullptr) << start;
        }
    }
}

}  // namespace
}  // namespace understudy::dp
