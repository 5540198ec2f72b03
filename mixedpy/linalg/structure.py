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

Schur-complement updates into a ``Sparse`` block or a ``Diagonal``/``BlkDiag`` block are fixed-pattern
scatters whose index lists (``plans``) are computed here; so are sparse x sparse' updates into a
``Dense`` block (only its lower triangle when it is a diagonal block) up to
:data:`DENSE_PLAN_LIMIT` block pairs, beyond which scipy's sparse product is used; the other updates
into ``Dense`` blocks are sparse x dense or dense x dense products (BLAS).  Nothing is a sparse x
sparse product turned dense at every evaluation unless the plan would be too large.

Why no general sparse Cholesky for the part that is not block-diagonal: of the PyPI packages,
scikit-sparse (CHOLMOD) has no wheels and needs SuiteSparse from the system; cholespy ships CHOLMOD
but only solves (no access to the factor, so no log-determinant, and no reuse of the symbolic
analysis across values); qdldl has wheels, ``update`` (symbolic reuse) and ``factors()``, but is a
scalar up-looking LDL' without supernodes, slower than LAPACK once the Schur complement fills in,
which it does for crossed factors (InstEval's ``d`` block is about 60% full).  The dense remainder
is what lme4's CHOLMOD supernodes reduce to in those cases too.  A remainder that is both large and
sparse (several big crossed factors with little overlap) is where a sparse factor would still win;
it is not handled specially yet.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

DIAGONAL, BLKDIAG, SPARSE, DENSE = "Diagonal", "BlkDiag", "Sparse", "Dense"

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
    return tuple(None if a is None else (a.astype(np.int32) if a.size == 0 or a.max() < 2 ** 31 - 1 else a)
                 for a in plan)


def _pair_plan_int64(A: BlockPattern, B: BlockPattern, target):
    """Index triples (ia, ib, it) with  L_target[it] -= L_A[ia] L_B[ib]'  summed, for A (i, k), B (j, k).

    Every pair of nonzero blocks sharing a column of block column k contributes.  ``target`` is
    the target's :class:`BlockPattern` (``it`` indexes its blocks), ``"diag"`` for a block-diagonal
    target (``it`` is the level), ``"dense"`` for a dense target (``it`` is the level pair
    r * J_j + c) or ``"dense-lower"`` for a dense diagonal target, of which only the lower
    triangle is needed by the Cholesky factorization."""
    order = np.argsort(B.cols, kind="stable")
    J_k = A.shape[1]
    count = np.bincount(B.cols, minlength=J_k)
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    n_pairs = count[A.cols]
    ia = np.repeat(np.arange(A.nnz), n_pairs)
    first = np.repeat(np.cumsum(n_pairs) - n_pairs, n_pairs)
    ib = order[start[A.cols[ia]] + (np.arange(ia.size) - first)]
    ra, rb = A.rows[ia], B.rows[ib]
    if isinstance(target, BlockPattern):
        return ia, ib, target.locate(ra, rb)
    if target == "diag":
        if np.any(ra != rb):
            raise AssertionError("fill outside a block-diagonal block")
        if ia.size == A.nnz and np.array_equal(ia, ib):
            return None, None, ra      # one block per column (nested): each block with itself
        return ia, ib, ra
    if target == "dense-lower":
        keep = ra >= rb
        ia, ib, ra, rb = ia[keep], ib[keep], ra[keep], rb[keep]
    return ia, ib, ra * B.shape[0] + rb


@dataclass
class BlockStructure:
    """Types, patterns and update plans of L's blocks for terms in lme4's order (the fixed block last).

    ``types[(i, j)]`` for 0 <= j <= i <= T (T = number of terms; index T is the fixed block);
    ``patterns[(i, j)]`` the :class:`BlockPattern` of ``Sparse`` blocks;
    ``a_pos[(i, j)]`` per observation, the position of its contribution to Z_i'Z_j (block index for
    sparse blocks, level-pair index ``r * J_j + c`` for dense ones);
    ``plans[(i, j, k)]`` the scatter triples of the update of a sparse or block-diagonal block (i, j)
    by block column k.
    """

    names: list[str]
    J: list[int]
    k: list[int]
    types: dict = field(default_factory=dict)
    a_types: dict = field(default_factory=dict)
    patterns: dict = field(default_factory=dict)
    a_pos: dict = field(default_factory=dict)
    plans: dict = field(default_factory=dict)

    @property
    def n_terms(self) -> int:
        return len(self.J)

    @property
    def widths(self) -> list[int]:
        return [J * k for J, k in zip(self.J, self.k)]

    @classmethod
    def analyse(cls, blocks, names: list[str] | None = None, dense_limit: int = DENSE_LIMIT,
                sparse_density: float = SPARSE_DENSITY) -> "BlockStructure":
        """Symbolic block factorization from the terms' level codes (``TermBlock`` objects).

        An off-diagonal block is stored ``Sparse`` when it has more than ``dense_limit`` entries and
        fewer than ``sparse_density`` of its level pairs can be nonzero."""
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
                if st.types[j, kk] == SPARSE:
                    pat = st.patterns[j, kk]
                    if st.types[j, j] != DENSE:
                        st.plans[j, j, kk] = _pair_plan(pat, pat, "diag")
                    elif _pair_flops(pat, pat) <= DENSE_PLAN_LIMIT:
                        st.plans[j, j, kk] = _pair_plan(pat, pat, "dense-lower")
                for i in range(j + 1, T):
                    if st.types[i, kk] != SPARSE or st.types[j, kk] != SPARSE:
                        continue
                    A_, B_ = st.patterns[i, kk], st.patterns[j, kk]
                    if st.types[i, j] == SPARSE:
                        st.plans[i, j, kk] = _pair_plan(A_, B_, st.patterns[i, j])
                    elif _pair_flops(A_, B_) <= DENSE_PLAN_LIMIT:
                        st.plans[i, j, kk] = _pair_plan(A_, B_, "dense")
        return st

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
