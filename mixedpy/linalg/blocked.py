"""Blocked Cholesky factor of lme4's penalized least-squares system.

For a given theta, the profiled deviance needs the Cholesky factor of

        [ Lambda'Z'WZ Lambda + I   Lambda'Z'WX   Lambda'Z'Wy ]
    A = [ X'WZ Lambda              X'WX          X'Wy        ]
        [ y'WZ Lambda              y'WX          y'Wy        ]

(Bates et al. 2015, eqs. 16-18; Bates, MixedModels.jl ``updateL!``).  Its last row
holds everything lme4 profiles out: the diagonal entries give log|L|^2 (``ldL2``),
log|R_X|^2 (``ldRX2``) and sqrt(pwrss); back-substitution gives beta-hat and u-hat.

Columns are ordered ``[u_1 | u_2..u_T | beta | y]``.  The first term (the one with the
most levels, lme4's order) has a block-diagonal ``Z_1'WZ_1``, so its factor is a batch
of J_1 small k_1 x k_1 Cholesky factors.  Everything after it ("the rest", m columns)
is factored densely after a sparse or dense Schur complement.  Cross-products are formed
once per set of weights; each theta costs only scaling, one batched small Cholesky,
one sparse product and one dense m x m Cholesky.  No Python loop runs over groups
or observations.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from ..threads import block_threads
from .response import ResponseScaling


class NotPositiveDefinite(np.linalg.LinAlgError):
    """The downdated cross-product matrix is not positive definite (lme4: 'Downdated VtV')."""


@dataclass(frozen=True)
class TermBlock:
    """A random-effects term as the kernel sees it: codes (n,), model matrix (n, k), J levels."""

    codes: np.ndarray
    model_matrix: np.ndarray
    n_levels: int

    @property
    def k(self) -> int:
        return self.model_matrix.shape[1]

    @property
    def width(self) -> int:
        return self.k * self.n_levels

    def z_matrix(self, sqrt_w: np.ndarray | None) -> sp.csc_matrix:
        n, k = self.model_matrix.shape
        vals = self.model_matrix if sqrt_w is None else self.model_matrix * sqrt_w[:, None]
        cols = (self.codes[:, None] * k + np.arange(k)[None, :]).ravel()
        rows = np.repeat(np.arange(n), k)
        return sp.csc_matrix((vals.ravel(), (rows, cols)), shape=(n, self.width))


def _lower_inverse_batch(L: np.ndarray) -> np.ndarray:
    """Inverses of a batch of small lower-triangular matrices (J, k, k)."""
    if L.shape[1] == 1:
        return 1.0 / L
    return np.linalg.inv(L)


class CrossProducts:
    """Weighted cross-products of ``[Z_1 | Z_rest | X | y]``, formed once.

    Parameters
    ----------
    blocks : list of TermBlock, first the term with the most levels
    X : (n, p) fixed-effects matrix (p may be 0)
    y : (n,) response, offset already subtracted
    sqrt_w : (n,) square roots of the weights, or None
    stabilize : replace y by its scaled weighted-OLS residual y_tilde = (y - X c) / s before forming
        the cross-products (:mod:`mixedpy.linalg.response`), so that a large mean or an extreme
        scale of y costs no digits.  The factor's ``pwrss`` and ``coefficients()`` are then mapped
        back to y; ``C``, ``B`` and ``L22``'s last row hold y_tilde's products, and ``response``
        says how to map them.  Without it ``response`` is the identity.
    """

    #: use a sparse B = [Z_rest|X|y]'WZ_1 when it is bigger than this and sparse enough
    DENSE_LIMIT = 400_000
    SPARSE_DENSITY = 0.25

    def __init__(self, blocks: list[TermBlock], X: np.ndarray, y: np.ndarray, sqrt_w: np.ndarray | None = None,
                 stabilize: bool = False):
        self.blocks = blocks
        self.p = X.shape[1]
        if stabilize:
            self.response, y = ResponseScaling.of(X, y, sqrt_w)
        else:
            self.response = ResponseScaling.identity(self.p)
        first, rest = blocks[0], blocks[1:]
        self.J1, self.k1 = first.n_levels, first.k
        self.q1 = first.width
        self.rest_offsets = np.cumsum([0] + [b.width for b in rest])
        self.q_rest = int(self.rest_offsets[-1])
        self.q = self.q1 + self.q_rest
        self.m = self.q_rest + self.p + 1

        Xy = np.column_stack([X, y]) if X.size else y[:, None].astype(float)
        if sqrt_w is not None:
            Xy = Xy * sqrt_w[:, None]
        M1 = first.model_matrix if sqrt_w is None else first.model_matrix * sqrt_w[:, None]
        # D_j = sum_{r in level j} M1[r]' M1[r]   (J1, k1, k1)
        D = np.empty((self.J1, self.k1, self.k1))
        for a in range(self.k1):
            for b in range(a, self.k1):
                D[:, a, b] = D[:, b, a] = np.bincount(first.codes, weights=M1[:, a] * M1[:, b],
                                                      minlength=self.J1)
        self.D1 = D

        Z1 = first.z_matrix(sqrt_w)
        if rest:
            Zr = sp.hstack([b.z_matrix(sqrt_w) for b in rest], format="csc")
            B_top = (Zr.T @ Z1).tocsr()
            ZrXy = np.asarray((Zr.T @ Xy))
            C_rr = (Zr.T @ Zr).toarray()
        else:
            B_top = sp.csr_matrix((0, self.q1))
            ZrXy = np.zeros((0, Xy.shape[1]))
            C_rr = np.zeros((0, 0))
        B_bottom = np.asarray((Z1.T @ Xy)).T  # (p+1, q1)
        nnz = B_top.nnz + B_bottom.size
        self.sparse = self.m * self.q1 > self.DENSE_LIMIT and nnz < self.SPARSE_DENSITY * self.m * self.q1
        if self.sparse:
            self.B = sp.vstack([B_top, sp.csr_matrix(B_bottom)], format="csr")
            self.B.sort_indices()
            self._B_rows = np.repeat(np.arange(self.m), np.diff(self.B.indptr))
        else:
            self.B = np.vstack([B_top.toarray(), B_bottom])
        C = np.empty((self.m, self.m))
        r = self.q_rest
        C[:r, :r] = C_rr
        C[:r, r:] = ZrXy
        C[r:, :r] = ZrXy.T
        C[r:, r:] = Xy.T @ Xy
        self.C = C
        self._rest_k = [b.k for b in rest]
        self._rest_J = [b.n_levels for b in rest]

    # ----------------------------------------------------------------------------------
    def _lambda_rest_t(self, T_rest: list[np.ndarray]) -> sp.csr_matrix:
        """S = blockdiag(I_J (x) T_i') over the rest terms, identity on [X | y]."""
        rows, cols, vals = [], [], []
        for off, J, T in zip(self.rest_offsets[:-1], self._rest_J, T_rest):
            k = T.shape[0]
            a, b = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
            nz = T.T[a, b] != 0
            a, b = a[nz], b[nz]
            base = off + np.arange(J)[:, None] * k
            rows.append((base + a[None, :]).ravel())
            cols.append((base + b[None, :]).ravel())
            vals.append(np.tile(T.T[a, b], J))
        tail = np.arange(self.q_rest, self.m)
        rows.append(tail)
        cols.append(tail)
        vals.append(np.ones(tail.size))
        return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                             shape=(self.m, self.m))

    def _rest_scale(self, T_rest: list[np.ndarray]) -> np.ndarray | None:
        """Diagonal of Lambda_rest' when every rest term is scalar (then S is diagonal), else None."""
        if any(T.shape[0] != 1 for T in T_rest):
            return None
        s = np.ones(self.m)
        for off, J, T in zip(self.rest_offsets[:-1], self._rest_J, T_rest):
            s[off:off + J] = T[0, 0]
        return s

    def _scaled_B(self, T_rest: list[np.ndarray], R: np.ndarray):
        """L21 = Lambda_rest' B blockdiag(R_j), R_j = T1 L1_j^{-T}."""
        diag = self._rest_scale(T_rest) if self.q_rest else np.ones(self.m)
        if self.sparse:
            if diag is not None:
                Bs = self.B.copy()
                Bs.data = Bs.data * diag[self._B_rows]
            else:
                Bs = self._lambda_rest_t(T_rest) @ self.B
            if self.k1 == 1:
                Bs.data = Bs.data * R[:, 0, 0][Bs.indices]
                return Bs
            Rb = sp.bsr_matrix((R, np.arange(self.J1), np.arange(self.J1 + 1)), shape=(self.q1, self.q1))
            return (Bs @ Rb).tocsr()
        Bs = self.B * diag[:, None] if diag is not None else np.asarray(self._lambda_rest_t(T_rest) @ self.B)
        if self.k1 == 1:
            return Bs * R[:, 0, 0][None, :]
        return np.einsum("mjk,jkl->mjl", Bs.reshape(self.m, self.J1, self.k1), R).reshape(self.m, self.q1)

    def _scaled_C(self, T_rest: list[np.ndarray]) -> np.ndarray:
        """Lambda_rest' C Lambda_rest."""
        if not self.q_rest:
            return self.C.copy()
        diag = self._rest_scale(T_rest)
        if diag is not None:
            return self.C * np.outer(diag, diag)
        S = self._lambda_rest_t(T_rest)
        return np.asarray(S @ np.asarray(S @ self.C).T).T

    def factor(self, T_list: list[np.ndarray]) -> "BlockedFactor":
        """Cholesky factor of the augmented system for relative factors ``T_list`` (one per term)."""
        T1 = T_list[0]
        # L1_j L1_j' = T1' D_j T1 + I
        A1 = np.einsum("ba,jbc,cd->jad", T1, self.D1, T1)
        A1[:, np.arange(self.k1), np.arange(self.k1)] += 1.0
        try:
            L1 = np.linalg.cholesky(A1)
        except np.linalg.LinAlgError as exc:
            raise NotPositiveDefinite("first random-effects block is not positive definite") from exc
        L1inv = _lower_inverse_batch(L1)
        R = np.einsum("ab,jcb->jac", T1, L1inv)  # T1 L1_j^{-T}

        L21 = self._scaled_B(T_list[1:], R)
        # the dense m x m work (Schur complement and factor) is the only place where more than one
        # BLAS thread can pay off, and only for a large m (mixedpy.threads)
        with block_threads(self.m):
            schur = (L21 @ L21.T).toarray() if self.sparse else L21 @ L21.T
            G = self._scaled_C(T_list[1:]) - schur
            idx = np.arange(self.q_rest)
            G[idx, idx] += 1.0
            try:
                L22 = sla.cholesky(G, lower=True, check_finite=False)
            except np.linalg.LinAlgError as exc:
                raise NotPositiveDefinite("downdated cross-product matrix is not positive definite") from exc
        return BlockedFactor(self, T_list, L1, L1inv, L21, L22)


class BlockedFactor:
    """L for one theta; gives the profiled pieces and solves with L and L'."""

    def __init__(self, cp: CrossProducts, T_list, L1, L1inv, L21, L22):
        self.cp, self.T_list = cp, T_list
        self.L1, self.L1inv, self.L21, self.L22 = L1, L1inv, L21, L22
        r, p = cp.q_rest, cp.p
        d1 = np.diagonal(L1, axis1=1, axis2=2)
        d2 = np.diag(L22)
        self.ldL2 = 2.0 * (np.log(d1).sum() + np.log(d2[:r]).sum())
        self.ldRX2 = 2.0 * np.log(np.abs(d2[r:r + p])).sum()
        #: pwrss of the response the cross-products were formed from (y_tilde when stabilized)
        self.pwrss_tilde = float(d2[-1] ** 2)
        self.pwrss = cp.response.pwrss(self.pwrss_tilde)

    # ----- solves with the (u, beta) part of L, i.e. A without the y row and column --------
    def _L21_dense(self, rows: slice) -> np.ndarray:
        block = self.L21[rows]
        return block.toarray() if sp.issparse(block) else block

    def solve_upper(self, z1: np.ndarray, z2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Solve L' x = z for x = (x1, x2): x1 over u_1 (q1, ...), x2 over (u_rest, beta)."""
        cp = self.cp
        mm = cp.m - 1
        x2 = sla.solve_triangular(self.L22[:mm, :mm], z2, lower=True, trans="T", check_finite=False)
        L21 = self.L21[:mm]
        rhs = z1 - (L21.T @ x2)
        rhs = np.asarray(rhs).reshape((cp.J1, cp.k1) + z1.shape[1:])
        x1 = np.einsum("jba,jb...->ja...", self.L1inv, rhs)  # L1_j^{-T} rhs_j
        return x1.reshape(z1.shape), x2

    def solve_lower(self, v1: np.ndarray, v2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Solve L c = v, the forward half of the joint solve."""
        cp = self.cp
        mm = cp.m - 1
        v1b = v1.reshape((cp.J1, cp.k1) + v1.shape[1:])
        c1 = np.einsum("jab,jb...->ja...", self.L1inv, v1b).reshape(v1.shape)
        c2 = sla.solve_triangular(self.L22[:mm, :mm], v2 - self.L21[:mm] @ c1, lower=True, check_finite=False)
        return c1, c2

    def coefficients(self) -> tuple[np.ndarray, np.ndarray]:
        """(u-hat of length q, beta-hat of length p) of y: back-substitution with the last row of L,
        mapped back from y_tilde when the cross-products were stabilized."""
        cp = self.cp
        c1 = self._L21_dense(slice(cp.m - 1, cp.m)).ravel()
        c2 = self.L22[-1, :-1]
        x1, x2 = self.solve_upper(c1, c2)
        u = np.concatenate([x1, x2[:cp.q_rest]])
        return cp.response.u(u), cp.response.beta(x2[cp.q_rest:])

    def rx(self) -> np.ndarray:
        """R_X (p x p upper triangular) with R_X'R_X = X'WX - R_ZX'R_ZX."""
        r, p = self.cp.q_rest, self.cp.p
        return self.L22[r:r + p, r:r + p].T.copy()

    def unscaled_vcov(self) -> np.ndarray:
        """(R_X'R_X)^{-1}."""
        p = self.cp.p
        if p == 0:
            return np.zeros((0, 0))
        Rinv = sla.solve_triangular(self.rx(), np.eye(p), lower=False, check_finite=False)
        return Rinv @ Rinv.T

    def u_precision_inverse_blocks(self) -> list[np.ndarray]:
        """Diagonal blocks of (Lambda'Z'WZ Lambda + I)^{-1}, one (J_i, k_i, k_i) array per term.

        With L_uu = [[L1, 0], [L21r, L22r]],  L_uu^{-1} = [[L1^{-1}, 0], [-L22r^{-1} L21r L1^{-1}, L22r^{-1}]]
        and (L L')^{-1} = L^{-T} L^{-1}, so each block is a sum of column cross-products of L_uu^{-1}.
        """
        cp = self.cp
        r = cp.q_rest
        first = np.einsum("jak,jal->jkl", self.L1inv, self.L1inv)
        out = [first]
        if r == 0:
            return out
        L21r = self._L21_dense(slice(0, r))
        Y = np.einsum("mjk,jkl->mjl", L21r.reshape(r, cp.J1, cp.k1), self.L1inv).reshape(r, cp.q1)
        L22r = self.L22[:r, :r]
        W = sla.solve_triangular(L22r, Y, lower=True, check_finite=False)
        W3 = W.reshape(r, cp.J1, cp.k1)
        out[0] = first + np.einsum("mjk,mjl->jkl", W3, W3)
        Linv = sla.solve_triangular(L22r, np.eye(r), lower=True, check_finite=False)
        for off, J, k in zip(cp.rest_offsets[:-1], cp._rest_J, cp._rest_k):
            blk = Linv[:, off:off + J * k].reshape(r, J, k)
            out.append(np.einsum("mjk,mjl->jkl", blk, blk))
        return out
