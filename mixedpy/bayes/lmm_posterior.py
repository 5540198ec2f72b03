"""Log posterior of a Gaussian LMM with the random effects (and Gaussian-prior coefficients)
integrated out, evaluated with lme4's blocked PLS factor; exact conditional draws of the rest.

Model (rstanarm ``stan_lmer``): y ~ N(X beta + Z b, sigma^2 W^{-1}) with the likelihood weighted
by w as rstanarm does, b_i ~ N(0, Sigma_i) per level, Sigma_i ~ decov with sigma inside.
For given (sigma, Sigma) lme4's relative factor is T_i = chol(Sigma_i) / sigma (Bates et al. 2015
section 2.2).  One :class:`~mixedpy.linalg.blocked.CrossProducts` of [Z | X | y] is formed once
(the weights are fixed, so only Lambda changes between evaluations); each evaluation factors
[[Lambda'Z'WZ Lambda + I, .], [., .]] for all walkers at once, whatever the terms (crossed, nested,
vector-valued; :mod:`mixedpy.linalg.batched`), and keeps

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
N(A^{-1} Lambda'Z'W(y - X beta), sigma^2 A^{-1}) with A = L L' from the same factor, b = Lambda u,
where Z'W(y - X beta) = Z'Wy - Z'WX beta comes from the cross-products too.
All of this is exact; the only Monte-Carlo error is emcee's.  Nothing reads the rows after the
cross-products are formed (:class:`LMMSystem`), so a Dask frame's sums serve as well
(:mod:`mixedpy.scale.bayes`).

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

from dataclasses import dataclass

import numpy as np

from ..linalg.batched import BatchedKernel, stacked_cholesky
from ..linalg.blocked import CrossProducts, NotPositiveDefinite
from ..linalg.response import ResponseScaling
from .model import Centering, coefficient_logprior, coefficient_prior_arrays, covariance_priors
from .priors import ResolvedPriors

_LOG2PI = np.log(2 * np.pi)


def _chol_logdet_solve(P: np.ndarray, h: np.ndarray):
    """Batched Cholesky of P (W, p, p): returns L, log|P| (NaN where P is not positive definite),
    P^{-1} h."""
    try:
        L = np.linalg.cholesky(P)
    except np.linalg.LinAlgError:
        # some walker's P is not positive definite: only then find which (their log|P| is NaN)
        L, ok = stacked_cholesky(P, np.ones(P.shape[0], bool))
        P = np.where(ok[:, None, None], P, np.eye(P.shape[1]))
        L[~ok] = np.nan
    logdet = 2.0 * np.log(np.diagonal(L, axis1=1, axis2=2)).sum(axis=1)
    m = np.linalg.solve(P, h[..., None])[..., 0]
    return L, logdet, m


@dataclass(frozen=True)
class LMMSystem:
    """What the LMM posterior reads from the data: everything is a sum over rows, so a Dask fit
    (:mod:`mixedpy.scale.bayes`) builds the same object from the partitions' sums.

    ``cp`` holds the cross-products of [Z | Xc | y_tilde] with Xc the centered X (rstanarm's
    centering) and y = Xc c + s y_tilde (``response``; module docstring); ``y_sd`` is the SD (ddof 0)
    of y - offset, a floor for the starting sigma."""

    centering: Centering
    response: ResponseScaling
    cp: CrossProducts
    n: int
    sum_w: float
    y_sd: float

    @classmethod
    def of_design(cls, design) -> "LMMSystem":
        X = np.asarray(design.X, dtype=float)
        centering = Centering.of(X, design.fixef_names)
        Xc = centering.center(X)
        y = np.asarray(design.y, dtype=float) - design.offset
        w = design.weights
        sqrt_w = None if w is None else np.sqrt(np.asarray(w, dtype=float))
        # y = Xc c + s y_tilde: the kernel only ever sees the well-scaled y_tilde (module docstring)
        response, y_tilde = ResponseScaling.of(Xc, y, sqrt_w)
        cp = CrossProducts(list(design.terms), Xc, y_tilde, sqrt_w)   # RandomEffectsTerm is a TermBlock
        sum_w = float(X.shape[0] if w is None else np.sum(w))
        return cls(centering, response, cp, X.shape[0], sum_w, float(np.std(y)))


class LMMPosterior:
    """The posterior of (sigma, Sigma_i[, beta]) of a Gaussian LMM, vectorised over walkers.

    Parameters
    ----------
    design : ModelDesign of the formula (its terms and names; its rows only when ``system`` is None)
    priors : resolved priors
    system : the data's :class:`LMMSystem` (default: formed from the design's rows)
    """

    family = "gaussian"

    def __init__(self, design, priors: ResolvedPriors, system: LMMSystem | None = None):
        self.design, self.priors = design, priors
        self.terms = design.terms
        self.names = design.fixef_names
        system = LMMSystem.of_design(design) if system is None else system
        self.system = system
        self.centering, self.response, self.cp = system.centering, system.response, system.cp
        self.n, self.p = system.n, system.cp.p
        self.sum_w = system.sum_w
        self.cov_priors = covariance_priors(self.terms, priors)
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
        # every term structure is factored for all walkers at once (mixedpy.linalg.batched);
        # _batched = False selects the per-walker reference loop over CrossProducts.factor
        self._kernel = BatchedKernel(self.cp)
        self._batched = True
        self.param_names = ["log_sigma"]
        for t, ct in zip(self.terms, self.cov_priors):
            self.param_names += [f"{t.group_name}:{nm}" for nm in ct.names]
        if not self.integrate_beta:
            self.param_names += [f"beta[{nm}]" for nm in self.names]
        self.dim = len(self.param_names)

    @property
    def Xc(self) -> np.ndarray:
        """The design's centered fixed-effects matrix (no rows for a Dask design)."""
        return self.centering.center(np.asarray(self.design.X, dtype=float))

    @property
    def y(self) -> np.ndarray:
        """The design's response less its offset (no rows for a Dask design)."""
        return np.asarray(self.design.y, dtype=float) - self.design.offset

    # ---- parameters -----------------------------------------------------------------------
    def unpack(self, x: np.ndarray):
        """sigma (W,), Cholesky factors of Sigma per term (W, k, k), log prior + Jacobian (W,), beta."""
        x = np.atleast_2d(x)
        log_sigma = x[:, 0]
        sigma = np.exp(log_sigma)
        lp = self.priors.aux.logpdf(sigma) + log_sigma
        chols, pos = [], 1
        for ct in self.cov_priors:
            L, lpi = ct.transform(x[:, pos:pos + ct.dim], sigma)
            chols.append(L)
            lp = lp + lpi
            pos += ct.dim
        beta = None if self.integrate_beta else x[:, pos:pos + self.p]
        return sigma, chols, lp, beta

    def start(self, fit) -> np.ndarray:
        """Unconstrained parameters at an lmer fit's estimates (a starting point for the optimizer)."""
        sigma = max(float(fit.sigma), 1e-3 * self.system.y_sd)
        x = [np.log(sigma)]
        vc = fit.varcorr()
        for ct, term in zip(self.cov_priors, vc.terms):
            cov = term.cov + np.eye(ct.k) * 1e-4 * sigma ** 2
            x += list(ct.inverse(cov, sigma))
        if not self.integrate_beta:
            x += list(self.centering.to_centered(np.asarray(fit.beta)))
        return np.asarray(x, dtype=float)

    # ---- the kernel ------------------------------------------------------------------------
    def _factor_loop(self, Ts: list[np.ndarray]):
        """ldL2 (W,), G (W, p+1, p+1) and ok (W,) by :meth:`CrossProducts.factor`, one walker at a
        time: the reference for the batched kernel (G = tail tail' from the [X | y] block's factor)."""
        W = Ts[0].shape[0]
        ldL2, G, ok = np.zeros(W), np.zeros((W, self.p + 1, self.p + 1)), np.ones(W, bool)
        for w in range(W):
            try:
                f = self.cp.factor([T[w] for T in Ts])
            except NotPositiveDefinite:
                ok[w] = False
                continue
            tail = f.fixed_factor
            G[w] = tail @ tail.T
            ldL2[w] = f.ldL2
        return ldL2, G, ok

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
            if self._batched:
                ldL2, G, ok = self._kernel.schur(Ts)
            else:
                ldL2, G, ok = self._factor_loop(Ts)
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
        chunk = max(1, min(chunk, self._kernel.chunk_size()))
        for lo in range(0, S, chunk):
            sl = slice(lo, min(S, lo + chunk))
            self._draw_chunk(x[sl], rng, out, sl)
        out["beta"] = self.centering.uncenter(out["beta"])
        return out

    def _draw_chunk(self, x, rng, out, sl):
        sigma, chols, _, beta_x = self.unpack(x)
        W, p = x.shape[0], self.p
        Ts = [L / sigma[:, None, None] for L in chols]
        f = self._kernel.factor(Ts)
        if not f.ok.all():
            raise np.linalg.LinAlgError("a kept draw gave a singular PLS system; rerun with another seed")
        G = f.G
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
            if not np.all(np.isfinite(beta_t)):
                raise np.linalg.LinAlgError("a kept draw gave a singular system for beta; rerun with another seed")
            beta = c + sc * beta_t
        else:
            beta = beta_t = np.zeros((W, 0))
        # Z'W(y - Xc beta) = s (Z'W y_tilde - Z'W Xc beta_t), from the cross-products' [Xc | y_tilde]'WZ
        # row: O(q p) per draw and no pass over the rows
        v = sc * np.concatenate([self.cp.A[self.cp.T, i][p][None, :] - beta_t @ self.cp.A[self.cp.T, i][:p]
                                 for i in range(len(self.terms))], axis=1)   # (W, q)
        z = rng.standard_normal(v.shape)
        out["sigma"][sl] = sigma
        for i, L in enumerate(chols):
            out["Sigma"][i][sl] = L @ np.swapaxes(L, 1, 2)
        out["beta"][sl] = beta
        # u = A^{-1} Lambda'v + sigma L^{-T} z = L^{-T} (L^{-1} Lambda'v + sigma z), b = Lambda u
        offs = self.cp.offsets
        levels = [(t.n_levels, t.k) for t in self.terms]
        r = np.concatenate([np.einsum("wjb,wba->wja", v[:, offs[i]:offs[i + 1]].reshape((W,) + jk), Ts[i])
                            .reshape(W, -1) for i, jk in enumerate(levels)], axis=1)
        u = f.solve_u(f.solve_u(r, trans=False) + sigma[:, None] * z, trans=True)
        for i, jk in enumerate(levels):
            ui = u[:, offs[i]:offs[i + 1]].reshape((W,) + jk)
            out["b"][i][sl] = np.einsum("wab,wjb->wja", Ts[i], ui)
