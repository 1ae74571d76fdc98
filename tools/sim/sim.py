#!/usr/bin/python3
"""Disruption simulator: how much do sessions move, and how even is the load, for
the understudy ordering contract compared with Maglev, a consistent-hash ring and
plain modulo.

  tools/sim/run              full run (a few minutes on 2 cores); writes docs/disruption.md
                             and docs/images/*.png, and prints the tables
  tools/sim/run --quick      ~30 s, prints the tables only (add --write to write the files)

Needs numpy and matplotlib (Debian: python3-numpy python3-matplotlib; tools/setup.sh must
install them). Everything is seeded: the same arguments give the same tables.

Sessions are random 64-bit session hashes: every scheme sees the same ones.

About the hash: the contract scores a (bucket, server) pair with
u = SipHash-1-3(secret, le64(bucket) || le32(id)). Running SipHash over 2^20 buckets x
1,000 servers in Python is far too slow, so the simulator uses a fast 64-bit mix
(splitmix64's finaliser, below) of the bucket and the id in its place. Only the
distribution of u matters for these statistics; `siphash_check` runs a small case with the
real SipHash-1-3 from tools/ordering_ref.py and prints both side by side.
"""

import argparse
import datetime
import hashlib
import multiprocessing
import os
import platform
import shlex
import sys
import time

sys.dont_write_bytecode = True  # never leave __pycache__ next to tools/ordering_ref.py

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tools"))

U64 = np.uint64
MAGLEV_M = 65537          # the table size the Maglev paper uses in its evaluation (a prime)
RING_VNODES = 100         # virtual nodes per backend of average weight
WEIGHT_SET = (1, 2, 4)    # "unequal weights": each backend draws one of these
TWO53_INV = 2.0 ** -53

# --------------------------------------------------------------------------- fast hashing


def fmix64(x, inplace=False):
    """splitmix64's output function: a bijective, well-avalanching 64-bit mix (numpy; with
    inplace=True x must be a uint64 array, which is overwritten)."""
    if not inplace:
        x = np.array(x, dtype=U64, copy=True)
    x ^= x >> U64(30)
    x *= U64(0xBF58476D1CE4E5B9)
    x ^= x >> U64(27)
    x *= U64(0x94D049BB133111EB)
    x ^= x >> U64(31)
    return x


def fmix64_int(v):
    return int(fmix64(np.array([v & 0xFFFFFFFFFFFFFFFF], dtype=U64))[0])


PHI = U64(0x9E3779B97F4A7C15)
PHI2 = U64(0xD1B54A32D192ED03)


def secret_words(seed):
    """Two 64-bit key words for the fast hash, derived from a small integer seed."""
    return fmix64_int(seed * 0x9E3779B97F4A7C15 + 1), fmix64_int(seed * 0xD1B54A32D192ED03 + 2)


def fast_u(buckets, ids, key):
    """u for every (bucket, id): fmix64(fmix64(bucket*phi ^ k0) ^ fmix64(id*phi2 + k1)).
    Returns a len(buckets) x len(ids) uint64 matrix. Stand-in for SipHash-1-3 (see module doc)."""
    k0, k1 = key
    hb = fmix64((np.asarray(buckets, dtype=U64) * PHI) ^ U64(k0), inplace=True)
    hs = fmix64(np.asarray(ids, dtype=U64) * PHI2 + U64(k1), inplace=True)
    return fmix64(hb[:, None] ^ hs[None, :], inplace=True)


def scores_from_u(u, weights):
    """The contract's score, weight / -ln(((u >> 11) + 0.5) / 2^53), in float64; +inf when
    -ln(x) is 0 (x rounds to 1.0) and the weight is positive, 0 for weight 0."""
    w = np.asarray(weights, dtype=np.float64)
    x = (u >> U64(11)).astype(np.float64)
    x += 0.5
    x *= TWO53_INV
    np.log(x, out=x)
    np.negative(x, out=x)  # x is now -ln(x) >= 0
    if x.all():
        np.divide(w, x, out=x)
    else:  # -ln(x) == 0 only when u >> 11 == 2^53 - 1: the contract says +inf (0 for weight 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            x = np.where(x == 0.0, np.inf, w / x)
    if (w <= 0).any():
        x = np.where(w > 0, x, 0.0)
    return x


def rank_keys(u, weights):
    """What the simulator compares to rank servers in a bucket. With equal weights the score is
    a strictly increasing function of u >> 11 and ties go to the higher u, so ranking by u
    itself is exactly the contract's order (and skips the logarithm). Otherwise: the score."""
    return u if weights is None else scores_from_u(u, weights)


# --------------------------------------------------------------------------- worker pool

POOL = None


def pool_map(fn, items):
    if POOL is None:
        return [fn(i) for i in items]
    return POOL.map(fn, items, chunksize=1)


# --------------------------------------------------------------------------- 1. the ordering contract


def _rdv_chunk(args):
    lo, hi, ids, weights, key, top = args
    n = len(ids)
    step = max(64, (1 << 16) // max(n, 1))  # ~64k (bucket, server) pairs at a time: cache-sized
    i1 = np.empty(hi - lo, dtype=np.int32)
    i2 = np.empty(hi - lo, dtype=np.int32) if top >= 2 else None
    best = np.empty(hi - lo, dtype=U64 if weights is None else np.float64)
    for s in range(lo, hi, step):
        e = min(hi, s + step)
        k = rank_keys(fast_u(np.arange(s, e, dtype=U64), ids, key), weights)
        rows = np.arange(e - s)
        a = k.argmax(axis=1)  # ties: first column = lowest id, as the contract says
        i1[s - lo:e - lo] = a
        best[s - lo:e - lo] = k[rows, a]
        if i2 is not None:
            k[rows, a] = 0
            i2[s - lo:e - lo] = k.argmax(axis=1)
    return i1, i2, best


def rendezvous(ids, weights, table_bits, key, top=1):
    """Per bucket: index (into ids) of the first server of the ordering, of the second if
    top >= 2, and the first one's rank key. Spread over the worker pool."""
    ids = np.asarray(ids, dtype=U64)
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    nb = 1 << table_bits
    parts = max(1, min(64, nb // 4096, (nb * len(ids)) // (1 << 22)))
    bounds = [(nb * i) // parts for i in range(parts + 1)]
    res = pool_map(_rdv_chunk, [(bounds[i], bounds[i + 1], ids, w, key, top) for i in range(parts)])
    i1 = np.concatenate([r[0] for r in res])
    i2 = np.concatenate([r[1] for r in res]) if top >= 2 else None
    best = np.concatenate([r[2] for r in res])
    return i1, i2, best


# --------------------------------------------------------------------------- 2. Maglev


def maglev_perm(bid):
    """offset and skip of a backend from two independent hashes of its name (the paper's
    permutation: slot j of the preference list is (offset + j * skip) mod M)."""
    name = b"backend-%d" % bid
    h1 = int.from_bytes(hashlib.blake2b(name, digest_size=8, person=b"maglev-offset").digest(), "little")
    h2 = int.from_bytes(hashlib.blake2b(name, digest_size=8, person=b"maglev-skip").digest(), "little")
    return h1 % MAGLEV_M, h2 % (MAGLEV_M - 1) + 1


def _maglev_populate(args):
    """The paper's populate loop: backends take turns, each claiming the next still-empty slot
    of its own preference list, until the table is full. Weighted variant: a backend of
    weight w gets w / w_max turns per round (integer credit, so exact); equal weights give
    one turn each per round, which is the paper's loop unchanged."""
    ids, weights = args
    m = MAGLEV_M
    n = len(ids)
    perm = [maglev_perm(b) for b in ids]
    pos = [p[0] for p in perm]
    skip = [p[1] for p in perm]
    entry = [-1] * m
    filled = 0
    if weights is None:
        wts, wmax = [1] * n, 1
    else:
        wts, wmax = [int(x) for x in weights], int(max(weights))
    credit = [0] * n
    while True:
        for i in range(n):
            credit[i] += wts[i]
            while credit[i] >= wmax:
                credit[i] -= wmax
                c = pos[i]
                while entry[c] >= 0:
                    c += skip[i]
                    if c >= m:
                        c -= m
                entry[c] = i
                c += skip[i]
                if c >= m:
                    c -= m
                pos[i] = c
                filled += 1
                if filled == m:
                    return np.asarray(ids, dtype=np.int64)[np.asarray(entry)]


def maglev_tables(configs):
    """configs: [(ids, weights or None)] -> [table of backend ids, length M]."""
    return pool_map(_maglev_populate, [(list(map(int, i)), w) for i, w in configs])


# --------------------------------------------------------------------------- 3. consistent-hash ring


def ring_build(ids, weights, vnodes=RING_VNODES, seed=0):
    """Virtual nodes at hashed points; a session goes to the first point at or after its hash
    (wrapping). A backend gets round(vnodes * weight / mean weight) points (at least 1)."""
    ids = np.asarray(ids, dtype=np.int64)
    if weights is None:
        counts = np.full(len(ids), vnodes)
    else:
        w = np.asarray(weights, dtype=np.float64)
        counts = np.maximum(1, np.rint(vnodes * w / w.mean())).astype(np.int64)
    owner = np.repeat(ids, counts)
    rep = np.concatenate([np.arange(c) for c in counts]).astype(U64)
    k0, k1 = secret_words(1000 + seed)
    pts = fmix64(fmix64(owner.astype(U64) * PHI + U64(k0)) ^ (rep * PHI2 + U64(k1)))
    order = np.argsort(pts, kind="stable")
    return pts[order], owner[order]


def ring_lookup(ring, h):
    pts, owner = ring
    i = np.searchsorted(pts, h, side="left")
    i[i == len(pts)] = 0
    return owner[i]


def ring_arcs(ring):
    """Share of the 64-bit hash space each point owns: (previous point, this point]."""
    pts, _ = ring
    arcs = pts - np.roll(pts, 1)  # uint64 wrap-around does the first arc right
    return arcs.astype(np.float64) / 2.0 ** 64


# --------------------------------------------------------------------------- 4. modulo


def modulo_slots(ids, weights):
    """hash % len(slots) -> slots[...]; weighted: a backend appears weight times (its weights
    are small integers here), equal weights: plain hash % N over the backends sorted by id."""
    ids = np.asarray(ids, dtype=np.int64)
    return ids if weights is None else np.repeat(ids, np.asarray(weights, dtype=np.int64))


def modulo_lookup(slots, h):
    return slots[(h % U64(len(slots))).astype(np.int64)]


# --------------------------------------------------------------------------- metrics


def balance(shares, weights=None):
    """max/mean and coefficient of variation of load / expected load (expected ~ weight)."""
    shares = np.asarray(shares, dtype=np.float64)
    if weights is None:
        exp = np.full(len(shares), shares.sum() / len(shares))
    else:
        w = np.asarray(weights, dtype=np.float64)
        exp = shares.sum() * w / w.sum()
    r = shares / exp
    return float(r.max()), float(r.std())


def counts_by_id(assign, ids, weights=None, minlength=None):
    c = np.bincount(assign, weights=weights, minlength=minlength or (int(np.max(ids)) + 1))
    return c[np.asarray(ids, dtype=np.int64)]


def spread_stats(received, own=None):
    """received: what each survivor takes over from the failed backend; own: what each survivor
    carried before (same units). max_increase: the largest received/own, i.e. the biggest
    relative load increase of any survivor (ideal: 1/(N-1) for everyone)."""
    r = np.asarray(received, dtype=np.float64)
    mean = r.mean()
    out = {"max_mean": float(r.max() / mean), "cv": float(r.std() / mean),
           "reached": float((r > 0).mean())}
    if own is not None:
        out["max_increase"] = float(np.max(r / np.asarray(own, dtype=np.float64)))
    return out


def multinomial_baseline(cells, weights, n, reps, rng):
    """Expected max/mean if each of `cells` equal cells went to a backend independently at
    random with probability ~ weight: the floor for any scheme that assigns cells by hash."""
    p = np.full(n, 1.0 / n) if weights is None else np.asarray(weights, float) / np.sum(weights)
    draws = rng.multinomial(cells, p, size=reps)
    return float(np.mean(np.max(draws / (cells * p), axis=1)))


# --------------------------------------------------------------------------- experiments


class Sim:
    def __init__(self, a):
        self.a = a
        self.rng = np.random.default_rng(a.seed)
        self.sessions = self.rng.integers(0, 2 ** 64, size=a.sessions, dtype=U64, endpoint=False)
        self.sessions.sort()  # order is irrelevant to every metric; sorted lookups are faster
        self.key = secret_words(a.seed)
        self.tb = a.table_bits
        self.buckets_of_sessions = (self.sessions & U64((1 << self.tb) - 1)).astype(np.int64)
        self.maglev_index = (self.sessions % U64(MAGLEV_M)).astype(np.int64)
        self.verified = []
        self.equal_tables = {}  # (n, table_bits) -> primary id per bucket, equal weights

    # ---- a + b: one backend fails, one is added (equal weights)
    def churn(self, n, fails):
        h = self.sessions
        S = len(h)
        ids = np.arange(1, n + 1, dtype=np.int64)
        new = n + 1
        rows = {}

        def record(name, before, afters_fail, spreads, after_add):
            r = {"fail_moved": [], "fail_own": [], "fail_stray": [], "spread": spreads}
            for f, after in zip(fails, afters_fail):
                moved = before != after
                r["fail_moved"].append(moved.sum() / S)
                r["fail_own"].append((before == f).sum() / S)
                r["fail_stray"].append((moved & (before != f)).sum() / S)
            moved = before != after_add
            r["add_moved"] = moved.sum() / S
            r["add_new"] = (after_add == new).sum() / S
            r["add_stray"] = (moved & (after_add != new)).sum() / S
            rows[name] = r

        # 1. ordering contract: first and second of every bucket's ordering
        i1, i2, best = rendezvous(ids, None, self.tb, self.key, top=2)
        prim = ids[i1]
        second = ids[i2]
        self.equal_tables[(n, self.tb)] = prim
        b = self.buckets_of_sessions
        before = prim[b]
        afters, spreads = [], []
        for j, f in enumerate(fails):
            serving = np.where(prim == f, second, prim)  # serving() with f down
            if j == 0 and n <= self.a.verify_max_n:  # check against a table built from scratch without f
                surv = ids[ids != f]
                s1, _, _ = rendezvous(surv, None, self.tb, self.key, top=1)
                same = np.array_equal(surv[s1], serving)
                self.verified.append((n, same))
                assert same, "rendezvous: serving with %d down != table without %d" % (f, f)
            afters.append(serving[b])
            surv = ids[ids != f]
            spreads.append(spread_stats(counts_by_id(serving[prim == f], surv, minlength=new + 1),
                                        counts_by_id(prim, surv, minlength=new + 1)))
        _, _, knew = rendezvous(np.array([new]), None, self.tb, self.key, top=1)
        prim_add = np.where(knew > best, new, prim)
        record("ordering contract", before, afters, spreads, prim_add[b])
        r = rows["ordering contract"]
        # the contract's promise, checked on every run: only the failed backend's sessions move, and an
        # addition only moves sessions to the new backend
        assert max(r["fail_stray"]) == 0 and r["add_stray"] == 0, "ordering contract moved a session it should not"
        assert all(m == o for m, o in zip(r["fail_moved"], r["fail_own"]))
        loads = {"ordering contract": balance(counts_by_id(prim, ids))}

        # 2. Maglev
        cfgs = [(ids, None)] + [(ids[ids != f], None) for f in fails] + [(np.append(ids, new), None)]
        tabs = maglev_tables(cfgs)
        mi = self.maglev_index
        spreads = []
        for f, t in zip(fails, tabs[1:-1]):
            spreads.append(spread_stats(counts_by_id(t[tabs[0] == f], ids[ids != f], minlength=new + 1),
                                        counts_by_id(tabs[0], ids[ids != f], minlength=new + 1)))
        record("Maglev", tabs[0][mi], [t[mi] for t in tabs[1:-1]], spreads, tabs[-1][mi])
        loads["Maglev"] = balance(counts_by_id(tabs[0], ids))

        # 3. ring
        ring = ring_build(ids, None)
        afters, spreads = [], []
        arcs = ring_arcs(ring)
        for f in fails:
            r2 = ring_build(ids[ids != f], None)
            afters.append(ring_lookup(r2, h))
            mine = ring[1] == f
            takers = ring_lookup(r2, ring[0][mine])  # whole arc goes to the next surviving point
            spreads.append(spread_stats(counts_by_id(takers, ids[ids != f], weights=arcs[mine], minlength=new + 1),
                                        counts_by_id(ring[1], ids[ids != f], weights=arcs, minlength=new + 1)))
        record("hash ring (100 vnodes)", ring_lookup(ring, h), afters, spreads,
               ring_lookup(ring_build(np.append(ids, new), None), h))
        loads["hash ring (100 vnodes)"] = balance(counts_by_id(ring[1], ids, weights=arcs))

        # 4. modulo
        slots = ids
        afters, spreads = [], []
        L = np.arange(n * (n - 1), dtype=np.int64)  # (h mod n, h mod n-1) is uniform over these
        for f in fails:
            surv = ids[ids != f]
            afters.append(modulo_lookup(surv, h))
            took = surv[L % (n - 1)][ids[L % n] == f]
            spreads.append(spread_stats(counts_by_id(took, surv, minlength=new + 1), np.full(n - 1, n - 1.0)))
        record("modulo", modulo_lookup(slots, h), afters, spreads,
               modulo_lookup(np.append(ids, new), h))
        loads["modulo"] = (1.0, 0.0)
        return rows, loads

    # ---- c: load balance, hash-space shares and sessions
    def loads(self, n, weights, table_bits_list):
        ids = np.arange(1, n + 1, dtype=np.int64)
        out = {}
        h = self.sessions
        for tb in table_bits_list:
            prim = self.equal_tables.get((n, tb)) if weights is None else None
            if prim is None:
                i1, _, _ = rendezvous(ids, weights, tb, self.key, top=1)
                prim = ids[i1]
            sb = prim[(h & U64((1 << tb) - 1)).astype(np.int64)]
            out["ordering contract, table_bits %d" % tb] = (
                balance(counts_by_id(prim, ids), weights), balance(counts_by_id(sb, ids), weights), 1 << tb)
        t = maglev_tables([(ids, weights)])[0]
        out["Maglev"] = (balance(counts_by_id(t, ids), weights),
                         balance(counts_by_id(t[self.maglev_index], ids), weights), MAGLEV_M)
        ring = ring_build(ids, weights)
        out["hash ring (100 vnodes)"] = (balance(counts_by_id(ring[1], ids, weights=ring_arcs(ring)), weights),
                                         balance(counts_by_id(ring_lookup(ring, h), ids), weights), None)
        slots = modulo_slots(ids, weights)
        out["modulo"] = (balance(counts_by_id(slots, ids), weights),
                         balance(counts_by_id(modulo_lookup(slots, h), ids), weights), None)
        return out


def draw_weights(n, kind, seed):
    if kind == "equal":
        return None
    rng = np.random.default_rng(seed * 7919 + n)
    if kind == "1,2,4":
        return rng.choice(np.array(WEIGHT_SET), size=n)
    if kind == "50..150":
        return rng.integers(50, 151, size=n)
    raise ValueError(kind)


# --------------------------------------------------------------------------- SipHash agreement


def _sip_rows(args):
    secret, lo, hi, ids = args
    import ordering_ref
    u = np.empty((hi - lo, len(ids)), dtype=U64)
    for r, b in enumerate(range(lo, hi)):
        for c, sid in enumerate(ids):
            u[r, c] = ordering_ref.server_u(secret, b, int(sid))
    return u


def sip_u(secret, table_bits, ids):
    nb = 1 << table_bits
    parts = 16
    res = pool_map(_sip_rows, [(secret, nb * i // parts, nb * (i + 1) // parts, list(ids)) for i in range(parts)])
    return np.concatenate(res)


def contract_stats(u, ids, weights_w):
    """Statistics of one (bucket x server) u matrix; the last column is the server that gets
    added, the others are the pool."""
    n = len(ids) - 1
    pool_ids = ids[:n]
    k = u[:, :n].copy()
    rows = np.arange(len(u))
    a = k.argmax(axis=1)
    prim = pool_ids[a]
    best = k[rows, a]
    k[rows, a] = 0
    second = pool_ids[k.argmax(axis=1)]
    x = ((u >> U64(11)).astype(np.float64) + 0.5) * TWO53_INV
    xs = np.sort(x.ravel())
    m = len(xs)
    ks = max(np.max(np.arange(1, m + 1) / m - xs), np.max(xs - np.arange(m) / m))
    eq_max, eq_cv = balance(counts_by_id(prim, pool_ids))
    sc = scores_from_u(u[:, :n], weights_w)
    w_max, _ = balance(counts_by_id(pool_ids[sc.argmax(axis=1)], pool_ids), weights_w)
    f = pool_ids[0]
    serving = np.where(prim == f, second, prim)
    moved = prim != serving
    sp = spread_stats(counts_by_id(serving[prim == f], pool_ids[1:]))
    added = u[:, n] > best
    return {"ks": ks * np.sqrt(m), "eq_max": eq_max, "eq_cv": eq_cv, "w_max": w_max,
            "fail_ratio": moved.sum() / (prim == f).sum(), "fail_stray": int((moved & (prim != f)).sum()),
            "spread_cv": sp["cv"], "add_share": added.mean(), "add_stray": 0}


def siphash_check(a):
    """Same small pool, real SipHash-1-3 vs the fast stand-in, several secrets each."""
    import ordering_ref
    tb, n = a.sip_bits, 10
    ids = np.arange(1, n + 2, dtype=np.int64)  # 1..10 is the pool, 11 is added
    w = draw_weights(n, "1,2,4", a.seed)
    rng = np.random.default_rng(a.seed + 99)
    sip, fast = [], []
    checked = 0
    for s in range(a.sip_secrets):
        secret = bytes(rng.integers(0, 256, size=16, dtype=np.uint8))
        u = sip_u(secret, tb, ids)
        sip.append(contract_stats(u, ids, w))
        if s == 0:
            # the vectorised scoring must reproduce the reference's full ordering
            sc = scores_from_u(u[:, :n], w)
            for bkt in range(0, 1 << tb, max(1, (1 << tb) // 256)):
                mine = list(ids[:n][np.lexsort((ids[:n], -u[bkt, :n].astype(np.float64), -sc[bkt]))])
                # (u as float only breaks ties between equal scores, which do not occur here)
                ref = ordering_ref.ordering(secret, bkt, [(int(i), int(x)) for i, x in zip(ids[:n], w)])
                assert [int(v) for v in mine] == ref, (bkt, mine, ref)
                checked += 1
    for s in range(a.sip_secrets * 4):
        buckets = np.arange(1 << tb, dtype=U64)
        fast.append(contract_stats(fast_u(buckets, ids, secret_words(5000 + s)), ids, w))
    # expectations for an ideal random u
    rr = np.random.default_rng(a.seed + 7)
    nb = 1 << tb
    ideal_eq = multinomial_baseline(nb, None, n, 2000, rr)
    ideal_w = multinomial_baseline(nb, w, n, 2000, rr)
    ideal_cv = np.sqrt((1 - 1 / n) / (nb / n))
    return {"tb": tb, "n": n, "sip": sip, "fast": fast, "checked": checked, "weights": w,
            "ideal_eq": ideal_eq, "ideal_w": ideal_w, "ideal_cv": ideal_cv,
            "ideal_spread_cv": np.sqrt((1 - 1 / (n - 1)) / ((nb / n) / (n - 1)))}


# --------------------------------------------------------------------------- output

SCHEMES = ["ordering contract", "Maglev", "hash ring (100 vnodes)", "modulo"]


def fmt_pct(x):
    return "%.3f%%" % (100 * x) if x < 0.1 else "%.1f%%" % (100 * x)


def md_table(header, rows, align=None):
    align = align or ["l"] + ["r"] * (len(header) - 1)
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join((":---" if x == "l" else "---:") for x in align) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return os.cpu_count(), model


def plots(res, images):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams.update({"font.size": 9, "axes.grid": True, "grid.alpha": 0.3})
    styles = {"ordering contract": ("C0", "o", "-"), "Maglev": ("C1", "s", "-"),
              "hash ring (100 vnodes)": ("C2", "^", "-"), "modulo": ("C3", "x", "-")}
    Ns = res["Ns"]
    files = {}

    # fail
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for s in SCHEMES:
        c, m, ls = styles[s]
        ax1.plot(Ns, [np.mean(res["churn"][n][0][s]["fail_moved"]) for n in Ns], color=c, marker=m, label=s)
        ax2.plot(Ns, [np.mean([d["max_mean"] for d in res["churn"][n][0][s]["spread"]]) for n in Ns],
                 color=c, marker=m, label=s)
    ax1.plot(Ns, [1 / n for n in Ns], "k--", lw=1, label="ideal: the failed backend's share (1/N)")
    ax1.set(xscale="log", yscale="log", xlabel="backends N", ylabel="sessions moved (share of all)",
            title="One backend fails: sessions moved")
    ax1.legend(fontsize=7)
    ax2.axhline(1, color="k", ls="--", lw=1, label="ideal: perfectly even")
    ax2.set(xscale="log", yscale="log", xlabel="backends N",
            ylabel="max / mean of what survivors take over",
            title="Where the failed backend's sessions go")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    files["fail"] = os.path.join(images, "disruption-fail.png")
    fig.savefig(files["fail"], dpi=90)
    plt.close(fig)

    # add
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for s in SCHEMES:
        c, m, ls = styles[s]
        ax.plot(Ns, [res["churn"][n][0][s]["add_moved"] for n in Ns], color=c, marker=m, label=s)
    ax.plot(Ns, [1 / (n + 1) for n in Ns], "k--", lw=1, label="ideal: 1/(N+1)")
    ax.set(xscale="log", yscale="log", xlabel="backends N (before the addition)",
           ylabel="sessions moved (share of all)", title="One backend added: sessions moved")
    ax.legend(fontsize=7)
    fig.tight_layout()
    files["add"] = os.path.join(images, "disruption-add.png")
    fig.savefig(files["add"], dpi=90)
    plt.close(fig)

    # load balance
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, kind, title in ((axes[0], "equal", "equal weights"), (axes[1], "1,2,4", "weights drawn from {1, 2, 4}")):
        L = res["loads"][kind]
        Nk = [n for n in Ns if n in L]  # --quick has no weighted curve above 100 backends
        for s, key in (("ordering contract", "ordering contract, table_bits %d" % res["tb"]),
                       ("Maglev", "Maglev"), ("hash ring (100 vnodes)", "hash ring (100 vnodes)"),
                       ("modulo", "modulo")):
            c, m, ls = styles[s]
            ax.plot(Nk, [L[n][key][0][0] for n in Nk], color=c, marker=m,
                    label=s + (" (table_bits %d)" % res["tb"] if s == "ordering contract" else ""))
        ax.plot(Nk, [L[n]["ordering contract, table_bits 16"][0][0] for n in Nk], color="C0", marker="o",
                ls=":", mfc="none", label="ordering contract (table_bits 16)")
        ax.plot(Nk, [res["baseline"][kind][n][res["tb"]] for n in Nk], color="grey", lw=4, alpha=0.35,
                label="random 2^%d cells, expected" % res["tb"])
        ax.axhline(1.05, color="grey", ls="--", lw=1, label="1.05 target")
        ax.set(xscale="log", xlabel="backends N", title="Busiest backend, " + title, xlim=(7, 1400))
        ax.legend(fontsize=7)
    axes[0].set_ylabel("max load / expected load")
    fig.tight_layout()
    files["load"] = os.path.join(images, "load-balance.png")
    fig.savefig(files["load"], dpi=90)
    plt.close(fig)
    return files


def report(res, a, cmdline, runtime):
    Ns = res["Ns"]
    tb = res["tb"]
    S = a.sessions
    out = {}

    def ratio(x, y):
        return "%.3f" % (x / y) if y else "-"

    # headline
    rows = []
    for n in res["headline_N"]:
        rows_n = res["churn"][n][0]
        for s in SCHEMES:
            r = rows_n[s]
            fm, fo = np.mean(r["fail_moved"]), np.mean(r["fail_own"])
            rows.append([s, n, fmt_pct(fm), fmt_pct(fo), ratio(fm, fo), fmt_pct(max(r["fail_stray"])),
                         fmt_pct(r["add_moved"]), fmt_pct(1 / (n + 1)), ratio(r["add_moved"], 1 / (n + 1)),
                         fmt_pct(r["add_stray"])])
    out["headline"] = md_table(
        ["scheme", "N", "fail: moved", "fail: ideal (failed one's share)", "moved / ideal",
         "fail: moved between survivors", "add: moved", "add: ideal 1/(N+1)", "moved / ideal",
         "add: moved between old backends"], rows)

    rows = []
    for n in Ns:
        for s in SCHEMES:
            r = res["churn"][n][0][s]
            fm, fo = np.mean(r["fail_moved"]), np.mean(r["fail_own"])
            sp = r["spread"]
            rows.append([s, n, fmt_pct(fm), fmt_pct(fo), fmt_pct(1 / n), ratio(fm, fo), fmt_pct(max(r["fail_stray"])),
                         "%.2f" % np.mean([d["max_mean"] for d in sp]), "%.2f" % np.mean([d["cv"] for d in sp]),
                         "%.0f%%" % (100 * np.mean([d["reached"] for d in sp])),
                         "+%s" % fmt_pct(np.mean([d["max_increase"] for d in sp])), "+%s" % fmt_pct(1 / (n - 1))])
    out["fail"] = md_table(["scheme", "N", "moved", "failed one's share", "1/N", "moved / share",
                            "moved between survivors (worst)", "spread max/mean", "spread CV",
                            "survivors that take some", "busiest survivor's load increase",
                            "ideal increase 1/(N-1)"], rows)

    rows = []
    for n in Ns:
        for s in SCHEMES:
            r = res["churn"][n][0][s]
            rows.append([s, n, fmt_pct(r["add_moved"]), fmt_pct(r["add_new"]), fmt_pct(1 / (n + 1)),
                         ratio(r["add_moved"], 1 / (n + 1)), fmt_pct(r["add_stray"])])
    out["add"] = md_table(["scheme", "N", "moved", "new backend's share", "1/(N+1)", "moved / (1/(N+1))",
                           "moved between old backends"], rows)

    def load_rows(kind):
        rows = []
        for n in [n for n in Ns if n in res["loads"][kind]]:
            L = res["loads"][kind][n]
            keys = ["ordering contract, table_bits 16", "ordering contract, table_bits %d" % tb,
                    "Maglev", "hash ring (100 vnodes)", "modulo"]
            base = res["baseline"][kind][n]
            rows.append([n] + ["%.3f" % L[k][0][0] for k in keys] + ["%.3f" % base[16], "%.3f" % base[tb]])
        return rows

    hdr = ["N", "contract tb 16", "contract tb %d" % tb, "Maglev M=65,537", "ring 100 vnodes", "modulo",
           "random cells 2^16", "random cells 2^%d" % tb]
    out["load_eq"] = md_table(hdr, load_rows("equal"))
    out["load_w"] = md_table(hdr, load_rows("1,2,4"))

    rows = []
    t256 = res["t256"]
    for kind in ("equal", "1,2,4", "50..150"):
        for k, v in t256[kind].items():
            (hm, hcv), (sm, scv), cells = v
            base = res["t256_base"][kind].get(cells)
            rows.append([kind if kind == "equal" else "weights " + kind, k, "%.4f" % hm, "%.4f" % hcv,
                         "%.4f" % sm, "%.3f" % base if base else "-"])
    out["t256"] = md_table(["weights", "scheme", "max/mean (hash space)", "CV (hash space)",
                            "max/mean (%s sessions)" % f"{S:,}", "random cells, expected max/mean"], rows)

    sec = res["secrets256"]
    out["secrets"] = ("with 256 equal backends and table_bits %d the busiest backend carries **%.4f x** the mean "
                      "with this run's secret; over %d secrets (this one and %d others) min %.4f, median %.4f, "
                      "max %.4f, %d of %d at or below 1.05. Buckets dealt out at random would give %.4f on "
                      "average and exceed 1.05 with probability %.0f%%, so the target is what a typical secret "
                      "gives, not a bound" % (
                          tb, sec[0], len(sec), len(sec) - 1, min(sec), float(np.median(sec)), max(sec),
                          sum(1 for x in sec if x <= 1.05), len(sec), res["p105"][0], 100 * res["p105"][1]))

    sc = res["sip"]

    def ms(vals, f="%.4f"):
        return (f + " ± " + f) % (np.mean(vals), np.std(vals))

    rows = []
    for key, label, ideal in (("ks", "KS statistic of x vs uniform, x sqrt(n)", "≈ 0.87 ± 0.26"),
                              ("eq_max", "max/mean, equal weights", "%.4f" % sc["ideal_eq"]),
                              ("eq_cv", "CV of bucket counts, equal weights", "%.4f" % sc["ideal_cv"]),
                              ("w_max", "max/mean, weights {1,2,4}", "%.4f" % sc["ideal_w"]),
                              ("fail_ratio", "fail: buckets moved / buckets of the failed server", "1 exactly"),
                              ("fail_stray", "fail: buckets moved between survivors", "0 exactly"),
                              ("spread_cv", "fail: CV of what survivors take over", "%.4f" % sc["ideal_spread_cv"]),
                              ("add_share", "add: share of buckets the new server takes", "%.4f" % (1 / (sc["n"] + 1)))):
        f = "%.0f" if key == "fail_stray" else "%.4f"
        rows.append([label, ms([d[key] for d in sc["sip"]], f), ms([d[key] for d in sc["fast"]], f), ideal])
    out["sip"] = md_table(["statistic", "SipHash-1-3 (%d secrets)" % len(sc["sip"]),
                           "fast stand-in (%d secrets)" % len(sc["fast"]), "ideal random"], rows)
    return out


DOC_HEAD = """# Disruption and balance: the ordering contract against Maglev, a hash ring and modulo

This page is generated by the disruption simulator, `tools/sim/run`; do not edit it by hand, rerun the
simulator. It answers two questions an operator asks about any load balancer that spreads sessions by hash:
**how many established sessions move when a backend fails or is added**, and **how evenly is the load spread**.
It compares the understudy ordering contract ([ordering.md](ordering.md)) with the usual alternatives.

Produced by:

```
{cmd}
```

on {date}, {nproc} CPUs ({cpu}), Python {py}, numpy {np}; it took {runtime:.0f} s.
The run is deterministic (seed {seed}): the same command gives the same tables.

## What is simulated

- **Sessions**: {S} random 64-bit session hashes (what `SipHash-1-3(secret, key)` produces for real
  traffic); every scheme sees the same ones. Backends have ids 1..N; a failure picks a backend at random
  ({fails} different failures per N, averaged), an addition adds id N+1.
- **Ordering contract** (understudy): bucket = hash & (2^table_bits - 1) with table_bits = {tb};
  per bucket every backend gets the score `weight / -ln(((u >> 11) + 0.5) / 2^53)` and the highest wins;
  when it fails, the bucket falls to the next backend of *its own* ordering (`serving()` in the contract).
  For the first failure at every N the simulator also rebuilds the whole table without the failed backend
  and checks that it equals the "next in the ordering" table, bucket for bucket ({verified}).
- **Maglev** (Eisenbud et al., NSDI 2016): table size M = 65,537; each backend's preference list is
  `(offset + j * skip) mod M` with offset and skip from two different hashes of its name; the populate loop
  lets backends take turns claiming their next still-empty slot until the table is full; a session uses entry
  `hash mod M`. A failure or an addition rebuilds the table from the new backend list, as the paper does.
  *Weights*: a backend of weight w gets w / w_max turns per round (integer credit, so exact); a backend of the
  largest weight gets one turn per round. The alternative, replicating a backend w times, was not used.
- **Hash ring**: 100 virtual nodes per backend at hashed points of the 64-bit circle; a session goes to the
  first point at or after its hash. *Weights*: round(100 x weight / mean weight) points per backend.
- **Modulo**: backend number `hash mod N` of the backends sorted by id. *Weights*: each backend occupies
  `weight` slots of a slot list and the session takes slot `hash mod (number of slots)`.
- **Unequal weights**: each backend draws a weight from {{1, 2, 4}} (fixed seed); the 256-backend table also
  uses weights drawn uniformly from 50..150.

### The hash used in the simulator (not SipHash)

The contract computes `u = SipHash-1-3(cluster_secret, le64(bucket) || le32(id))`. Running that in Python for
2^20 buckets x 1,000 backends would take hours, so **the simulator substitutes a fast 64-bit hash for
SipHash**: `u = fmix(fmix(bucket * φ ^ k0) ^ fmix(id * φ' + k1))`, where `fmix` is splitmix64's output mixing
function and k0, k1 come from the seed. The statistics here depend only on the distribution of u (independent
and uniform per bucket and backend), which both hashes have; the bucket-to-backend assignments themselves are
of course different from a real pool's. The scoring, ranking, failure and addition code is the same for both.
The check below runs a small pool ({sip_n} backends, table_bits {sip_tb}, {sip_secrets} secrets) with the real
SipHash-1-3 from `tools/ordering_ref.py` (the independent reference implementation) and the same statistics
with the stand-in. For the first secret, the simulator's vectorised scoring also reproduced
`ordering_ref.ordering()` exactly (full order, weights {{1, 2, 4}}) on {checked} sampled buckets.

{sip}

{sip_verdict}
("±" is the standard deviation over secrets; the KS row is the Kolmogorov-Smirnov distance between the x
values and the uniform distribution, scaled by the square root of the number of values, whose expected value
for truly uniform values is about 0.87.)

## Headline figures

Share of all sessions that change backend. "Ideal" for a failure is the share the failed backend itself
carried (those sessions must move; nothing else should); for an addition it is 1/(N+1).

{headline}

**256 backends** (the contract's target: max/mean at most 1.05 with table_bits 20): {secrets}.

{t256}

"max/mean" is the busiest backend's load divided by its expected load (its weight's share of the total);
"hash space" counts how much of the 64-bit hash space each backend owns (buckets, Maglev entries, ring arcs),
i.e. the load an unlimited number of sessions would give; the sessions column adds the sampling noise of
{S} sessions. "Random cells" is the expected max/mean when each of that many equal cells is given to a backend
independently at random with probability proportional to its weight: what a scheme that hands out each bucket
by an independent hash, as the contract does, should be expected to reach (Maglev does better by dealing its
entries out in turns).
"""

DOC_FIGS = """
## Figures

### One backend fails

![sessions moved when one backend fails, and how evenly they land](images/disruption-fail.png)

**Left**: the share of all sessions that change backend when one of N backends fails (log scales). The
dashed line is the failed backend's own share, the sessions that have to move. The ordering contract lies
exactly on it at every N: no session whose backend is still up ever moves ("moved between survivors" is
0 in every run). The ring is also exact. Maglev rebuilds its table and, in doing so, moves sessions between
survivors too: {mag100:.2f}x the minimum at N = 100 and {mag1000:.1f}x at N = 1,000. (M = 65,537 is the
paper's default table size, but the paper also sizes M above 100 x N, section 3.4; a pool of 1,000 has only
~65 entries per backend, and a larger M would move fewer sessions.) Modulo moves
almost everything ({mod100} at N = 100), because `hash mod N` and `hash mod (N-1)` disagree for nearly
every hash.

**Right**: how evenly the failed backend's load lands on the survivors: the busiest survivor's share of it
over the average survivor's share (1 = perfectly even). With the ordering contract every bucket of the failed
backend falls to the next backend of its own ordering, which is an independent random choice per bucket, so
the spread is as even as dealing out about 2^table_bits / N buckets at random can be: {c100:.2f} at
N = 100, {c1000:.2f} at N = 1,000, where the failed backend's ~{b1000:,} buckets meet {s1000:,} survivors and
{reach1000} of them receive any. Maglev's entries go to at most the ~M/N backends whose preference lists
reach them first ({mreach1000} of survivors take some at N = 1,000, max/mean {m1000:.1f}), and the ring's
arcs to at most its 100 virtual nodes' successors ({rreach1000}, max/mean {r1000:.1f}).

**What it means for an operator**: what matters in a failure is how much extra load the *worst* survivor
gets. With the ordering contract at N = 1,000 the busiest survivor's load rises by {ci1000} (the ideal,
everyone equally, is {ideal1000}), against {ri1000} for the ring and {mi1000} for Maglev; at N = 100,
{ci100} for the contract (ideal {ideal100}), {ri100} for the ring, {mi100} for Maglev. Plan failure
headroom from the busiest survivor, not from the average. With the contract the busiest survivor stays near the
average while the failed backend has many more buckets than there are survivors (up to a few hundred backends at
table_bits 20); beyond that a survivor takes a few buckets at most, still a small fraction of its own load. With
the ring and with Maglev a few neighbours take most of it.

### One backend is added

![sessions moved when one backend is added](images/disruption-add.png)

The share of sessions that move when backend N+1 joins; the dashed line is 1/(N+1), what the new backend
should end up with. The ordering contract moves exactly the sessions the new backend wins and nothing else
("moved between old backends" is 0); how many that is varies around 1/(N+1) with the new backend's random
bucket count ({cadd1000} at N = 1,000). The ring behaves the same; Maglev also reshuffles sessions among the
old backends ({madd1000:.1f}x the minimum at N = 1,000); modulo remaps almost every session. **For an
operator**: scaling a pool out with the contract moves only the sessions the new backend takes over.

### Load balance

![busiest backend's load over its expected load, equal and unequal weights](images/load-balance.png)

The busiest backend's share of the hash space divided by its expected share (its weight's share of the total),
with equal weights (left) and with weights drawn from {{1, 2, 4}} (right). The thick grey line is what giving
out 2^{tb} equal cells at random would give: the ordering contract with table_bits {tb} follows it, because its
unevenness is only the randomness of how many buckets each backend wins, which depends on buckets per backend:
{c_tb_100:.3f} at N = 100, {c_tb_1000:.3f} at N = 1,000, and with table_bits 16 (dotted) {c16_1000:.2f} at
N = 1,000. Maglev deals its entries out by turns and stays within {magmax:.3f} everywhere: balance is its
strength, disruption its cost. The ring's 100 virtual nodes per backend leave a ~10 % standard deviation and
a busiest backend {ringlo:.2f}-{ringhi:.2f}x the mean. Modulo is exact, and useless under churn.

**For an operator**: the contract's balance is set by `table_bits`, which can never change in a pool's life
(it would remap every session). Choose it for the largest size the pool will ever reach: ~1,000 or more
buckets per backend keeps the busiest backend within ~10 % (2^20 is good to about 1,000 backends of equal
weight; unequal weights need more, because a light backend wins fewer buckets); 2^24 buckets per pool cost
16x the table memory and build time of 2^20 but bring 256 backends to {c24_256}.
"""


def sip_verdict(sc):
    labels = {"ks": "KS statistic", "eq_max": "max/mean, equal weights", "eq_cv": "CV of bucket counts",
              "w_max": "max/mean, weights {1,2,4}", "spread_cv": "CV of the takeover",
              "add_share": "share taken by an added server"}
    worst, which = 0.0, None
    for k, label in labels.items():
        x = np.array([d[k] for d in sc["sip"]], float)
        y = np.array([d[k] for d in sc["fast"]], float)
        # pooled variance: under "same distribution" both columns share it (and it is steadier than
        # the variance of a handful of SipHash secrets on its own)
        pooled = (x.var(ddof=1) * (len(x) - 1) + y.var(ddof=1) * (len(y) - 1)) / (len(x) + len(y) - 2)
        se = np.sqrt(pooled * (1 / len(x) + 1 / len(y)))
        z = abs(x.mean() - y.mean()) / se if se > 0 else 0.0
        if z >= worst:
            worst, which = z, label
    verdict = ("so the two hashes agree within the secret-to-secret noise" if worst < 3 else
               "which is more than the secret-to-secret noise explains: look into it")
    return ("The exact rows (moved buckets) are identical. Of the statistical rows the largest difference between "
            "the two hash columns is %.1f standard errors of the difference (%s), %s." % (worst, which, verdict))


def write_doc(path, res, tabs, a, cmdline, runtime):
    nproc, cpu = machine()
    import matplotlib
    v = res["verified"]
    head = DOC_HEAD.format(
        cmd=cmdline, date=datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        nproc=nproc, cpu=cpu, py=platform.python_version(), np=np.__version__, runtime=runtime,
        seed=a.seed, S=f"{a.sessions:,}", fails=a.fails, tb=res["tb"],
        verified="%d of %d N values identical" % (sum(1 for _, ok in v if ok), len(v)),
        sip_n=res["sip"]["n"], sip_tb=res["sip"]["tb"], sip_secrets=len(res["sip"]["sip"]),
        checked=res["sip"]["checked"], sip=tabs["sip"], headline=tabs["headline"], secrets=tabs["secrets"],
        t256=tabs["t256"], sip_verdict=sip_verdict(res["sip"]))
    churn = res["churn"]

    def fm(scheme, n):
        r = churn[n][0][scheme]
        return np.mean(r["fail_moved"]) / np.mean(r["fail_own"])

    def sp(scheme, n, key):
        return float(np.mean([d[key] for d in churn[n][0][scheme]["spread"]]))

    c, m, rg = "ordering contract", "Maglev", "hash ring (100 vnodes)"
    le, tb = res["loads"]["equal"], res["tb"]
    figs = DOC_FIGS.format(
        mag100=fm(m, 100), mag1000=fm(m, 1000), mod100=fmt_pct(np.mean(churn[100][0]["modulo"]["fail_moved"])),
        c100=sp(c, 100, "max_mean"), c1000=sp(c, 1000, "max_mean"), b1000=round((1 << tb) / 1000), s1000=999,
        reach1000="%.0f%%" % (100 * sp(c, 1000, "reached")), mreach1000="%.0f%%" % (100 * sp(m, 1000, "reached")),
        m1000=sp(m, 1000, "max_mean"), rreach1000="%.0f%%" % (100 * sp(rg, 1000, "reached")),
        r1000=sp(rg, 1000, "max_mean"),
        ci1000="+" + fmt_pct(sp(c, 1000, "max_increase")), ri1000="+" + fmt_pct(sp(rg, 1000, "max_increase")),
        mi1000="+" + fmt_pct(sp(m, 1000, "max_increase")), ideal1000="+" + fmt_pct(1 / 999),
        ci100="+" + fmt_pct(sp(c, 100, "max_increase")), ri100="+" + fmt_pct(sp(rg, 100, "max_increase")),
        mi100="+" + fmt_pct(sp(m, 100, "max_increase")), ideal100="+" + fmt_pct(1 / 99),
        cadd1000=fmt_pct(churn[1000][0][c]["add_moved"]),
        madd1000=churn[1000][0][m]["add_moved"] / (1 / 1001), tb=tb,
        c_tb_100=le[100]["ordering contract, table_bits %d" % tb][0][0],
        c_tb_1000=le[1000]["ordering contract, table_bits %d" % tb][0][0],
        c16_1000=le[1000]["ordering contract, table_bits 16"][0][0],
        magmax=max(v["Maglev"][0][0] for k in ("equal", "1,2,4") for v in res["loads"][k].values()),
        ringlo=min(le[n][rg][0][0] for n in res["Ns"]), ringhi=max(le[n][rg][0][0] for n in res["Ns"]),
        c24_256=("%.3f" % res["t256"]["equal"]["ordering contract, table_bits 24"][0][0]
                 if "ordering contract, table_bits 24" in res["t256"]["equal"] else "(not run with --quick)"))
    body = [head, figs,
            "\n## All results\n\n### One backend fails (equal weights)\n\n"
            "\"moved between survivors\": sessions that changed backend although their backend did not fail "
            "(worst of the %d failures). \"spread\": what the survivors take over, measured in hash space: "
            "max/mean and coefficient of variation of the survivors' received shares, and the share of survivors "
            "that receive anything.\n\n" % a.fails, tabs["fail"],
            "\n\n### One backend added (equal weights)\n\n", tabs["add"],
            "\n\n### Load balance, equal weights (max/mean, hash space)\n\n", tabs["load_eq"],
            "\n\n### Load balance, weights from {1, 2, 4} (max load / expected load, hash space)\n\n", tabs["load_w"],
            "\n\n## Caveats\n\n"
            "- Sessions are uniformly random hashes, all equally heavy. Real traffic has heavy clients (and "
            "`affinity = \"client\"` puts all of a client's connections in one bucket), which no hashing scheme "
            "evens out.\n"
            "- The max/mean of a pool is a random variable: it depends on the secret (and, for the contract, "
            "on the exact bucket counts), so a different secret gives somewhat different values; the "
            "256-backend line above shows the range over several secrets.\n"
            "- Maglev, the ring and modulo here are textbook versions written for this comparison, not any "
            "particular product's code.\n"
            "- Matplotlib %s; figures are written at 90 dpi.\n" % matplotlib.__version__]
    with open(path, "w") as f:
        f.write(rewrap("".join(body)))


def rewrap(text, width=112):
    """Re-flow plain paragraphs (not tables, lists, headings, images or code) after the numbers
    have been filled in."""
    import textwrap
    out, code = [], False
    for block in text.split("\n\n"):
        lines = block.split("\n")
        if "```" in block:
            code = code ^ (block.count("```") % 2 == 1)
            out.append(block)
            continue
        if code or any(l.startswith(("|", "#", "!", "- ", "  ")) for l in lines if l):
            out.append(block)
            continue
        out.append(textwrap.fill(" ".join(l.strip() for l in lines), width=width,
                                 break_long_words=False, break_on_hyphens=False))
    return "\n\n".join(out)


# --------------------------------------------------------------------------- main


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller run (~30 s); prints only unless --write")
    p.add_argument("--write", action="store_true", help="with --quick: also write the doc and the figures")
    p.add_argument("--no-write", action="store_true", help="print the tables only")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--sessions", type=int, help="number of sessions (default 4,000,000; quick 1,000,000)")
    p.add_argument("--table-bits", type=int, default=20)
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--doc", default=os.path.join(REPO, "docs", "disruption.md"))
    p.add_argument("--images", default=os.path.join(REPO, "docs", "images"))
    a = p.parse_args(argv)
    q = a.quick
    if a.sessions is None:
        a.sessions = 1_000_000 if q else 4_000_000
    a.fails = 1 if q else 3
    a.verify_max_n = 100 if q else 10 ** 9
    a.sip_bits = 12 if q else 14
    a.sip_secrets = 4 if q else 8
    write = (not a.no_write) and (a.write or not q)
    Ns = [10, 100, 1000] if q else [10, 20, 50, 100, 200, 500, 1000]
    t0 = time.time()

    global POOL
    if a.jobs > 1:
        POOL = multiprocessing.get_context("fork").Pool(a.jobs)

    def log(msg):
        print("[%5.1f s] %s" % (time.time() - t0, msg), file=sys.stderr, flush=True)

    sim = Sim(a)
    res = {"Ns": Ns, "tb": a.table_bits, "headline_N": [n for n in (100, 1000) if n in Ns],
           "churn": {}, "loads": {"equal": {}, "1,2,4": {}}, "baseline": {"equal": {}, "1,2,4": {}}}
    rng = np.random.default_rng(a.seed + 1)
    brng = np.random.default_rng(a.seed + 2)
    for n in Ns:
        fails = [int(x) for x in rng.choice(np.arange(1, n + 1), size=a.fails, replace=False)]
        res["churn"][n] = sim.churn(n, fails)
        log("churn N=%d" % n)
        for kind in ("equal", "1,2,4"):
            if q and kind != "equal" and n > 100:
                continue  # --quick: the weighted curve stops at 100 backends
            w = draw_weights(n, kind, a.seed)
            res["loads"][kind][n] = sim.loads(n, w, sorted({16, a.table_bits}))
            res["baseline"][kind][n] = {tb: multinomial_baseline(1 << tb, w, n, 200, brng)
                                        for tb in sorted({16, a.table_bits})}
        log("loads N=%d" % n)

    t256, base256 = {}, {}
    for kind in ("equal", "1,2,4", "50..150"):
        w = draw_weights(256, kind, a.seed)
        # table_bits 24 costs 16x table_bits 20: equal weights and {1,2,4} only, and not in --quick
        tbs = [16, 20] if (q or kind == "50..150") else [16, 20, 24]
        t256[kind] = sim.loads(256, w, tbs)
        base256[kind] = {c: multinomial_baseline(c, w, 256, 200, brng) for c in [1 << t for t in tbs]}
        log("256 backends, weights %s" % kind)
    res["t256"], res["t256_base"] = t256, base256

    secrets = [t256["equal"]["ordering contract, table_bits %d" % a.table_bits][0][0]]  # the main secret
    for s in range(7 if not q else 2):
        key = secret_words(a.seed + 100 + s)
        ids = np.arange(1, 257)
        i1, _, _ = rendezvous(ids, None, a.table_bits, key, top=1)
        secrets.append(balance(counts_by_id(ids[i1], ids))[0])
    res["secrets256"] = secrets
    draws = brng.multinomial(1 << a.table_bits, np.full(256, 1 / 256), size=4000)
    mm = draws.max(axis=1) / ((1 << a.table_bits) / 256)
    res["p105"] = (float(mm.mean()), float((mm > 1.05).mean()))
    log("256 backends, %d secrets" % len(secrets))

    res["sip"] = siphash_check(a)
    res["verified"] = sim.verified
    log("SipHash check")

    cmdline = "tools/sim/run" + ("" if not argv and len(sys.argv) <= 1 else " " + " ".join(
        shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:])))
    files = None
    if write:
        os.makedirs(a.images, exist_ok=True)
        files = plots(res, a.images)
        log("plots")
    tabs = report(res, a, cmdline, time.time() - t0)
    runtime = time.time() - t0
    print("# disruption simulator (%s)\n" % cmdline)
    print("## Headline (sessions moved)\n\n" + tabs["headline"] + "\n")
    print("## 256 backends\n\n" + tabs["secrets"] + "\n\n" + tabs["t256"] + "\n")
    print("## One backend fails\n\n" + tabs["fail"] + "\n")
    print("## One backend added\n\n" + tabs["add"] + "\n")
    print("## Load balance, equal weights\n\n" + tabs["load_eq"] + "\n")
    print("## Load balance, weights {1,2,4}\n\n" + tabs["load_w"] + "\n")
    print("## SipHash-1-3 vs the fast stand-in\n\n" + tabs["sip"] + "\n")
    if write:
        write_doc(a.doc, res, tabs, a, cmdline, runtime)
        print("wrote %s and %s" % (a.doc, ", ".join(files.values())))
    print("runtime %.1f s" % runtime)
    if POOL is not None:
        POOL.close()
        POOL.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
