"""lme4's blocked penalized least-squares factor for many relative factors at once.

The Bayesian LMM (:mod:`mixedpy.bayes.lmm_posterior`) needs, for each of W walkers with its own
relative covariance factors T_i (Lambda = I (x) T_i, Bates et al. 2015 section 2.2), the
log-determinant and the Schur complement of the penalized system

        [ Lambda'Z'WZ Lambda + I   Lambda'Z'W[X | y] ]
        [ [X | y]'WZ Lambda        [X | y]'W[X | y]  ]

The cross-products (:class:`~mixedpy.linalg.blocked.CrossProducts`) do not depend on theta: in an
LMM the weights are fixed.  So the blocks of L have the same types, patterns and Schur-complement
plans (:mod:`mixedpy.linalg.structure`) for every walker, and the left-looking block Cholesky of
:meth:`CrossProducts.factor` runs once for all walkers on blocks that carry a walker axis:

* Diagonal/BlkDiag diagonal blocks, (J, W, k, k): closed-form Cholesky factors for k <= 2, a
  batched LAPACK call otherwise;
* Sparse blocks (fixed pattern), (nnz, W, k_i, k_j): the structure's scatter plans are applied to
  all walkers at once (one sparse indicator matrix times a (pairs, W k_i k_j) array);
* updates from the first term (whose diagonal block has no fill) are Gram products: with
  M_l = T_1 (F_l F_l')^{-1} T_1' per level (d = t_1^2 / diag(Lambda_1'Z_1'WZ_1 Lambda_1 + I) for a
  scalar first term), the update L_i1 L_j1' is Lambda_i' (A_i1 M A_j1') Lambda_j with the bracket a
  product of sparse matrices fixed for the model (the structure's ``GramPlan``; numeric
  ``blocked.GramOperator``, shared with the per-walker kernel) with the (J_1 m, W) matrix of weights
  or with Y = A_i1 M per walker; the [X | y] row's is (A_F1 M) A_j1' (``blocked.fixed_row_update``,
  the per-walker kernel's code).  So all walkers cost a few sparse products, and the log density
  never forms L_i1 at all when each of its uses is such a product;
* Dense blocks, (W, rows, cols): batched products, and one LAPACK factor per walker for large
  diagonal blocks (``dpotrf`` in place; numpy's stacked Cholesky copies twice and cannot say which
  walker failed) or a stacked numpy factor for small ones.  A large dense remainder (crossed
  factors) costs the same O(m^3) per walker as the per-walker kernel; batching removes the Python
  overhead and the sparse work around it;
* the [X | y] block row, (W, p+1, q_j), whose last diagonal block after the downdates is
  G = [X | y]'W[X | y] - (L_21 L_21'), the Schur complement the marginal likelihood needs.

Per walker, the storage is the number of nonzeros of L (plus the pairs of the largest scatter), so
walkers are processed in chunks that keep it under :data:`MEMORY_BUDGET`.  A diagonal block too
large for even one walker per chunk is simply processed one walker at a time by the same code.

One case stays a loop over walkers, with scipy's sparse product per walker: a sparse x sparse'
update into a Dense block for which the structure keeps no scatter plan (more than
``DENSE_PLAN_LIMIT`` block pairs; its product has as many terms, so a batched scatter would need
that many entries per walker).  Walkers whose system is not positive definite are flagged in
``ok`` and carry identity factors from then on, so the others are unaffected.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.linalg import lapack

from ..threads import block_threads
from .blocked import CrossProducts, fixed_row_terms, fixed_row_update, gram_only_terms, gram_weights
from .structure import DENSE, SPARSE, gram_form

#: bytes of factor storage per chunk of walkers
MEMORY_BUDGET = 128 * 2 ** 20
#: dense diagonal blocks up to this order are factored by numpy's stacked routines; larger ones by
#: one in-place LAPACK call per walker (whose Python overhead is then negligible)
SMALL_DENSE = 64


def _sandwich(A: np.ndarray, Ti: np.ndarray, Tj: np.ndarray) -> np.ndarray:
    """Ti[w]' A[n] Tj[w] for blocks A (N, k_i, k_j) and factors (W, k, k): (N, W, k_i, k_j)."""
    if Ti.shape[1] == 1 and Tj.shape[1] == 1:
        return A[:, None] * (Ti[:, 0, 0] * Tj[:, 0, 0])[None, :, None, None]
    return np.swapaxes(Ti, 1, 2)[None] @ A[:, None] @ Tj[None]


def _diag_sandwich(D: np.ndarray, T: np.ndarray) -> np.ndarray:
    """T[w]' D[j] T[w] + I for symmetric diagonal blocks D (J, k, k) and lower-triangular T (W, k, k):
    (J, W, k, k), written out for k <= 2 (thousands of tiny matrix products cost more than the
    arithmetic)."""
    k = T.shape[1]
    if k == 1:
        return D[:, None] * (T[:, 0, 0] ** 2)[None, :, None, None] + 1.0
    if k > 2:
        out = _sandwich(D, T, T)
        out[:, :, np.arange(k), np.arange(k)] += 1.0
        return out
    t11, t21, t22 = T[None, :, 0, 0], T[None, :, 1, 0], T[None, :, 1, 1]
    d11, d21, d22 = D[:, None, 0, 0], D[:, None, 1, 0], D[:, None, 1, 1]
    e = d21 * t11 + d22 * t21
    out = np.empty((D.shape[0], T.shape[0], 2, 2))
    out[..., 0, 0] = t11 * (d11 * t11 + d21 * t21) + t21 * e + 1.0
    out[..., 1, 0] = out[..., 0, 1] = t22 * e
    out[..., 1, 1] = t22 * t22 * d22 + 1.0
    return out


def _times(X: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Rows of X (M, k) times each walker's T (W, k, k): (W, M, k) -- one stacked product."""
    if T.shape[1] == 1:
        return X[None] * T[:, 0, 0][:, None, None]
    return X[None] @ T


def _right_inv_t(X: np.ndarray, Linv: np.ndarray) -> np.ndarray:
    """X Linv' per block, X (..., a, k), Linv (..., k, k) lower triangular, broadcasting."""
    k = Linv.shape[-1]
    if k == 1:
        return X * Linv[..., 0, 0][..., None, None]
    out = np.empty(np.broadcast_shapes(X.shape, Linv.shape[:-2] + X.shape[-2:]))
    for c in range(k):
        acc = X[..., :, 0] * Linv[..., None, c, 0]
        for b in range(1, c + 1):
            acc = acc + X[..., :, b] * Linv[..., None, c, b]
        out[..., c] = acc
    return out


def _small_cholesky(A: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower factors, their inverses and the log-determinants per walker (W,) of (J, W, k, k)
    blocks, closed form for k <= 2; walkers with a block that is not positive definite are cleared
    in ``ok`` (in place) and get identity blocks."""
    J, W, k = A.shape[0], A.shape[1], A.shape[2]
    if k > 2:
        Aw = np.ascontiguousarray(np.swapaxes(A, 0, 1))           # (W, J, k, k)
        Lf, good = stacked_cholesky(Aw.reshape(W * J, k, k), np.ones(W * J, bool))
        good = good.reshape(W, J).all(axis=1)
        L = Lf.reshape(W, J, k, k)
        L[~good] = np.eye(k)
        ok &= good
        L = np.swapaxes(L, 0, 1)
        return L, np.linalg.inv(L), 2.0 * np.log(np.diagonal(L, axis1=2, axis2=3)).sum(axis=(0, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        if k == 1:
            L = np.sqrt(A)
            Li = 1.0 / L
            fine = A[:, :, 0, 0] > 0
            det = A[:, :, 0, 0]
        else:
            a11, a21, a22 = A[:, :, 0, 0], A[:, :, 1, 0], A[:, :, 1, 1]
            l11 = np.sqrt(a11)
            l21 = a21 / l11
            s22 = a22 - l21 * l21
            l22 = np.sqrt(s22)
            det = a11 * s22
            L, Li = np.empty_like(A), np.empty_like(A)
            L[..., 0, 0], L[..., 1, 0], L[..., 1, 1] = l11, l21, l22
            L[..., 0, 1] = Li[..., 0, 1] = 0.0
            Li[..., 0, 0] = i11 = 1.0 / l11
            Li[..., 1, 1] = i22 = 1.0 / l22
            Li[..., 1, 0] = -l21 * i11 * i22
            fine = (a11 > 0) & (l22 > 0)
        logdet = np.log(det).sum(axis=0)
    good = fine.all(axis=0) & np.isfinite(logdet)
    if not good.all():
        L[:, ~good] = Li[:, ~good] = np.eye(k)
        logdet[~good] = 0.0
        ok &= good
    return L, Li, logdet


def stacked_cholesky(A: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """numpy's stacked lower Cholesky of (N, m, m); matrices that fail get identity, ok[i] False."""
    try:
        L = np.linalg.cholesky(A)
    except np.linalg.LinAlgError:
        L = np.empty_like(A)
        for i in range(A.shape[0]):   # only after a failure: find which matrices failed
            try:
                L[i] = np.linalg.cholesky(A[i])
            except np.linalg.LinAlgError:
                L[i], ok[i] = np.eye(A.shape[1]), False
    bad = ~np.all(np.isfinite(np.diagonal(L, axis1=1, axis2=2)), axis=1)
    if bad.any():
        L[bad], ok[bad] = np.eye(A.shape[1]), False
    return L, ok


def _dense_cholesky(M: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Lower Cholesky factors of (W, m, m) blocks whose lower triangles hold the matrix.

    Returns (factor, inverse-or-None): small blocks by numpy (clean lower factor and its inverse),
    large ones in place by LAPACK, one call per walker (the upper triangle then holds garbage; only
    triangular solves read the factor)."""
    W, m = M.shape[0], M.shape[1]
    if m <= SMALL_DENSE:
        L, _ = stacked_cholesky(M, ok)
        return L, np.linalg.inv(L)
    for w in range(W):
        # M[w].T is Fortran-ordered: dpotrf's upper factor of it is the lower factor of M[w], in place
        _, info = lapack.dpotrf(M[w].T, lower=0, overwrite_a=1, clean=0)
        if info != 0 or not np.all(np.isfinite(np.diagonal(M[w]))):
            M[w], ok[w] = np.eye(m), False
    return M, None


def _solve_dense(Lf: np.ndarray, Linv: np.ndarray | None, X: np.ndarray, trans: bool = False) -> np.ndarray:
    """Per walker L^{-1} X (``trans``: L^{-T} X), X (W, m, r)."""
    if Linv is not None:
        return (np.swapaxes(Linv, 1, 2) if trans else Linv) @ X
    out = np.empty_like(X)
    for w in range(X.shape[0]):
        # Lf[w].T is the Fortran-ordered upper factor U = L': L x = b is U' x = b
        out[w] = lapack.dtrtrs(Lf[w].T, np.asfortranarray(X[w]), lower=0, trans=0 if trans else 1)[0]
    return out


def _rdiv_dense(X: np.ndarray, Lf: np.ndarray, Linv: np.ndarray | None) -> np.ndarray:
    """X L^{-T} per walker, X (W, r, m)."""
    if Linv is not None:
        return X @ np.swapaxes(Linv, 1, 2)
    X = np.ascontiguousarray(X)
    for w in range(X.shape[0]):
        # solve L Y' = X' in place in X[w]' (the Fortran-ordered view of a C-ordered row block)
        Y, _ = lapack.dtrtrs(Lf[w].T, X[w].T, lower=0, trans=1, overwrite_b=1)
        if not np.shares_memory(Y, X):
            X[w] = Y.T
    return X


@dataclass
class BatchedFactor:
    """L for W walkers: ``L[i, j]`` blocks with a walker axis (layouts in the module docstring),
    ``fac[j]``/``inv[j]`` diagonal factors, ``ok`` (W,) positive definiteness, ``ldL2`` (W,)
    log|Lambda'Z'WZ Lambda + I| and ``G`` (W, p+1, p+1) the Schur complement of [X | y]."""

    kernel: "BatchedKernel"
    L: dict
    fac: dict
    inv: dict
    ok: np.ndarray
    ldL2: np.ndarray
    G: np.ndarray

    def _term(self, j: int, v: np.ndarray) -> np.ndarray:
        st = self.kernel.st
        return v.reshape(v.shape[0], st.J[j], st.k[j])

    def _diag_solve(self, j: int, r: np.ndarray, trans: bool) -> np.ndarray:
        """L_jj^{-1} r (or L_jj^{-T} r) for r (W, q_j)."""
        st = self.kernel.st
        if st.types[j, j] == DENSE:
            return _solve_dense(self.fac[j], self.inv[j], r[:, :, None], trans)[:, :, 0]
        Li = np.swapaxes(self.inv[j], 0, 1)                      # (W, J, k, k)
        if trans:
            Li = np.swapaxes(Li, 2, 3)
        return (Li @ self._term(j, r)[..., None])[..., 0].reshape(r.shape)

    def _apply(self, i: int, j: int, x: np.ndarray, trans: bool) -> np.ndarray:
        """L_ij x (``trans``: L_ij' x) for x (W, q_j) (or (W, q_i)), i > j, both random-effects terms."""
        kn, st = self.kernel, self.kernel.st
        if st.types[i, j] == SPARSE:
            src = i if trans else j
            D = x.reshape(x.shape[0], 1, st.J[src], st.k[src])
            return kn.sparse_times(i, j, self.L[i, j], D, trans).reshape(x.shape[0], -1)
        B = self.L[i, j]
        return ((np.swapaxes(B, 1, 2) if trans else B) @ x[:, :, None])[:, :, 0]

    def solve_u(self, r: np.ndarray, trans: bool) -> np.ndarray:
        """Solve L_uu c = r (``trans``: L_uu' c = r) with the random-effects part of L; r (W, q)."""
        kn = self.kernel
        T, off = kn.cp.T, kn.cp.offsets
        seg = [r[:, off[j]:off[j + 1]] for j in range(T)]
        out = [None] * T
        order = range(T - 1, -1, -1) if trans else range(T)
        for j in order:
            acc = seg[j]
            others = range(j + 1, T) if trans else range(j)
            for m in others:
                acc = acc - (self._apply(m, j, out[m], True) if trans else self._apply(j, m, out[m], False))
            out[j] = self._diag_solve(j, acc, trans)
        return np.concatenate(out, axis=1)


class BatchedKernel:
    """The blocked factor of :class:`CrossProducts` with a leading walker axis (module docstring)."""

    def __init__(self, cp: CrossProducts):
        # the walker-batched factor has no sparse (CHOLMOD) diagonal blocks: those are Dense here
        if cp.structure.cholmod:
            cp = cp.with_structure(cp.structure.without_cholmod())
        self.cp = cp
        self.st = cp.structure
        self._ind = {}
        self._walker_bytes = None
        #: terms i whose block L_i1 only enters updates with a Gram matrix: the log density never
        #: needs its values (the solves of the conditional draws do)
        self._gram_only = gram_only_terms(self.st)
        self._fixed_rows = fixed_row_terms(self.st)

    # ----- sizes ------------------------------------------------------------------------------
    def walker_bytes(self) -> int:
        """Bytes of L's storage per walker, with the largest transient array of an update."""
        cp, st = self.cp, self.st
        T, p1 = cp.T, cp.p + 1
        total, transient = p1 * p1, 0
        for (i, j), t in st.types.items():
            if i == T:
                total += p1 * (cp.widths[j] if j < T else p1)
            elif i == j:
                total += cp.widths[j] ** 2 if t == DENSE else st.J[j] * st.k[j] ** 2
            elif t == SPARSE:
                total += st.patterns[i, j].nnz * st.k[i] * st.k[j]
                transient = max(transient, st.patterns[i, j].nnz * st.k[i] * p1)
            else:
                total += cp.widths[i] * cp.widths[j]
        # Y = A_i1 M of the rows-form Gram operators and of the [X | y] row (blocked.weighted_rows);
        # for a term whose L_i1 the log density does not form (gram_only_terms), Y takes its place
        sources = {i for (i, j, _), g in st.grams.items() if i not in self._gram_only
                   and gram_form(st.k[0], st.k[i], st.k[j], g.nnz) == "rows"}
        for i in sources | ({T} if self._fixed_rows else set()):
            n = st.patterns[i, 0].nnz * st.k[i] if i < T else p1 * st.J[0]
            total += n * st.k[0]
            transient = max(transient, n)
        for (i, j, kk), plan in st.plans.items():
            pairs = plan[2].size
            transient = max(transient, 2 * pairs * st.k[i] * st.k[j])
            if st.types[i, j] == DENSE:
                transient = max(transient, cp.widths[i] * cp.widths[j])
        return 8 * (total + transient)

    def chunk_size(self, budget: int | None = None) -> int:
        """Walkers per chunk so that one chunk's factor fits in ``budget`` bytes
        (:data:`MEMORY_BUDGET` by default)."""
        if self._walker_bytes is None:
            self._walker_bytes = max(1, self.walker_bytes())
        return max(1, (MEMORY_BUDGET if budget is None else budget) // self._walker_bytes)

    # ----- fixed-pattern sparse blocks ------------------------------------------------------------
    def _summing(self, key, it: np.ndarray) -> tuple[np.ndarray, sp.csr_matrix]:
        """(targets, S): the distinct targets of ``it`` and the 0/1 matrix (targets x len(it)) that sums
        entries into them (cached per key).  Only targets that receive something are rows of S: a
        dense target is mostly untouched by a scatter (InstEval's first 5,000 rows: 5,881 of
        34,596 level pairs), and writing the rest would cost more than the sums."""
        got = self._ind.get(key)
        if got is None:
            targets, row = np.unique(np.asarray(it, dtype=np.int64), return_inverse=True)
            m = row.size
            S = sp.csr_matrix((np.ones(m), (row.ravel(), np.arange(m))), shape=(targets.size, m))
            got = self._ind[key] = (targets, S)
        return got

    def _scatter(self, key, it, contrib: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(targets, sums): contrib (M, ...) summed by target ``it``: (n_targets, ...)."""
        targets, S = self._summing(key, it)
        return targets, (S @ contrib.reshape(contrib.shape[0], -1)).reshape((targets.size,) + contrib.shape[1:])

    def _gram(self, key):
        """(targets, operator): the nonempty target blocks of the structure's Gram plan ``key`` and its
        :class:`~mixedpy.linalg.blocked.GramOperator` (:meth:`CrossProducts.gram_operator`) restricted
        to them, sharing its storage."""
        got = self._ind.get(("gram",) + key)
        if got is None:
            targets = np.flatnonzero(np.diff(self.st.grams[key].indptr))
            got = self._ind[("gram",) + key] = (targets, self.cp.gram_operator(key).restricted(targets))
        return got

    def _rows_y(self, i: int) -> np.ndarray:
        """Y = A_i1 M per walker, (k_1, N, R, W) (CrossProducts.first_column_rows), once per factor."""
        Y = self._first_rows.get(i)
        if Y is None:
            Y = self._first_rows[i] = self.cp.first_column_rows(i, self._gram_d)
        return Y

    def sparse_times(self, i: int, j: int, V: np.ndarray, D: np.ndarray, trans: bool = False) -> np.ndarray:
        """D S' (``trans``: D S) for Sparse block S = (i, j) with values V (nnz, W, k_i, k_j) and a
        dense batch D (W, R, J, k) over S's columns (rows): (W, R, J_i, k_i) (or (W, R, J_j, k_j))."""
        st = self.st
        pat = st.patterns[i, j]
        src, dst, n_out = (pat.rows, pat.cols, st.J[j]) if trans else (pat.cols, pat.rows, st.J[i])
        G = np.ascontiguousarray(np.moveaxis(D, 2, 0))[src]       # (nnz, W, R, k_src)
        if V.shape[2] == 1 and V.shape[3] == 1:
            contrib = G * V
        else:
            contrib = G @ (V if trans else np.swapaxes(V, 2, 3))
        targets, sums = self._scatter(("cols" if trans else "rows", i, j), dst, contrib)
        out = np.zeros((n_out,) + sums.shape[1:])
        out[targets] = sums
        return np.moveaxis(out, 0, 2)

    def _densify(self, i: int, j: int, V: np.ndarray) -> np.ndarray:
        """Sparse block values (nnz, W, k_i, k_j) as dense (W, q_i, q_j)."""
        st = self.st
        pat = st.patterns[i, j]
        W, ki, kj = V.shape[1], V.shape[2], V.shape[3]
        out = np.zeros((W, st.J[i], ki, st.J[j], kj))
        out[:, pat.rows, :, pat.cols, :] = V
        return out.reshape(W, st.J[i] * ki, st.J[j] * kj)

    def _pairs(self, plan, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        """A[ia] B[ib]' for every pair of the plan: (M, W, k_a, k_b)."""
        ia, ib, _ = plan
        if ia is None:
            Ai = Bi = A
        else:
            Ai, Bi = A[ia], B[ib]
        if Ai.shape[2] == 1 and Bi.shape[2] == 1 and Ai.shape[3] == 1:
            return Ai * Bi
        # sums of outer products of columns: elementwise, far faster than millions of tiny matmuls
        out = Ai[..., :, 0, None] * Bi[..., None, :, 0]
        for c in range(1, Ai.shape[3]):
            out += Ai[..., :, c, None] * Bi[..., None, :, c]
        return out

    # ----- the factor -------------------------------------------------------------------------------
    def factor(self, T_list: list[np.ndarray], solves: bool = True) -> BatchedFactor:
        """L for relative factors ``T_list`` (one (W, k_i, k_i) array of lower-triangular factors per
        term, as lme4's Lambda), all walkers at once.

        ``solves=False``: only ldL2, G and ok are wanted; blocks of the first column whose every use
        is a Gram product are then not formed (they are left None)."""
        cp, st = self.cp, self.st
        T, A, types = cp.T, cp.A, st.types
        W = T_list[0].shape[0]
        p1 = cp.p + 1
        ok = np.ones(W, bool)
        self._T = T_list
        self._first_rows = {}
        L = {}
        # 1. L_ij = Lambda_i' A_ij Lambda_j (+ I on the diagonal)
        for j in range(T):
            Tj, Jj, kj = T_list[j], st.J[j], st.k[j]
            D = _diag_sandwich(A[j, j], Tj)                                 # (J, W, k, k)
            if types[j, j] == DENSE:
                q = Jj * kj
                full = np.zeros((W, q, q))
                if kj == 1:
                    full.reshape(W, q * q)[:, ::q + 1] = D[:, :, 0, 0].T
                else:
                    lev = np.arange(Jj)
                    full.reshape(W, Jj, kj, Jj, kj)[:, lev, :, lev, :] = D
                L[j, j] = full
            else:
                L[j, j] = D
            for i in range(j + 1, T):
                Ti, Ji, ki = T_list[i], st.J[i], st.k[i]
                if j == 0 and not solves and i in self._gram_only:
                    L[i, j] = None
                elif types[i, j] == SPARSE:
                    L[i, j] = _sandwich(A[i, j], Ti, Tj)
                else:
                    # the dense block as (Ji Jj) level pairs of k_i x k_j blocks and back
                    A4 = A[i, j].reshape(Ji, ki, Jj, kj).transpose(0, 2, 1, 3).reshape(Ji * Jj, ki, kj)
                    S = _sandwich(A4, Ti, Tj).reshape(Ji, Jj, W, ki, kj).transpose(2, 0, 3, 1, 4)
                    L[i, j] = np.ascontiguousarray(S).reshape(W, Ji * ki, Jj * kj)
            L[T, j] = _times(A[T, j].reshape(p1 * Jj, kj), Tj).reshape(W, p1, Jj * kj)
        L[T, T] = np.repeat(A[T, T][None], W, axis=0)

        # 2. left-looking block Cholesky (as CrossProducts.factor)
        fac, inv = {}, {}
        ldL2 = np.zeros(W)
        with block_threads(cp.m):
            for j in range(T + 1):
                for kk in range(j):
                    self._update(L, j, j, kk)
                if j == T:
                    break
                if types[j, j] == DENSE:
                    fac[j], inv[j] = _dense_cholesky(L[j, j], ok)
                    ldL2 += 2.0 * np.log(np.diagonal(fac[j], axis1=1, axis2=2)).sum(axis=1)
                else:
                    fac[j], inv[j], logdet = _small_cholesky(L[j, j], ok)
                    ldL2 += logdet
                    if j == 0:
                        # the Gram weights (blocked.gram_weights) per level and walker: (J_1 m, W)
                        m = gram_weights(np.moveaxis(T_list[0], 0, -1), np.moveaxis(inv[0], (0, 1), (2, 3)))
                        self._gram_d = np.moveaxis(m, 0, 1).reshape(-1, W)
                for i in range(j + 1, T + 1):
                    for kk in range(j):
                        self._update(L, i, j, kk)
                    if L[i, j] is not None:
                        self._rdiv(L, i, j, fac[j], inv[j])
        self._first_rows = {}
        return BatchedFactor(self, L, fac, inv, ok, ldL2, L[T, T])

    def schur(self, T_list: list[np.ndarray], budget: int | None = None):
        """(ldL2 (W,), G (W, p+1, p+1), ok (W,)) for all walkers, in chunks of bounded memory."""
        W = T_list[0].shape[0]
        step = self.chunk_size(budget)
        if step >= W:
            f = self.factor(T_list, solves=False)
            return f.ldL2, f.G, f.ok
        parts = [self.factor([T[lo:lo + step] for T in T_list], solves=False) for lo in range(0, W, step)]
        return (np.concatenate([f.ldL2 for f in parts]), np.concatenate([f.G for f in parts]),
                np.concatenate([f.ok for f in parts]))

    # ----- Schur-complement updates --------------------------------------------------------------------
    def _type(self, i: int, j: int) -> str:
        return DENSE if i == self.cp.T else self.st.types[i, j]

    def _update(self, L, i, j, kk):
        """L_ij -= L_ik L_jk' (i >= j > kk), in the storage of block (i, j)."""
        st = self.st
        key = (i, j, kk)
        tt, ta, tb = self._type(i, j), self._type(i, kk), self._type(j, kk)
        A_, B_, target = L[i, kk], L[j, kk], L[i, j]
        if key in getattr(st, "grams", {}):
            self._gram_update(target, key, tt)
            return
        if i == self.cp.T and kk == 0 and j in self._fixed_rows:
            self._fixed_row_update(target, j)
            return
        if ta == SPARSE and tb == SPARSE:
            plan = st.plans.get(key)
            if plan is None:
                self._loop_update(target, i, j, kk, A_, B_, tt)
                return
            targets, sums = self._scatter(key, plan[2], self._pairs(plan, A_, B_))
            self._subtract(target, i, j, tt, targets, sums)
            return
        W = A_.shape[1] if ta == SPARSE else A_.shape[0]
        if tt == SPARSE:
            # a dense-stored factor whose pattern is still sparse: the product gathered on the pattern
            Ad = self._densify(i, kk, A_) if ta == SPARSE else A_
            Bd = self._densify(j, kk, B_) if tb == SPARSE else B_
            pat = st.patterns[i, j]
            P5 = (Ad @ np.swapaxes(Bd, 1, 2)).reshape(W, st.J[i], st.k[i], st.J[j], st.k[j])
            target -= P5[:, pat.rows, :, pat.cols, :]
        elif tt != DENSE:
            # block-diagonal target from a dense factor (i == j): only the diagonal blocks
            S4 = A_.reshape(W, st.J[j], st.k[j], -1)
            target -= np.swapaxes(S4 @ np.swapaxes(S4, 2, 3), 0, 1)
        elif tb == SPARSE:
            # A_ik (dense (W, r, q_k)) times S_jk': A_ik's rows as a batch over S's columns
            D = A_.reshape(W, A_.shape[1], st.J[kk], st.k[kk])
            target -= self.sparse_times(j, kk, B_, D).reshape(target.shape)
        elif ta == SPARSE:
            D = B_.reshape(W, B_.shape[1], st.J[kk], st.k[kk])
            target -= np.swapaxes(self.sparse_times(i, kk, A_, D).reshape(W, B_.shape[1], -1), 1, 2)
        else:
            target -= A_ @ np.swapaxes(B_, 1, 2)

    def _gram_update(self, target, key, tt):
        """target -= T_i' (A_i1 M A_j1') T_j with the structure's Gram plan (first column Diagonal or
        BlkDiag: :class:`~mixedpy.linalg.structure.GramPlan`), M the weights of each level and walker:
        sparse products for all walkers at once (blocked.GramOperator) and a small sandwich per target
        block."""
        i, j, _ = key
        targets, op = self._gram(key)
        st = self.st
        ki, kj = st.k[i], st.k[j]
        U = op.apply(self._gram_d if op.source is None else self._rows_y(i))    # (targets, ki, kj, W)
        U = np.moveaxis(U, 3, 1)                                                 # (targets, W, ki, kj)
        Ti, Tj = self._T[i], self._T[j]
        if ki == 1 and kj == 1:
            U = U * (Ti[:, 0, 0] * Tj[:, 0, 0])[None, :, None, None]
        else:
            U = np.swapaxes(Ti, 1, 2)[None] @ U @ Tj[None]
        self._subtract(target, i, j, tt, targets, U)

    # ----- updates from the first column ----------------------------------------------------------------
    # The first diagonal block has no fill, so with M_l = T_1 (F_l F_l')^{-1} T_1' per level every
    # update from the first column is  L_i1 L_j1' = Lambda_i' (A_i1 M A_j1') Lambda_j,  and the
    # bracket is a fixed sparse operator applied to the walkers' weights or to Y = A_i1 M
    # (blocked.GramOperator): each theta costs sparse products with a walker axis and a small
    # sandwich per target block, instead of gathering and multiplying every pair for every walker.
    # The [X | y] row is done the same way (blocked.fixed_row_update), by the code of the per-walker
    # kernel.

    def _fixed_row_update(self, target, j: int):
        """L_Fj -= (A_F1 M) A_j1' Lambda_j for every walker; target (W, p+1, J_j k_j)."""
        target -= fixed_row_update(self.cp, j, self._rows_y(self.cp.T), self._T[j])

    def _subtract(self, target, i, j, tt, targets, sums):
        """target[targets] -= sums (targets, W, k_i, k_j): entries of a sparse or block-diagonal
        block, or level pairs r J_j + c of a dense block (W, q_i, q_j)."""
        if tt != DENSE:
            target[targets] -= sums
            return
        st = self.st
        W, Jj, ki, kj = target.shape[0], st.J[j], st.k[i], st.k[j]
        flat = target.reshape(W, -1)
        if ki == 1 and kj == 1:
            flat[:, targets] -= sums[:, :, 0, 0].T
            return
        # flat positions of the k_i x k_j entries of each target level pair (r, c)
        r, c = (targets // Jj)[:, None, None], (targets % Jj)[:, None, None]
        pos = (r * ki + np.arange(ki)[None, :, None]) * (Jj * kj) + c * kj + np.arange(kj)[None, None, :]
        flat[:, pos.ravel()] -= np.moveaxis(sums, 1, 0).reshape(W, -1)

    def _loop_update(self, target, i, j, kk, A_, B_, tt):
        """The update with no scatter plan (too many block pairs to batch; module docstring): scipy's
        sparse product per walker, taken into the target's storage."""
        cp, st = self.cp, self.st
        for w in range(A_.shape[1]):
            Sa = cp.sparse_block(i, kk, A_[:, w])
            Sb = Sa if i == j else cp.sparse_block(j, kk, B_[:, w])
            prod = (Sa @ Sb.T).toarray()
            if tt == DENSE:
                target[w] -= prod
                continue
            P4 = prod.reshape(st.J[i], st.k[i], st.J[j], st.k[j])
            if tt == SPARSE:
                pat = st.patterns[i, j]
                target[:, w] -= P4[pat.rows, :, pat.cols, :]
            else:
                lev = np.arange(st.J[j])
                target[:, w] -= P4[lev, :, lev, :]

    def _rdiv(self, L, i, j, Ljj, Linv):
        """L_ij = L_ij L_jj^{-T}."""
        st = self.st
        X = L[i, j]
        ti = st.types.get((i, j), DENSE)
        if st.types[j, j] != DENSE:
            if ti == SPARSE:
                L[i, j] = _right_inv_t(X, Linv[st.patterns[i, j].cols])
                return
            W, R = X.shape[0], X.shape[1]
            X4 = X.reshape(W, R, st.J[j], st.k[j])
            L[i, j] = _right_inv_t(X4[..., None, :], np.swapaxes(Linv, 0, 1)[:, None])[..., 0, :].reshape(X.shape)
            return
        L[i, j] = _rdiv_dense(X, Ljj, Linv)
