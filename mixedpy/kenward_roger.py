"""Kenward-Roger's adjusted covariance and denominator df for an lmer fit, as pbkrtest computes them.

With V = sum_r gamma_r G_r, the gammas being the elements of each term's covariance (lower
triangle) and sigma^2 (G = I for it), pbkrtest's ``vcovAdj`` (Kenward & Roger 1997; Halekoh &
Hojsgaard 2014, J. Stat. Softw. 59(9)) forms

    P_r = -X'V^{-1}G_rV^{-1}X,   Q_rs = X'V^{-1}G_rV^{-1}G_sV^{-1}X,   K_rs = tr(V^{-1}G_rV^{-1}G_s),
    I_rs = K_rs - 2 tr(Phi Q_rs) + tr(Phi P_r Phi P_s),   W = 2 I^{-1},
    Phi_A = Phi + 2 Phi [sum_rs W_rs (Q_rs - P_r Phi P_s)] Phi,

Phi = vcov(beta); ``Lb_ddf`` and ``.KR_adjust`` give the df and the F scaling of a hypothesis L.

Nothing here is n x n.  With G_r = Z E_r Z' (E_r = I_J (x) the unit matrix of the covariance
element, in term i's block) and, by Woodbury,

    V^{-1} = sigma^{-2} N,   N = I - Z M Z',   M = Lambda (Lambda'Z'Z Lambda + I)^{-1} Lambda',

every quantity above comes from q x q and q x p products (q = number of random effects).  With
K = Lambda'Z'Z Lambda + I = LL', H = L^{-1} Lambda'Z'Z and J = L^{-T} H (so M Z'Z = Lambda J):

    Z'NZ = Z'Z - H'H,   Z'NX = Z'X - H'h,  h = L^{-1} Lambda'Z'X,   X'NX = X'X - h'h,
    Z'N^2X = Z'NX - Z'NZ M Z'X,   X'N^2X = X'NX - (Z'NX)' M Z'X,   X'N^3X = X'N^2X - (Z'NX)' M Z'NX,
    Z'N^2Z = Z'Z - H'H - J'J (diagonal blocks only),   tr(N^2) = n - 2 tr(MZ'Z) + tr((MZ'Z)^2).

L is partitioned as the blocked factor is: the first term's block of K is block diagonal, so L_11
is a batch of k_1 x k_1 factors and H's first block row keeps the sparsity of Z_1'Z; only the
remaining q_2 = q - q_1 rows are dense.  The cost is O(q^2 q_2) with q x q storage: InstEval
(q = 4,128, q_2 = 1,156) takes a few seconds; the traces need every entry of Z'V^{-1}Z, so q x q
memory is the limit (about 8 q^2 bytes per array, a handful of arrays).
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from .errors import MixedpyError
from .getme import lambda_matrix, z_matrix
from .threads import block_threads


@dataclass(frozen=True)
class KRAdjusted:
    """pbkrtest's ``vcovAdj``: the adjusted covariance with its attributes P and W."""

    vcov_adj: np.ndarray     # Phi_A
    vcov: np.ndarray         # Phi
    P: np.ndarray            # (g, p, p)
    W: np.ndarray            # (g, g)

    def _A12(self, L: np.ndarray) -> tuple[float, float]:
        Phi = self.vcov
        Theta = L.T @ np.linalg.solve(L @ Phi @ L.T, L)
        u = np.einsum("ab,rbc,cd->rad", Theta @ Phi, self.P, Phi)
        tr = np.einsum("raa->r", u)
        A1 = float(tr @ self.W @ tr)
        A2 = float(np.einsum("rs,rab,sba->", self.W, u, u))
        return A1, A2

    def ddf(self, L: np.ndarray, q: int | None = None) -> tuple[float, float]:
        """(denominator df, F scaling) of the hypothesis L beta = 0 (pbkrtest ``Lb_ddf`` /
        ``.KR_adjust``; q is nrow(L) there and rank(L) here, equal for a full-rank L)."""
        L = np.atleast_2d(np.asarray(L, dtype=float))
        q = L.shape[0] if q is None else q
        A1, A2 = self._A12(L)
        B = (A1 + 6 * A2) / (2 * q)
        g = ((q + 1) * A1 - (q + 4) * A2) / ((q + 2) * A2)
        den = 3 * q + 2 * (1 - g)
        c1, c2, c3 = g / den, (q - g) / den, (q + 2 - g) / den
        V0 = 1 + c1 * B
        V1 = 1 - c2 * B
        V2 = 1 - c3 * B
        V0 = 0.0 if abs(V0) < 1e-10 else V0
        x = 1 - A2 / q
        ratio = 1.0 if abs(x) < 1e-14 and abs(V1) < 1e-14 else x / V1
        rho = ratio ** 2 * V0 / V2 / q
        df2 = 4 + (q + 2) / (q * rho - 1)
        scaling = 1.0 if abs(df2 - 2) < 1e-2 else df2 * x / (df2 - 2)
        return float(df2), float(scaling)


_cache: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def kr_adjusted(fit) -> KRAdjusted:
    """pbkrtest's ``vcovAdj(fit)`` (computed once per fit); REML fits without weights only."""
    hit = _cache.get(fit)
    if hit is None:
        if not getattr(fit, "reml", False):
            raise MixedpyError("Kenward-Roger's method is only available for REML model fits "
                               "(lmerTest); refit with REML=True")
        if fit.design.weights is not None:
            raise MixedpyError("Kenward-Roger's method is not available for a weighted lmer fit "
                               "(pbkrtest takes the residual covariance as sigma^2 I)")
        nonlinear = [f"{t.covstruct.name}({t.expr} | {t.group_name})" for t in fit.terms
                     if t.covstruct.linear_basis() is None]
        if nonlinear:
            raise MixedpyError(f"Kenward-Roger's method needs a covariance linear in its parameters (pbkrtest's "
                               f"Sigma = sum_r phi_r G_r); {', '.join(nonlinear)} is not: use Satterthwaite's "
                               "df (ddf='Satterthwaite') or a us(), diag() or homcs() term")
        hit = _cache[fit] = _compute(fit)
    return hit


class _PartitionedCholesky:
    """K = LL' for K = Lambda'Z'Z Lambda + I, whose first diagonal block (the first term's, J_1
    blocks of k_1 x k_1) is block diagonal: L_11 is a batch of small factors, L_21 = K_21 L_11^{-T}
    and L_22 = chol(K_22 - L_21 L_21') is the only dense factor (the rest of the random effects),
    as the blocked factor of :mod:`mixedpy.linalg.blocked` is arranged."""

    def __init__(self, K: np.ndarray, J1: int, k1: int):
        q1 = J1 * k1
        self.q1 = q1
        lev = np.arange(J1)
        K11 = K[:q1, :q1].reshape(J1, k1, J1, k1)[lev, :, lev, :]
        L11i = np.linalg.inv(np.linalg.cholesky(K11))
        self.D = sp.bsr_matrix((L11i, lev, np.arange(J1 + 1)), shape=(q1, q1)).tocsr()   # L_11^{-1}
        q2 = K.shape[0] - q1
        self.L21 = np.einsum("rla,lba->rlb", K[q1:, :q1].reshape(q2, J1, k1), L11i).reshape(q2, q1)
        self.L22 = sla.cholesky(K[q1:, q1:] - self.L21 @ self.L21.T, lower=True, check_finite=False)

    def _tri(self, B, trans=False):
        if self.L22.shape[0] == 0:
            return B
        return sla.solve_triangular(self.L22, B, lower=True, trans="T" if trans else "N", check_finite=False)

    def solve(self, B):
        """(L^{-1}B_1, L^{-1}B_2 rows): the first block as the type of B (sparse stays sparse)."""
        Y1 = self.D @ B[:self.q1]
        B2 = B[self.q1:]
        B2 = B2.toarray() if sp.issparse(B2) else np.asarray(B2)
        return Y1, self._tri(B2 - np.asarray(self.L21 @ Y1) if self.L21.size else B2)

    def solve_t(self, Y1, Y2):
        """L^{-T} [Y1; Y2], dense."""
        X2 = self._tri(Y2, trans=True)
        R1 = Y1.toarray() if sp.issparse(Y1) else np.asarray(Y1)
        return np.vstack([np.asarray(self.D.T @ (R1 - self.L21.T @ X2)), X2])

    def dense_solve(self, B):
        Y1, Y2 = self.solve(B)
        return np.vstack([np.asarray(Y1), Y2])


def _diag_block_sums(A, J: int, k: int) -> np.ndarray:
    """The (J, k, k) diagonal blocks of A'A for A with J k columns (sparse or dense)."""
    if sp.issparse(A):
        A = A.tocsc()
        out = np.empty((J, k, k))
        for a in range(k):
            for b in range(a, k):
                out[:, a, b] = out[:, b, a] = np.asarray(A[:, a::k].multiply(A[:, b::k]).sum(axis=0)).ravel()
        return out
    A3 = np.asarray(A).reshape(A.shape[0], J, k)
    return np.einsum("xla,xlb->lab", A3, A3)


def _compute(fit) -> KRAdjusted:
    terms = fit.terms
    X = np.asarray(fit.design.X, dtype=float)
    n, p = X.shape
    Z = z_matrix(fit)
    q = Z.shape[1]
    s2 = float(fit.sigma) ** 2
    with block_threads(q):
        Ss = (Z.T @ Z).tocsr()                                    # Z'Z, sparse
        ZtX = np.asarray(Z.T @ X)
        Lam = lambda_matrix(fit).tocsr()
        G = (Lam.T @ Ss).tocsr()                                  # Lambda'Z'Z
        K = (G @ Lam).toarray()                                   # Lambda'Z'Z Lambda + I = LL'
        K[np.diag_indices(q)] += 1.0
        fac = _PartitionedCholesky(K, terms[0].n_levels, terms[0].k)
        del K
        H1, H2 = fac.solve(G)                                     # H = L^{-1} Lambda'Z'Z
        if sp.issparse(H1) and H1.nnz > 0.2 * H1.shape[0] * H1.shape[1]:
            H1 = H1.toarray()
        # Z'NZ = Z'Z - Z'Z M Z'Z = Z'Z - H'H
        ZNZ = H2.T @ H2
        ZNZ *= -1.0
        ZNZ += (Ss - H1.T @ H1).toarray() if sp.issparse(H1) else Ss.toarray() - H1.T @ H1
        hx = fac.dense_solve(np.asarray(Lam.T @ ZtX))
        H = (H1, H2)
        ZNX = ZtX - np.asarray(H1.T @ hx[:fac.q1]) - H2.T @ hx[fac.q1:]   # Z'NX
        XNX = X.T @ X - hx.T @ hx
        MZX = np.asarray(Lam @ fac.solve_t(hx[:fac.q1], hx[fac.q1:]))   # M Z'X
        ZN2X = ZNX - ZNZ @ MZX                                    # Z'N^2X
        XN2X = XNX - ZNX.T @ MZX
        y1, y2 = fac.solve(np.asarray(Lam.T @ ZNX))
        XN3X = XN2X - ZNX.T @ np.asarray(Lam @ fac.solve_t(y1, y2))
        J = fac.solve_t(*H)                                       # L^{-T} L^{-1} Lambda'Z'Z
        LJ = np.asarray(Lam @ J)                                  # M Z'Z
        trN2 = n - 2 * np.trace(LJ) + np.sum(LJ * LJ.T)
        # Z'N^2Z = Z'Z - 2 Z'ZMZ'Z + Z'ZMZ'ZMZ'Z = Z'Z - H'H - J'J (only its diagonal blocks are needed)
        offsets = np.cumsum([0] + [t.n_coefs for t in terms])
        zn2z_diag = []
        for i, t in enumerate(terms):
            sl = slice(offsets[i], offsets[i + 1])
            J_, k_ = t.n_levels, t.k
            diagS = _diag_block_sums(Z[:, sl], J_, k_)
            HtH = _diag_block_sums(H1[:, sl], J_, k_) + _diag_block_sums(H2[:, sl], J_, k_)
            zn2z_diag.append(diagS - HtH - _diag_block_sums(J[:, sl], J_, k_))
        del H, H1, H2, J, LJ
    C, Bm = ZNZ / s2, ZNX / s2                                    # Z'V^{-1}Z, Z'V^{-1}X
    D2zx, D2xx, D3xx = ZN2X / s2 ** 2, XN2X / s2 ** 2, XN3X / s2 ** 3

    # the random-effects parameters: (term, offset, J, k, E) with E the symmetric unit matrix
    params = []
    for i, t in enumerate(terms):
        for E in t.covstruct.linear_basis():
            params.append((i, slice(offsets[i], offsets[i + 1]), t.n_levels, t.k, E))
    g = len(params) + 1

    def E_times(par, Y):        # rows of E_r Y in the term's block (J k x m)
        _, sl, J, k, E = par
        return np.einsum("ab,lbm->lam", E, Y[sl].reshape(J, k, -1)).reshape(J * k, -1)

    F = [E_times(par, Bm) for par in params]                 # E_r Z'V^{-1}X, block rows only
    Pm = np.empty((g, p, p))
    Q = np.empty((g, g, p, p))
    Kt = np.empty((g, g))
    for r, par in enumerate(params):
        sl_r = par[1]
        Pm[r] = -Bm[sl_r].T @ F[r]
        for s in range(r, len(params)):
            sl_s = params[s][1]
            Q[r, s] = F[r].T @ C[sl_r, sl_s] @ F[s]
            Q[s, r] = Q[r, s].T
            Kt[r, s] = Kt[s, r] = _trace_ECEC(par, params[s], C)
        Q[r, g - 1] = F[r].T @ D2zx[sl_r]
        Q[g - 1, r] = Q[r, g - 1].T
        Kt[r, g - 1] = Kt[g - 1, r] = np.einsum("ab,lba->", par[4], zn2z_diag[par[0]]) / s2 ** 2
    Pm[g - 1] = -D2xx
    Q[g - 1, g - 1] = D3xx
    Kt[g - 1, g - 1] = trN2 / s2 ** 2

    Phi = np.asarray(fit.vcov_array, dtype=float)
    PhiP = np.einsum("ab,rbc->rac", Phi, Pm)
    IE2 = Kt - 2 * np.einsum("ab,rsab->rs", Phi, Q) + np.einsum("rab,sba->rs", PhiP, PhiP)
    eig = np.linalg.eigvalsh((IE2 + IE2.T) / 2)
    W = 2 * (np.linalg.inv(IE2) if np.min(np.abs(eig)) > 1e-10 else np.linalg.pinv(IE2))
    W = (W + W.T) / 2
    UU = np.einsum("rs,rsab->ab", W, Q) - np.einsum("rs,rab,sbc->ac", W, Pm @ Phi, Pm)
    PhiA = Phi + 2 * Phi @ UU @ Phi
    return KRAdjusted(vcov_adj=PhiA, vcov=Phi, P=Pm, W=W)


def _trace_ECEC(par_r, par_s, C: np.ndarray) -> float:
    """tr(E_r C E_s C) for C symmetric, from the (term_r, term_s) block of C."""
    _, sl_r, Jr, kr, Er = par_r
    _, sl_s, Js, ks, Es = par_s
    C4 = C[sl_r, sl_s].reshape(Jr, kr, Js, ks)
    Wt = np.einsum("lbmc,lamd->bcad", C4, C4)
    return float(np.einsum("ab,cd,bcad->", Er, Es, Wt))
