"""Block structure of lme4's penalized system, decided once per model from the grouping factors.

The Cholesky factor L of

        [ Lambda'Z'WZ Lambda + I   Lambda'Z'WX   Lambda'Z'Wy ]
    A = [ X'WZ Lambda              X'WX          X'Wy        ]
        [ y'WZ Lambda              y'WX          y'Wy        ]

is kept as a lower-triangular array of blocks, one block row/column per random-effects term and a
last one ("fixed") for [X | y] (Bates et al. 2015, section 3; the layout of MixedModels.jl's
``createAL``/``BlockDescription``).  Which entries of each block can be nonzero depends only on the
level codes, so it is worked out here once ("symbolic factorization" at the level of groups) and
every theta only refreshes values in storage of fixed shape.

The pattern of block (i, j) of L is the pattern of Z_i'Z_j plus the fill
``sum_{k<j} L_ik L_jk'`` of the earlier block columns (left-looking block Cholesky).  From it:

* a diagonal block stays ``Diagonal`` (k_j = 1) or ``BlkDiag`` (k_j > 1, one k_j x k_j block per
  level) when no earlier column creates fill in it.  This is the case of the first term, and of every
  term whose levels contain the levels of the earlier ones -- nested factors (``(1|a/b)``: each
  ``b:a`` level lies in one ``a`` level, so ``L[a, b:a]`` has one nonzero block per column and its
  outer product is diagonal), and a second term on the same grouping factor (``(x||g)``);
* otherwise the diagonal block is ``Dense`` (LAPACK Cholesky), and so is every block below it;
* an off-diagonal block is ``Sparse`` (a fixed pattern of k_i x k_j blocks, stored as one
  (nnz_blocks, k_i, k_j) array) when less than :data:`SPARSE_DENSITY` of its blocks can be nonzero
  and it is not small, else ``Dense``.  The fixed-effects row is always ``Dense``.

An update from the first block column (crossed or nested random intercepts: InstEval, two large
crossed factors; a random-slope first term crossed with an intercept, ``(x | b) + (1 | a)``) is a
product of fixed sparse "Gram" matrices with the first term's k_1 x k_1 per-level weights, or with
the rows A_i1 M they make (:class:`GramPlan`, ``grams``; mixedpy.linalg.blocked.GramOperator).  Other
Schur-complement updates into a
``Sparse`` block or a ``Diagonal``/``BlkDiag`` block are fixed-pattern scatters whose index lists
(``plans``) are computed here; so are sparse x sparse' updates into a
``Dense`` block (only its lower triangle when it is a diagonal block) up to
:data:`DENSE_PLAN_LIMIT` block pairs, beyond which scipy's sparse product is used; the other updates
into ``Dense`` blocks are sparse x dense or dense x dense products (BLAS).  Nothing is a sparse x
sparse product turned dense at every evaluation unless the plan would be too large.

A Dense second diagonal block filled only by such a Gram product (crossed scalar terms) that is large
(at least :data:`CHOLMOD_MIN_ORDER` rows) and sparse is ``Cholmod`` instead: factored by CHOLMOD's
supernodal sparse Cholesky through cvxopt (:mod:`mixedpy.linalg.cholmod`, optional), with the
symbolic analysis done here and the Gram plan scattering into the lower triangle of its fixed
pattern, when CHOLMOD's factor of that pattern needs at most :data:`CHOLMOD_FLOP_FRACTION` of the
dense flops.  On InstEval's ``d`` block (1,128 lecturers after the 2,972 students) the Schur
complement is 20% nonzero and CHOLMOD's ordering brings the factor to 23% of the dense flops.
Why CHOLMOD through cvxopt: of the PyPI packages, scikit-sparse (CHOLMOD) has no wheels and needs
SuiteSparse from the system; cholespy ships CHOLMOD but only solves (no log-determinant, no reuse
of the symbolic analysis); qdldl has wheels and symbolic reuse, but is a scalar up-looking LDL'
without supernodes, slower than LAPACK once the Schur complement fills in.  In natural or
Cuthill-McKee order the fill is scattered over every 32 x 32 tile, so a tile-skipping dense
factorization saves nothing.  Later diagonal blocks (updated from earlier dense columns) and blocks
with k > 1 stay Dense.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

DIAGONAL, BLKDIAG, SPARSE, DENSE = "Diagonal", "BlkDiag", "Sparse", "Dense"
#: a diagonal block factored by CHOLMOD's supernodal sparse Cholesky (:mod:`mixedpy.linalg.cholmod`)
CHOLMOD = "Cholmod"

#: a Dense diagonal block of at least this order whose sparse factor needs at most
#: :data:`CHOLMOD_FLOP_FRACTION` of the dense factorization's flops is a ``Cholmod`` block
CHOLMOD_MIN_ORDER = 500
#: CHOLMOD's supernodes run at a lower rate than LAPACK's dense kernel: require a clear saving
CHOLMOD_FLOP_FRACTION = 0.5

#: an off-diagonal block is stored sparse when fewer than this fraction of its level pairs can be
#: nonzero (MixedModels.jl densifies at 10% too) ...
SPARSE_DENSITY = 0.1
#: ... and it has more scalar entries than this (small blocks are faster dense)
DENSE_LIMIT = 40_000
#: a symbolic product needing more multiply-adds than this is taken as full instead of computed
SYMBOLIC_FLOP_CAP = 50_000_000

#: sparse x sparse' updates into a dense block use a scatter plan up to this many block pairs
#: (a few bytes of index per pair); larger ones use scipy's sparse product
DENSE_PLAN_LIMIT = 20_000_000

#: a Gram plan (see :class:`GramPlan`; 8 bytes per pair, and 8 to 12 per pair and stored entry for
#: its numeric operator) is built for at most this many block pairs; larger updates use a scatter
#: plan or scipy's sparse product
GRAM_PAIR_LIMIT = 40_000_000
#: ... from chunks of about this many pairs
GRAM_CHUNK = 2_000_000
#: a Gram plan's numeric operator has at most this many entries: pairs times :func:`gram_entries`
GRAM_ENTRY_LIMIT = 160_000_000
#: with a vector-valued first term, the levels form of a Gram operator (:func:`gram_form`) is used up
#: to this many entries, the rows form beyond: at 200,000 rows of ``y ~ x + (x | a) + (1 | b)``
#: (5,000 x 800 levels, 12M entries) an evaluation took 10% less time in the levels form (one
#: product with the weights, no Y); at 500,000 and 1,000,000 rows (30M, 60M) 20% more, and the rows
#: form holds less than half the bytes
GRAM_LEVELS_LIMIT = 16_000_000

FULL = "full"  # pattern marker: every level pair may be nonzero


@dataclass(frozen=True)
class BlockPattern:
    """Nonzero level pairs of a sparse block, row-major (CSR order): ``rows[n], cols[n]``."""

    shape: tuple[int, int]     # (J_i, J_j)
    indptr: np.ndarray
    cols: np.ndarray
    rows: np.ndarray
    keys: np.ndarray           # rows * J_j + cols, strictly increasing

    @classmethod
    def from_csr(cls, P: sp.csr_matrix) -> "BlockPattern":
        P = P.tocsr()
        P.sum_duplicates()
        P.sort_indices()
        rows = np.repeat(np.arange(P.shape[0]), np.diff(P.indptr))
        cols = P.indices.astype(np.int64)
        return cls(P.shape, P.indptr.astype(np.int64), cols, rows, rows * P.shape[1] + cols)

    @property
    def nnz(self) -> int:
        return self.cols.size

    def locate(self, r: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Positions of level pairs (r, c), which must be in the pattern."""
        key = np.asarray(r, dtype=np.int64) * self.shape[1] + c
        pos = np.searchsorted(self.keys, key)
        if pos.size and (pos.max() >= self.keys.size or np.any(self.keys[pos] != key)):
            raise AssertionError("level pair outside the symbolic pattern")
        return pos


def _level_pattern(ci: np.ndarray, cj: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    P = sp.csr_matrix((np.ones(ci.size, dtype=np.int8), (ci, cj)), shape=shape)
    P.sum_duplicates()
    P.data[:] = 1
    return P


def _product_pattern(A, B):
    """Pattern of A B' for patterns A (J_i x J_k), B (J_j x J_k); FULL when either is full or too big."""
    if isinstance(A, str) or isinstance(B, str):
        return FULL
    flops = np.dot(np.diff(A.tocsc().indptr).astype(float), np.diff(B.tocsc().indptr).astype(float))
    if flops > SYMBOLIC_FLOP_CAP or flops > 4.0 * A.shape[0] * B.shape[0]:
        return FULL
    P = (A.astype(np.int32) @ B.T.astype(np.int32)).tocsr()
    P.data[:] = 1
    return P.astype(np.int8)


def _union(A, B):
    if isinstance(A, str) or isinstance(B, str):
        return FULL
    P = (A + B).tocsr()
    P.data[:] = 1
    return P


def _density(P, shape) -> float:
    return 1.0 if isinstance(P, str) else P.nnz / max(1, shape[0] * shape[1])


def _pair_flops(A: BlockPattern, B: BlockPattern) -> int:
    """Number of block pairs sharing a column: the work of A B'."""
    J_k = A.shape[1]
    return int(np.dot(np.bincount(A.cols, minlength=J_k).astype(float),
                      np.bincount(B.cols, minlength=J_k).astype(float)))


def _pair_plan(A: BlockPattern, B: BlockPattern, target):
    """:func:`_pair_plan_int64` with the index arrays in int32 where they fit (plans can be large)."""
    plan = _pair_plan_int64(A, B, target)
    return tuple(None if a is None else _small_int(a) for a in plan)


def _small_int(a: np.ndarray) -> np.ndarray:
    return a.astype(np.int32) if a.size == 0 or a.max() < 2 ** 31 - 1 else a


def _pair_counts(A: BlockPattern, B: BlockPattern, lower: bool = False):
    """(order, start, n_pairs) of :func:`_column_pairs`: B's blocks by column (then row), where each
    column starts in that order, and the number of pairs of each block of A."""
    order = np.argsort(B.cols, kind="stable")       # by column, then by row (B is in CSR order)
    count = np.bincount(B.cols, minlength=A.shape[1])
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    if lower:
        rank = np.empty(A.nnz, dtype=np.int64)      # position of each block among its column's
        rank[order] = np.arange(A.nnz) - start[A.cols[order]]
        return order, start, rank + 1
    return order, start, count[A.cols]


def _column_pairs(A: BlockPattern, B: BlockPattern, lower: bool = False, chunk: int | None = None):
    """Index pairs (ia, ib) of the nonzero blocks of A (i, k) and B (j, k) sharing a column of block
    column k: every term of A B' (blocks of A in CSR order, each with B's blocks of its column).

    ``lower`` (A is B): only the pairs whose B block is in a row <= the A block's row, the terms of
    the lower triangle of A A'.  Yields the pairs in chunks of about ``chunk`` pairs (all at once
    when None), each of whole block rows of A, so that large plans are built without every
    temporary at full length."""
    order, start, n_pairs = _pair_counts(A, B, lower)
    cum = np.cumsum(n_pairs)
    total = int(cum[-1]) if cum.size else 0
    if chunk is None or total <= chunk:
        cuts = [0, A.nnz]
    else:
        # cut at the start of a block row of A, so that every chunk holds whole rows
        cuts = np.searchsorted(cum, np.arange(chunk, total, chunk))
        cuts = A.indptr[np.searchsorted(A.indptr, cuts)]
        cuts = np.unique(np.concatenate([[0], cuts, [A.nnz]]))
    for s, e in zip(cuts[:-1], cuts[1:]):
        npair = n_pairs[s:e]
        ia = np.repeat(np.arange(s, e), npair)
        first = np.repeat(np.cumsum(npair) - npair, npair)
        ib = order[start[A.cols[ia]] + (np.arange(ia.size) - first)]
        yield ia, ib


def _target_index(A: BlockPattern, B: BlockPattern, ia, ib, target):
    """Target positions ``it`` of the pairs (ia, ib): the block index for a :class:`BlockPattern`,
    the level for ``"diag"``, the level pair r * J_j + c for ``"dense"`` and ``"dense-lower"``."""
    ra, rb = A.rows[ia], B.rows[ib]
    if isinstance(target, BlockPattern):
        return target.locate(ra, rb)
    if target == "diag":
        if np.any(ra != rb):
            raise AssertionError("fill outside a block-diagonal block")
        return ra
    return ra * B.shape[0] + rb


def _pair_plan_int64(A: BlockPattern, B: BlockPattern, target):
    """Index triples (ia, ib, it) with  L_target[it] -= L_A[ia] L_B[ib]'  summed, for A (i, k), B (j, k).

    Every pair of nonzero blocks sharing a column of block column k contributes (``_column_pairs``);
    ``target`` is the target's :class:`BlockPattern` (``it`` indexes its blocks), ``"diag"`` for a
    block-diagonal target (``it`` is the level), ``"dense"`` for a dense target (``it`` is the level
    pair r * J_j + c) or ``"dense-lower"`` for a dense diagonal target, of which only the lower
    triangle is needed by the Cholesky factorization.  A block-diagonal target with one block per
    column (nested factors: each block with itself) gives ``(None, None, rows)``."""
    ia, ib = next(_column_pairs(A, B, lower=target == "dense-lower"))
    it = _target_index(A, B, ia, ib, target)
    if isinstance(target, str) and target == "diag" and ia.size == A.nnz and np.array_equal(ia, ib):
        return None, None, it
    return ia, ib, it


def gram_form(k1: int, ki: int, kj: int, pairs: int) -> str:
    """The form of a Gram plan's numeric operator (mixedpy.linalg.blocked.GramOperator): "levels"
    (k_i k_j k_1 (k_1 + 1) / 2 coefficients per pair, a column per entry of the first term's
    weights: always for a scalar first term, whose columns of equal weight then merge) or "rows"
    (the k_j k_1 entries of the pair's A_j1 block, columns the blocks of A_i1: for a vector-valued
    first term once the levels form would exceed :data:`GRAM_LEVELS_LIMIT` entries)."""
    if k1 == 1 or pairs * ki * kj * k1 * (k1 + 1) // 2 <= GRAM_LEVELS_LIMIT:
        return "levels"
    return "rows"


def gram_entries(k1: int, ki: int, kj: int, form: str) -> int:
    """Entries per block pair of a Gram plan's numeric operator of this ``form`` (:func:`gram_form`;
    12 bytes each in the levels form, 8 in the rows form, which shares the plan's indices)."""
    return ki * kj * k1 * (k1 + 1) // 2 if form == "levels" else kj * k1


def _stable_group(it: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(order, counts): the stable order of ``it`` (as ``np.argsort(it, kind="stable")``) and how
    often each of 0..n_rows-1 occurs, by scipy's COO to CSR conversion: a counting sort in C, several
    times faster than numpy's timsort on 64-bit keys (numpy's radix sort takes 16-bit keys only)."""
    idx = np.arange(it.size)
    M = sp.csr_matrix((idx, (it, idx)), shape=(n_rows, max(1, it.size)))
    return M.data, np.diff(M.indptr)


@dataclass(frozen=True)
class GramPlan:
    """The update of block (i, j) from the first block column, which is Diagonal or BlkDiag.

    Nothing fills the first diagonal block, so with Lambda = I (x) T and F_l the lower Cholesky
    factor of T_1' A_11,l T_1 + I (level l of the first term, k_1 x k_1), L_i1 = T_i' A_i1 T_1 F^{-T}
    level by level and the Schur-complement term is

        L_i1 L_j1' = T_i' [ A_i1 M A_j1' ] T_j,    M_l = T_1 (F_l F_l')^{-1} T_1',

    a sum over the pairs of blocks A_i1[ia], A_j1[ib] in the same column l of the k_i x k_j products
    A_i1[ia] M_l A_j1[ib]' = Y[ia] A_j1[ib]' with Y = A_i1 M (block by block).  The pairs' entries
    do not depend on theta, so the bracket is a product of fixed sparse matrices formed once per
    cross-products (:class:`mixedpy.linalg.blocked.GramOperator`) with Y (k_1 > 1: k_j k_1 numbers
    per pair) or, for a scalar first term, with the weights d_l = t_1^2 / (1 + t_1^2 (Z_1'WZ_1)_ll)
    themselves (the pairs' products precomputed, t_i t_j G d); each theta then costs sparse
    matrix-vector products and a small sandwich with T_i, T_j per target block instead of a
    scatter of pair products (MixedModels.jl reaches the same bilinear form by its rank-k updates).

    The plan itself depends only on the level codes: ``ia``/``ib`` are the pairs in CSR order by
    target block (rows = target storage positions; the column level of a pair is the column of its
    block ``ia``, not stored: at 10^7-10^8 pairs every array counts; ``ia`` is also the column index
    array of the rows-form operator, shared); ``n_rows`` is the number of blocks of the target's
    storage.
    """

    ia: np.ndarray
    ib: np.ndarray
    indptr: np.ndarray
    n_rows: int
    n_cols: int

    @classmethod
    def build(cls, A: BlockPattern, B: BlockPattern, target, n_rows: int, lower: bool = False) -> "GramPlan":
        """``lower``: only the lower triangle of a diagonal target (always for ``"dense-lower"``)."""
        lower = lower or (isinstance(target, str) and target == "dense-lower")
        total = int(_pair_counts(A, B, lower)[2].sum())
        # the pairs go straight into their final arrays (int32 where the indices fit): no list of
        # chunks to concatenate, whose copy would double the plan's size at its peak
        ia = np.empty(total, dtype=np.int32 if A.nnz < 2 ** 31 - 1 else np.int64)
        ib = np.empty(total, dtype=np.int32 if B.nnz < 2 ** 31 - 1 else np.int64)
        counts = np.zeros(n_rows, dtype=np.int64)
        done = 0
        # A chunk holds whole block rows of A and every target position it = f(row of A, row of B)
        # grows with the row of A, so sorting each chunk by it sorts them all: CSR order (rows of G
        # = the target's entries) without a global sort.
        for a, b in _column_pairs(A, B, lower=lower, chunk=GRAM_CHUNK):
            it = _target_index(A, B, a, b, target)
            order, n_it = _stable_group(it, n_rows)
            counts += n_it
            ia[done:done + a.size] = a[order]
            ib[done:done + a.size] = b[order]
            done += a.size
            del it, order, a, b
        indptr = np.zeros(n_rows + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        if indptr[-1] < 2 ** 31 - 1:
            indptr = indptr.astype(np.int32)
        return cls(ia, ib, indptr, n_rows, A.shape[1])

    @property
    def nnz(self) -> int:
        return self.ia.size


@dataclass
class BlockStructure:
    """Types, patterns and update plans of L's blocks for terms in lme4's order (the fixed block last).

    ``types[(i, j)]`` for 0 <= j <= i <= T (T = number of terms; index T is the fixed block);
    ``patterns[(i, j)]`` the :class:`BlockPattern` of ``Sparse`` blocks;
    ``a_pos[(i, j)]`` per observation, the position of its contribution to Z_i'Z_j (block index for
    sparse blocks, level-pair index ``r * J_j + c`` for dense ones);
    ``plans[(i, j, k)]`` the scatter triples of the update of a sparse or block-diagonal block (i, j)
    by block column k;  ``grams[(i, j, 0)]`` the :class:`GramPlan` of an update from a (block-)diagonal first
    block column, which then has no entry in ``plans``.
    """

    names: list[str]
    J: list[int]
    k: list[int]
    types: dict = field(default_factory=dict)
    a_types: dict = field(default_factory=dict)
    patterns: dict = field(default_factory=dict)
    a_pos: dict = field(default_factory=dict)
    plans: dict = field(default_factory=dict)
    grams: dict = field(default_factory=dict)
    #: per ``Cholmod`` diagonal block j, its :class:`~mixedpy.linalg.cholmod.CholmodPattern`
    cholmod: dict = field(default_factory=dict)

    @property
    def n_terms(self) -> int:
        return len(self.J)

    @property
    def widths(self) -> list[int]:
        return [J * k for J, k in zip(self.J, self.k)]

    @classmethod
    def analyse(cls, blocks, names: list[str] | None = None, dense_limit: int = DENSE_LIMIT,
                sparse_density: float = SPARSE_DENSITY,
                cholmod_min_order: int | None = CHOLMOD_MIN_ORDER) -> "BlockStructure":
        """Symbolic block factorization from the terms' level codes (``TermBlock`` objects).

        An off-diagonal block is stored ``Sparse`` when it has more than ``dense_limit`` entries and
        fewer than ``sparse_density`` of its level pairs can be nonzero.  ``cholmod_min_order``:
        see :meth:`_use_cholmod` (None: never)."""
        T = len(blocks)
        J = [int(b.n_levels) for b in blocks]
        k = [int(b.k) for b in blocks]
        names = list(names) if names is not None else [f"term{i + 1}" for i in range(T)]
        st = cls(names=names, J=J, k=k)

        def store(P, rows: int, cols: int) -> str:
            if isinstance(P, str) or rows * cols <= dense_limit:
                return DENSE
            return SPARSE if _density(P, (rows, cols)) < sparse_density else DENSE

        codes = [np.asarray(b.codes, dtype=np.int64) for b in blocks]
        A = {(i, j): _level_pattern(codes[i], codes[j], (J[i], J[j])) for i in range(T) for j in range(i)}
        P = {}
        for j in range(T):
            fill = None
            for kk in range(j):
                prod = _product_pattern(P[j, kk], P[j, kk])
                fill = prod if fill is None else _union(fill, prod)
            diag_ok = J[j] == 1 or fill is None or (not isinstance(fill, str) and
                                                    np.count_nonzero(fill.diagonal()) == fill.nnz)
            st.a_types[j, j] = DIAGONAL if k[j] == 1 else BLKDIAG
            st.types[j, j] = st.a_types[j, j] if diag_ok else DENSE
            for i in range(j + 1, T):
                Pij = A[i, j]
                st.a_types[i, j] = store(Pij, J[i] * k[i], J[j] * k[j])
                for kk in range(j):
                    Pij = _union(Pij, _product_pattern(P[i, kk], P[j, kk]))
                if not diag_ok:
                    # X L_jj^{-T} with a dense triangular L_jj fills every row that has a nonzero
                    Pij = FULL
                P[i, j] = Pij
                st.types[i, j] = store(Pij, J[i] * k[i], J[j] * k[j])
                if st.types[i, j] == SPARSE:
                    st.patterns[i, j] = BlockPattern.from_csr(Pij)
            st.types[T, j] = st.a_types[T, j] = DENSE
        st.types[T, T] = st.a_types[T, T] = DENSE
        # where each observation's contribution to A goes
        for (i, j), Pij in A.items():
            if st.types[i, j] == SPARSE:
                st.a_pos[i, j] = st.patterns[i, j].locate(codes[i], codes[j])
            else:
                st.a_pos[i, j] = codes[i] * J[j] + codes[j]
        # scatter plans of the Schur-complement updates into sparse and block-diagonal blocks
        for j in range(T):
            for kk in range(j):
                if st._add_gram(j, j, kk):
                    pass
                elif st.types[j, kk] == SPARSE:
                    pat = st.patterns[j, kk]
                    if st.types[j, j] != DENSE:
                        st.plans[j, j, kk] = _pair_plan(pat, pat, "diag")
                    elif _pair_flops(pat, pat) <= DENSE_PLAN_LIMIT:
                        st.plans[j, j, kk] = _pair_plan(pat, pat, "dense-lower")
                for i in range(j + 1, T):
                    if st.types[i, kk] != SPARSE or st.types[j, kk] != SPARSE:
                        continue
                    A_, B_ = st.patterns[i, kk], st.patterns[j, kk]
                    if st._add_gram(i, j, kk):
                        continue
                    if st.types[i, j] == SPARSE:
                        st.plans[i, j, kk] = _pair_plan(A_, B_, st.patterns[i, j])
                    elif _pair_flops(A_, B_) <= DENSE_PLAN_LIMIT:
                        st.plans[i, j, kk] = _pair_plan(A_, B_, "dense")
        if cholmod_min_order is not None and T > 1:
            st._use_cholmod(cholmod_min_order)
        return st

    def _use_cholmod(self, min_order: int) -> None:
        """Make the second diagonal block ``Cholmod`` when CHOLMOD is available (mixedpy.linalg.cholmod)
        and the block is Dense, scalar (k = 1), of order >= ``min_order``, filled only by a Gram
        plan from the first column (crossed terms, e.g. InstEval's scalar ones), and its
        sparse factor needs at most :data:`CHOLMOD_FLOP_FRACTION` of the dense flops.

        Its pattern is the lower triangle of the pattern of A_11' A_11 plus the diagonal; the Gram
        plan is rebuilt to scatter into it.  Blocks below it stay Dense (X L~^{-T} is full).
        Later diagonal blocks are not considered: their updates from earlier dense columns would
        need dense x dense products scattered onto a pattern."""
        from . import cholmod

        j = 1
        if (not cholmod.available() or self.types[j, j] != DENSE or self.k[j] != 1 or self.J[j] < min_order
                or (j, j, 0) not in self.grams or self.types[j, 0] != SPARSE):
            return
        pat = self.patterns[j, 0]
        n = self.J[j]
        # the dense-lower Gram plan's nonempty targets are the level pairs of tril(A A'): no product
        r, c = np.divmod(np.flatnonzero(np.diff(self.grams[j, j, 0].indptr)), n)
        S = sp.csr_matrix((np.ones(r.size), (r, c)), shape=(n, n)) + sp.eye(n, format="csr")
        lower = BlockPattern.from_csr(S)
        chol = cholmod.CholmodPattern(lower)
        if chol.flop_fraction() > CHOLMOD_FLOP_FRACTION:
            return
        self.types[j, j] = CHOLMOD
        self.patterns[j, j] = lower
        self.cholmod[j] = chol
        self.grams[j, j, 0] = GramPlan.build(pat, pat, lower, lower.nnz, lower=True)

    def without_cholmod(self) -> "BlockStructure":
        """A copy with every ``Cholmod`` block Dense again (for kernels without the sparse type)."""
        if not self.cholmod:
            return self
        st = BlockStructure(self.names, self.J, self.k, dict(self.types), dict(self.a_types),
                            dict(self.patterns), self.a_pos, dict(self.plans), dict(self.grams))
        for j in self.cholmod:
            st.types[j, j] = DENSE
            del st.patterns[j, j]
            pat = st.patterns[j, 0]
            st.grams[j, j, 0] = GramPlan.build(pat, pat, "dense-lower", self.J[j] * self.J[j])
        return st

    def _add_gram(self, i: int, j: int, kk: int) -> bool:
        """Store a :class:`GramPlan` for the update of block (i, j) by block column kk when it applies:
        kk is the first column (Diagonal or BlkDiag: nothing fills it), both factors are ``Sparse``,
        the plan has at most :data:`GRAM_PAIR_LIMIT` pairs and its numeric operator at most
        :data:`GRAM_ENTRY_LIMIT` entries (pairs x :func:`gram_entries` of its :func:`gram_form`)."""
        types, k = self.types, self.k
        if kk != 0:
            return False
        if types[i, 0] != SPARSE or types[j, 0] != SPARSE:
            return False
        A_, B_ = self.patterns[i, 0], self.patterns[j, 0]
        pairs = _pair_flops(A_, B_)
        if i == j:
            pairs = (pairs + A_.nnz) // 2        # the lower triangle only
        if pairs > GRAM_PAIR_LIMIT or pairs * gram_entries(k[0], k[i], k[j], gram_form(k[0], k[i], k[j], pairs)) \
                > GRAM_ENTRY_LIMIT:
            return False
        tt = types[i, j]
        if tt == SPARSE:
            target, n_rows = self.patterns[i, j], self.patterns[i, j].nnz
        elif tt == DENSE:
            target, n_rows = ("dense-lower" if i == j else "dense"), self.J[i] * self.J[j]
        else:
            target, n_rows = "diag", self.J[i]
        self.grams[i, j, kk] = GramPlan.build(A_, B_, target, n_rows)
        return True

    def description(self, p: int | None = None) -> "BlockDescription":
        """The table of block types (MixedModels.jl ``BlockDescription``)."""
        T = self.n_terms
        rows = self.widths + ([p + 1] if p is not None else [None])
        types = {}
        for (i, j), t in self.types.items():
            a = self.a_types.get((i, j), t)
            types[i, j] = t if a == t else f"{_short(a)}/{t}"
        return BlockDescription(self.names + ["fixed"], rows, types, T + 1)


def _short(t: str) -> str:
    return "Diag" if t == DIAGONAL else t


@dataclass(frozen=True)
class BlockDescription:
    """Rows and types of the blocks of L; ``str()`` is a lower-triangular table.

    A type ``A/L`` means the block of A has type A and its block of L type L (fill-in), as in
    MixedModels.jl; a single type means both agree.
    """

    names: list[str]
    rows: list
    types: dict
    n_blocks: int

    def __getitem__(self, ij: tuple[int, int]) -> str:
        return self.types[ij]

    def __str__(self) -> str:
        rw = max(6, max(len(str(r)) for r in self.rows) + 2)
        cw = max(14, max(len(n) for n in self.names) + 2, max(len(t) for t in self.types.values()) + 2)
        lines = ["rows:".ljust(rw) + "".join(n.center(cw) for n in self.names)]
        for i in range(self.n_blocks):
            r = "?" if self.rows[i] is None else str(self.rows[i])
            lines.append(f"{r}:".rjust(rw - 1).ljust(rw)
                         + "".join(self.types[i, j].center(cw) for j in range(i + 1)))
        return "\n".join(line.rstrip() for line in lines)

    __repr__ = __str__


def block_description(obj) -> BlockDescription:
    """Block types of a fit's penalized-least-squares factor (MixedModels.jl ``BlockDescription``).

    ``obj`` is a fitted lmer/glmer model, an ``LMMProblem``/``GLMMProblem``, a ``CrossProducts`` or
    a ``BlockedFactor``.
    """
    cp = _cross_products(obj)
    if cp is not None:
        return cp.structure.description(cp.p)
    st = getattr(obj, "structure", None)
    if isinstance(st, BlockStructure):
        return st.description(getattr(obj, "p", None))
    raise TypeError(f"block_description needs a mixed model, its fit or its cross-products, "
                    f"got {type(obj).__name__}")


def _cross_products(obj):
    from .blocked import BlockedFactor, CrossProducts

    if isinstance(obj, CrossProducts):
        return obj
    if isinstance(obj, BlockedFactor):
        return obj.cp
    for attr in ("cross", "problem", "state", "factor"):
        sub = getattr(obj, attr, None)
        if sub is not None and sub is not obj:
            found = _cross_products(sub)
            if found is not None:
                return found
    return None
