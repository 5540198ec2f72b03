"""The cross-product pass: each partition's share of [Z | X | y]'W[Z | X | y], and their sum.

A partition contributes, in the engine's block layout (:mod:`mixedpy.linalg.blocked`):

* Z_j'WZ_j per term as (J_j, k_j, k_j) sums by level;
* for each pair of terms i > j, per distinct tuple of level codes of the partition, the (k_i, k_j)
  sum of w M_i' M_j (so the sparsity pattern of Z_i'Z_j is the set of tuples that occur);
* [X | r]'WZ_j and [X | r]'W[X | r], with r = y - offset - y_ref;
* the R factor of X (for lme4's rank check by the same pivoting, since X = QR keeps every norm
  and projection) and per-column moments (for lme4's scale check).

Sums combine by addition (tuples by union), in any order, so the reduced system is the in-memory
one up to rounding.  :func:`reduce_system` then drops rank-deficient columns, replaces r by the
scaled weighted-OLS residual y_tilde of :mod:`mixedpy.linalg.response` (algebraically, from the
sums: y_tilde = (r - X d) / s), and builds the :class:`~mixedpy.linalg.blocked.CrossProducts`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import validation
from ..linalg.blocked import CrossProducts, TermBlock
from ..linalg.response import ResponseScaling
from .plan import Model, model_arrays


@dataclass
class ColumnStats:
    """What lme4's rank and scale checks of X need: its R factor and per-column moments."""

    r_factor: np.ndarray                # R of X, (min(n, p), p)
    moments: np.ndarray                 # (3, p): count, mean, sum of squared deviations per column
    binary: np.ndarray                  # (p,) every value 0 or 1

    @classmethod
    def of(cls, X: np.ndarray) -> "ColumnStats":
        return cls(np.linalg.qr(X, mode="r"), column_moments(X), np.all((X == 0) | (X == 1), axis=0))

    def combine(self, other: "ColumnStats") -> "ColumnStats":
        return ColumnStats(np.linalg.qr(np.vstack([self.r_factor, other.r_factor]), mode="r"),
                           _chan(self.moments, other.moments), self.binary & other.binary)


def column_moments(X: np.ndarray) -> np.ndarray:
    """(3, p): count, mean and sum of squared deviations of each column of X (n, p); two blocks'
    combine by :func:`_chan`."""
    n, p = X.shape
    mean = X.mean(axis=0) if n else np.zeros(p)
    return np.vstack([np.full(p, float(n)), mean, ((X - mean) ** 2).sum(axis=0)])


def moment_sd(moments: np.ndarray, ddof: int = 1) -> np.ndarray:
    """Per column the SD with ``ddof`` from :func:`column_moments`-style moments."""
    n, _, m2 = moments
    return np.sqrt(m2 / np.maximum(n - ddof, 1))


def moment_rows(mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """(2, p): two rows whose per-column mean and SD (ddof 1) are ``mean`` and ``sd`` (m -+ sd / sqrt 2),
    for checks and prior scales that read only those moments of their rows."""
    half = np.asarray(sd) / np.sqrt(2.0)
    return np.vstack([mean - half, mean + half])


@dataclass
class Sums:
    """One partition's (or several partitions') sums; see the module docstring."""

    n: int
    ldW: float
    diag: list[np.ndarray]
    tuples: np.ndarray                  # (m, T) distinct level-code tuples, sorted
    pairs: dict                         # (i, j) -> (m, k_i, k_j)
    columns: list[np.ndarray]           # (p + 1, J_j k_j)
    fixed: np.ndarray                   # (p + 1, p + 1)
    stats: ColumnStats | None           # of X, for the rank and scale checks (first pass only)
    start: list | None                  # per term (row counts, sums of y - y_0) by level, simple models
    y_moments: np.ndarray               # [sum, sum of squares] of y - y_0
    sum_w: float = 0.0                  # sum of the weights (n without weights)
    y_stats: np.ndarray | None = None   # column_moments of [y, y - offset] (rstanarm's prior scales)
    #: with a :class:`TupleMap` (``tuples`` None): each row of the pair sums' position in the global
    #: tuple set (repeats allowed), or None when the pair sums are dense in the global order
    pair_at: np.ndarray | None = None
    n_tuples: int = 0                   # the size of the global tuple set (with a TupleMap)


def _code_dtype(J: list[int]):
    """int32 level codes when every factor has fewer than 2^31 levels (the tuples are the largest
    arrays a Dask fit sends to the client: 15.7M of them at 20M rows of 50,000 x 800 levels)."""
    return np.int32 if max(J, default=0) < 2 ** 31 else np.int64


def _unique_rows(C: np.ndarray, J: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of the level-code matrix C (m, T), sorted (as :func:`_code_dtype`), and the
    inverse index."""
    key = _tuple_keys(C, J) if C.shape[1] else None
    if key is not None:
        used, inv = np.unique(key, return_inverse=True)
        del key
        rows = np.empty((used.size, C.shape[1]), dtype=_code_dtype(J))
        for t in range(C.shape[1] - 1, -1, -1):
            rows[:, t] = used % J[t]
            used = used // J[t]
        return rows, inv.ravel()
    rows, inv = np.unique(C, axis=0, return_inverse=True)
    return rows.astype(_code_dtype(J), copy=False), inv.ravel()


def local_tuples(codes: list[np.ndarray], J: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The distinct tuples of the per-term level ``codes`` of some rows, sorted, and per row the
    index of its tuple among them (:func:`_unique_rows`)."""
    return _unique_rows(np.column_stack(codes), J)


def _tuple_keys(C: np.ndarray, J: list[int]) -> np.ndarray | None:
    """Mixed-radix int64 keys of the tuples C (m, T), increasing with C's sorted order; None when
    they could overflow."""
    if float(np.prod([float(j) for j in J])) >= 2.0 ** 62:
        return None
    key = np.zeros(C.shape[0], dtype=np.int64)
    for t, Jt in enumerate(J):
        key *= Jt
        key += C[:, t]
    return key


@dataclass(frozen=True)
class TupleMap:
    """One partition's rows against a fit's global, sorted set of level-code tuples.

    A GLMM makes one pass per PIRLS iteration; each sums w M_i' M_j per tuple.  With the map made
    once (:func:`tuple_map`), a pass sums over the partition's own distinct tuples (``inv``, per row)
    and sends them with their global positions (``at``): no per-pass sort of the tuples and no
    tuple arrays on the way to the client, which receives the pair sums in the global order."""

    inv: np.ndarray      # (n,) per row, the index of its tuple among the partition's distinct tuples
    at: np.ndarray       # (m_local,) per distinct tuple, its position in the global set
    size: int            # the global set's size


def global_tuple_index(tuples: np.ndarray, J: list[int]) -> tuple:
    """What :func:`tuple_map` needs of the global sorted tuple set: its :func:`_tuple_keys`, or,
    when those could overflow, the tuples themselves (as ``(keys, tuples)``, the other None)."""
    keys = _tuple_keys(tuples, J)
    return (keys, None) if keys is not None else (None, tuples)


def tuple_map(local: np.ndarray, inv: np.ndarray, J: list[int], index: tuple) -> TupleMap:
    """The :class:`TupleMap` of rows whose distinct tuples are ``local`` (sorted) and whose tuple
    among them is ``inv`` (:func:`local_tuples`), against a global sorted tuple set given by
    ``index`` (:func:`global_tuple_index`)."""
    keys, tuples = index
    if keys is not None:
        size = keys.size
        at = np.searchsorted(keys, _tuple_keys(local, J))
    else:   # every local tuple is in the global set: its rank in the union is its position there
        size = tuples.shape[0]
        _, rank = np.unique(np.vstack([tuples, local]), axis=0, return_inverse=True)
        at = rank.ravel()[size:]
    dtype = np.int32 if size < 2 ** 31 else np.int64
    return TupleMap(inv.astype(dtype, copy=False), at.astype(dtype, copy=False), int(size))


def _sum_by(index: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """Sums of values (m, a, b) over equal ``index``: (size, a, b)."""
    out = np.empty((size,) + values.shape[1:])
    for a in range(values.shape[1]):
        for b in range(values.shape[2]):
            out[:, a, b] = np.bincount(index, weights=values[:, a, b], minlength=size)
    return out


def _level_gram(codes: np.ndarray, J: int, M: np.ndarray) -> np.ndarray:
    """Z_j'WZ_j as (J, k, k): per level the sum of M' M over its rows (M already weighted)."""
    k = M.shape[1]
    D = np.empty((J, k, k))
    for a in range(k):
        for b in range(a, k):
            D[:, a, b] = D[:, b, a] = np.bincount(codes, weights=M[:, a] * M[:, b], minlength=J)
    return D


def _is_simple(model: Model) -> bool:
    """lme4's start needs the group means only for one intercept term per distinct factor."""
    groups = [t.group_name for t in model.terms]
    return all(t.k == 1 and t.coef_names == ["(Intercept)"] for t in model.terms) and len(set(groups)) == len(groups)


def response_shift(model: Model) -> float:
    """y_ref removed from y - offset before summing: along the intercept column the criterion does
    not change, and the sums of r = y - offset - y_ref lose no digits to a large mean of y."""
    return float(model.ref[1]) if "(Intercept)" in model.fixed_names else 0.0


def system_sums(model: Model, X, r, sw, codes, Ms, ldW: float = 0.0, y_start=None, stats: bool = True,
                y_stats: np.ndarray | None = None, sum_w: float | None = None,
                tuples: TupleMap | None = None) -> Sums:
    """The sums of one block of rows: X (n, p), working response r, square roots of the weights sw
    (or None), per term level codes and model matrices; ``y_start`` (y - y_0) for lme4's start of
    simple models; ``stats``: also X's :class:`ColumnStats`; ``y_stats``, ``sum_w``: moments of the
    response and the sum of the weights, kept as they are (sum_w defaults to sum(sw^2)).  With a
    :class:`TupleMap` (``tuples``) the pair sums are by the global tuple set (``Sums.pair_at``)
    instead of by the rows' own distinct tuples."""
    terms = model.terms
    T, n = len(terms), X.shape[0]
    J = [t.n_levels for t in terms]
    Xy = np.column_stack([X, r])
    Mw = Ms
    if sw is not None:
        Xy = Xy * sw[:, None]
        Mw = [M * sw[:, None] for M in Ms]
    diag = [_level_gram(c, Jt, M) for c, Jt, M in zip(codes, J, Mw)]
    columns = [CrossProducts._columns_cross(c, Jt, M, Xy) for c, Jt, M in zip(codes, J, Mw)]
    pair_at, n_tuples = None, 0
    if T > 1 and tuples is not None:
        inv, m, pair_at, n_tuples = tuples.inv, tuples.at.size, tuples.at, tuples.size
        tuples = None
    elif T > 1:
        tuples, inv = _unique_rows(np.column_stack(codes), J)
        m = tuples.shape[0]
    else:
        tuples, inv, m = np.zeros((0, T), dtype=_code_dtype(J)), None, 0
    pairs = {}
    for j in range(T):
        for i in range(j + 1, T):
            prod = Mw[i][:, :, None] * Mw[j][:, None, :]
            pairs[i, j] = _sum_by(inv, prod, m)
    start = None
    y_moments = np.zeros(2)
    if y_start is not None:
        if _is_simple(model):
            start = [(np.bincount(c, minlength=Jt).astype(float), np.bincount(c, weights=y_start, minlength=Jt))
                     for c, Jt in zip(codes, J)]
        y_moments = np.array([y_start.sum(), y_start @ y_start])
    return Sums(n=n, ldW=ldW, diag=diag, tuples=tuples, pairs=pairs, columns=columns, fixed=Xy.T @ Xy,
                stats=ColumnStats.of(X) if stats else None, start=start, y_moments=y_moments,
                sum_w=float(n if sw is None else sw @ sw) if sum_w is None else sum_w, y_stats=y_stats,
                pair_at=pair_at, n_tuples=n_tuples)


def partition_sums(part, index: int, model: Model) -> Sums:
    """The LMM sums of one partition (the map step of the cross-product pass)."""
    rows, X, codes, Ms = model_arrays(part, model)
    r = rows.y - rows.offset - response_shift(model)
    w = rows.w
    ldW = 0.0 if w is None else float(np.log(w[w > 0]).sum())
    return system_sums(model, X, r, None if w is None else np.sqrt(w), codes, Ms, ldW=ldW,
                       y_start=rows.y - model.ref[0],
                       y_stats=column_moments(np.column_stack([rows.y, rows.y - rows.offset])),
                       sum_w=float(len(rows.y) if w is None else w.sum()))


def _chan(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Count, mean and sum of squared deviations of two blocks of rows together (Chan et al. 1979)."""
    na, nb = a[0], b[0]
    n = na + nb
    with np.errstate(invalid="ignore", divide="ignore"):
        delta = b[1] - a[1]
        mean = np.where(n > 0, a[1] + delta * nb / n, 0.0)
        m2 = a[2] + b[2] + np.where(n > 0, delta * delta * na * nb / n, 0.0)
    return np.vstack([n, mean, m2])


def merge_tuples(ta: np.ndarray, pa: dict, tb: np.ndarray, pb: dict, J: list[int]):
    """(tuples, pairs) of the union of two sorted tuple sets ``ta``, ``tb`` (as :func:`_unique_rows`),
    their per-tuple pair sums ``pa``, ``pb`` added, by a linear merge: tb's tuples are located in
    ta's by binary search and inserted in order.  No sort of the concatenation: about half
    np.unique's temporaries (the root of the reduction holds most of the tuples, 37M at 100M rows
    of 50,000 x 800 levels).  Empty ``pa`` and ``pb`` give the union of the tuple sets alone."""
    if ta.shape[0] < tb.shape[0]:
        ta, pa, tb, pb = tb, pb, ta, pa  # insert the smaller set (sums add in any order)
    ka, kb = _tuple_keys(ta, J), _tuple_keys(tb, J)
    if ka is None:
        tuples, inv = _unique_rows(np.vstack([ta, tb]), J)
        return tuples, {key: _sum_by(inv, np.concatenate([pa[key], pb[key]]), tuples.shape[0]) for key in pa}
    pos = np.searchsorted(ka, kb)
    found = pos < ka.size
    found[found] = ka[pos[found]] == kb[found]
    del ka, kb
    ins = pos[~found]                    # where b's new tuples go in a (non-decreasing)
    # each of a's tuples moves down by the number of new ones inserted before it (np.insert's rule)
    at_a = np.cumsum(np.bincount(ins, minlength=ta.shape[0] + 1)[:-1])
    at_a += np.arange(at_a.size)
    at_new = ins + np.arange(ins.size)
    at_found = at_a[pos[found]]
    del pos, ins
    m = at_a.size + at_new.size
    tuples = np.empty((m, ta.shape[1]), dtype=ta.dtype)
    tuples[at_a], tuples[at_new] = ta, tb[~found]
    pairs = {}
    for key, A in pa.items():
        B = pb[key]
        out = np.empty((m,) + A.shape[1:])
        out[at_a], out[at_new] = A, B[~found]
        out[at_found] += B[found]
        pairs[key] = out
    return tuples, pairs


def combine_sums(a: Sums, b: Sums) -> Sums:
    """The sums of two blocks of rows together (the reduce step)."""
    pair_at = None
    if a.tuples is None:
        tuples = None
        pair_at, pairs = _combine_mapped(a, b)
    elif a.tuples.shape[1] > 1:
        tuples, pairs = merge_tuples(a.tuples, a.pairs, b.tuples, b.pairs, [t.shape[0] for t in a.diag])
    else:
        tuples, pairs = a.tuples, {}
    start = None
    if a.start is not None:
        start = [(ca + cb, sa + sb) for (ca, sa), (cb, sb) in zip(a.start, b.start)]
    return Sums(n=a.n + b.n, ldW=a.ldW + b.ldW, diag=[x + y for x, y in zip(a.diag, b.diag)], tuples=tuples,
                pairs=pairs, columns=[x + y for x, y in zip(a.columns, b.columns)], fixed=a.fixed + b.fixed,
                stats=None if a.stats is None else a.stats.combine(b.stats), start=start,
                y_moments=a.y_moments + b.y_moments, sum_w=a.sum_w + b.sum_w,
                y_stats=None if a.y_stats is None else _chan(a.y_stats, b.y_stats), pair_at=pair_at,
                n_tuples=a.n_tuples)


def dense_pairs(s: Sums) -> dict:
    """The pair sums of ``s`` per tuple of the global set, in its order (with a :class:`TupleMap`)."""
    if s.pair_at is None:
        return s.pairs
    return {key: _sum_by(s.pair_at, v, s.n_tuples) for key, v in s.pairs.items()}


def _combine_mapped(a: Sums, b: Sums):
    """(pair_at, pairs) of two blocks' pair sums by the global tuple set: concatenated while
    together they hold fewer entries than half the set (12 bytes an entry against 8 dense),
    else added densely."""
    if a.pair_at is not None and b.pair_at is not None and a.pair_at.size + b.pair_at.size <= a.n_tuples // 2:
        return (np.concatenate([a.pair_at, b.pair_at]),
                {key: np.concatenate([v, b.pairs[key]]) for key, v in a.pairs.items()})
    fresh = a.pair_at is not None           # a's dense sums are new arrays, to add into
    A, B = dense_pairs(a), dense_pairs(b)
    if not fresh:
        A = {key: v.copy() for key, v in A.items()}
    for key in A:
        A[key] += B[key]
    return None, A


# -- the reduced system ---------------------------------------------------------------------------
def kept_columns(names: list[str], stats: ColumnStats) -> np.ndarray:
    """lme4's rank check (and scale check) from the reduced column statistics; warns as in memory."""
    keep = validation.drop_rank_deficient(stats.r_factor)
    validation.warn_rank_deficient([names[j] for j in range(len(names)) if j not in set(keep.tolist())])
    # warn_on_scales reads only each column's SD and whether it is 0/1: two rows with those SDs
    # (m +- sd / sqrt 2) and the 0/1 columns as 0, 1 give its verdict on the whole data
    two = moment_rows(stats.moments[1, keep], moment_sd(stats.moments[:, keep]))
    binary = stats.binary[keep]
    two[:, binary] = [[0.0], [1.0]]
    validation.warn_on_scales(two, [names[j] for j in keep])
    return keep


def scaled_system(sums: Sums, keep: np.ndarray, shift: float, intercept: int | None):
    """(ResponseScaling, columns, fixed) with r replaced by y_tilde = (r - X d) / s.

    d is the weighted OLS coefficient of r on X and s the RMS of that residual (as
    :meth:`ResponseScaling.of` computes them row by row); the criterion is the same for any d and
    s > 0, so only their use matters, not their last digits.  y = X c + s y_tilde with c = d plus
    the shift along the intercept."""
    p = keep.size
    sel = np.concatenate([keep, [sums.fixed.shape[0] - 1]])
    F = sums.fixed[np.ix_(sel, sel)]
    XX, Xr, rr = F[:p, :p], F[:p, p], F[p, p]
    d = np.linalg.lstsq(XX, Xr, rcond=None)[0] if p else np.zeros(0)
    d[~np.isfinite(d)] = 0.0
    rss = rr - 2.0 * d @ Xr + d @ XX @ d
    s = float(np.sqrt(rss / sums.n)) if sums.n else 0.0
    s = s if np.isfinite(s) and s > 0 else 1.0
    out = F.copy()
    out[:p, p] = out[p, :p] = (Xr - XX @ d) / s
    out[p, p] = max(rss, 0.0) / (s * s)
    columns = []
    for C in sums.columns:
        C = C[sel]
        C[p] = (C[p] - d @ C[:p]) / s
        columns.append(C)
    c = d.copy()
    if intercept is not None:
        c[intercept] += shift
    return ResponseScaling(c, s), columns, out


def theta_start(model: Model, sums: Sums) -> np.ndarray | None:
    """lme4's start for one intercept term per factor (:meth:`LMMProblem.start_theta`) from the
    reduced group counts and sums: the variance of the group means over the rows, v_f, against
    the rest of the variance of y."""
    if sums.start is None:
        return None
    n = sums.n
    sy, syy = sums.y_moments
    ybar = sy / n
    v_f = np.array([(counts * (total / counts - ybar) ** 2).sum() / (n - 1) for counts, total in sums.start])
    v_e = (syy - n * ybar * ybar) / (n - 1) - v_f.sum()
    return np.sqrt(v_f / v_e) if v_e > 0 else None


def level_structure(model: Model, tuples: np.ndarray):
    """The symbolic block structure from the level tuples that occur: one synthetic row per tuple
    (it depends only on which level pairs occur, not on how often)."""
    terms = model.terms
    codes = [tuples[:, t] if len(terms) > 1 else np.zeros(0, dtype=np.int64) for t in range(len(terms))]
    blocks = [TermBlock(c, np.zeros((0, t.k)), t.n_levels) for c, t in zip(codes, terms)]
    return CrossProducts.analyse(blocks, [t.group_name for t in terms])


def cross_products(model: Model, sums: Sums, keep: np.ndarray, shift: float) -> CrossProducts:
    """The engine's cross-products of the reduced sums over the kept fixed-effects columns.

    The level tuples and pair sums of ``sums`` (its largest arrays, about 16 bytes per distinct
    tuple) are consumed: set to None as soon as they are used, so that they are not held beside
    the blocks made from them; so are the structure's per-tuple positions ``a_pos``, which only
    :meth:`CrossProducts.from_sums` reads."""
    names = [model.fixed_names[j] for j in keep]
    intercept = names.index("(Intercept)") if "(Intercept)" in names else None
    response, columns, fixed = scaled_system(sums, keep, shift if intercept is not None else 0.0, intercept)
    structure = level_structure(model, sums.tuples)
    pairs, sums.tuples, sums.pairs = sums.pairs, None, None
    cp = CrossProducts.from_sums(structure, sums.diag, pairs, columns, fixed, response)
    del pairs
    structure.a_pos = {}
    return cp
