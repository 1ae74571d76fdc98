// understudyctl plan: builds each pool's table under the current and the new config with the real table
// builder, compares the serving server ID bucket by bucket, and sets that against the least any scheme
// would move (the total variation distance between the ideal serving shares). docs/operations.md tells
// operators how to read it; the live mode only changes where `down` comes from.
#include "plan.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <sstream>
#include <stdexcept>
#include <unordered_map>

#include "table.h"

namespace understudy {

namespace {

using DownSet = std::set<std::pair<std::string, uint32_t>>;

std::set<uint32_t> down_in(const DownSet &down, const std::string &pool)
{
    std::set<uint32_t> ids;
    for (auto it = down.lower_bound({pool, 0}); it != down.end() && it->first == pool; ++it)
        ids.insert(it->second);
    return ids;
}

// The servers a pool can route to: the backends of either config, current order first, then the new
// ones; index size() stands for "nobody is operational".
struct Roster {
    std::vector<uint32_t> ids;
    std::unordered_map<uint32_t, size_t> index;

    void add(uint32_t id)
    {
        if (index.emplace(id, ids.size()).second)
            ids.push_back(id);
    }
    size_t nobody() const { return ids.size(); }
    size_t size() const { return ids.size() + 1; }
};

// Table slot -> roster index, so that tables whose slots differ compare by server ID.
std::vector<size_t> slot_map(const PoolTable &table, const Roster &roster)
{
    std::vector<size_t> map;
    for (const Member &m : table.members())
        map.push_back(m.present ? roster.index.at(m.id) : roster.nobody());
    return map;
}

size_t serving_of(const us_bucket_entry &e, const std::vector<size_t> &map, const Roster &roster)
{
    return e.serving == US_NO_SERVER ? roster.nobody() : map.at(e.serving);
}

std::vector<uint32_t> count_serving(const PoolTable &table, const Roster &roster)
{
    std::vector<uint32_t> counts(roster.size(), 0);
    auto map = slot_map(table, roster);
    for (const us_bucket_entry &e : table.entries())
        counts[serving_of(e, map, roster)]++;
    return counts;
}

PoolTable build_table(const Secret &secret, const Pool &pool, const std::set<uint32_t> &down)
{
    PoolTable table(secret, pool.table_bits);
    table.build(members_of(pool, down));
    return table;
}

// The new config's table. A full build hashes every member for every bucket; when only a few backends
// change, patching a copy of the current table with the builder's incremental operations costs about
// one hash per bucket and change, and gives the same entries (table_test holds the builder to that).
PoolTable next_table(const PoolTable &current, const Secret &secret, const Pool &pool, const std::set<uint32_t> &down)
{
    std::vector<Member> wanted = members_of(pool, down);
    std::unordered_map<uint32_t, const Member *> want;
    for (const Member &m : wanted)
        want.emplace(m.id, &m);
    size_t changes = 0, kept = 0;
    for (const Member &m : current.members()) {
        if (!m.present)
            continue;
        auto it = want.find(m.id);
        if (it == want.end()) {
            changes++;  // removed
            continue;
        }
        kept++;
        changes += (it->second->weight != m.weight) + (it->second->operational != m.operational);
    }
    changes += wanted.size() - kept;  // added
    if (changes * 4 > wanted.size()) {
        PoolTable table(secret, pool.table_bits);
        table.build(std::move(wanted));
        return table;
    }

    PoolTable table = current;
    std::set<uint32_t> present;
    for (uint32_t slot = 0; slot < table.members().size(); slot++) {
        const Member m = table.members()[slot];
        if (!m.present)
            continue;
        auto it = want.find(m.id);
        if (it == want.end()) {
            table.remove(slot);
            continue;
        }
        present.insert(m.id);
        if (it->second->weight != m.weight)
            table.set_weight(slot, it->second->weight);
        if (it->second->operational != m.operational)
            table.set_operational(slot, it->second->operational);
    }
    for (const Member &m : wanted)
        if (!present.count(m.id))
            table.add(m);
    return table;
}

// The serving distribution an ideal scheme would give, as integer weights over the roster: effective
// weights of the operational servers, 1 each when those are all 0, 1 for "nobody" when none is
// operational. Integers keep the distance exact, so 1/(N+1) comes out as the double nearest 1/(N+1).
std::vector<uint64_t> ideal_weights(const std::vector<Member> &members, const Roster &roster)
{
    std::vector<uint64_t> w(roster.size(), 0);
    uint64_t total = 0;
    size_t operational = 0;
    for (const Member &m : members) {
        if (m.present && m.operational) {
            w[roster.index.at(m.id)] = m.weight;
            total += m.weight;
            operational++;
        }
    }
    if (operational == 0)
        w[roster.nobody()] = 1;
    else if (total == 0)
        for (const Member &m : members)
            if (m.present && m.operational)
                w[roster.index.at(m.id)] = 1;
    return w;
}

// Total variation distance sum(max(0, a_i/A - b_i/B)) = sum(max(0, a_i*B - b_i*A)) / (A*B).
double total_variation(const std::vector<uint64_t> &a, const std::vector<uint64_t> &b)
{
    unsigned __int128 sum_a = 0, sum_b = 0, num = 0;
    for (size_t i = 0; i < a.size(); i++) {
        sum_a += a[i];
        sum_b += b[i];
    }
    for (size_t i = 0; i < a.size(); i++) {
        unsigned __int128 x = a[i] * sum_b, y = b[i] * sum_a;
        if (x > y)
            num += x - y;
    }
    return double(num) / double(sum_a * sum_b);
}

const Backend *find_backend(const Pool *pool, uint32_t id)
{
    if (!pool)
        return nullptr;
    for (const Backend &b : pool->backends)
        if (b.id == id)
            return &b;
    return nullptr;
}

void append(std::string &to, const std::string &what)
{
    if (!to.empty())
        to += "; ";
    to += what;
}

std::string backend_note(const Backend *before, const Backend *after, bool down)
{
    std::string note;
    if (!before)
        note = "added";
    else if (!after)
        note = "removed";
    else {
        if (before->weight != after->weight)
            append(note, "weight " + std::to_string(before->weight) + " -> " + std::to_string(after->weight));
        if (before->state != after->state)
            append(note, std::string(to_string(before->state)) + " -> " + std::string(to_string(after->state)));
        else if (after->state != AdminState::enabled)
            append(note, std::string(to_string(after->state)));  // why it serves nothing
        if (before->address != after->address)
            append(note, "address " + before->address.str() + " -> " + after->address.str() +
                             ": its sessions reach a different host");
    }
    if (down)
        append(note, "down");
    return note;
}

// Buckets per roster index: served before and after, moved away from and moved in to.
struct Tally {
    std::vector<uint32_t> before, after, away, in;
    explicit Tally(size_t n) : before(n, 0), after(n, 0), away(n, 0), in(n, 0) {}
};

// The backends' lines of one pool, from the serving counts per roster index.
void backend_rows(const PlanPool &pool, const Pool *before, const Pool *after, const std::set<uint32_t> &down_ids,
                  const Roster &roster, const Tally &t, PlanResult &out)
{
    const double nb = pool.buckets, na = pool.buckets_after;
    // A remap compares two tables of different sizes: what arrives is a share of the new table.
    const double in_denominator = before && after && pool.buckets != pool.buckets_after ? na : nb;

    for (size_t i = 0; i < roster.ids.size(); i++) {
        const uint32_t id = roster.ids[i];
        const Backend *b = find_backend(before, id), *a = find_backend(after, id);
        PlanBackend pb;
        pb.pool = pool.name;
        pb.id = id;
        pb.address = (a ? a : b)->address.str();
        pb.note = backend_note(b, a, down_ids.count(id) > 0);
        pb.share_before = nb ? t.before[i] / nb : 0.0;
        pb.share_after = na ? t.after[i] / na : 0.0;
        pb.moved_away = nb ? t.away[i] / nb : 0.0;
        pb.moved_in = in_denominator ? t.in[i] / in_denominator : 0.0;
        out.backends.push_back(std::move(pb));
    }
}

// One pool present in either config. Fills the pool's line and its backends' lines.
void plan_pool(const Config &current, const Config &next, const Pool *before, const Pool *after,
               const DownSet &down, PlanResult &out)
{
    const std::string &name = before ? before->name : after->name;
    const std::set<uint32_t> down_ids = down_in(down, name);
    Roster roster;
    for (const Pool *p : {before, after})
        if (p)
            for (const Backend &b : p->backends)
                roster.add(b.id);

    PlanPool pool;
    pool.name = name;
    Tally tally(roster.size());
    std::vector<uint64_t> ideal_before, ideal_after;

    if (before) {
        pool.table_bits_before = before->table_bits;
        pool.buckets = 1u << before->table_bits;
        ideal_before = ideal_weights(members_of(*before, down_ids), roster);
    }
    if (after) {
        pool.table_bits_after = after->table_bits;
        pool.buckets_after = 1u << after->table_bits;
        ideal_after = ideal_weights(members_of(*after, down_ids), roster);
    }

    if (before && after) {
        PoolTable t_before = build_table(current.secret, *before, down_ids);
        PoolTable t_after = before->table_bits == after->table_bits && current.secret == next.secret
                                ? next_table(t_before, next.secret, *after, down_ids)
                                : build_table(next.secret, *after, down_ids);
        tally.before = count_serving(t_before, roster);
        tally.after = count_serving(t_after, roster);
        pool.ideal = total_variation(ideal_before, ideal_after);
        const bool remap = before->table_bits != after->table_bits || current.secret != next.secret;
        if (remap) {
            // Every session's bucket is computed anew: nothing can be compared bucket by bucket.
            pool.moved_buckets = pool.buckets;
            tally.away = tally.before;
            tally.in = tally.after;
            if (before->table_bits != after->table_bits)
                append(pool.note, "table_bits " + std::to_string(before->table_bits) + " -> " +
                                      std::to_string(after->table_bits) + ": every session remaps");
            if (current.secret != next.secret)
                append(pool.note, "cluster secret changed: every session remaps");
        } else {
            auto map_before = slot_map(t_before, roster), map_after = slot_map(t_after, roster);
            auto eb = t_before.entries(), ea = t_after.entries();
            for (size_t b = 0; b < eb.size(); b++) {
                size_t s = serving_of(eb[b], map_before, roster), t = serving_of(ea[b], map_after, roster);
                if (s != t) {
                    pool.moved_buckets++;
                    tally.away[s]++;
                    tally.in[t]++;
                }
            }
        }
    } else if (before) {
        PoolTable t_before = build_table(current.secret, *before, down_ids);
        tally.before = count_serving(t_before, roster);
        tally.away = tally.before;
        pool.moved_buckets = pool.buckets;
        pool.ideal = 1.0;
        pool.note = "removed: every session of this pool loses its server";
    } else {
        PoolTable t_after = build_table(next.secret, *after, down_ids);
        tally.after = count_serving(t_after, roster);
        pool.note = "added: no sessions yet, not counted in the totals";
    }

    const double nb = pool.buckets, na = pool.buckets_after;
    pool.moved = pool.buckets ? pool.moved_buckets / nb : 0.0;
    pool.unserved_before = pool.buckets ? tally.before[roster.nobody()] / nb : 0.0;
    pool.unserved_after = pool.buckets_after ? tally.after[roster.nobody()] / na : 0.0;
    if (before && pool.unserved_before > 0)
        append(pool.note, "no operational server now for " + std::to_string(tally.before[roster.nobody()]) +
                              " buckets");
    if (after && pool.unserved_after > 0)
        append(pool.note, "no operational server after the change for " +
                              std::to_string(tally.after[roster.nobody()]) + " buckets");
    backend_rows(pool, before, after, down_ids, roster, tally, out);
    out.pools.push_back(std::move(pool));
}

std::string vip_name(const Vip &v)
{
    Endpoint ep{v.address, v.port};
    return ep.str() + "/" + std::string(to_string(v.protocol));
}

// Changes that move sessions without showing in any pool's table.
void vip_notes(const Config &current, const Config &next, PlanResult &out)
{
    for (const Vip &v : current.vips) {
        const Vip *n = next.find_vip(v.address, v.port, v.protocol);
        const std::string name = "vip " + vip_name(v);
        if (!n) {
            out.notes.push_back(name + ": removed, its sessions lose their server");
            continue;
        }
        if (n->pool != v.pool)
            out.notes.push_back(name + ": pool " + v.pool + " -> " + n->pool + ": every session of this VIP moves");
        if (n->affinity != v.affinity)
            out.notes.push_back(name + ": affinity " + std::string(to_string(v.affinity)) + " -> " +
                                std::string(to_string(n->affinity)) + ": every session of this VIP remaps");
    }
}

std::string percent(double fraction)
{
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f%%", fraction * 100.0);
    return buf;
}

}  // namespace

Result<PlanResult> plan_change(const Config &current, const Config &next, const DownSet &down)
{
    PlanResult out;
    try {
        for (const Pool &p : current.pools)
            plan_pool(current, next, &p, next.find_pool(p.name), down, out);
        for (const Pool &p : next.pools)
            if (!current.find_pool(p.name))
                plan_pool(current, next, nullptr, &p, down, out);
    } catch (const std::exception &e) {
        return Error{std::string("plan: ") + e.what()};
    }
    double ideal_buckets = 0;
    for (const PlanPool &p : out.pools) {
        out.buckets += p.buckets;
        out.moved_buckets += p.moved_buckets;
        ideal_buckets += p.ideal * p.buckets;
    }
    if (out.buckets) {
        out.moved = double(out.moved_buckets) / double(out.buckets);
        out.ideal = ideal_buckets / double(out.buckets);
    }
    vip_notes(current, next, out);
    return out;
}

static void print_pool(std::ostringstream &o, const PlanPool &p, const std::vector<const PlanBackend *> &rows)
{
    o << "pool " << p.name << "  ";
    if (!p.table_bits_before)
        o << "table_bits " << p.table_bits_after << " (" << p.buckets_after << " buckets)";
    else if (p.table_bits_after && p.table_bits_after != p.table_bits_before)
        o << "table_bits " << p.table_bits_before << " -> " << p.table_bits_after;
    else
        o << "table_bits " << p.table_bits_before << " (" << p.buckets << " buckets)";
    o << "  moved " << percent(p.moved) << " (ideal " << percent(p.ideal) << ")\n";
    if (!p.note.empty())
        o << "  note: " << p.note << "\n";
    int width = 7;
    for (const PlanBackend *b : rows)
        width = std::max(width, int(b->address.size()));
    char line[256];
    std::snprintf(line, sizeof line, "  %10s  %-*s  %8s    %8s  %10s  %8s\n", "backend", width, "address",
                  "before", "after", "moved away", "moved in");
    o << line;
    for (const PlanBackend *b : rows) {
        std::snprintf(line, sizeof line, "  %10u  %-*s  %8s -> %8s  %10s  %8s", b->id, width, b->address.c_str(),
                      percent(b->share_before).c_str(), percent(b->share_after).c_str(),
                      percent(b->moved_away).c_str(), percent(b->moved_in).c_str());
        o << line << (b->note.empty() ? "" : "  " + b->note) << "\n";
    }
    o << "\n";
}

std::string plan_text(const PlanResult &plan)
{
    std::map<std::string, std::vector<const PlanBackend *>> rows;
    for (const PlanBackend &b : plan.backends)
        rows[b.pool].push_back(&b);
    std::ostringstream o;
    for (const PlanPool &p : plan.pools)
        print_pool(o, p, rows[p.name]);
    for (const std::string &n : plan.notes)
        o << "note: " << n << "\n";
    o << "moved " << percent(plan.moved) << " of buckets (ideal " << percent(plan.ideal) << ")\n";
    return o.str();
}

}  // namespace understudy
