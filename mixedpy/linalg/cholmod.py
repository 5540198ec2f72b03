"""A supernodal sparse Cholesky factor (CHOLMOD, through cvxopt) for a large, sparse diagonal block.

Used for a diagonal block of L whose Schur complement S_jj is large and sparse (InstEval's 1,128
lecturers after the 2,972 students: 20% nonzero, factor 40% of the dense flops after CHOLMOD's
ordering).  CHOLMOD (Chen, Davis, Hager & Rajamanickam 2008) computes P S P' = L L' with a
fill-reducing permutation P and a supernodal L.  The pattern of S_jj depends only on the level codes,
so the symbolic analysis (``cvxopt.cholmod.symbolic``: ordering, elimination tree, supernodes) runs
once per model and every theta costs one ``cvxopt.cholmod.numeric``.

The kernel keeps  L~ = P' L  as the diagonal factor (S = L~ L~', not triangular); every block
algorithm (L_ij = A_ij L~^{-T}, the later Schur complements, the solves) only needs solves with L~
and L~':  L~^{-1} b = L^{-1} (P b)  (cvxopt ``solve`` sys 7 then 4) and  L~^{-T} b = P' (L^{-T} b)
(sys 5 then 8), and  log|S| = 2 sum log diag(L)  from ``cvxopt.cholmod.diag``.

cvxopt (wheels on PyPI for Linux, macOS and Windows, with SuiteSparse bundled) is optional:
without it, or with the environment variable ``MIXEDPY_CHOLMOD=0``, or with
``CrossProducts.CHOLMOD_MIN_ORDER = None``, such blocks stay Dense (LAPACK).
"""
from __future__ import annotations

import os

import numpy as np

try:  # optional dependency (setup.cfg extra ``sparse``)
    import cvxopt
    import cvxopt.cholmod as _cm
except ImportError:  # pragma: no cover - exercised where cvxopt is absent
    cvxopt = _cm = None


def available() -> bool:
    """Whether the CHOLMOD block type may be used: cvxopt importable and not disabled by
    ``MIXEDPY_CHOLMOD=0``."""
    return _cm is not None and os.environ.get("MIXEDPY_CHOLMOD", "1") != "0"


def _options():
    # supernodal LL' (not LDL'), so that diag(F) is diag(L) and sys 4/5 are solves with L, L'
    _cm.options["supernodal"] = 2
    _cm.options["postorder"] = True


class CholmodPattern:
    """The fixed pattern of a symmetric block, its lower triangle in CSR order (``BlockPattern``
    ``rows >= cols``), handed to CHOLMOD as the upper triangle in CSC order (the same order, so the
    values need no permutation), and its symbolic factorization.

    The symbolic factor object is not picklable; it is dropped by pickling and rebuilt at first use.
    """

    def __init__(self, pattern):
        self.pattern = pattern          # structure.BlockPattern of the lower triangle
        self.n = pattern.shape[0]
        self.diag_pos = pattern.locate(np.arange(self.n), np.arange(self.n))
        self._matrix = None
        self._symbolic = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_matrix"] = state["_symbolic"] = None
        return state

    def matrix(self, values: np.ndarray):
        """A cvxopt spmatrix over the pattern (upper triangle, CSC) with ``values``, reused."""
        if self._matrix is None:
            pat = self.pattern
            self._matrix = cvxopt.spmatrix(np.ascontiguousarray(values, dtype=float),
                                           cvxopt.matrix(pat.cols.astype(int)),
                                           cvxopt.matrix(pat.rows.astype(int)), (self.n, self.n))
        else:
            self._matrix.V = cvxopt.matrix(np.ascontiguousarray(values, dtype=float))
        return self._matrix

    def symbolic(self, fresh: bool = False):
        """The symbolic factorization (once; ``fresh``: a new one, whose numeric factor is not shared)."""
        _options()
        if fresh:
            return _cm.symbolic(self.matrix(np.ones(self.pattern.nnz)), uplo="U")
        if self._symbolic is None:
            self._symbolic = _cm.symbolic(self.matrix(np.ones(self.pattern.nnz)), uplo="U")
        return self._symbolic

    def flop_fraction(self) -> float:
        """The factorization's multiply-adds (sum of squared column counts of L) over the dense
        factorization's, from one factorization of a diagonally dominant matrix on the pattern."""
        pat = self.pattern
        vals = np.full(pat.nnz, -1.0 / max(1, self.n))
        vals[self.diag_pos] = 2.0
        F = self.symbolic(fresh=True)
        _cm.numeric(self.matrix(vals), F)
        Lf = _cm.getfactor(F)       # (makes F symbolic again: a throw-away factor)
        counts = np.diff(np.asarray(Lf.CCS[0], dtype=np.int64).ravel()).astype(float)
        dense = np.arange(1, self.n + 1, dtype=float)
        return float(np.dot(counts, counts) / np.dot(dense, dense))

    def factor(self, values: np.ndarray, shared: bool) -> "CholmodFactor":
        """The numeric factor of the block with lower-triangle ``values`` (pattern order).

        ``shared``: reuse the one symbolic factor, overwritten by the next shared call (for the
        objective's ``scratch`` factorizations); else a fresh analysis (well under a millisecond
        per thousand levels), so that the factor stays valid."""
        F = self.symbolic(fresh=not shared)
        try:
            _cm.numeric(self.matrix(values), F)
        except ArithmeticError as exc:
            from .blocked import NotPositiveDefinite
            raise NotPositiveDefinite("downdated cross-product matrix is not positive definite") from exc
        return CholmodFactor(F, self.n, (self, values))


class CholmodFactor:
    """L~ = P' L of a block (S = L~ L~'), with solves, its log-determinant and a dense view.

    ``source`` (pattern, values) lets a pickled factor be refactored on loading (cvxopt's factor
    objects do not pickle)."""

    def __init__(self, F, n: int, source=None):
        self.F, self.n, self.source = F, n, source
        d = np.asarray(_cm.diag(F)).ravel()
        if not np.all(np.isfinite(d)) or not np.all(d > 0):
            from .blocked import NotPositiveDefinite
            raise NotPositiveDefinite("downdated cross-product matrix is not positive definite")
        #: log|S| = 2 log|L|
        self.logdet = 2.0 * float(np.log(d).sum())

    def __reduce__(self):
        pattern, values = self.source
        return _refactor, (pattern, values)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.n)

    def solve(self, b: np.ndarray, trans: bool = False) -> np.ndarray:
        """L~^{-1} b, or L~^{-T} b with ``trans``; b (n,) or (n, r)."""
        b = np.asarray(b, dtype=float)
        if b.size == 0:
            return b.copy()
        B = cvxopt.matrix(np.asfortranarray(b.reshape(self.n, -1)))
        for sys in ((5, 8) if trans else (7, 4)):
            _cm.solve(self.F, B, sys=sys)
        return np.asarray(B).reshape(b.shape)

    def toarray(self) -> np.ndarray:
        """L~ = P' L as a dense array, the inverse of L~^{-1} = L^{-1} P (for tests and
        ``BlockedFactor.dense``: cvxopt's ``getfactor`` would turn the numeric factor symbolic)."""
        return np.linalg.inv(self.solve(np.eye(self.n)))


def _refactor(pattern: CholmodPattern, values: np.ndarray) -> CholmodFactor:
    return pattern.factor(values, shared=False)
