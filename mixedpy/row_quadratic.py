"""r_i A^{-1} r_i' for many rows r_i = [z_i'Lambda, x_i]: the leverages of ``hatvalues`` and the
unscaled prediction variances of ``predict(se_fit=True)``.

A = L L' is the joint (u, beta) system of the penalized least-squares fit (Bates et al. 2015,
section 3; see :mod:`mixedpy.predict_se`), blocked with the first random-effects term first (its
diagonal block L_11 is block diagonal, one k_1 x k_1 factor per level) and the rest R (the later
terms and beta) after it:

    L = [[L_11, 0], [L_R1, L_RR]],   L_RR L_RR' = S, the Schur complement of A_11.

A row has, in the first term, the k_1 values r_1 at one level j, and in R a few entries: alpha at the
positions P (k_t per later term, then the p fixed effects).  Forward substitution gives
L^{-1} r = [c; L_RR^{-1} (a - L_R1 c)] with c = L_11,j^{-1} r_1, so that

    r A^{-1} r' = ||c||^2 + alpha' S^{-1}[P, P] alpha - 2 alpha' Z[P, j] c + c' Q_j c,
    Z = S^{-1} L_R1,   Q_j = L_R1[:, j]' Z[:, j]

(lme4's ``hatvalues.merMod`` instead solves with the whole factor for every row:
CL = L^{-1} P Lambda'Z', CR = R_X^{-T} (X' - R_ZX' CL), h = colSums(CL^2) + colSums(CR^2)).  With
S^{-1} formed once (dense, (q - q_1 + p) square: 1,144 on InstEval, for 73,421 rows), each row
costs a gather of about (|P| + k_1)^2 numbers instead of a triangular solve through every block.  Z is formed for a range of
the first term's levels at a time and the rows (sorted by their first-term level) are taken a block
at a time, so the memory stays bounded.  When S^{-1} would be too large, the rows go through forward
solves L c = r' on blocks of rows instead (the same value, computed more slowly).

New levels (and terms a prediction leaves out) contribute 0 to r_i.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .newdata import ModelRows

#: elements of a dense work array (right-hand sides, gathers, a slice of Z) per block
BLOCK_ELEMENTS = 4_000_000
#: S^{-1} is formed when it has at most this many elements (4,000 square, 128 MB)
SCHUR_INVERSE_ELEMENTS = 16_000_000


def term_coordinates(fit, rows: ModelRows) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Per chosen term: (its index, the (n, k) u coordinates of the rows' level, the (n, k) values
    z_i'Lambda = M_i T_t); a row on a new level gets the values 0 at the term's first level."""
    T_list = fit.relative_factors()
    offsets = np.concatenate([[0], np.cumsum([t.n_coefs for t in fit.terms])]).astype(np.int64)
    out = []
    for tr in rows.terms:
        k = fit.terms[tr.index].k
        new = tr.codes < 0
        pos = offsets[tr.index] + np.where(new, 0, tr.codes)[:, None] * k + np.arange(k)
        val = tr.matrix @ T_list[tr.index]
        val[new] = 0.0
        out.append((tr.index, pos, val))
    return out


def u_rows(fit, rows: ModelRows) -> sp.csr_matrix:
    """The random-effects part z_i' Lambda of each row in the u coordinates (n x q, sparse)."""
    n = rows.X.shape[0]
    q = int(sum(t.n_coefs for t in fit.terms))
    coords = term_coordinates(fit, rows)
    if not coords:
        return sp.csr_matrix((n, q))
    rr = np.concatenate([np.repeat(np.arange(n), pos.shape[1]) for _, pos, _ in coords])
    cc = np.concatenate([pos.ravel() for _, pos, _ in coords])
    vv = np.concatenate([val.ravel() for _, _, val in coords])
    out = sp.csr_matrix((vv, (rr, cc)), shape=(n, q))
    out.eliminate_zeros()
    return out


def _row_blocks(n: int, per_row: int):
    """Slices of at most BLOCK_ELEMENTS // per_row rows covering range(n)."""
    step = max(1, BLOCK_ELEMENTS // max(per_row, 1))
    return (slice(s, min(n, s + step)) for s in range(0, n, step))


def unscaled_quadratic(fit, rows: ModelRows) -> np.ndarray:
    """r_i A^{-1} r_i' for the rows (module docstring)."""
    factor = fit.state.factor
    coords = term_coordinates(fit, rows)
    X = np.asarray(rows.X, dtype=float)
    if not coords:   # no random effects: x_i' (R_X'R_X)^{-1} x_i
        return np.einsum("ia,ab,ib->i", X, factor.unscaled_vcov(), X)
    cp = factor.cp
    n_rest = cp.q + cp.p - cp.q1
    if n_rest ** 2 <= SCHUR_INVERSE_ELEMENTS:
        return _schur_quadratic(factor, coords, X)
    return _solved_quadratic(factor, u_rows(fit, rows), X)


def _schur_quadratic(factor, coords, X: np.ndarray) -> np.ndarray:
    """||c||^2 + alpha' S^{-1} alpha - 2 alpha' Z c + c' Q c (module docstring)."""
    cp = factor.cp
    q1, n_rest = cp.q1, cp.q + cp.p - cp.q1
    n, p = X.shape
    rest = [(pos - q1, val) for t, pos, val in coords if t != 0]
    P = np.concatenate([pos for pos, _ in rest] + [np.broadcast_to(n_rest - p + np.arange(p), (n, p))], axis=1)
    alpha = np.concatenate([val for _, val in rest] + [X], axis=1)
    W = factor.solve_lower_rest(np.eye(n_rest))
    S_inv = W.T @ W
    m = P.shape[1]
    out = np.empty(n)
    for s in _row_blocks(n, m * m):
        Ps = P[s]
        out[s] = np.einsum("ia,iab,ib->i", alpha[s], S_inv[Ps[:, :, None], Ps[:, None, :]], alpha[s])
    first = next(((pos, val) for t, pos, val in coords if t == 0), None)
    if first is None:   # the prediction leaves the first term out
        return out
    pos1, r1 = first
    k1 = r1.shape[1]
    level = pos1[:, 0] // k1
    c = np.einsum("iab,ib->ia", factor.L1inv[level], r1)
    out += np.einsum("ia,ia->i", c, c)
    LR1t = factor.first_column_below().T.tocsr()     # (q1, n_rest): row j k1 + a is column a of level j
    order = np.argsort(level, kind="stable")
    sorted_level = level[order]
    J1 = q1 // k1
    span = max(1, BLOCK_ELEMENTS // (n_rest * k1))
    ks = np.arange(k1)
    for j0 in range(0, J1, span):   # ranges of first-term levels, to bound the memory of Z
        j1 = min(J1, j0 + span)
        Lt = LR1t[j0 * k1:j1 * k1]
        Zt = np.asarray(Lt @ S_inv)                   # Z[:, levels j0..j1]'
        Q = np.empty((j1 - j0, k1, k1))
        for a in range(k1):
            for b in range(k1):
                Q[:, a, b] = np.asarray(Lt[a::k1].multiply(Zt[b::k1]).sum(axis=1)).ravel()
        lo, hi = np.searchsorted(sorted_level, [j0, j1])
        for s in _row_blocks(hi - lo, m * k1):
            idx = order[lo + s.start:lo + s.stop]
            lv = level[idx] - j0
            G = Zt[(lv * k1)[:, None, None] + ks[None, None, :], P[idx][:, :, None]]   # Z[P, j]
            ci = c[idx]
            out[idx] += (np.einsum("ia,iab,ib->i", ci, Q[lv], ci)
                         - 2.0 * np.einsum("ia,iac,ic->i", alpha[idx], G, ci))
    return out


def _solved_quadratic(factor, Zu: sp.csr_matrix, X: np.ndarray) -> np.ndarray:
    """||L^{-1} r_i'||^2 by forward solves L c = r' on blocks of rows."""
    q1 = factor.cp.q1
    out = np.empty(X.shape[0])
    for s in _row_blocks(X.shape[0], Zu.shape[1] + X.shape[1]):   # blocks of rows bound the solve's memory
        V = np.vstack([Zu[s].T.toarray(), X[s].T])
        c1, c2 = factor.solve_lower(V[:q1], V[q1:])
        out[s] = np.einsum("ij,ij->j", c1, c1) + np.einsum("ij,ij->j", c2, c2)
    return out


__all__ = ["unscaled_quadratic", "u_rows", "term_coordinates"]
