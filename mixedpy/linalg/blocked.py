"""Blocked Cholesky factor of lme4's penalized least-squares system.

For a given theta, the profiled deviance needs the Cholesky factor L of

        [ Lambda'Z'WZ Lambda + I   Lambda'Z'WX   Lambda'Z'Wy ]
    A = [ X'WZ Lambda              X'WX          X'Wy        ]
        [ y'WZ Lambda              y'WX          y'Wy        ]

(Bates et al. 2015, eqs. 16-18).  Its last row holds everything lme4 profiles out: the diagonal
entries give log|L|^2 (``ldL2``), log|R_X|^2 (``ldRX2``) and sqrt(pwrss); back-substitution gives
beta-hat and u-hat.

A and L are kept as lower-triangular arrays of blocks, one block row/column per random-effects term
(lme4's order) and one for [X | y]; :mod:`mixedpy.linalg.structure` decides each block's type
(Diagonal, BlkDiag, Sparse with a fixed pattern, Dense) once per model.  The blocks of A are formed
once per set of weights.  Each theta then costs, as MixedModels.jl's ``updateL!``:

1. scaling  L_ij = Lambda_i' A_ij Lambda_j  (+ I on the diagonal), in place in fixed storage;
2. a left-looking block Cholesky: for j = 1..T+1,
   L_jj -= sum_k L_jk L_jk',  L_jj = chol(L_jj),
   L_ij -= sum_k L_ik L_jk',  L_ij = L_ij L_jj^{-T}  (i > j),
   where updates from the (block-)diagonal first column, the [X | y] row's included, are products
   of fixed sparse matrices with the first term's weights or with Y = A_i1 M (structure.GramPlan,
   GramOperator, weighted_rows; Y once per theta and block row), other updates into Sparse and
   block-diagonal blocks, and sparse x sparse' updates into Dense blocks, fixed-pattern scatters
   (index plans from the structure, applied with bincount), the other updates into Dense blocks
   sparse x dense or dense x dense products, block-diagonal factors entry-by-entry Cholesky factors
   over all levels at once (closed form for k <= 2, contiguous component-major storage), Dense
   diagonal blocks LAPACK calls, and a Cholmod diagonal block (large and sparse) CHOLMOD's
   supernodal numeric factorization on its fixed pattern (mixedpy.linalg.cholmod), kept as
   L~ = P' L (S = L~ L~') so that every use of the block is a pair of CHOLMOD solves.

The objective's factorizations (``scratch=True``) reuse their large work arrays from one theta to
the next, so that a model with 500,000 levels does not pay page faults for fresh arrays at every
evaluation.

No Python loop runs over groups or observations; loops run over blocks (terms) and over the k_i x k_j
entries of one block.  See :mod:`mixedpy.linalg.structure` for when a block is factored by CHOLMOD.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

try:                                     # scipy's CSR kernels, for products accumulated in place
    from scipy.sparse import _sparsetools
except ImportError:                      # pragma: no cover - then GramOperator uses H @ x
    _sparsetools = None

from ..threads import block_threads
from .response import ResponseScaling
from .cholmod import CholmodFactor
from .outer import sparse_outer
from . import structure as _structure
from .structure import BLKDIAG, CHOLMOD, CHOLMOD_MIN_ORDER, DENSE, DIAGONAL, SPARSE, BlockStructure


#: dense diagonal blocks up to this order are inverted explicitly in the right division
SMALL_TRIANGLE = 64
#: a Gram matrix with at most this many entries has its columns of equal weight merged (a sparse
#: product costing about one evaluation; beyond this the merge is rarely worth its memory)
GRAM_MERGE_LIMIT = 5_000_000
#: block-diagonal blocks up to this k are factored entry by entry over all levels (_batch_cholesky)
LEVEL_CHOLESKY_MAX_K = 6


class NotPositiveDefinite(np.linalg.LinAlgError):
    """The downdated cross-product matrix is not positive definite (lme4: 'Downdated VtV')."""


@dataclass(frozen=True, eq=False)
class TermBlock:
    """A random-effects term as the kernel sees it: codes (n,), model matrix (n, k), J levels.

    :class:`mixedpy.terms.RandomEffectsTerm`, the model's term, is this class with the names and
    levels added, so fitted terms go to the kernel as they are; the kernel builds TermBlocks of its
    own only for rows that are not a model's (prior pseudo-rows, one row per level tuple)."""

    codes: np.ndarray
    model_matrix: np.ndarray
    n_levels: int

    @property
    def k(self) -> int:
        return self.model_matrix.shape[1]

    @property
    def width(self) -> int:
        return self.k * self.n_levels

    def z_matrix(self, sqrt_w: np.ndarray | None = None) -> sp.csc_matrix:
        """Sparse W^(1/2) Z_i (n x k J), level-major columns; for one-off products and dense checks."""
        n, k = self.model_matrix.shape
        vals = self.model_matrix if sqrt_w is None else self.model_matrix * sqrt_w[:, None]
        cols = (self.codes[:, None] * k + np.arange(k)[None, :]).ravel()
        rows = np.repeat(np.arange(n), k)
        return sp.csc_matrix((vals.ravel(), (rows, cols)), shape=(n, self.width))


def _is_blockdiag(t: str) -> bool:
    return t == DIAGONAL or t == BLKDIAG


def _scatter_sub(target: np.ndarray, it: np.ndarray, contrib: np.ndarray, symmetric: bool = False) -> None:
    """target[it[n]] -= contrib[n], summed over repeated indices; target (N, a, b), contrib (M, a, b).

    ``symmetric``: the contributions are symmetric k x k blocks; the upper triangle is mirrored."""
    N, a, b = target.shape
    for r in range(a):
        for c in range(r if symmetric else 0, b):
            s = np.bincount(it, weights=contrib[:, r, c], minlength=N)
            target[:, r, c] -= s
            if symmetric and c != r:
                target[:, c, r] -= s


def _pair_products(A: np.ndarray, ia: np.ndarray, B: np.ndarray, ib: np.ndarray) -> np.ndarray:
    """A[ia[n]] B[ib[n]]' for block arrays A (., a, k), B (., b, k): (n, a, b)."""
    Ai, Bi = A[ia], B[ib]
    if A.shape[2] == 1:
        return Ai * np.swapaxes(Bi, 1, 2)   # outer products of columns
    return Ai @ np.swapaxes(Bi, 1, 2)


def _small_sandwich(Ti: np.ndarray, D: np.ndarray, Tj: np.ndarray, ai: int = 1, aj: int = 2) -> np.ndarray:
    """Ti' D Tj applied along axes ``ai`` (length k_i) and ``aj`` (length k_j) of D, as k^2 vector
    operations (small k; faster than batched matmul).  D is a block array (n, k_i, k_j) with the
    default axes, or a dense block viewed as (J_i, k_i, J_j, k_j) with ai=1, aj=3."""
    ki, kj = Ti.shape[0], Tj.shape[0]

    def at(arr, axis, idx):
        sl = [slice(None)] * arr.ndim
        sl[axis] = idx
        return arr[tuple(sl)]

    left = np.empty_like(D)
    for a in range(ki):     # (Ti' D)[a] = sum_{r >= a} Ti[r, a] D[r]   (Ti lower triangular)
        acc = at(D, ai, a) * Ti[a, a]
        for r in range(a + 1, ki):
            acc = acc + at(D, ai, r) * Ti[r, a]
        at(left, ai, a)[...] = acc
    out = np.empty_like(D)
    for c in range(kj):     # (D Tj)[:, c] = sum_{r >= c} D[:, r] Tj[r, c]
        acc = at(left, aj, c) * Tj[c, c]
        for r in range(c + 1, kj):
            acc = acc + at(left, aj, r) * Tj[r, c]
        at(out, aj, c)[...] = acc
    return out


def _fresh(name, shape) -> np.ndarray:
    """The default work-array provider: a new array (see CrossProducts.factor's ``scratch``)."""
    return np.empty(shape)


def _batch_cholesky(A: np.ndarray, work=_fresh) -> tuple[np.ndarray, np.ndarray]:
    """Lower Cholesky factors and their inverses of a batch (J, k, k), as (J, k, k) views of
    component-major (k, k, J) storage from ``work(name, shape)``.

    Up to :data:`LEVEL_CHOLESKY_MAX_K` the factorization runs entry by entry over all levels at once
    (Cholesky-Crout, then forward substitution for the inverse: k^3/3 operations on length-J vectors,
    each contiguous), which is many times faster than batched LAPACK calls on tiny blocks; for
    k = 1 and 2 it is the closed form  l11 = sqrt(a11), l21 = a21 / l11, l22 = sqrt(a22 - l21^2)."""
    J, k = A.shape[0], A.shape[1]
    if k > LEVEL_CHOLESKY_MAX_K:
        try:
            L = np.linalg.cholesky(A)
        except np.linalg.LinAlgError as exc:
            raise NotPositiveDefinite("a block-diagonal random-effects block is not positive definite") from exc
        return L, np.linalg.inv(L)
    D = np.moveaxis(A, 0, -1)            # (k, k, J); contiguous rows when A is a view of such storage
    F, Fi = work("F", (k, k, J)), work("Fi", (k, k, J))
    tmp = work("tmp", (J,)) if k > 1 else None
    for c in range(k):
        s = F[c, c]
        np.copyto(s, D[c, c])
        for b in range(c):
            np.multiply(F[c, b], F[c, b], out=tmp)
            s -= tmp
        if not s.min() > 0:              # also NaN
            raise NotPositiveDefinite("a block-diagonal random-effects block is not positive definite")
        np.sqrt(s, out=s)
        np.divide(1.0, s, out=Fi[c, c])
        for r in range(c + 1, k):
            acc = F[r, c]
            np.copyto(acc, D[r, c])
            for b in range(c):
                np.multiply(F[r, b], F[c, b], out=tmp)
                acc -= tmp
            acc *= Fi[c, c]
            F[c, r] = 0.0
            Fi[c, r] = 0.0
    # inverse of the lower triangle: Fi[r, c] = -(sum_{c <= b < r} F[r, b] Fi[b, c]) / F[r, r]
    for c in range(k):
        for r in range(c + 1, k):
            acc = Fi[r, c]
            np.multiply(F[r, c], Fi[c, c], out=acc)
            for b in range(c + 1, r):
                np.multiply(F[r, b], Fi[b, c], out=tmp)
                acc += tmp
            acc *= Fi[r, r]
            np.negative(acc, out=acc)
    return np.moveaxis(F, -1, 0), np.moveaxis(Fi, -1, 0)


def _dense_cholesky(M: np.ndarray, check: bool = True) -> np.ndarray:
    """The lower Cholesky factor of the symmetric M (only its lower triangle is read), by LAPACK's
    lower variant on a Fortran-ordered copy (as scipy.linalg.cholesky).  Measured at order 1,128
    (InstEval's lecturers), the lower variant with the copy took 14-15 ms against 17 ms for the
    upper variant in place on the transposed storage.  ``check``: NaN or inf in the factor also
    mean failure."""
    if M.shape[0] == 0:
        return M
    L, info = sla.lapack.dpotrf(M, lower=1, clean=1)
    if info != 0 or (check and not np.all(np.isfinite(np.diagonal(L)))):
        raise NotPositiveDefinite("downdated cross-product matrix is not positive definite")
    return L


def _lower_solve(L: np.ndarray, b: np.ndarray, trans: bool = False) -> np.ndarray:
    """L^{-1} b (L^{-T} b with ``trans``) for lower-triangular L."""
    return sla.solve_triangular(L, b, lower=True, trans="T" if trans else "N", check_finite=False)


def _abt(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """A B' for dense A (a, n), B (b, n).  Few long rows (the [X | y] row of a model with 500,000
    levels: 3 x 1,000,000) take one dot product per pair, about 4 times faster than OpenBLAS's gemm
    on that shape."""
    if A.shape[0] * B.shape[0] > 64 or A.shape[1] < 10_000:
        return A @ B.T
    out = np.empty((A.shape[0], B.shape[0]))
    same = A is B
    for a in range(A.shape[0]):
        for b in range(a + 1 if same else B.shape[0]):
            out[a, b] = np.dot(A[a], B[b])
            if same:
                out[b, a] = out[a, b]
    return out


def _sym_pairs(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the lower triangle of a k x k matrix, row by row."""
    return np.tril_indices(k)


def _sandwich_levels(P: np.ndarray, T: np.ndarray, work=_fresh) -> np.ndarray:
    """T' A_l T + I for every level l, from the lower-triangle components P (m, J) of symmetric A_l
    (m = k(k+1)/2, :func:`_sym_pairs` order).  Returns (J, k, k), a view of (k, k, J) storage.

    (T' A T)_rs = sum_{a, b} T_ar A_ab T_bs is linear in A's m distinct entries, so all levels take
    one (m x m) @ (m x J) product: no batched small matmuls, no strided (J, k, k) passes."""
    k = T.shape[0]
    r, c = _sym_pairs(k)
    # C[(r, s), (a, b)] = T_ar T_bs + T_br T_as for a != b, T_ar T_as for a == b
    C = T[r[None, :], r[:, None]] * T[c[None, :], c[:, None]]
    off = r != c
    C[:, off] += (T[c[None, :], r[:, None]] * T[r[None, :], c[:, None]])[:, off]
    Du = np.matmul(C, P, out=work("Du", P.shape))
    D = work("D", (k, k, P.shape[1]))
    for n, (a, b) in enumerate(zip(r, c)):
        D[a, b] = Du[n]
        if a != b:
            D[b, a] = Du[n]
        else:
            D[a, a] += 1.0
    return np.moveaxis(D, -1, 0)


def gram_weights(T: np.ndarray, Finv: np.ndarray) -> np.ndarray:
    """The distinct entries of M_l = T (F_l F_l')^{-1} T' = R R', R = T F_l^{-T}, for every level
    (the weights of the first column's Gram plans, structure.GramPlan), as (k(k+1)/2, ...) in
    :func:`_sym_pairs` order.

    ``T`` (k, k, ...) is the first term's lower-triangular relative factor and ``Finv`` (k, k, ...)
    the inverses of the lower Cholesky factors F_l of T' A_l T + I, component-major (the trailing
    axes broadcast: levels, and walkers in the batched kernel).  k^3 vector operations; for k = 1
    the weight is (t / f_l)^2 = t^2 / (1 + t^2 a_l)."""
    k = T.shape[0]
    # R[a][c] = sum_b T[a, b] Finv[c, b], b <= min(a, c) (both lower triangular)
    R = [[sum(T[a, b] * Finv[c, b] for b in range(min(a, c) + 1)) for c in range(k)] for a in range(k)]
    r, c = _sym_pairs(k)
    return np.stack([sum(R[a][e] * R[b][e] for e in range(k)) for a, b in zip(r, c)])


def _pair_coefficients(Xa, Xb, ki: int, kj: int, k1: int, out: np.ndarray) -> None:
    """Gram coefficients of n pairs of blocks into ``out`` (n, k_i k_j, m): entry (r k_j + s, c) is
    the coefficient of the c-th distinct entry (a, b) of a symmetric k_1 x k_1 M (:func:`_sym_pairs`
    order) in (Xa M Xb')_rs, i.e.  Xa_ra Xb_sb (+ Xa_rb Xb_sa when a != b).  ``Xa(r, a)`` and
    ``Xb(s, b)`` give the pairs' entries as vectors (n,) (gathered per entry: one-dimensional
    gathers are several times faster than gathers of (n, k, k) blocks)."""
    comp_a, comp_b = _sym_pairs(k1)
    xa = [[Xa(r, a) for a in range(k1)] for r in range(ki)]
    xb = [[Xb(s_, b) for b in range(k1)] for s_ in range(kj)]
    tmp = None
    for r in range(ki):
        for s_ in range(kj):
            for c, (a, b) in enumerate(zip(comp_a, comp_b)):
                dst = out[:, r * kj + s_, c]
                np.multiply(xa[r][a], xb[s_][b], out=dst)
                if a != b:
                    tmp = np.multiply(xa[r][b], xb[s_][a], out=tmp)
                    dst += tmp


def _block_rows_csr(indptr: np.ndarray, n_cols: int, K: int, m: int, values) -> sp.csr_matrix:
    """A CSR matrix with K rows per block row and m columns per level, built straight into its
    storage in chunks (no COO copy: a Gram matrix can have 10^8 entries).

    Block row t holds the items indptr[t]:indptr[t+1]; ``values(s0, s1, out)`` writes the
    coefficients of items s0:s1 into ``out`` (n, K, m) and returns their column levels (n,): item n
    puts its (rs, c) coefficient in row t K + rs, column level m + c.  Row (t, rs) lists its items
    in order."""
    nitems = int(indptr[-1])
    nnz = nitems * K * m
    small = nnz < 2 ** 31 - 1 and n_cols * m < 2 ** 31 - 1
    data = np.empty(nnz)
    indices = np.empty(nnz, dtype=np.int32 if small else np.int64)
    base = np.asarray(indptr, dtype=np.int64)
    cnt = np.diff(base)
    # row (t, rs) starts at (base_t K + rs cnt_t) m
    rows = np.empty(cnt.size * K + 1, dtype=np.int64)
    rows[:-1] = ((base[:-1, None] * K + np.arange(K)[None, :] * cnt[:, None]) * m).reshape(-1)
    rows[-1] = nnz
    step = max(1, _structure.GRAM_CHUNK)
    comp = np.arange(m, dtype=indices.dtype)
    for s0 in range(0, nitems, step):
        s1 = min(nitems, s0 + step)
        if K == 1:                   # row t holds items in order: one contiguous slice
            levels = values(s0, s1, data[s0 * m:s1 * m].reshape(s1 - s0, 1, m))
            out = indices[s0 * m:s1 * m].reshape(s1 - s0, m)
            np.multiply(np.asarray(levels, dtype=indices.dtype)[:, None], m, out=out)
            out += comp
            continue
        vals = np.empty((s1 - s0, K, m))
        levels = values(s0, s1, vals)
        cols = np.asarray(levels, dtype=np.int64)[:, None] * m + np.arange(m)[None, :]
        item = np.arange(s0, s1)
        t = np.searchsorted(base, item, side="right") - 1
        start = base[t] * K + (item - base[t])
        pos = ((start[:, None] + np.arange(K)[None, :] * cnt[t][:, None])[:, :, None] * m
               + np.arange(m)[None, None, :]).reshape(-1)
        data[pos] = vals.reshape(-1)
        indices[pos] = np.broadcast_to(cols[:, None, :], (s1 - s0, K, m)).reshape(-1)
    return sp.csr_matrix((data, indices, rows.astype(indices.dtype) if small else rows),
                         shape=(cnt.size * K, n_cols * m))


def _gram_values(st: BlockStructure, key, A: dict) -> sp.csr_matrix:
    """The numeric Gram matrix of plan ``key`` = (i, j, 0) from the cross-products A (rows and
    columns: :meth:`CrossProducts._gram_matrix`)."""
    g = st.grams[key]
    i, j, _ = key
    Ai, Aj = A[i, 0], A[j, 0]                       # (nnz_i, k_i, k_1), (nnz_j, k_j, k_1)
    ki, kj, k1 = st.k[i], st.k[j], st.k[0]
    cols = st.patterns[i, 0].cols

    def values(s0, s1, out):
        ia, ib = g.ia[s0:s1], g.ib[s0:s1]
        _pair_coefficients(lambda r, a: Ai[:, r, a][ia], lambda s_, b: Aj[:, s_, b][ib], ki, kj, k1, out)
        return cols[ia]

    return _block_rows_csr(g.indptr, g.n_cols, ki * kj, k1 * (k1 + 1) // 2, values)


def weighted_rows(Xc: np.ndarray, w: np.ndarray, levels: np.ndarray | None = None,
                  out: np.ndarray | None = None) -> np.ndarray:
    """Y = X M block by block: Y_n = X_n M_l(n) for blocks X_n (R x k_1) of the first term's columns.

    ``Xc`` (k_1, N, R) holds the columns of the N blocks component-major (contiguous, formed once:
    :meth:`CrossProducts.row_components`); ``w`` (J_1 m, ...) the Gram weights, the distinct entries
    of the symmetric M_l (:func:`gram_weights`; trailing axes e.g. walkers); ``levels`` (N,) the
    first-term level of each block (None: block n is level n, the [X | y] row).  Returns
    (k_1, N, R, ...), component-major, so that each Y[b] is a contiguous (N, R ...) operand of a
    sparse product (:class:`GramOperator`).

    The first diagonal block has no fill, so  L_i1 L_j1' = Lambda_i' (A_i1 M A_j1') Lambda_j  for every
    later block row i, [X | y] included (structure.GramPlan): Y = A_i1 M is the part that changes with
    theta, k_1^2 vector operations over the blocks, once per factorization and term."""
    k = Xc.shape[0]
    m = k * (k + 1) // 2
    vec = w.shape[1:]
    Wt = w.reshape((-1, m) + vec)
    ext = (slice(None), None)                             # (N, 1, ...) against (N, R, ...)
    comp = {}
    for c, (a, b) in enumerate(zip(*_sym_pairs(k))):
        comp[a, b] = comp[b, a] = c
    X = Xc.reshape(Xc.shape + (1,) * len(vec))
    if out is None:
        out = np.empty(Xc.shape + vec)
    for b in range(k):
        acc = out[b]
        for a in range(k):
            # one weight component at a time: for many blocks (and walkers) the gathered weights
            # are the size of Y itself
            wc = Wt[:, comp[a, b]]
            wc = (wc if levels is None else wc[levels])[ext]
            if a == 0:
                np.multiply(X[0], wc, out=acc)
            else:
                acc += X[a] * wc
    return out


def _add_product(H: sp.csr_matrix, x: np.ndarray, out: np.ndarray) -> None:
    """out += H x for CSR H and C-contiguous x (N, R), out (n, R), accumulated in place by scipy's CSR
    kernels: the k_j k_1 products of a rows-form GramOperator go into one output, without a new
    array (and its page faults) per product; through ``H @ x`` where those kernels are missing."""
    n, m = H.shape
    try:
        if x.shape[1] == 1:
            _sparsetools.csr_matvec(n, m, H.indptr, H.indices, H.data, x.reshape(-1), out.reshape(-1))
        else:
            _sparsetools.csr_matvecs(n, m, x.shape[1], H.indptr, H.indices, H.data, x.reshape(-1),
                                     out.reshape(-1))
    except (AttributeError, TypeError, ValueError):
        out += H @ x


def _restrict_rows(M: sp.csr_matrix, rows: np.ndarray) -> sp.csr_matrix:
    """The rows ``rows`` (increasing) of M when every other row is empty: a new indptr over M's data
    and indices, no copy."""
    indptr = M.indptr[np.append(rows, M.shape[0])]
    return sp.csr_matrix((M.data, M.indices, indptr), shape=(rows.size, M.shape[1]), copy=False)


@dataclass(frozen=True)
class GramOperator:
    """The bracket  U = A_i1 M A_j1'  of an update from the first block column (structure.GramPlan) as
    fixed sparse matrices, formed once per cross-products (:meth:`CrossProducts.gram_operator`), in
    one of two forms (structure.gram_form decides):

    * levels (``source`` None): one CSR G with k_i k_j rows per target block and a column per
      distinct entry of each first-term level's M_l (:meth:`CrossProducts._gram_matrix`), so U = G m
      for the weights m (for a scalar first term, columns of levels with equal weight merged: ``rep``);
    * rows (``source`` the block row i): U[:, r, s] = sum_b H_sb Y_b[:, r] with
      Y = A_i1 M per theta (:func:`weighted_rows`) and, per entry (s, b) of A_j1's k_j x k_1 blocks,
      H_sb the CSR over the plan's pairs with entries A_j1[ib]_sb and column indices ia, the plan's own
      array (shared, not copied).  A pair costs k_j k_1 numbers against the levels form's
      k_i k_j k_1 (k_1 + 1) / 2 (at 2,000,000 rows of ``y ~ x + (x | a) + (1 | b)`` with 50,000 x 800
      levels: 40M pairs, 0.6 GB instead of 1.4 GB) and, that large, the products are faster too.
    """

    mats: tuple           # rows: ((H_s0, ..., H_s,k1-1) for s < k_j); levels: ((G,),)
    ki: int
    kj: int
    source: int | None = None
    rep: np.ndarray | None = None

    @property
    def n_rows(self) -> int:
        return self.mats[0][0].shape[0] // (self.ki * self.kj if self.source is None else 1)

    def apply(self, x: np.ndarray, work=_fresh) -> np.ndarray:
        """U (n_rows, k_i, k_j, ...) from the weights (levels form, (J_1, ...)) or from Y (rows form,
        (k_1, N, k_i, ...) from :func:`weighted_rows`); trailing axes (walkers) carried along.
        ``work(name, shape)`` provides the rows form's output (see CrossProducts.factor's scratch)."""
        if self.source is None:
            G = self.mats[0][0]
            U = G @ (x if self.rep is None else x[self.rep])
            return U.reshape((-1, self.ki, self.kj) + x.shape[1:])
        N, tail = x.shape[1], x.shape[2:]
        R = int(np.prod(tail))
        U = work("gram", (self.kj, self.mats[0][0].shape[0], R))
        U[...] = 0.0
        for s, row in enumerate(self.mats):
            for b, H in enumerate(row):
                _add_product(H, x[b].reshape(N, R), U[s])
        U = U.reshape((self.kj, -1) + tail)
        return np.moveaxis(U, 0, 2)                # (n_rows, k_i, k_j, ...)

    def restricted(self, rows: np.ndarray) -> "GramOperator":
        """The operator on the target blocks ``rows`` only (the others must be empty), sharing storage."""
        K = self.ki * self.kj if self.source is None else 1
        r = (np.asarray(rows, dtype=np.int64)[:, None] * K + np.arange(K)[None, :]).reshape(-1)
        mats = tuple(tuple(_restrict_rows(H, r) for H in row) for row in self.mats)
        return GramOperator(mats, self.ki, self.kj, self.source, self.rep)

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays the operator holds, each buffer once (the rows form's matrices share
        their indices and indptr, which are the plan's ``ia`` and ``indptr``)."""
        seen = {}
        for row in self.mats:
            for H in row:
                for a in (H.data, H.indices, H.indptr):
                    seen[a.__array_interface__["data"][0]] = a.nbytes
        return sum(seen.values())


def _gather(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """values[index] in chunks of GRAM_CHUNK: numpy turns an int32 index into a 64-bit copy first,
    which for 10^7-10^8 pairs is more than the result."""
    values = np.ascontiguousarray(values)
    out = np.empty(index.size, dtype=values.dtype)
    step = max(1, _structure.GRAM_CHUNK)
    for s0 in range(0, index.size, step):
        np.take(values, index[s0:s0 + step], out=out[s0:s0 + step])
    return out


def gram_only_terms(st: BlockStructure) -> set:
    """Terms i (0-based, i >= 1) whose first-column block L_i1 enters every update as a Gram
    product: ``grams`` holds (i, j, 0) and (m, i, 0) for every term 1 <= j <= i < m (the [X | y]
    row's update from it is then (A_F1 M) A_i1' Lambda_i, :func:`fixed_row_terms`).  An objective
    that reads only the log-determinants and pwrss never needs L_i1's values."""
    T, grams = st.n_terms, st.grams
    return {i for i in range(1, T)
            if all((i, j, 0) in grams for j in range(1, i + 1)) and all((m, i, 0) in grams for m in range(i + 1, T))}


def fixed_row_terms(st: BlockStructure) -> set:
    """Terms j >= 1 whose update of the [X | y] row from the first column, L_F1 L_j1', is taken as
    (A_F1 M) A_j1' Lambda_j (:func:`fixed_row_update`): those with L_j1 Sparse.  Both kernels decide
    by this, so neither needs L_j1 for it."""
    return {j for j in range(1, st.n_terms) if st.types[j, 0] == SPARSE}


def fixed_row_update(cp: "CrossProducts", j: int, Y_F: np.ndarray, Tj: np.ndarray) -> np.ndarray:
    """(A_F1 M) A_j1' Lambda_j, the update of block (F, j) of L from the first column, from
    Y_F = A_F1 M (:meth:`CrossProducts.first_column_rows` of the [X | y] row, (k_1, J_1, p+1, ...)
    viewing level-major storage): one product of the fixed sparse A_j1 (q_j x q_1) with Y_F' --
    memory of the size of A_j1, not of a Gram matrix.

    ``Tj`` is (k_j, k_j) (returns (p+1, q_j)) or a walker batch (W, k_j, k_j) with Y_F's trailing
    axis W (returns (W, p+1, q_j)): the one code of both kernels."""
    V = np.moveaxis(Y_F, 0, 1)                                # (J_1, k_1, p+1, ...), contiguous
    U = cp.a_operator(j) @ V.reshape(V.shape[0] * V.shape[1], -1)
    U = U.reshape((-1, Tj.shape[-1]) + V.shape[2:])           # (J_j, k_j, p+1, ...)
    U = np.moveaxis(U, (0, 1, 2), (-2, -1, -3))               # (..., p+1, J_j, k_j)
    Tb = Tj if Tj.ndim == 2 else Tj[:, None]
    U = U * Tb if Tj.shape[-1] == 1 else U @ Tb
    return U.reshape(U.shape[:-2] + (-1,))


class CrossProducts:
    """Weighted cross-products of ``[Z_1 | ... | Z_T | X | y]`` in blocks, formed once per weights.

    Parameters
    ----------
    blocks : list of TermBlock in lme4's order (most levels first)
    X : (n, p) fixed-effects matrix (p may be 0)
    y : (n,) response, offset already subtracted
    sqrt_w : (n,) square roots of the weights, or None
    structure : a :class:`~mixedpy.linalg.structure.BlockStructure` of these blocks, to reuse the
        symbolic analysis (it depends only on the level codes), e.g. across PIRLS iterations
    names : block names for :meth:`description`
    stabilize : replace y by its scaled weighted-OLS residual y_tilde = (y - X c) / s before forming
        the cross-products (:mod:`mixedpy.linalg.response`), so that a large mean or an extreme
        scale of y costs no digits.  The factor's ``pwrss`` and ``coefficients()`` are then mapped
        back to y; the cross-products ``A`` and the factor's last block row (``fixed_factor``)
        hold y_tilde's, and ``response`` says how to map them.  Without it ``response`` is the identity.
    """

    #: an off-diagonal block with more entries than this and fewer than SPARSE_DENSITY of its level
    #: pairs nonzero is stored sparse (see :mod:`mixedpy.linalg.structure`)
    DENSE_LIMIT = 40_000
    SPARSE_DENSITY = 0.1
    #: a large sparse diagonal block is factored by CHOLMOD from this order on (None: never; see
    #: :mod:`mixedpy.linalg.cholmod`, which also reads the environment variable MIXEDPY_CHOLMOD)
    CHOLMOD_MIN_ORDER = CHOLMOD_MIN_ORDER

    def __init__(self, blocks: list[TermBlock], X: np.ndarray, y: np.ndarray, sqrt_w: np.ndarray | None = None,
                 structure: BlockStructure | None = None, names: list[str] | None = None,
                 stabilize: bool = False):
        self.blocks = blocks
        if stabilize:
            self.response, y = ResponseScaling.of(X, y, sqrt_w)
        else:
            self.response = ResponseScaling.identity(X.shape[1])
        if structure is None:
            structure = self.analyse(blocks, names)
        self.structure = st = structure
        T, p = self._set_sizes(st, X.shape[1])

        Xy = np.column_stack([X, y]) if p else np.asarray(y, dtype=float)[:, None]
        Ms = [b.model_matrix for b in blocks]
        if sqrt_w is not None:
            Xy = Xy * sqrt_w[:, None]
            Ms = [M * sqrt_w[:, None] for M in Ms]
        codes = [np.asarray(b.codes) for b in blocks]
        A = {}
        for j in range(T):
            J, k, M = st.J[j], st.k[j], Ms[j]
            D = np.empty((J, k, k))
            for a in range(k):
                for b in range(a, k):
                    D[:, a, b] = D[:, b, a] = np.bincount(codes[j], weights=M[:, a] * M[:, b], minlength=J)
            A[j, j] = D
            for i in range(j + 1, T):
                A[i, j] = self._term_cross(st, i, j, Ms[i], M)
            A[T, j] = self._columns_cross(codes[j], J, M, Xy)  # (p+1, q_j)
        A[T, T] = Xy.T @ Xy
        self.A = A
        self._templates = {}
        self._bd_index = self._block_diagonal_positions(st)

    def _set_sizes(self, st: BlockStructure, p: int) -> tuple[int, int]:
        """The sizes every factorization reads: T terms of widths q_j (offsets), p fixed columns,
        the first block's J1 x k1 = q1 and the m = q - q1 + p + 1 rows of everything after it."""
        T = st.n_terms
        self.T, self.p = T, p
        self.widths = st.widths
        self.offsets = np.cumsum([0] + self.widths)
        self.q = int(self.offsets[-1])
        self.J1, self.k1 = st.J[0], st.k[0]
        self.q1 = self.widths[0]
        self.q_rest = self.q - self.q1
        self.m = self.q_rest + p + 1
        self.types = st.types
        self.sparse = any(t == SPARSE for t in st.types.values())
        return T, p

    @staticmethod
    def _block_diagonal_positions(st: BlockStructure) -> dict:
        """Per Dense diagonal block j, the (row, col) positions of its J level blocks (k x k each)."""
        out = {}
        for j in range(st.n_terms):
            if st.types[j, j] == DENSE:
                J, k = st.J[j], st.k[j]
                base = (np.arange(J) * k)[:, None, None]
                out[j] = ((base + np.arange(k)[None, :, None]).repeat(k, 2),
                          (base + np.arange(k)[None, None, :]).repeat(k, 1))
        return out

    @classmethod
    def analyse(cls, blocks: list[TermBlock], names: list[str] | None = None) -> BlockStructure:
        """The symbolic block structure of these terms with this class's storage thresholds."""
        return BlockStructure.analyse(blocks, names, cls.DENSE_LIMIT, cls.SPARSE_DENSITY,
                                      cls.CHOLMOD_MIN_ORDER)

    def with_structure(self, structure: BlockStructure) -> "CrossProducts":
        """These cross-products under another structure with the same storage of A (e.g.
        ``structure.without_cholmod()``, which changes only diagonal blocks and their Gram plans, or
        ``self.structure`` itself).

        What was formed from A under plans and patterns the new structure shares (the same objects)
        is kept: the Gram operators and the first-column pieces (so that the Dask ``bayes_lmer``
        reuses its REML fit's), the sparse templates and the diagonal parts.  Not kept: whatever
        reads the [X | y] row, which a caller may replace (mixedpy.scale.bayes does), and the
        scratch work arrays (each copy factors on its own)."""
        cp = self.__class__.__new__(self.__class__)
        cp.__dict__.update({k: v for k, v in self.__dict__.items() if not k.startswith("_")})
        cp.structure = structure
        cp._set_sizes(structure, self.p)
        old = self.structure

        def shared(name: str, key) -> bool:
            mine = getattr(old, name)
            return key in mine and getattr(structure, name).get(key) is mine[key]

        def keep(entry) -> bool:
            kind, key = entry if len(entry) == 2 else (None, None)    # (kind, key); else a stale entry
            if kind in ("levels", "op"):
                return shared("grams", key)
            if kind == "A" or (kind == "rows" and key < self.T):
                return shared("patterns", (key, 0))
            return False

        cp._gram_cache = {k: v for k, v in self.__dict__.get("_gram_cache", {}).items() if keep(k)}
        cp._diag_cache = dict(self.__dict__.get("_diag_cache", {}))
        cp._templates = {k: v for k, v in self._templates.items() if shared("patterns", k)}
        cp._bd_index = self._block_diagonal_positions(structure)
        return cp

    # ----- cross-products summed elsewhere (mixedpy.scale: partition by partition of a Dask frame) ---
    @classmethod
    def from_sums(cls, structure: BlockStructure, diag: list[np.ndarray], pair_sums: dict,
                  columns: list[np.ndarray], fixed: np.ndarray, response: ResponseScaling) -> "CrossProducts":
        """The cross-products from sums over rows formed elsewhere, stored as ``__init__`` stores them.

        ``structure`` was analysed from one synthetic row per distinct tuple of level codes (its
        ``a_pos`` are per tuple); ``pair_sums[i, j]`` (i > j) holds per tuple the (k_i, k_j) sum of
        w M_i' M_j over the observations with that tuple; ``diag[j]`` is Z_j'WZ_j (J_j, k_j, k_j),
        ``columns[j]`` [X | y]'WZ_j (p+1, J_j k_j), ``fixed`` [X | y]'W[X | y], with y already
        replaced by y_tilde of ``response``.  Sums are exact whatever the order of the rows, so
        these equal the in-memory cross-products up to rounding.
        """
        st = structure
        cp = cls.__new__(cls)
        cp.blocks, cp.response, cp.structure = None, response, st
        T, p = cp._set_sizes(st, fixed.shape[0] - 1)
        A = {(T, T): np.asarray(fixed, dtype=float)}
        for j in range(T):
            A[j, j], A[T, j] = diag[j], columns[j]
            for i in range(j + 1, T):
                S, pos, (ki, kj) = pair_sums[i, j], st.a_pos[i, j], (st.k[i], st.k[j])
                nb = st.patterns[i, j].nnz if st.types[i, j] == SPARSE else st.J[i] * st.J[j]
                out = np.empty((nb, ki, kj))
                for a in range(ki):
                    for b in range(kj):
                        out[:, a, b] = np.bincount(pos, weights=S[:, a, b], minlength=nb)
                if st.types[i, j] != SPARSE:   # dense storage: (q_i, q_j), level-major
                    out = out.reshape(st.J[i], st.J[j], ki, kj).transpose(0, 2, 1, 3).reshape(
                        st.J[i] * ki, st.J[j] * kj)
                A[i, j] = out
        cp.A = A
        cp._templates = {}
        cp._bd_index = cls._block_diagonal_positions(st)
        return cp

    @staticmethod
    def _columns_cross(codes: np.ndarray, J: int, M: np.ndarray, Xy: np.ndarray) -> np.ndarray:
        """[X | y]'W Z_j, (p+1, J k) level-major: a sum over each level's rows per pair of columns.

        PIRLS forms this at every iteration with new weights; summing by the level codes needs no
        sparse Z (building one cost about half of glmer's time on VerbAgg)."""
        k = M.shape[1]
        out = np.empty((Xy.shape[1], J, k))
        for a in range(k):
            for c in range(Xy.shape[1]):
                out[c, :, a] = np.bincount(codes, weights=M[:, a] * Xy[:, c], minlength=J)
        return out.reshape(Xy.shape[1], J * k)

    @staticmethod
    def _term_cross(st: BlockStructure, i: int, j: int, Mi: np.ndarray, Mj: np.ndarray) -> np.ndarray:
        """Z_i'WZ_j in block (i, j)'s storage: (nnz_blocks, k_i, k_j) if Sparse, (q_i, q_j) if Dense."""
        ki, kj, pos = st.k[i], st.k[j], st.a_pos[i, j]
        if st.types[i, j] == SPARSE:
            nb = st.patterns[i, j].nnz
            out = np.empty((nb, ki, kj))
            for a in range(ki):
                for b in range(kj):
                    out[:, a, b] = np.bincount(pos, weights=Mi[:, a] * Mj[:, b], minlength=nb)
            return out
        Ji, Jj = st.J[i], st.J[j]
        out = np.empty((Ji, ki, Jj, kj))
        for a in range(ki):
            for b in range(kj):
                out[:, a, :, b] = np.bincount(pos, weights=Mi[:, a] * Mj[:, b], minlength=Ji * Jj).reshape(Ji, Jj)
        return out.reshape(Ji * ki, Jj * kj)

    def description(self):
        """The block types as a table (MixedModels.jl ``BlockDescription``)."""
        return self.structure.description(self.p)

    # ----- the factor ----------------------------------------------------------------------------
    def _csr_template(self, i: int, j: int):
        """Scalar CSR indices of Sparse block (i, j) and the permutation taking its block values there."""
        key = (i, j)
        if key not in self._templates:
            st = self.structure
            pat = st.patterns[i, j]
            ki, kj = st.k[i], st.k[j]
            shape = (st.J[i] * ki, st.J[j] * kj)
            if ki == 1 and kj == 1:
                perm = None
                indices, indptr = pat.cols, pat.indptr
            else:
                ids = np.arange(1, pat.nnz * ki * kj + 1, dtype=float).reshape(pat.nnz, ki, kj)
                M = sp.bsr_matrix((ids, pat.cols, pat.indptr), shape=shape).tocsr()
                M.sort_indices()
                perm = M.data.astype(np.int64) - 1
                indices, indptr = M.indices, M.indptr
            small = max(shape) < 2 ** 31 - 1 and indices.size < 2 ** 31 - 1
            dt = np.int32 if small else np.int64
            self._templates[key] = (indices.astype(dt), indptr.astype(dt), perm, shape)
        return self._templates[key]

    def sparse_block(self, i: int, j: int, data: np.ndarray) -> sp.csr_matrix:
        """A scipy CSR matrix over the fixed pattern of Sparse block (i, j) with values ``data``."""
        indices, indptr, perm, shape = self._csr_template(i, j)
        vals = data.reshape(-1) if perm is None else data.reshape(-1)[perm]
        return sp.csr_matrix((vals, indices, indptr), shape=shape)

    def factor(self, T_list: list[np.ndarray], scratch: bool = False, solves: bool = True) -> "BlockedFactor":
        """Cholesky factor of the augmented system for relative factors ``T_list`` (one per term).

        ``scratch``: the block-diagonal factors and the scaled first blocks go into work arrays
        kept by these cross-products and reused by the next ``scratch`` call, which overwrites the
        returned factor.  For an objective that reads only ``ldL2``, ``ldRX2`` and ``pwrss`` before
        the next call: with 500,000 levels a fresh array costs more in page faults than in
        arithmetic.  ``solves=False``: only those three are wanted; the first-column blocks of the
        terms whose every use is a Gram product (:func:`gram_only_terms`) are then not formed
        (they are None in the factor, which cannot solve)."""
        st, T, A = self.structure, self.T, self.A
        types = st.types
        L = {}
        self._scratch = scratch
        skip = set() if solves else self._gram_only()
        # 1. L_ij = Lambda_i' A_ij Lambda_j (+ I on the diagonal)
        for j in range(T):
            Tj = T_list[j]
            kj = st.k[j]
            work = functools.partial(self._work, j)
            if kj == 1:
                t = Tj[0, 0]
                D = np.multiply(A[j, j], t * t, out=work("D", A[j, j].shape))
                D += 1.0
            else:
                D = _sandwich_levels(self._diag_parts(j), Tj, work)
            # a Dense diagonal block is laid out when its column is reached (_dense_diagonal)
            L[j, j] = D
            for i in range(j + 1, T):
                if j == 0 and i in skip:
                    L[i, j] = None
                    continue
                L[i, j] = self._scale(A[i, j], T_list[i], Tj, types[i, j], st.J[i], st.J[j],
                                      functools.partial(self._work, (i, j)))
            if kj == 1:
                L[T, j] = np.multiply(A[T, j], Tj[0, 0], out=work("fixed", A[T, j].shape))
            else:
                XT = np.matmul(A[T, j].reshape(self.p + 1, st.J[j], kj), Tj,
                               out=work("fixed", (self.p + 1, st.J[j], kj)))
                L[T, j] = XT.reshape(self.p + 1, -1)
        L[T, T] = A[T, T].copy()

        # 2. left-looking block Cholesky; a block is final once its column is done, so its scipy form
        # (for sparse products) is built at most once per factorization
        self._ops = {}
        self._T_list = T_list
        self._first_rows = {}       # Y = A_i1 M per block row for this theta (first_column_rows)
        # the dense blocks after the first term are the only place where more than one BLAS thread
        # can pay off, and only for a large system (mixedpy.threads)
        with block_threads(self.m):
            fac, inv = {}, {}
            for j in range(T + 1):
                first = 0
                if j < T and types[j, j] == DENSE:
                    first = self._dense_diagonal(L, j)
                elif j < T and types[j, j] == CHOLMOD:
                    first = self._cholmod_diagonal(L, j)
                for kk in range(first, j):
                    self._update_diag(L, j, kk)
                if j < T and _is_blockdiag(types[j, j]):
                    fac[j], inv[j] = _batch_cholesky(L[j, j], functools.partial(self._work, j))
                    if j == 0 and (st.grams or self._fixed_row_terms()):
                        # the Gram plans' weights: the entries of M_l = T_1 (F_l F_l')^{-1} T_1'
                        # (structure.GramPlan), t_1^2 / diag(D) for a scalar first term
                        self._gram_weights = gram_weights(T_list[0], np.moveaxis(inv[0], 0, -1)).T.reshape(-1)
                elif j < T and types[j, j] == CHOLMOD:
                    fac[j] = st.cholmod[j].factor(L[j, j], shared=scratch)
                else:
                    fac[j] = _dense_cholesky(L[j, j], check=j < T)
                for i in range(j + 1, T + 1):
                    for kk in range(j):
                        self._update_off(L, i, j, kk)
                    if L[i, j] is not None:
                        self._rdiv(L, i, j, fac[j], inv.get(j))
        ops, self._ops = self._ops, {}
        self._first_rows = {}
        return BlockedFactor(self, T_list, L, fac, inv, ops)

    @staticmethod
    def _scale(Aij, Ti, Tj, typ, Ji, Jj, work=_fresh):
        """Lambda_i' A_ij Lambda_j for one block, Lambda = I_J (x) T."""
        ki, kj = Ti.shape[0], Tj.shape[0]
        if ki == 1 and kj == 1:
            return np.multiply(Aij, Ti[0, 0] * Tj[0, 0], out=work("scaled", Aij.shape))
        if typ == SPARSE:
            return _small_sandwich(Ti, Aij, Tj)
        # dense: one small matmul per side beats strided vector operations here
        out = Aij * Ti[0, 0] if ki == 1 else (Ti.T @ Aij.reshape(Ji, ki, -1)).reshape(Aij.shape)
        if kj == 1:
            return out * Tj[0, 0]
        return (out.reshape(-1, kj) @ Tj).reshape(Aij.shape)

    def _work(self, owner, name: str, shape: tuple) -> np.ndarray:
        """A work array for ``(owner, name)``: new, or in a ``scratch`` factorization the one of the
        previous scratch call when the shape matches."""
        if not self._scratch:
            return np.empty(shape)
        ws = self.__dict__.setdefault("_workspace", {})
        a = ws.get((owner, name))
        if a is None or a.shape != shape:
            a = ws[owner, name] = np.empty(shape)
        return a

    def _dense_diagonal(self, L, j: int) -> int:
        """Lay out Dense diagonal block j from its block-diagonal part L[j, j] (J, k, k); returns the
        first block column whose update is still to come.

        With a Gram plan from the first column, the block starts as the (new) array of its update
        (-t_j^2 G d for scalar terms) and the diagonal is added to it: no zero fill and no separate
        subtraction pass."""
        D = L[j, j]
        n = self.widths[j]
        r, c = self._bd_index[j]
        if (j, j, 0) in self.structure.grams:
            full = self._gram_product((j, j, 0))
            if D.shape[1] == 1:
                full.reshape(-1)[::n + 1] += D.reshape(-1)
            else:
                full[r, c] += D
            L[j, j] = full
            return 1
        full = np.zeros((n, n))
        full[r, c] = D
        L[j, j] = full
        return 0

    def _cholmod_diagonal(self, L, j: int) -> int:
        """Lay out Cholmod diagonal block j on its lower-triangle pattern: -t_j^2 G d from the Gram
        plan of the first column (the only update a Cholmod block has, structure._use_cholmod) plus
        the diagonal D; returns the first block column still to come."""
        vals = self._gram_product((j, j, 0)).reshape(-1)
        vals[self.structure.cholmod[j].diag_pos] += L[j, j].reshape(-1)
        L[j, j] = vals
        return j

    def _diag_parts(self, j: int) -> np.ndarray:
        """The lower-triangle entries of Z_j'WZ_j's blocks as (k(k+1)/2, J), contiguous, for
        :func:`_sandwich_levels` (formed at first use; :meth:`from_sums` fills A elsewhere)."""
        cache = self.__dict__.setdefault("_diag_cache", {})
        P = cache.get(j)
        if P is None:
            r, c = _sym_pairs(self.structure.k[j])
            P = cache[j] = np.ascontiguousarray(np.moveaxis(self.A[j, j], 0, -1)[r, c])
        return P

    def _gram_matrix(self, key) -> tuple[sp.csr_matrix, np.ndarray | None]:
        """G of the levels form of :class:`GramOperator` (scalar first term) for the
        :class:`~mixedpy.linalg.structure.GramPlan` ``key``, formed once per cross-products (lazily:
        :meth:`from_sums` builds A elsewhere), and the levels standing for its columns.

        Row (t, r, s) of G is entry (r, s) of target block t; column (l, c) the c-th distinct entry
        (a, b), a >= b (:func:`_sym_pairs` order), of the first term's weight M_l, with coefficient
        A_i1[ia]_ra A_j1[ib]_sb (+ A_i1[ia]_rb A_j1[ib]_sa when a != b) per pair (ia, ib) of the plan.

        For a scalar first term the weight of column l, t_1^2 / (1 + t_1^2 a_l) with
        a_l = (Z_1'WZ_1)_ll, depends on a_l alone, so the columns of levels with equal a_l (without
        weights: equal counts; InstEval's 2,972 students have 86) are summed once here and G shrinks
        (by a third on InstEval).  The second value picks one level per merged column (None when
        nothing merged)."""
        cache = self.__dict__.setdefault("_gram_cache", {})
        out = cache.get(("levels", key))
        if out is None:
            G = _gram_values(self.structure, key, self.A)
            rep = None
            if self.structure.k[0] == 1:
                a = self.A[0, 0].reshape(-1)
                values, rep, group = np.unique(a, return_index=True, return_inverse=True)
                merged = None
                if values.size <= a.size // 2 and G.nnz <= GRAM_MERGE_LIMIT:
                    P = sp.csr_matrix((np.ones(a.size), (np.arange(a.size), group.reshape(-1))),
                                      shape=(a.size, values.size))
                    merged = (G @ P).tocsr()
                if merged is not None and merged.nnz < 0.9 * G.nnz:
                    G = merged
                else:
                    rep = None
            out = cache["levels", key] = (G, rep)
        return out

    def gram_operator(self, key) -> GramOperator:
        """The :class:`GramOperator` of Gram plan ``key`` = (i, j, 0) in the form the structure decides
        (structure.gram_form: levels for a scalar first term, whose G then merges columns, and for
        small plans; rows for a vector-valued first term beyond, k_1 numbers per pair and target
        entry instead of k_1 (k_1 + 1) / 2), formed once."""
        cache = self.__dict__.setdefault("_gram_cache", {})
        op = cache.get(("op", key))
        if op is None:
            st = self.structure
            i, j, _ = key
            if _structure.gram_form(st.k[0], st.k[i], st.k[j], st.grams[key].nnz) == "levels":
                G, rep = self._gram_matrix(key)
                op = GramOperator(((G,),), st.k[i], st.k[j], None, rep)
            else:
                g, Aj = st.grams[key], self.A[j, 0]
                shape = (g.indptr.size - 1, st.patterns[i, 0].nnz)
                # H_sb: the entries (s, b) of the pairs' A_j1 blocks on the plan's own ia and indptr
                mats = tuple(tuple(sp.csr_matrix((_gather(Aj[:, s_, b], g.ib), g.ia, g.indptr), shape=shape,
                                                 copy=False) for b in range(st.k[0])) for s_ in range(st.k[j]))
                op = GramOperator(mats, st.k[i], st.k[j], i)
            cache["op", key] = op
        return op

    def a_operator(self, j: int) -> sp.csr_matrix:
        """A_j1 = Z_j'WZ_1 (Sparse block (j, 1) of the cross-products) as scipy CSR, formed once
        (:func:`fixed_row_update`)."""
        cache = self.__dict__.setdefault("_gram_cache", {})
        S = cache.get(("A", j))
        if S is None:
            S = cache["A", j] = self.sparse_block(j, 0, self.A[j, 0])
        return S

    def row_components(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(Xc, levels) for :func:`weighted_rows`: the blocks of A_i1 (block row i < T, Sparse) or of
        A_F1 ([X | y], i = T) component-major (k_1, N, R), contiguous, and each block's first-term
        level (None for A_F1, whose block n is level n).  They do not depend on theta: formed once."""
        cache = self.__dict__.setdefault("_gram_cache", {})
        got = cache.get(("rows", i))
        if got is None:
            st = self.structure
            if i == self.T:
                X3 = self.A[i, 0].reshape(self.p + 1, st.J[0], st.k[0]).transpose(1, 0, 2)
                levels = None
            else:
                X3, levels = self.A[i, 0], st.patterns[i, 0].cols
            got = cache["rows", i] = (np.ascontiguousarray(np.moveaxis(X3, 2, 0)), levels)
        return got

    def first_column_rows(self, i: int, w: np.ndarray, work=_fresh) -> np.ndarray:
        """Y = A_i1 M (i = T: A_F1 M) for the Gram weights ``w`` (:func:`weighted_rows`), (k_1, N, R, ...);
        for the [X | y] row a view of level-major storage (N, k_1, R, ...), as A_j1's columns are
        (:func:`fixed_row_update`).  ``work(name, shape)`` provides the storage."""
        Xc, levels = self.row_components(i)
        k, N = Xc.shape[0], Xc.shape[1]
        if i == self.T:
            out = np.moveaxis(work("Y", (N, k) + Xc.shape[2:] + w.shape[1:]), 0, 1)
        else:
            out = work("Y", Xc.shape + w.shape[1:])
        return weighted_rows(Xc, w, levels, out)

    def _rows_y(self, i: int) -> np.ndarray:
        """:meth:`first_column_rows` of block row i for this factorization's theta, formed once."""
        Y = self._first_rows.get(i)
        if Y is None:
            Y = self._first_rows[i] = self.first_column_rows(i, self._gram_weights,
                                                             functools.partial(self._work, ("rows", i)))
        return Y

    def _gram_product(self, key) -> np.ndarray:
        """-T_i' (A_i1 M A_j1') T_j, the update of a Gram plan (see GramPlan, GramOperator), as a new
        array in the storage of the target: (q_i, q_j) for a Dense block, (blocks, k_i, k_j) otherwise."""
        st = self.structure
        i, j, _ = key
        op = self.gram_operator(key)
        Ti, Tj = self._T_list[i], self._T_list[j]
        ki, kj = Ti.shape[0], Tj.shape[0]
        scalar = ki == 1 and kj == 1
        if op.source is None:
            # scaling the weights (J_1) rather than the product (the targets)
            w = self._gram_weights * -(Ti[0, 0] * Tj[0, 0]) if scalar else self._gram_weights
            U = op.apply(w)
        else:
            U = op.apply(self._rows_y(i), functools.partial(self._work, ("gram", key)))
            if scalar:
                U *= -(Ti[0, 0] * Tj[0, 0])
        if not scalar:
            U = _small_sandwich(Ti, U, Tj)
            np.negative(U, out=U)
        if st.types[i, j] != DENSE:
            return U.reshape(-1, ki, kj)
        Ji, Jj = st.J[i], st.J[j]
        if scalar:
            return U.reshape(Ji, Jj)
        return U.reshape(Ji, Jj, ki, kj).transpose(0, 2, 1, 3).reshape(Ji * ki, Jj * kj)

    def _gram_only(self) -> set:
        """:func:`gram_only_terms` of this structure (cached)."""
        got = self.__dict__.get("_gram_only_terms")
        if got is None:
            got = self._gram_only_terms = gram_only_terms(self.structure)
        return got

    def _fixed_row_terms(self) -> set:
        """:func:`fixed_row_terms` of this structure (cached)."""
        got = self.__dict__.get("_fixed_rows")
        if got is None:
            got = self._fixed_rows = fixed_row_terms(self.structure)
        return got

    def _gram_update(self, target, key) -> bool:
        """target -= T_i' (G m) T_j (a Gram plan's update); False when the update has no Gram plan."""
        if key not in self.structure.grams:
            return False
        np.add(target, self._gram_product(key).reshape(target.shape), out=target)
        return True

    def _update_diag(self, L, j, kk):
        """L_jj -= L_jk L_jk'."""
        st = self.structure
        if self._gram_update(L[j, j], (j, j, kk)):
            return
        tj = st.types[j, j] if j < self.T else DENSE
        ts = st.types.get((j, kk), DENSE)
        S = L[j, kk]
        if _is_blockdiag(tj):
            if ts == SPARSE:
                ia, ib, it = st.plans[j, j, kk]
                if ia is None and S.shape[2] == 1:
                    # nested: each column's block with itself, S_n S_n' from the columns directly
                    D, kj = L[j, j], S.shape[1]
                    for r in range(kj):
                        for c in range(r, kj):
                            s = np.bincount(it, weights=S[:, r, 0] * S[:, c, 0], minlength=D.shape[0])
                            D[:, r, c] -= s
                            if c != r:
                                D[:, c, r] -= s
                    return
                if ia is None:
                    ia = ib = np.arange(S.shape[0])
                _scatter_sub(L[j, j], it, _pair_products(S, ia, S, ib), symmetric=True)
            else:
                S3 = S.reshape(st.J[j], st.k[j], -1)
                L[j, j] -= S3 @ np.swapaxes(S3, 1, 2)
            return
        if ts == SPARSE:
            plan = st.plans.get((j, j, kk))
            if plan is not None:
                self._scatter_dense(L[j, j], j, j, plan, S, S)
            else:
                M = self._op(L, j, kk)
                L[j, j] -= sparse_outer(M)
        else:
            L[j, j] -= _abt(S, S)

    def _update_off(self, L, i, j, kk):
        """L_ij -= L_ik L_jk'."""
        st = self.structure
        if self._gram_update(L[i, j], (i, j, kk)):
            return
        if i == self.T and kk == 0 and j in self._fixed_row_terms():
            # the [X | y] row: L_Fj -= (A_F1 M) A_j1' Lambda_j, with no use of L_j1 (fixed_row_update)
            L[i, j] -= fixed_row_update(self, j, self._rows_y(i), self._T_list[j])
            return
        ti = st.types[i, j]
        ta, tb = st.types[i, kk], st.types[j, kk]
        Ai, Bj = L[i, kk], L[j, kk]
        if ti == SPARSE:
            if ta == SPARSE and tb == SPARSE:
                ia, ib, it = st.plans[i, j, kk]
                _scatter_sub(L[i, j], it, _pair_products(Ai, ia, Bj, ib))
                return
            # a dense-stored factor whose pattern is still sparse: gather the product on the pattern
            Ad = self._op(L, i, kk).toarray() if ta == SPARSE else Ai
            Bd = self._op(L, j, kk).toarray() if tb == SPARSE else Bj
            pat = st.patterns[i, j]
            P4 = (Ad @ Bd.T).reshape(st.J[i], st.k[i], st.J[j], st.k[j])
            L[i, j] -= P4[pat.rows, :, pat.cols, :]
            return
        if ta == SPARSE and tb == SPARSE:
            plan = st.plans.get((i, j, kk))
            if plan is not None:
                self._scatter_dense(L[i, j], i, j, plan, Ai, Bj)
                return
            prod = (self._op(L, i, kk) @ self._op(L, j, kk).T).toarray()
        elif ta == SPARSE:
            prod = self._op(L, i, kk) @ Bj.T
        elif tb == SPARSE:
            prod = (self._op(L, j, kk) @ Ai.T).T
        else:
            prod = _abt(Ai, Bj)
        L[i, j] -= prod

    def _op(self, L, i: int, j: int) -> sp.csr_matrix:
        """The scipy form of final Sparse block (i, j) of L, cached for this factorization."""
        M = self._ops.get((i, j))
        if M is None:
            M = self._ops[i, j] = self.sparse_block(i, j, L[i, j])
        return M

    def _scatter_dense(self, target, i, j, plan, Ai, Bj):
        """target -= sum over the plan's block pairs of Ai[ia] Bj[ib]', target dense (q_i, q_j)."""
        st = self.structure
        ia, ib, it = plan
        Ji, Jj, ki, kj = st.J[i], st.J[j], st.k[i], st.k[j]
        if ki == 1 and kj == 1 and Ai.shape[2] == 1:
            vals = Ai[ia, 0, 0] * Bj[ib, 0, 0]
            target -= np.bincount(it, weights=vals, minlength=Ji * Jj).reshape(Ji, Jj)
            return
        contrib = _pair_products(Ai, ia, Bj, ib)
        T4 = target.reshape(Ji, ki, Jj, kj)
        for a in range(ki):
            for b in range(kj):
                T4[:, a, :, b] -= np.bincount(it, weights=contrib[:, a, b], minlength=Ji * Jj).reshape(Ji, Jj)

    def _rdiv(self, L, i, j, Ljj, Linv):
        """L_ij = L_ij L_jj^{-T}."""
        st = self.structure
        X = L[i, j]
        ti = st.types.get((i, j), DENSE)
        if Linv is not None:
            if ti == SPARSE:
                cols = st.patterns[i, j].cols
                if Linv.shape[1] == 1:
                    X *= Linv[cols]
                else:
                    L[i, j] = _times_inv_t(X, Linv[cols], per_block=True, work=functools.partial(self._work, (i, j)))
                return
            J, k = Linv.shape[0], Linv.shape[1]
            if k == 1:
                X *= Linv[:, 0, 0][None, :]
            else:
                L[i, j] = _times_inv_t(X.reshape(X.shape[0], J, k), Linv,
                                       work=functools.partial(self._work, (i, j))).reshape(X.shape)
            return
        if isinstance(Ljj, CholmodFactor):
            L[i, j] = Ljj.solve(X.T).T
        elif Ljj.shape[0] <= SMALL_TRIANGLE:
            # tiny triangles: an explicit inverse and a product avoid OpenBLAS's threaded trsm, whose
            # start-up costs milliseconds on a busy machine
            L[i, j] = X @ sla.lapack.dtrtri(Ljj, lower=1)[0].T
        else:
            L[i, j] = _lower_solve(Ljj, X.T).T


class BlockedFactor:
    """L for one theta; gives the profiled pieces and solves with L and L'.

    ``L[i, j]`` holds block (i, j) after the factorization (Sparse blocks as (nnz_blocks, k_i, k_j)
    values on their pattern, Dense blocks as arrays); ``fac[j]``/``inv[j]`` the diagonal factors,
    (J, k, k) batches for block-diagonal blocks.  The last block row is [X | y]: its diagonal block
    is [[R_X', 0], [r', sqrt(pwrss)]].
    """

    def __init__(self, cp: CrossProducts, T_list, L, fac, inv, ops=None):
        self.cp, self.T_list = cp, T_list
        self.L, self.fac, self.inv = L, fac, inv
        self._ops = {} if ops is None else ops
        T, p = cp.T, cp.p
        ld = 0.0
        for j in range(T):
            if isinstance(fac[j], CholmodFactor):
                ld += 0.5 * fac[j].logdet
                continue
            d = np.diagonal(fac[j], axis1=-2, axis2=-1)
            ld += np.log(d).sum()
        self.ldL2 = 2.0 * ld
        dF = np.diag(fac[T])
        self.ldRX2 = 2.0 * np.log(np.abs(dF[:p])).sum()
        #: pwrss of the response the cross-products were formed from (y_tilde when stabilized)
        self.pwrss_tilde = float(dF[p] ** 2)
        self.pwrss = cp.response.pwrss(self.pwrss_tilde)

    # ----- first block, as the AGQ code and Bayesian kernels use it --------------------------
    @property
    def L1(self) -> np.ndarray:
        """Lower Cholesky factors of the first term's diagonal block, (J_1, k_1, k_1)."""
        return self.fac[0]

    @property
    def L1inv(self) -> np.ndarray:
        return self.inv[0]

    @property
    def fixed_factor(self) -> np.ndarray:
        """The (p+1) x (p+1) lower factor of the [X | y] block: [[R_X', 0], [r', sqrt(pwrss)]]."""
        return self.fac[self.cp.T]

    # ----- products and solves with the (u, beta) part of L -----------------------------------
    def _segments(self, v: np.ndarray, first: int = 0) -> list[np.ndarray]:
        cp = self.cp
        bounds = np.asarray(list(cp.offsets) + [cp.q + cp.p]) - cp.offsets[first]
        return [v[bounds[j]:bounds[j + 1]] for j in range(first, cp.T + 1)]

    def _block_op(self, i: int, j: int) -> object:
        """Block (i, j), i > j, of the (u, beta) part of L as an operator (sparse or dense)."""
        cp = self.cp
        if cp.types[i, j] == SPARSE:
            M = self._ops.get((i, j))
            if M is None:
                M = self._ops[i, j] = cp.sparse_block(i, j, self.L[i, j])
            return M
        B = self.L[i, j]
        return B[:cp.p] if i == cp.T else B

    def _diag_solve(self, j: int, x: np.ndarray, trans: bool) -> np.ndarray:
        cp = self.cp
        if j < cp.T and _is_blockdiag(cp.types[j, j]):
            Li = self.inv[j]
            J, k = Li.shape[0], Li.shape[1]
            xb = x.reshape((J, k) + x.shape[1:])
            spec = "jba,jb...->ja..." if trans else "jab,jb...->ja..."
            return np.einsum(spec, Li, xb).reshape(x.shape)
        Ljj = self.fac[j] if j < cp.T else self.fac[j][:cp.p, :cp.p]
        if Ljj.shape[0] == 0:
            return x
        if isinstance(Ljj, CholmodFactor):
            return Ljj.solve(x, trans)
        return _lower_solve(Ljj, x, trans)

    def _solve_lower_all(self, v: np.ndarray, first: int = 0) -> np.ndarray:
        """Forward solve with the block rows and columns from ``first`` on (v in their coordinates)."""
        seg = self._segments(np.asarray(v, dtype=float), first)
        out = []
        for j in range(first, self.cp.T + 1):
            r = seg[j - first]
            for kk in range(first, j):
                r = r - self._block_op(j, kk) @ out[kk - first]
            out.append(self._diag_solve(j, np.asarray(r), trans=False))
        return np.concatenate(out, axis=0)

    def _solve_upper_all(self, z: np.ndarray) -> np.ndarray:
        seg = self._segments(np.asarray(z, dtype=float))
        T = self.cp.T
        out = [None] * (T + 1)
        for j in range(T, -1, -1):
            r = seg[j]
            for i in range(j + 1, T + 1):
                r = r - self._block_op(i, j).T @ out[i]
            out[j] = self._diag_solve(j, np.asarray(r), trans=True)
        return np.concatenate(out, axis=0)

    def solve_upper(self, z1: np.ndarray, z2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Solve L' x = z for x = (x1, x2): x1 over u_1 (q1, ...), x2 over (u_rest, beta)."""
        x = self._solve_upper_all(np.concatenate([z1, z2], axis=0))
        q1 = self.cp.q1
        return x[:q1], x[q1:]

    def solve_lower(self, v1: np.ndarray, v2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Solve L c = v, the forward half of the joint solve."""
        c = self._solve_lower_all(np.concatenate([v1, v2], axis=0))
        q1 = self.cp.q1
        return c[:q1], c[q1:]

    def solve_lower_rest(self, v: np.ndarray) -> np.ndarray:
        """Solve L_RR c = v over (u_rest, beta): L_RR, the blocks after the first term's, is the
        factor of the Schur complement of the first term's diagonal block (mixedpy.row_quadratic)."""
        return self._solve_lower_all(v, first=1)

    def first_column_below(self) -> sp.csr_matrix:
        """L_R1: the blocks below the first term's diagonal block, stacked ((q - q1 + p) x q1)."""
        parts = [self._block_op(i, 0) for i in range(1, self.cp.T + 1)]
        return sp.vstack([sp.csr_matrix(b) for b in parts], format="csr")

    def coefficients(self) -> tuple[np.ndarray, np.ndarray]:
        """(u-hat of length q, beta-hat of length p) of y: back-substitution with the last row of L,
        mapped back from y_tilde when the cross-products were stabilized."""
        cp = self.cp
        T, p = cp.T, cp.p
        c = np.concatenate([self.L[T, j][p] for j in range(T)] + [self.fac[T][p, :p]])
        x = self._solve_upper_all(c)
        return cp.response.u(x[:cp.q]), cp.response.beta(x[cp.q:])

    def rx(self) -> np.ndarray:
        """R_X (p x p upper triangular) with R_X'R_X = X'WX - R_ZX'R_ZX."""
        p = self.cp.p
        return self.fac[self.cp.T][:p, :p].T.copy()

    def unscaled_vcov(self) -> np.ndarray:
        """(R_X'R_X)^{-1}."""
        p = self.cp.p
        if p == 0:
            return np.zeros((0, 0))
        Rinv = sla.solve_triangular(self.rx(), np.eye(p), lower=False, check_finite=False)
        return Rinv @ Rinv.T

    # ----- conditional variances ----------------------------------------------------------------
    def _diag_inverse_op(self, j: int):
        """L_jj^{-1} as a sparse block-diagonal matrix or a dense triangular inverse."""
        cp = self.cp
        if _is_blockdiag(cp.types[j, j]):
            Li = self.inv[j]
            J = Li.shape[0]
            if Li.shape[1] == 1:
                return sp.diags(Li[:, 0, 0]).tocsr()
            return sp.bsr_matrix((Li, np.arange(J), np.arange(J + 1)), shape=(cp.widths[j],) * 2).tocsr()
        return self._diag_solve(j, np.eye(cp.widths[j]), trans=False)

    def u_precision_inverse_blocks(self) -> list[np.ndarray]:
        """Diagonal blocks of (Lambda'Z'WZ Lambda + I)^{-1}, one (J_i, k_i, k_i) array per term.

        With L_uu the random-effects part of L, (L_uu L_uu')^{-1} = L_uu^{-T} L_uu^{-1}, so block i is
        sum_{m >= i} X_mi' X_mi over the block column i of X = L_uu^{-1}, which is built down the
        column by  X_ii = L_ii^{-1},  X_mi = -L_mm^{-1} sum_{i <= l < m} L_ml X_li.
        """
        cp = self.cp
        T = cp.T
        inv_ops = [self._diag_inverse_op(j) for j in range(T)]
        out = []
        for i in range(T):
            J, k = cp.structure.J[i], cp.structure.k[i]
            X = {i: inv_ops[i]}
            acc = _diag_blocks_of_gram(X[i], J, k)
            for m in range(i + 1, T):
                S = None
                for l in range(i, m):
                    S = _add(S, self._block_op(m, l) @ X[l])
                if sp.issparse(inv_ops[m]):
                    Xm = -(inv_ops[m] @ S)
                else:
                    Sd = S.toarray() if sp.issparse(S) else np.asarray(S)
                    Xm = -(inv_ops[m] @ Sd)
                X[m] = Xm
                acc = acc + _diag_blocks_of_gram(Xm, J, k)
            out.append(acc)
        return out

    # ----- dense view, for tests ------------------------------------------------
    def dense(self) -> np.ndarray:
        """The whole L (q + p + 1 square) as a dense array: lower triangular, except that a
        ``Cholmod`` diagonal block holds L~ = P' L (mixedpy.linalg.cholmod), so that L L' = A
        still holds."""
        cp = self.cp
        T = cp.T
        n = cp.q + cp.p + 1
        bounds = list(cp.offsets) + [n]
        out = np.zeros((n, n))
        for j in range(T + 1):
            cj = slice(bounds[j], bounds[j + 1])
            if j < T and _is_blockdiag(cp.types[j, j]):
                F = self.fac[j]
                J, k = F.shape[0], F.shape[1]
                base = bounds[j] + (np.arange(J) * k)[:, None, None]
                out[(base + np.arange(k)[None, :, None]).repeat(k, 2),
                    (base + np.arange(k)[None, None, :]).repeat(k, 1)] = F
            elif isinstance(self.fac[j], CholmodFactor):
                out[cj, cj] = self.fac[j].toarray()
            else:
                out[cj, cj] = self.fac[j]
            for i in range(j + 1, T + 1):
                ri = slice(bounds[i], bounds[i + 1])
                if cp.types[i, j] == SPARSE:
                    out[ri, cj] = cp.sparse_block(i, j, self.L[i, j]).toarray()
                else:
                    out[ri, cj] = self.L[i, j]
        return out


def _times_inv_t(X3: np.ndarray, Linv: np.ndarray, per_block: bool = False, work=_fresh) -> np.ndarray:
    """X3 <- X3 Linv' level by level, in place, as k(k+1)/2 vector operations (faster than einsum
    for small k).  Returns X3.

    Dense block: X3 (R, J, k), levels along axis 1, Linv (J, k, k) lower triangular.  ``per_block``:
    X3 (n, a, k) is a block array and Linv (n, k, k) holds the factor of each block's column level.
    Column c of the result needs the columns b <= c of X3, so the columns are overwritten from the
    last one down."""
    k = Linv.shape[1]
    Lv = Linv[:, None] if per_block else Linv[None]
    tmp = work("tmp", X3.shape[:2]) if k > 1 else None
    for c in range(k - 1, -1, -1):
        out = X3[:, :, c]
        out *= Lv[:, :, c, c]
        for b in range(c):
            np.multiply(X3[:, :, b], Lv[:, :, c, b], out=tmp)
            out += tmp
    return X3


def _add(S, term):
    """S + term for sparse or dense operands (a sparse + dense sum would be an np.matrix)."""
    if S is None:
        return term
    if sp.issparse(S) and sp.issparse(term):
        return S + term
    S = S.toarray() if sp.issparse(S) else S
    term = term.toarray() if sp.issparse(term) else term
    return S + term


def _diag_blocks_of_gram(X, J: int, k: int) -> np.ndarray:
    """The (J, k, k) diagonal blocks of X'X for X with J*k columns (sparse or dense)."""
    if sp.issparse(X):
        X = X.tocsc()
        out = np.empty((J, k, k))
        for a in range(k):
            Xa = X[:, a::k]
            for b in range(a, k):
                v = np.asarray(Xa.multiply(X[:, b::k]).sum(axis=0)).ravel()
                out[:, a, b] = out[:, b, a] = v
        return out
    X3 = np.asarray(X).reshape(X.shape[0], J, k)
    return np.einsum("rja,rjb->jab", X3, X3)
