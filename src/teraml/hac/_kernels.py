"""numba kernels of TeraHAC: the pure functions every engine shares.

Every kernel takes and returns plain arrays (grouped in small named tuples where a kernel needs many),
uses only IEEE float64 ``+ * / min max`` (no fastmath: M = +inf must stay +inf) and breaks ties by cluster
id, so any engine that feeds them the same rows gets bit-identical merges. They are compiled with
``cache=True`` (workers import, not pickle, them) and ``nogil=True`` (the local engine runs partitions on a
thread pool).

Data layout, all indexed by cluster id (the rank of the node; an absorbed id stays unused):

* canonical edges ``src < dst`` with sums ``S`` (float64), sorted by ``(src, dst)``;
* a directed :class:`CSR` ``indptr, nbr, wt`` built from them (both directions, neighbours unsorted: no
  result depends on row order);
* :class:`Clusters`: ``size`` (int64) and ``M`` (float64, +inf for a singleton).
"""

from __future__ import annotations

import heapq
from typing import NamedTuple

import numpy as np
from numba import njit, types
from numba.typed import Dict, List

__all__ = [
    "ULP_SLACK", "CSR", "Clusters", "Partitions", "RoundOutput", "MergeTable", "tie_ranks", "build_csr",
    "best_edges", "affinity_partition", "affinity_level", "subgraph_hac", "roots", "segment_sum",
    "record_merges", "flatten_top", "greedy_merges", "level_links", "capped_union", "resolve", "run_sums",
]

# Goodness is compared with (1 + eps) times this: a merged cluster's W(c, x) = (S(a,x) + S(b,x)) / (n_c n_x)
# can exceed the merge similarity by one rounding error when the two are equal in exact arithmetic (ties),
# which at eps = 0 would otherwise stall a round.
ULP_SLACK = 1.0 + 1e-12

_i8 = types.int64
_f8 = types.float64


class CSR(NamedTuple):
    """Directed adjacency of the canonical edges: ``nbr[indptr[u]:indptr[u+1]]`` with sums ``wt``."""

    indptr: np.ndarray
    nbr: np.ndarray
    wt: np.ndarray


class Clusters(NamedTuple):
    """Per cluster id: ``size`` (int64) and ``M`` (float64, the smallest merge similarity inside)."""

    size: np.ndarray
    M: np.ndarray


class Partitions(NamedTuple):
    """Partition p holds ``members[start[p]:start[p+1]]`` (ascending ids); ``part[u]`` is the key (smallest
    member) of u's partition, -1 for an inactive id; ``loc`` is scratch (length n) each partition writes for
    its own members only."""

    start: np.ndarray
    members: np.ndarray
    part: np.ndarray
    loc: np.ndarray


class RoundOutput(NamedTuple):
    """What SubgraphHAC writes: merge k of partition p at slot ``start[p] + k`` of ``a, b, w`` (exact W),
    ``count[p]`` merges, and per cluster id the survivors' ``size`` / ``M`` and ``rep[absorbed] = survivor``."""

    a: np.ndarray
    b: np.ndarray
    w: np.ndarray
    count: np.ndarray
    size: np.ndarray
    M: np.ndarray
    rep: np.ndarray


class MergeTable(NamedTuple):
    """The dendrogram's growing merge arrays (row r creates node n_leaves + r)."""

    left: np.ndarray
    right: np.ndarray
    sim: np.ndarray
    size: np.ndarray


class _Work(NamedTuple):
    """One partition's working state inside SubgraphHAC (local index i = position in the partition)."""

    A: object            # typed List of Dict[neighbour id -> S], one per member
    alive: np.ndarray    # member i not yet absorbed
    nver: np.ndarray     # version of member i's queue entry
    n_loc: np.ndarray    # current size of member i
    m_loc: np.ndarray    # current M of member i
    Bh: np.ndarray       # B^ (best estimated similarity) of member i
    ann: np.ndarray      # last announced size of member i
    loc: np.ndarray      # cluster id -> local index (members only)
    part: np.ndarray     # cluster id -> partition key
    size: np.ndarray     # frozen sizes of every id (neighbours outside the partition)
    key: int             # this partition's key
    prune: float         # edges with W < prune never merge


# ------------------------------------------------------------------------------------------------ ranks


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on a uint64 array (wrapping arithmetic)."""
    x = (x + np.uint64(0x9E3779B97F4A7C15)).astype(np.uint64)
    z = x
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def tie_ranks(n: int, seed=None) -> np.ndarray:
    """Cluster id of each node: its index when ``seed`` is None, else its position in the order of
    ``splitmix64(index XOR splitmix64(seed))`` (ties, which need a 64-bit collision, by index).

    >>> tie_ranks(4).tolist()
    [0, 1, 2, 3]
    >>> sorted(tie_ranks(5, seed=3).tolist())
    [0, 1, 2, 3, 4]
    """
    idx = np.arange(n, dtype=np.int64)
    if seed is None:
        return idx
    with np.errstate(over="ignore"):
        s = _splitmix64(np.array([int(seed) % (1 << 64)], dtype=np.uint64))
        h = _splitmix64(idx.astype(np.uint64) ^ s[0])
    order = np.lexsort((idx, h))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = idx
    return rank


# ------------------------------------------------------------------------------------------------ layout


@njit(cache=True, nogil=True)
def build_csr(src, dst, S, n):
    """Directed CSR (both directions) of canonical edges, by a counting sort on the source."""
    m = src.size
    indptr = np.zeros(n + 1, dtype=np.int64)
    for e in range(m):
        indptr[src[e] + 1] += 1
        indptr[dst[e] + 1] += 1
    for u in range(n):
        indptr[u + 1] += indptr[u]
    pos = indptr[:-1].copy()
    nbr = np.empty(2 * m, dtype=np.int64)
    wt = np.empty(2 * m, dtype=np.float64)
    for e in range(m):
        a = src[e]
        b = dst[e]
        nbr[pos[a]] = b
        wt[pos[a]] = S[e]
        pos[a] += 1
        nbr[pos[b]] = a
        wt[pos[b]] = S[e]
        pos[b] += 1
    return CSR(indptr, nbr, wt)


@njit(cache=True, nogil=True)
def best_edges(csr, size):
    """best(u) = argmax_x W(u, x) (ties: smaller x) and B(u); best = -1 for an isolated id."""
    indptr, nbr, wt = csr
    n = indptr.size - 1
    best = np.full(n, -1, dtype=np.int64)
    B = np.zeros(n, dtype=np.float64)
    for u in range(n):
        su = np.float64(size[u])
        bu = -1
        bw = -1.0
        for e in range(indptr[u], indptr[u + 1]):
            x = nbr[e]
            w = wt[e] / (su * np.float64(size[x]))
            if w > bw or (w == bw and x < bu):
                bu = x
                bw = w
        if bu >= 0:
            best[u] = bu
            B[u] = bw
    return best, B


@njit(cache=True, nogil=True)
def _find(parent, u):
    r = u
    while parent[r] != r:
        r = parent[r]
    while parent[u] != r:  # path compression
        nxt = parent[u]
        parent[u] = r
        u = nxt
    return r


@njit(cache=True, nogil=True)
def affinity_partition(order, best, cap, n):
    """Size-capped affinity partition: visit the active ids in ``order`` (decreasing B, ties by
    smaller id) and union each u with best(u) if their sets differ and the union holds <= cap ids. Set
    counts change only on a real union (google/graph-mining inflates them otherwise). Returns ``part``
    (length n): the smallest id of u's set for active u, -1 elsewhere."""
    parent = np.full(n, -1, dtype=np.int64)
    count = np.zeros(n, dtype=np.int64)
    for i in range(order.size):
        u = order[i]
        parent[u] = u
        count[u] = 1
    for i in range(order.size):
        u = order[i]
        v = best[u]
        if v < 0 or parent[v] < 0:
            continue
        ru = _find(parent, u)
        rv = _find(parent, v)
        if ru == rv or count[ru] + count[rv] > cap:
            continue
        if rv < ru:
            ru, rv = rv, ru
        parent[rv] = ru  # the root stays the smallest id of the set
        count[ru] += count[rv]
    part = np.full(n, -1, dtype=np.int64)
    for i in range(order.size):
        u = order[i]
        part[u] = _find(parent, u)
    return part


# ------------------------------------------------------------------------------------------------ SubgraphHAC


@njit(cache=True, nogil=True, inline="always")
def _bhat(w, i):
    """B^(u) = max over u's neighbours x of S(u,x) / (n(u) * size used for x): the announced size for a
    partition member, the fixed size for a frozen neighbour."""
    bw = 0.0
    nu = np.float64(w.n_loc[i])
    for x, s in w.A[i].items():
        if w.part[x] == w.key:
            v = s / (nu * np.float64(w.ann[w.loc[x]]))
        else:
            v = s / (nu * np.float64(w.size[x]))
        if v > bw:
            bw = v
    return bw


@njit(cache=True, nogil=True, inline="always")
def _node_key(w, i, u):
    """The smallest (g^, a, b) over u's alive in-partition edges with W >= prune (a < b); a = -1 if u has
    none. (S, the sizes and M enter through commutative IEEE operations, so either end computes the same
    g^.) Edges below the prune line t/(1+eps) never merge: the dendrogram stops there, as exact HAC stops
    below t (a merge at exactly t is made, the rule of flattening: a leaf joins its highest ancestor of
    similarity >= t)."""
    bg = np.inf
    ba = -1
    bb = -1
    nu = np.float64(w.n_loc[i])
    mu = w.m_loc[i]
    bu = w.Bh[i]
    for x, s in w.A[i].items():
        if w.part[x] == w.key:
            j = w.loc[x]
            if w.alive[j]:
                v = s / (nu * np.float64(w.n_loc[j]))
                if v < w.prune:
                    continue
                den = min(v, mu, w.m_loc[j])
                g = max(bu, w.Bh[j]) / den if den > 0 else np.inf
                if u < x:
                    a_ = u
                    b_ = x
                else:
                    a_ = x
                    b_ = u
                if ba < 0 or g < bg or (g == bg and (a_ < ba or (a_ == ba and b_ < bb))):
                    bg = g
                    ba = a_
                    bb = b_
    return bg, ba, bb


@njit(cache=True, nogil=True, inline="always")
def _push_node(heap, w, i, u):
    """Queue u under its current key (the old entry, if any, becomes invalid)."""
    g, a, b = _node_key(w, i, u)
    w.nver[i] += 1
    if a >= 0:
        heapq.heappush(heap, (g, a, b, u, w.nver[i]))


@njit(cache=True, nogil=True, inline="always")
def _refresh(heap, w, i, u):
    """refresh(u): recompute B^(u) (it only falls here: a neighbour announced a larger size) and re-key u."""
    old = w.Bh[i]
    w.Bh[i] = _bhat(w, i)
    if w.Bh[i] < old:
        _push_node(heap, w, i, u)


@njit(cache=True, nogil=True, inline="always")
def _subgraph_hac_one(s0, s1, parts, csr, clusters, eps, prune, out):
    """SubgraphHAC of the partition ``parts.members[s0:s1]`` (ascending ids; key = members[s0]).

    Merges, smallest first, edges whose estimated goodness g^ = max(B^(a), B^(b)) / min(W(a,b), M(a), M(b))
    is <= 1 + eps (ties: smaller a, then smaller b); neighbours outside the partition are frozen (they
    count in B^, never merge). Sizes are announced lazily: a cluster re-announces once it exceeds
    (1 + eps/2) times its last announcement, so W <= W^ <= (1 + eps/2) W and g^ never under-states the true
    goodness; the neighbours of an announcing cluster are refreshed lazily (when one of their edges comes
    up, and all of them before stopping). A node-level priority queue: each cluster is queued under the
    smallest key of its edges; keys that only grew since are fixed when popped. Writes merge k at
    ``out.a/b/w[s0 + k]`` (exact W), ``out.rep[absorbed] = survivor`` and the survivors' ``out.size`` /
    ``out.M``; returns the number of merges."""
    members, loc = parts.members, parts.loc
    indptr, nbr, wt = csr
    alpha = eps / 2.0
    limit = (1.0 + eps) * ULP_SLACK
    k = s1 - s0
    key = members[s0]
    A = List()
    n_loc = np.empty(k, dtype=np.int64)
    m_loc = np.empty(k, dtype=np.float64)
    for i in range(k):
        u = members[s0 + i]
        loc[u] = i
        d = Dict.empty(_i8, _f8)
        for e in range(indptr[u], indptr[u + 1]):
            d[nbr[e]] = wt[e]
        A.append(d)
        n_loc[i] = clusters.size[u]
        m_loc[i] = clusters.M[u]
    w = _Work(A, np.ones(k, dtype=np.bool_), np.zeros(k, dtype=np.int64), n_loc, m_loc,
              np.empty(k, dtype=np.float64), n_loc.copy(), loc, parts.part, clusters.size, key, prune)
    ann, alive, Bh = w.ann, w.alive, w.Bh
    stale = np.zeros(k, dtype=np.bool_)
    n_stale = 0
    stale_list = [np.int64(0)]  # the ids marked stale since the last full refresh (may repeat)
    stale_list.pop()
    for i in range(k):
        Bh[i] = _bhat(w, i)
    heap = [(0.0, np.int64(0), np.int64(0), np.int64(0), np.int64(0))]
    heap.pop()
    for i in range(k):
        g, a, b = _node_key(w, i, members[s0 + i])
        if a >= 0:
            heap.append((g, a, b, members[s0 + i], w.nver[i]))
    heapq.heapify(heap)
    n_merges = 0
    while len(heap) > 0:
        g0, a0, b0, u, v = heapq.heappop(heap)
        iu = loc[u]
        if not alive[iu] or w.nver[iu] != v:
            continue
        g, a, b = _node_key(w, iu, u)
        if a < 0:
            continue
        if g != g0 or a != a0 or b != b0:  # the key grew (or its edge went): queue it again
            heapq.heappush(heap, (g, a, b, u, v))
            continue
        ia = loc[a]
        ib = loc[b]
        refreshed = False
        for i in (ia, ib):
            if stale[i]:
                stale[i] = False
                n_stale -= 1
                _refresh(heap, w, i, members[s0 + i])
                refreshed = True
        if refreshed:  # keys fell: queue u again under its new key and take the smallest
            _push_node(heap, w, iu, u)
            continue
        if g > limit:
            if n_stale > 0:  # refresh everything stale: estimates only fall, keys may drop below the limit
                for t in range(len(stale_list)):
                    i = stale_list[t]
                    if stale[i]:
                        stale[i] = False
                        if alive[i]:
                            _refresh(heap, w, i, members[s0 + i])
                stale_list.clear()
                n_stale = 0
                _push_node(heap, w, iu, u)
                continue
            break
        wab = A[ia][b] / (np.float64(n_loc[ia]) * np.float64(n_loc[ib]))
        # merge a and b into c = a (a < b)
        out.a[s0 + n_merges] = a
        out.b[s0 + n_merges] = b
        out.w[s0 + n_merges] = wab
        n_merges += 1
        out.rep[b] = a
        ic, io = ia, ib
        n_c = n_loc[ic] + n_loc[io]
        m_loc[ic] = min(m_loc[ic], m_loc[io], wab)
        Ac = A[ic]
        Ao = A[io]
        Ac.pop(b, 0.0)
        Ao.pop(a, 0.0)
        if len(Ac) >= len(Ao):
            for x, s in Ao.items():
                if x in Ac:
                    Ac[x] = Ac[x] + s  # S(c, x) = S(a, x) + S(b, x), the smaller id's term first
                else:
                    Ac[x] = s
            big = Ac
            small = Ao
            ann_c = ann[ic]
        else:
            for x, s in Ac.items():
                if x in Ao:
                    Ao[x] = s + Ao[x]
                else:
                    Ao[x] = s
            big = Ao
            small = Ac
            ann_c = ann[io]
        A[ic] = big
        n_loc[ic] = n_c
        alive[io] = False
        if stale[io]:
            stale[io] = False
            n_stale -= 1
        announce = np.float64(n_c) > (1.0 + alpha) * np.float64(ann_c)
        ann[ic] = n_c if announce else ann_c
        for x, s in big.items():
            if w.part[x] == key:
                j = loc[x]
                if alive[j]:
                    Ax = A[j]
                    Ax.pop(b, 0.0)
                    Ax[a] = s
                    wx = s / (np.float64(n_loc[j]) * np.float64(ann[ic]))
                    if wx > Bh[j]:
                        Bh[j] = wx  # keys of x's edges only grow: its queue entry stays a lower bound
                    elif (announce or x in small) and not stale[j]:
                        # W^(x, c) changed (c announced, or x saw the absorbed side under its old
                        # announcement): B^(x) may now be too high; refresh it lazily
                        stale[j] = True
                        stale_list.append(j)
                        n_stale += 1
        A[io] = Dict.empty(_i8, _f8)
        Bh[ic] = _bhat(w, ic)
        _push_node(heap, w, ic, a)
    for i in range(k):
        if alive[i]:
            u = members[s0 + i]
            out.size[u] = n_loc[i]
            out.M[u] = m_loc[i]
    return n_merges


@njit(cache=True, nogil=True)
def subgraph_hac(p_lo, p_hi, parts, csr, clusters, eps, prune, out):
    """SubgraphHAC of partitions ``p_lo..p_hi-1`` (:class:`Partitions`), reading the round's :class:`CSR`
    and :class:`Clusters`, writing :class:`RoundOutput`. Partitions write disjoint slots of every output,
    so disjoint ranges may run on different threads."""
    for p in range(p_lo, p_hi):
        out.count[p] = _subgraph_hac_one(parts.start[p], parts.start[p + 1], parts, csr, clusters, eps, prune,
                                         out)


# ------------------------------------------------------------------------------------------------ contraction


@njit(cache=True, nogil=True)
def roots(rep):
    """Final cluster of every id, given rep[absorbed] = survivor < absorbed (identity elsewhere)."""
    n = rep.size
    root = np.empty(n, dtype=np.int64)
    for u in range(n):
        r = rep[u]
        root[u] = u if r == u else root[r]
    return root


@njit(cache=True, nogil=True)
def segment_sum(src, dst, S, root, n):
    """Contract: relabel both ends to their clusters, drop intra-cluster edges, and sum parallel edges
    left to right in ascending (old src, old dst) order (the input order; two stable counting sorts keep
    it inside each new pair). Returns the new canonical edges sorted by (src, dst)."""
    m = src.size
    ns = np.empty(m, dtype=np.int64)
    nd = np.empty(m, dtype=np.int64)
    orig = np.empty(m, dtype=np.int64)
    keep = 0
    for e in range(m):
        a = root[src[e]]
        b = root[dst[e]]
        if a != b:
            if b < a:
                a, b = b, a
            ns[keep] = a
            nd[keep] = b
            orig[keep] = e
            keep += 1
    ns = ns[:keep]
    nd = nd[:keep]
    # stable LSD radix: by dst, then by src
    perm = np.arange(keep)
    for pass_ in range(2):
        key = nd if pass_ == 0 else ns
        cnt = np.zeros(n + 1, dtype=np.int64)
        for e in range(keep):
            cnt[key[e] + 1] += 1
        for u in range(n):
            cnt[u + 1] += cnt[u]
        out = np.empty(keep, dtype=np.int64)
        for i in range(keep):
            e = perm[i]
            k = key[e]
            out[cnt[k]] = e
            cnt[k] += 1
        perm = out
    out_s = np.empty(keep, dtype=np.int64)
    out_d = np.empty(keep, dtype=np.int64)
    out_w = np.empty(keep, dtype=np.float64)
    r = -1
    for i in range(keep):
        e = perm[i]
        a = ns[e]
        b = nd[e]
        w = S[orig[e]]
        if r >= 0 and out_s[r] == a and out_d[r] == b:
            out_w[r] = out_w[r] + w
        else:
            r += 1
            out_s[r] = a
            out_d[r] = b
            out_w[r] = w
    return out_s[:r + 1], out_d[:r + 1], out_w[:r + 1]


@njit(cache=True, nogil=True)
def record_merges(start, out, node, run_size, n_leaves, n_done, table):
    """Append this round's merges (:class:`RoundOutput` of the partitions starting at ``start``) in
    (part_key, seq) order to the :class:`MergeTable`; ``node[c]`` is the dendrogram node of cluster id c
    and ``run_size`` its size, both updated. Merge row r is node n_leaves + r. Returns the new row count."""
    r = n_done
    for p in range(start.size - 1):
        for k in range(out.count[p]):
            i = start[p] + k
            a = out.a[i]
            b = out.b[i]
            table.left[r] = node[a]
            table.right[r] = node[b]
            table.sim[r] = out.w[i]
            run_size[a] += run_size[b]
            table.size[r] = run_size[a]
            node[a] = n_leaves + r
            r += 1
    return r


# ------------------------------------------------------------------------------------------------ dendrogram


@njit(cache=True, nogil=True)
def flatten_top(n, left, right, sim, t):
    """Subtree flattening: the highest ancestor with similarity >= t of every leaf (itself if none)."""
    m = left.size
    top = np.full(n + m, -1, dtype=np.int64)
    for i in range(m - 1, -1, -1):
        c = n + i
        if top[c] >= 0:
            anc = top[c]
        elif sim[i] >= t:
            anc = c
        else:
            anc = -1
        top[left[i]] = anc
        top[right[i]] = anc
    out = np.empty(n, dtype=np.int64)
    for u in range(n):
        out[u] = top[u] if top[u] >= 0 else u
    return out


@njit(cache=True, nogil=True)
def greedy_merges(n, left, right, sim, n_apply):
    """Which merges to keep for a cut into exactly n - n_apply clusters: apply ``n_apply`` merges, each time the
    available one (both children already formed) of largest similarity (ties: earlier merge). For a monotone
    dendrogram this is simply the first ``n_apply`` merges by similarity; for a non-monotone (1+eps) one it
    never applies a merge before its children. Returns a bool mask over the merges."""
    m = left.size
    parent = np.full(n + m, -1, dtype=np.int64)
    pending = np.zeros(m, dtype=np.int64)
    for i in range(m):
        parent[left[i]] = i
        parent[right[i]] = i
        pending[i] = (left[i] >= n) + (right[i] >= n)
    heap = [(0.0, np.int64(0))]
    heap.pop()
    for i in range(m):
        if pending[i] == 0:
            heap.append((-sim[i], np.int64(i)))
    heapq.heapify(heap)
    applied = np.zeros(m, dtype=np.bool_)
    done = 0
    while done < n_apply and len(heap) > 0:
        _, i = heapq.heappop(heap)
        applied[i] = True
        done += 1
        p = parent[n + i]
        if p >= 0:
            pending[p] -= 1
            if pending[p] == 0:
                heapq.heappush(heap, (-sim[p], p))
    return applied


@njit(cache=True, nogil=True)
def level_links(part, csr, size):
    """The links of one affinity level: for every set key p (the smallest id of the set), ``count[p]`` active
    members and the heaviest edge leaving the set between active clusters, ``bw[p]`` (its W) and ``bto[p]`` (the
    set across it; ties: smaller key; -1 if none). Arrays of length n, indexed by key."""
    indptr, nbr, wt = csr
    n = part.size
    bw = np.full(n, -1.0)
    bto = np.full(n, -1, dtype=np.int64)
    count = np.zeros(n, dtype=np.int64)
    for u in range(n):
        pu = part[u]
        if pu < 0:
            continue
        count[pu] += 1
        su = np.float64(size[u])
        for e in range(indptr[u], indptr[u + 1]):
            x = nbr[e]
            px = part[x]
            if px < 0 or px == pu:
                continue
            w = wt[e] / (su * np.float64(size[x]))
            if w > bw[pu] or (w == bw[pu] and px < bto[pu]):
                bw[pu] = w
                bto[pu] = px
    return bw, bto, count


@njit(cache=True, nogil=True)
def capped_union(keys, bw, bto, count, cap):
    """Join sets along their links, visited by decreasing ``bw`` (ties: smaller key; ``keys`` ascending, the sets
    that have a link), while the union holds <= ``cap`` clusters (counts change only on real unions). Indexed by
    key like :func:`level_links`; returns ``parent`` with ``_find(parent, p)`` = the smallest key of p's new set."""
    n = bw.size
    order = keys[np.argsort(-bw[keys], kind="mergesort")]  # stable: equal weights keep the smaller key first
    parent = np.arange(n)
    count = count.copy()
    for i in range(order.size):
        a = order[i]
        ra = _find(parent, a)
        rb = _find(parent, bto[a])
        if ra == rb or count[ra] + count[rb] > cap:
            continue
        if rb < ra:
            ra, rb = rb, ra
        parent[rb] = ra
        count[ra] += count[rb]
    return parent


@njit(cache=True, nogil=True)
def resolve(parent, ids):
    """``_find(parent, i)`` for every i of ``ids``."""
    out = np.empty(ids.size, dtype=np.int64)
    for i in range(ids.size):
        out[i] = _find(parent, ids[i])
    return out


@njit(cache=True, nogil=True)
def affinity_level(part, csr, size, cap):
    """One more affinity (Boruvka) level over a partition: every set links to the set across its heaviest
    outgoing edge between active clusters (W; ties: smaller set key), visited by decreasing W (ties: smaller
    key); two sets join while their union holds <= cap clusters (counts change only on real unions).
    Returns the new part (smallest id of each set); -1 (inactive) stays -1. (:func:`level_links`, then
    :func:`capped_union`: the Spark engine runs the two steps apart.)"""
    bw, bto, count = level_links(part, csr, size)
    parent = capped_union(np.flatnonzero(bto >= 0), bw, bto, count, cap)
    n = part.size
    out = np.full(n, -1, dtype=np.int64)
    for u in range(n):
        if part[u] >= 0:
            out[u] = _find(parent, part[u])
    return out


@njit(cache=True, nogil=True)
def run_sums(src, dst, w):
    """Sum runs of equal (src, dst) in sorted rows, left to right (no pairwise summation): the contraction's
    sum for an engine that sorts the rows itself (Spark). Returns the first row of each run and its sum."""
    m = src.size
    first = np.empty(m, dtype=np.int64)
    out = np.empty(m, dtype=np.float64)
    r = -1
    for i in range(m):
        if r >= 0 and src[i] == src[first[r]] and dst[i] == dst[first[r]]:
            out[r] = out[r] + w[i]
        else:
            r += 1
            first[r] = i
            out[r] = w[i]
    return first[:r + 1], out[:r + 1]
