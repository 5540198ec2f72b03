"""Log posterior of a Gaussian LMM with the random effects (and Gaussian-prior coefficients)
integrated out, evaluated with lme4's blocked PLS factor; exact conditional draws of the rest.

Model (rstanarm ``stan_lmer``): y ~ N(X beta + Z b, sigma^2 W^{-1}) with the likelihood weighted
by w as rstanarm does, b_i ~ N(0, Sigma_i) per level, Sigma_i ~ decov with sigma inside.
For given (sigma, Sigma) lme4's relative factor is T_i = chol(Sigma_i) / sigma (Bates et al. 2015
section 2.2).  One :class:`~mixedpy.linalg.blocked.CrossProducts` of [Z | X | y] is formed once;
each evaluation factors [[Lambda'Z'WZ Lambda + I, .], [., .]] and keeps

    ldL2 = log |Lambda'Z'WZ Lambda + I|,   G = Schur complement of the u block in [X | y]'W[X | y],

so that, with u integrated out (ALGORITHMS.md 1.1, 7.5),

    log p(y | beta, sigma, Sigma) = -1/2 [ldL2 + sum(w) log(2 pi sigma^2)
                                          + (G_yy - 2 beta'G_xy + beta'G_xx beta) / sigma^2].

With independent normal (or flat) priors beta_j ~ N(m_j, 1/p_j), beta integrates out too:
P = G_xx / sigma^2 + diag(p), h = G_xy / sigma^2 + p m, and

    log p(y | sigma, Sigma) = -1/2 [ldL2 + sum(w) log(2 pi sigma^2)] - 1/2 log|P|
        - 1/2 (G_yy / sigma^2 + sum p m^2 - h'P^{-1}h) + 1/2 sum_{p_j > 0} log(p_j),

so emcee explores only (log sigma, covariance parameters).  Given each kept draw,
beta | sigma, Sigma, y ~ N(P^{-1}h, P^{-1}) and u | beta, sigma, Sigma, y ~
N(A^{-1} Lambda'Z'W(y - X beta), sigma^2 A^{-1}) with A = L L' from the same factor, b = Lambda u.
All of this is exact; the only Monte-Carlo error is emcee's.

Precision: the cross-products are formed from y_tilde = (y - X_c c) / s, the weighted OLS residual
scaled by its RMS s (:mod:`mixedpy.linalg.response`), because G_yy of a response with a
large mean or extreme scale is a cancelling downdate.  Writing beta = c + s beta_tilde and
sigma = s sigma_tilde, every quadratic form above is s^2 times the same form in the tilde
quantities, and a normal prior N(m, 1/p) on beta_j is N((m_j - c_j) / s, 1/(p_j s^2)) on
beta_tilde_j.  The marginal is evaluated in those coordinates and the Jacobian
(p - #normal priors - sum(w)) log s is added back, so log_prob keeps its value; emcee's
parameters (log sigma, the covariance parameters, beta) are unchanged.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..linalg.blocked import CrossProducts, NotPositiveDefinite, TermBlock
from ..linalg.response import ResponseScaling
from .model import Centering, coefficient_logprior, coefficient_prior_arrays, covariance_terms
from .priors import ResolvedPriors

_LOG2PI = np.log(2 * np.pi)


def _chol_logdet_solve(P: np.ndarray, h: np.ndarray):
    """Batched Cholesky of P (W, p, p): returns L, log|P|, P^{-1} h."""
    L = np.linalg.cholesky(P)
    logdet = 2.0 * np.log(np.diagonal(L, axis1=1, axis2=2)).sum(axis=1)
    m = np.linalg.solve(P, h[..., None])[..., 0]
    return L, logdet, m


class LMMPosterior:
    """The posterior of (sigma, Sigma_i[, beta]) of a Gaussian LMM, vectorised over walkers.

    Parameters
    ----------
    design : ModelDesign of the formula
    priors : resolved priors
    """

    family = "gaussian"

    def __init__(self, design, priors: ResolvedPriors):
        self.design, self.priors = design, priors
        self.terms = design.terms
        self.names = design.fixef_names
        X = np.asarray(design.X, dtype=float)
        self.centering = Centering.of(X, self.names)
        self.Xc = self.centering.center(X)
        self.n, self.p = X.shape
        self.y = np.asarray(design.y, dtype=float) - design.offset
        w = design.weights
        self.w = np.ones(self.n) if w is None else np.asarray(w, dtype=float)
        self.sum_w = float(self.w.sum())
        sqrt_w = None if w is None else np.sqrt(self.w)
        blocks = [TermBlock(t.codes, t.model_matrix, t.n_levels) for t in self.terms]
        # y = Xc c + s y_tilde: the kernel only ever sees the well-scaled y_tilde (module docstring)
        self.response, self.y_tilde = ResponseScaling.of(self.Xc, self.y, sqrt_w)
        self.cp = CrossProducts(blocks, self.Xc, self.y_tilde, sqrt_w)
        self.cov_terms = covariance_terms(self.terms, priors)
        self.integrate_beta = priors.all_gaussian
        self.prior_loc, self.prior_prec, _ = coefficient_prior_arrays(priors, self.names)
        nonflat = self.prior_prec > 0
        c, sc = self.response.c, self.response.s
        # the coefficient priors in beta_tilde = (beta - c) / s coordinates
        self._loc_t = (self.prior_loc - c) / sc
        self._prec_t = self.prior_prec * sc * sc
        self._prior_const_t = 0.5 * np.log(self._prec_t[nonflat]).sum() - 0.5 * nonflat.sum() * _LOG2PI
        # log p(y | .) - log p(y_tilde | .): Jacobian of y = Xc c + s y_tilde and beta = c + s beta_tilde
        self._log_jac = (self.p - nonflat.sum() - self.sum_w) * np.log(sc) if self.integrate_beta \
            else -self.sum_w * np.log(sc)
        self._batched = len(self.terms) == 1 and not self.cp.sparse
        if self._batched:
            self._B3 = np.asarray(self.cp.B).reshape(self.cp.m, self.cp.J1, self.cp.k1)
        # Z'W as a sparse q x n matrix, for the conditional draws of u
        self._ZtW = sp.hstack([t.z_matrix() for t in self.terms], format="csr").T.multiply(self.w).tocsr()
        self.param_names = ["log_sigma"]
        for t, ct in zip(self.terms, self.cov_terms):
            self.param_names += [f"{t.group_name}:{nm}" for nm in ct.names]
        if not self.integrate_beta:
            self.param_names += [f"beta[{nm}]" for nm in self.names]
        self.dim = len(self.param_names)

    # ---- parameters -----------------------------------------------------------------------
    def unpack(self, x: np.ndarray):
        """sigma (W,), Cholesky factors of Sigma per term (W, k, k), log prior + Jacobian (W,), beta."""
        x = np.atleast_2d(x)
        log_sigma = x[:, 0]
        sigma = np.exp(log_sigma)
        lp = self.priors.aux.logpdf(sigma) + log_sigma
        chols, pos = [], 1
        for ct in self.cov_terms:
            L, lpi = ct.transform(x[:, pos:pos + ct.dim], sigma)
            chols.append(L)
            lp = lp + lpi
            pos += ct.dim
        beta = None if self.integrate_beta else x[:, pos:pos + self.p]
        return sigma, chols, lp, beta

    def start(self, fit) -> np.ndarray:
        """Unconstrained parameters at an lmer fit's estimates (a starting point for the optimizer)."""
        sigma = max(float(fit.sigma), 1e-3 * float(np.std(self.y)))
        x = [np.log(sigma)]
        vc = fit.varcorr()
        for ct, term in zip(self.cov_terms, vc.terms):
            cov = term.cov + np.eye(ct.k) * 1e-4 * sigma ** 2
            x += list(ct.inverse(cov, sigma))
        if not self.integrate_beta:
            x += list(self.centering.to_centered(np.asarray(fit.beta)))
        return np.asarray(x, dtype=float)

    # ---- the kernel ------------------------------------------------------------------------
    def _factor_batched(self, T1: np.ndarray):
        """One-term case, all walkers at once: ldL2 (W,), G (W, p+1, p+1) and L1^{-1} (W, J, k, k).

        L1_j L1_j' = T1' D_j T1 + I, L21 = B (I (x) T1 L1_j^{-T}), G = C - L21 L21' (the blocked factor of
        :class:`CrossProducts`, written out elementwise for k <= 2 because batched 2 x 2 LAPACK calls and
        einsum are slow for thousands of tiny matrices)."""
        cp, k = self.cp, self.cp.k1
        B3 = self._B3
        if k == 1:
            t = T1[:, 0, 0][:, None]                                # (W, 1)
            l11 = np.sqrt(t * t * cp.D1[None, :, 0, 0] + 1.0)        # (W, J)
            i11 = 1.0 / l11
            X0 = B3[None, :, :, 0] * (t * i11)[:, None, :]           # (W, m, J)
            G = cp.C[None] - X0 @ np.swapaxes(X0, 1, 2)
            ldL2 = 2.0 * np.log(l11).sum(axis=1)
            return ldL2, G, i11[:, :, None, None]
        if k == 2:
            t11, t21, t22 = (T1[:, 0, 0][:, None], T1[:, 1, 0][:, None], T1[:, 1, 1][:, None])
            d11, d12, d22 = cp.D1[None, :, 0, 0], cp.D1[None, :, 1, 0], cp.D1[None, :, 1, 1]
            e = d12 * t11 + d22 * t21
            a11 = t11 * (d11 * t11 + d12 * t21) + t21 * e + 1.0
            a21 = t22 * e
            a22 = t22 * t22 * d22 + 1.0
            l11 = np.sqrt(a11)
            l21 = a21 / l11
            l22 = np.sqrt(a22 - l21 * l21)
            i11, i22 = 1.0 / l11, 1.0 / l22
            i21 = -l21 * i11 * i22
            B0, B1 = B3[None, :, :, 0], B3[None, :, :, 1]
            X0 = (B0 * t11[:, None] + B1 * t21[:, None]) * i11[:, None, :]
            X1 = B0 * (t11 * i21)[:, None, :] + B1 * (t21 * i21 + t22 * i22)[:, None, :]
            G = cp.C[None] - X0 @ np.swapaxes(X0, 1, 2) - X1 @ np.swapaxes(X1, 1, 2)
            ldL2 = 2.0 * (np.log(l11) + np.log(l22)).sum(axis=1)
            L1inv = np.zeros(i11.shape + (2, 2))
            L1inv[..., 0, 0], L1inv[..., 1, 0], L1inv[..., 1, 1] = i11, i21, i22
            return ldL2, G, L1inv
        A1 = np.swapaxes(T1, 1, 2)[:, None] @ cp.D1[None] @ T1[:, None]
        idx = np.arange(k)
        A1[:, :, idx, idx] += 1.0
        L1 = np.linalg.cholesky(A1)
        ldL2 = 2.0 * np.log(np.diagonal(L1, axis1=2, axis2=3)).sum(axis=(1, 2))
        L1inv = np.linalg.inv(L1)
        R = T1[:, None] @ np.swapaxes(L1inv, 2, 3)                   # T1 L1_j^{-T}
        L21 = np.transpose(B3, (1, 0, 2))[None] @ R                  # (W, J, m, k)
        Xs = np.transpose(L21, (0, 2, 1, 3)).reshape(L21.shape[0], cp.m, -1)
        G = cp.C[None] - Xs @ np.swapaxes(Xs, 1, 2)
        return ldL2, G, L1inv

    def _factor_loop(self, Ts: list[np.ndarray]):
        W = Ts[0].shape[0]
        ldL2, G, ok = np.zeros(W), np.zeros((W, self.p + 1, self.p + 1)), np.ones(W, bool)
        factors = []
        for w in range(W):
            try:
                f = self.cp.factor([T[w] for T in Ts])
            except NotPositiveDefinite:
                ok[w] = False
                factors.append(None)
                continue
            tail = f.fixed_factor
            G[w] = tail @ tail.T
            ldL2[w] = f.ldL2
            factors.append(f)
        return ldL2, G, ok, factors

    def _marginal(self, sigma, ldL2, G, beta):
        """log p(y | sigma, Sigma [, beta]) from ldL2 and the G of y_tilde, evaluated in the tilde
        coordinates sigma / s, (beta - c) / s and mapped back by the Jacobian (module docstring)."""
        sc = self.response.s
        s2 = (sigma / sc) ** 2
        p = self.p
        base = -0.5 * (ldL2 + self.sum_w * (_LOG2PI + np.log(s2))) + self._log_jac
        Gxx, Gxy, Gyy = G[:, :p, :p], G[:, :p, p], G[:, p, p]
        if beta is not None:
            bt = (beta - self.response.c) / sc
            quad = Gyy - 2 * np.einsum("wp,wp->w", bt, Gxy) + np.einsum("wp,wpq,wq->w", bt, Gxx, bt)
            return base - 0.5 * quad / s2
        if p == 0:
            return base - 0.5 * Gyy / s2
        P = Gxx / s2[:, None, None] + np.diag(self._prec_t)[None]
        h = Gxy / s2[:, None] + (self._prec_t * self._loc_t)[None]
        _, logdetP, m = _chol_logdet_solve(P, h)
        quad = Gyy / s2 + np.sum(self._prec_t * self._loc_t ** 2) - np.einsum("wp,wp->w", h, m)
        return base - 0.5 * logdetP - 0.5 * quad + self._prior_const_t + 0.5 * p * _LOG2PI

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        """Unnormalized log posterior density of unconstrained parameters x (W, dim) -> (W,)."""
        x = np.atleast_2d(np.asarray(x, dtype=float))
        with np.errstate(all="ignore"):
            sigma, chols, lp, beta = self.unpack(x)
            out = np.full(x.shape[0], -np.inf)
            good = np.isfinite(lp) & (sigma > 0) & np.isfinite(sigma)
            if not good.any():
                return out
            Ts = [L[good] / sigma[good, None, None] for L in chols]
            try:
                if self._batched:
                    ldL2, G, _ = self._factor_batched(Ts[0])
                    ok = np.ones(good.sum(), bool)
                else:
                    ldL2, G, ok, _ = self._factor_loop(Ts)
            except np.linalg.LinAlgError:
                ldL2, G, ok, _ = self._factor_loop(Ts)
            val = self._marginal(sigma[good], ldL2, G, None if beta is None else beta[good])
            if beta is not None:
                val = val + coefficient_logprior(self.priors, self.names, beta[good])
            val = np.where(ok, val + lp[good], -np.inf)
        out[good] = np.where(np.isfinite(val), val, -np.inf)
        return out

    # ---- exact conditional draws ----------------------------------------------------------------
    def draw(self, x: np.ndarray, rng: np.random.Generator, chunk: int = 512) -> dict:
        """For kept draws x (S, dim): sigma, Sigma per term, beta (original X scale) and b per term,
        the last two drawn exactly from their Gaussian conditionals."""
        S = x.shape[0]
        out = {"sigma": np.empty(S), "Sigma": [np.empty((S, t.k, t.k)) for t in self.terms],
               "beta": np.empty((S, self.p)), "b": [np.empty((S, t.n_levels, t.k)) for t in self.terms]}
        for lo in range(0, S, chunk):
            sl = slice(lo, min(S, lo + chunk))
            self._draw_chunk(x[sl], rng, out, sl)
        out["beta"] = self.centering.uncenter(out["beta"])
        return out

    def _draw_chunk(self, x, rng, out, sl):
        sigma, chols, _, beta_x = self.unpack(x)
        W, p = x.shape[0], self.p
        Ts = [L / sigma[:, None, None] for L in chols]
        if self._batched:
            ldL2, G, L1inv = self._factor_batched(Ts[0])
            factors = None
        else:
            ldL2, G, ok, factors = self._factor_loop(Ts)
        # in the tilde coordinates of the module docstring: beta = c + sc beta_t, sigma = sc sigma_t
        c, sc = self.response.c, self.response.s
        s2 = (sigma / sc) ** 2
        if beta_x is not None:
            beta = beta_x
            beta_t = (beta - c) / sc
        elif p:
            P = G[:, :p, :p] / s2[:, None, None] + np.diag(self._prec_t)[None]
            h = G[:, :p, p] / s2[:, None] + (self._prec_t * self._loc_t)[None]
            Lp, _, m = _chol_logdet_solve(P, h)
            z = rng.standard_normal((W, p))
            # beta_t = m + L_P^{-T} z has covariance P^{-1}
            beta_t = m + np.linalg.solve(np.swapaxes(Lp, 1, 2), z[..., None])[..., 0]
            beta = c + sc * beta_t
        else:
            beta = beta_t = np.zeros((W, 0))
        resid = sc * (self.y_tilde[None, :] - beta_t @ self.Xc.T)    # y - Xc beta without cancellation, (W, n)
        v = np.asarray(self._ZtW @ resid.T).T                            # Z'W(y - X beta), (W, q)
        z = rng.standard_normal(v.shape)
        out["sigma"][sl] = sigma
        for i, L in enumerate(chols):
            out["Sigma"][i][sl] = L @ np.swapaxes(L, 1, 2)
        out["beta"][sl] = beta
        if self._batched:
            cp = self.cp
            T1 = Ts[0]
            r = np.einsum("wjb,wbc->wjc", v.reshape(W, cp.J1, cp.k1), T1)       # Lambda' v per level
            c = np.einsum("wjab,wjb->wja", L1inv, r)                            # L1^{-1} r
            c = c + sigma[:, None, None] * z.reshape(W, cp.J1, cp.k1)
            u = np.einsum("wjba,wjb->wja", L1inv, c)                            # L1^{-T} (c + sigma z)
            out["b"][0][sl] = np.einsum("wab,wjb->wja", T1, u)
            return
        offs = np.cumsum([0] + [t.n_coefs for t in self.terms])
        for w in range(W):
            f = factors[w]
            if f is None:
                raise np.linalg.LinAlgError("a kept draw gave a singular PLS system; rerun with another seed")
            r = np.concatenate([(v[w, offs[i]:offs[i + 1]].reshape(t.n_levels, t.k) @ Ts[i][w]).ravel()
                                for i, t in enumerate(self.terms)])
            q1 = self.cp.q1
            c1, c2 = f.solve_lower(r[:q1], np.concatenate([r[q1:], np.zeros(p)]))
            c1 = c1 + sigma[w] * z[w, :q1]
            c2 = np.concatenate([c2[:self.cp.q_rest] + sigma[w] * z[w, q1:], np.zeros(p)])
            x1, x2 = f.solve_upper(c1, c2)
            u = np.concatenate([x1, x2[:self.cp.q_rest]])
            for i, t in enumerate(self.terms):
                ui = u[offs[i]:offs[i + 1]].reshape(t.n_levels, t.k)
                out["b"][i][sl.start + w] = ui @ Ts[i][w].T
