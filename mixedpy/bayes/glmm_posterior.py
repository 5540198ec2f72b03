"""Binomial and Poisson GLMMs: pseudo-marginal emcee with Laplace importance sampling (exact).

Model (rstanarm ``stan_glmer``): y_i ~ Binomial(n_i, g^{-1}(eta_i)) or Poisson(exp(eta_i)),
eta = X beta + Z b + offset, b = Lambda u with u ~ N(0, I) (the non-centered parameterization),
Lambda = blockdiag(I_J (x) chol(Sigma_i)), Sigma_i ~ decov with sigma_disp = 1.

emcee explores only the covariance parameters theta.  For each proposed theta the marginal
likelihood p(y | theta) = int p(y, v | theta) dv over v = (u, beta) is estimated without bias by
importance sampling,

    p_hat(y | theta) = (1/N) sum_i p(y, v_i | theta) / q(v_i | theta),   v_i ~ q,

where q is a multivariate Student-t (nu = 8) centred at the joint mode v-hat of
log p(y | v) - |u|^2 / 2 + log N(beta; prior) (found by damped Newton, i.e. PIRLS with the prior as
a penalty) with scale H^{-1}, H the negative Hessian at the mode (the Laplace approximation,
Bates et al. 2015 / lme4 section 2.3 of ALGORITHMS.md).  Because emcee keeps the stored value for
its current states, the chain is a pseudo-marginal sampler (Andrieu & Roberts 2009) and its
stationary law is the exact posterior; keeping one v_i per state, chosen with probability
proportional to its weight, gives exact joint draws of (theta, beta, b).  The Laplace step only
decides how efficient the sampler is.

The Newton iterations are batched over walkers.  A single scalar term (1 | g) uses the arrowhead
structure of the Hessian (O(n p^2) per step, any number of levels); other models use dense
[Z Lambda | X] matrices, which suits up to a few hundred random effects.
"""
from __future__ import annotations

import numpy as np
from scipy import special, stats

from ..validation import check_binomial_response, check_poisson_response
from .model import Centering, coefficient_logprior, coefficient_prior_arrays, covariance_terms
from .priors import ResolvedPriors

_LOG2PI = np.log(2 * np.pi)
_MAX_DIM = 2000


class DenseAlgebra:
    """The linear algebra of the Laplace step with dense A = [Z Lambda | X_c] per walker, (W, n, d)."""

    def __init__(self, A: np.ndarray):
        self.A = A
        self.At = np.swapaxes(A, 1, 2)

    def linpred(self, V: np.ndarray) -> np.ndarray:
        """A v for v of shape (W, d) -> (W, n), or (W, N, d) -> (W, N, n)."""
        if V.ndim == 2:
            return (self.A @ V[..., None])[..., 0]
        return V @ self.At

    def gradient(self, score: np.ndarray) -> np.ndarray:
        return (self.At @ score[..., None])[..., 0]

    def factor(self, info: np.ndarray, P0: np.ndarray) -> "DenseFactor":
        return DenseFactor(np.linalg.cholesky(self.At @ (self.A * info[..., None]) + np.diag(P0)[None]))


class DenseFactor:
    """H = L L' (W, d, d)."""

    def __init__(self, L: np.ndarray):
        self.L = L
        self.half_logdet = np.log(np.diagonal(L, axis1=1, axis2=2)).sum(axis=1)

    def solve(self, g: np.ndarray) -> np.ndarray:
        """H^{-1} g for g (W, d)."""
        y = np.linalg.solve(self.L, g[..., None])
        return np.linalg.solve(np.swapaxes(self.L, 1, 2), y)[..., 0]

    def solve_upper(self, z: np.ndarray) -> np.ndarray:
        """L^{-T} z for z (W, N, d), as rows: (L^{-T} z)' = z' L^{-1}."""
        return z @ np.linalg.inv(self.L)


class ScalarTermAlgebra:
    """The same algebra for one scalar term (1 | g) or (0 + x | g), without forming A.

    With a_i = lambda m_i on column codes_i, H = A'WA + diag(P0) is an arrowhead matrix:
    D (J, diagonal) = lambda^2 sum_{i in j} w_i m_i^2 + 1,  C (J x p) = lambda sum_{i in j} w_i m_i x_i',
    H_bb = X'WX + diag(P0_b); its Cholesky factor is [[D^1/2, 0], [C'D^-1/2, chol(S)]] with the Schur
    complement S = H_bb - C'D^{-1}C.  Each Newton step costs O(n p^2) instead of O(n (J + p)^2).
    """

    def __init__(self, lam: np.ndarray, m: np.ndarray, codes: np.ndarray, J: int, Xc: np.ndarray):
        import scipy.sparse as sp

        self.lam, self.m, self.codes, self.J, self.Xc = lam, m, codes, J, Xc
        self.G = sp.csr_matrix((np.ones(codes.size), (codes, np.arange(codes.size))), shape=(J, codes.size))

    def _group_sum(self, values: np.ndarray) -> np.ndarray:
        """sum over the rows of each level: (W, n[, p]) -> (W, J[, p])."""
        W, n = values.shape[:2]
        flat = np.moveaxis(values, 1, 0).reshape(n, -1)
        return np.moveaxis((self.G @ flat).reshape((self.J, W) + values.shape[2:]), 0, 1)

    def linpred(self, V: np.ndarray) -> np.ndarray:
        u, beta = V[..., :self.J], V[..., self.J:]
        lam = self.lam.reshape((-1,) + (1,) * (V.ndim - 1))
        return lam * self.m * u[..., self.codes] + beta @ self.Xc.T

    def gradient(self, score: np.ndarray) -> np.ndarray:
        g_u = self.lam[:, None] * self._group_sum(score * self.m)
        return np.concatenate([g_u, score @ self.Xc], axis=1)

    def factor(self, info: np.ndarray, P0: np.ndarray) -> "ArrowheadFactor":
        wm = info * self.m
        D = self.lam[:, None] ** 2 * self._group_sum(wm * self.m) + P0[:self.J]
        C = self.lam[:, None, None] * self._group_sum(wm[..., None] * self.Xc[None])
        Hbb = np.einsum("wn,np,nq->wpq", info, self.Xc, self.Xc) + np.diag(P0[self.J:])[None]
        return ArrowheadFactor(D, C, Hbb)


class ArrowheadFactor:
    """Cholesky factor of the arrowhead H = [[diag(D), C], [C', H_bb]] (see ScalarTermAlgebra)."""

    def __init__(self, D: np.ndarray, C: np.ndarray, Hbb: np.ndarray):
        self.D, self.C = D, C
        self.sqrtD = np.sqrt(D)
        S = Hbb - np.einsum("wjp,wj,wjq->wpq", C, 1.0 / D, C)
        self.LS = np.linalg.cholesky(S)
        self.half_logdet = np.log(self.sqrtD).sum(axis=1) + np.log(np.diagonal(self.LS, axis1=1, axis2=2)).sum(axis=1)

    def solve(self, g: np.ndarray) -> np.ndarray:
        J = self.D.shape[1]
        g_u, g_b = g[:, :J], g[:, J:]
        rhs = g_b - np.einsum("wjp,wj->wp", self.C, g_u / self.D)
        y = np.linalg.solve(self.LS, rhs[..., None])
        step_b = np.linalg.solve(np.swapaxes(self.LS, 1, 2), y)[..., 0]
        step_u = (g_u - np.einsum("wjp,wp->wj", self.C, step_b)) / self.D
        return np.concatenate([step_u, step_b], axis=1)

    def solve_upper(self, z: np.ndarray) -> np.ndarray:
        """L^{-T} z for z (W, N, d): L' = [[D^1/2, D^-1/2 C], [0, LS']]."""
        J = self.D.shape[1]
        z_u, z_b = z[..., :J], z[..., J:]
        LSt = np.swapaxes(self.LS, 1, 2)
        x_b = np.linalg.solve(LSt[:, None], z_b[..., None])[..., 0]          # LS' x_b = z_b
        x_u = (z_u - np.einsum("wjp,wnp->wnj", self.C, x_b) / self.sqrtD[:, None, :]) / self.sqrtD[:, None, :]
        return np.concatenate([x_u, x_b], axis=2)


class GLMMPosterior:
    """Posterior of a binomial/Poisson GLMM as a pseudo-marginal target over the covariance parameters."""

    def __init__(self, design, family: str, link: str, priors: ResolvedPriors | None, n_importance: int = 16,
                 df: float = 8.0):
        self.design, self.family, self.link = design, family, link
        self.terms = design.terms
        self.names = design.fixef_names
        y = np.asarray(design.y, dtype=float)
        w = design.weights
        if family == "binomial":
            check_binomial_response(y, w, design.response_name)
            if y.ndim == 2:
                self.k_obs, self.trials = y[:, 0], y[:, 0] + y[:, 1]
            elif w is not None:      # proportion with weights = number of trials (rstanarm)
                self.trials = np.asarray(w, dtype=float)
                self.k_obs = np.round(y * self.trials)
            else:
                self.k_obs, self.trials = y, np.ones_like(y)
            self.y_for_priors = np.where(self.trials > 0, self.k_obs / np.maximum(self.trials, 1), 0)
        else:
            check_poisson_response(y, design.response_name)
            self.k_obs, self.trials, self.y_for_priors = y, None, y
        self._log_choose = (special.gammaln(self.trials + 1) - special.gammaln(self.k_obs + 1)
                            - special.gammaln(self.trials - self.k_obs + 1)) if family == "binomial" \
            else special.gammaln(self.k_obs + 1)
        self.obs_w = np.ones(len(self.k_obs)) if (w is None or family == "binomial") else np.asarray(w, float)
        X = np.asarray(design.X, dtype=float)
        self.centering = Centering.of(X, self.names)
        self.Xc = self.centering.center(X)
        self.offset = np.asarray(design.offset, dtype=float)
        self._rows = [(t.codes, t.model_matrix) for t in self.terms]
        if family == "binomial":
            self._collapse_identical_rows()
        self.n, self.p = self.Xc.shape
        self.q = sum(t.n_coefs for t in self.terms)
        self.d = self.q + self.p
        self._scalar_term = len(self.terms) == 1 and self.terms[0].k == 1
        if self.d > _MAX_DIM and not self._scalar_term:
            raise ValueError(f"bayes_glmer's dense Laplace proposal handles up to {_MAX_DIM} random + fixed effects; "
                             f"this model has {self.d}")
        self.N, self.df = int(n_importance), float(df)
        if self.N < 1:
            raise ValueError("n_importance must be at least 1")
        self.blob_dim = self.d
        self.rng = np.random.default_rng()
        if priors is not None:
            self.set_priors(priors)

    def _collapse_identical_rows(self) -> None:
        """Merge binomial rows with the same levels, covariates and offset into one row of summed
        successes and trials.

        Such rows share their linear predictor, so the product of their likelihoods is the
        binomial likelihood of the sums times the constant prod C(n_i, k_i); keeping the sum of the
        log-constants makes the log-likelihood identical.  Pass/fail data with one row per student
        shrink to one row per (classroom, covariates).
        """
        key = np.column_stack([c for c, _ in self._rows] + [M for _, M in self._rows] + [self.Xc, self.offset])
        _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
        if first.size == key.shape[0]:
            return
        inverse, G = inverse.ravel(), first.size
        self.k_obs = np.bincount(inverse, weights=self.k_obs, minlength=G)
        self.trials = np.bincount(inverse, weights=self.trials, minlength=G)
        self._log_choose = np.bincount(inverse, weights=self._log_choose, minlength=G)
        self.obs_w = np.ones(G)
        self.Xc, self.offset = self.Xc[first], self.offset[first]
        self._rows = [(c[first], M[first]) for c, M in self._rows]

    def set_priors(self, priors: ResolvedPriors):
        self.priors = priors
        self.cov_terms = covariance_terms(self.terms, priors)
        self.dim = sum(ct.dim for ct in self.cov_terms)
        loc, prec, _ = coefficient_prior_arrays(priors, self.names)
        # the Laplace surrogate uses a normal of the prior's scale for t/cauchy priors; the weights use the exact prior
        if not priors.all_gaussian:
            scale = np.zeros(self.p)
            others = [j for j, nm in enumerate(self.names) if nm != "(Intercept)"]
            scale[others] = priors.coef.scale
            if priors.intercept is not None:
                scale[self.names.index("(Intercept)")] = priors.intercept.scale[0]
            prec = np.where(np.isfinite(scale) & (scale > 0), 1.0 / np.maximum(scale, 1e-300) ** 2, 0.0)
        self.P0 = np.concatenate([np.ones(self.q), prec])
        self.m0 = np.concatenate([np.zeros(self.q), loc])
        self._v_start = np.concatenate([np.zeros(self.q), np.where(prec > 0, loc, 0.0)])
        self.param_names = [f"{t.group_name}:{nm}" for t, ct in zip(self.terms, self.cov_terms) for nm in ct.names]

    # ---- pieces ------------------------------------------------------------------------------
    def _unpack(self, x):
        x = np.atleast_2d(x)
        W = x.shape[0]
        chols, lp, pos = [], np.zeros(W), 0
        for ct in self.cov_terms:
            L, lpi = ct.transform(x[:, pos:pos + ct.dim], np.ones(W))
            chols.append(L)
            lp = lp + lpi
            pos += ct.dim
        return chols, lp

    def _design(self, chols):
        """The Laplace step's linear algebra for every walker: structured for one scalar term,
        dense A = [Z Lambda | X_c] (W, n, q + p) otherwise."""
        if self._scalar_term:
            codes, M = self._rows[0]
            return ScalarTermAlgebra(chols[0][:, 0, 0], M[:, 0], codes, self.terms[0].n_levels, self.Xc)
        W = chols[0].shape[0]
        A = np.zeros((W, self.n, self.d))
        off, rows = 0, np.arange(self.n)
        for t, (codes, M), L in zip(self.terms, self._rows, chols):
            ML = np.einsum("nk,wkl->wnl", M, L)          # row r: M[r] L
            cols = off + codes[:, None] * t.k + np.arange(t.k)[None, :]
            A[:, rows[:, None], cols] = ML
            off += t.n_coefs
        A[:, :, self.q:] = self.Xc
        return DenseAlgebra(A)

    def _loglik(self, eta):
        """log p(y | eta) per observation (the importance weights need nothing more)."""
        if self.family == "poisson":
            return (self.k_obs * eta - np.exp(np.clip(eta, -700, 700)) - self._log_choose) * self.obs_w
        n, k, lc = self.trials, self.k_obs, self._log_choose
        if self.link == "logit":
            return lc + k * eta - n * np.logaddexp(0.0, eta)
        return lc + k * special.log_ndtr(eta) + (n - k) * special.log_ndtr(-eta)

    def _loglik_terms(self, eta):
        """log p(y | eta) per observation, score and Fisher information (canonical links: observed = Fisher)."""
        ll = self._loglik(eta)
        if self.family == "poisson":
            mu = np.exp(np.clip(eta, -700, 700))
            return ll, (self.k_obs - mu) * self.obs_w, mu * self.obs_w
        n, k = self.trials, self.k_obs
        if self.link == "logit":
            p = special.expit(eta)
            return ll, k - n * p, n * p * (1 - p)
        # probit: Fisher scoring weights n phi^2 / (p (1 - p))
        phi = stats.norm.pdf(eta)
        p = np.clip(special.ndtr(eta), 1e-12, 1 - 1e-12)
        score = phi * (k / p - (n - k) / (1 - p))
        return ll, score, n * phi ** 2 / (p * (1 - p))

    def _penalized(self, alg, v):
        eta = alg.linpred(v) + self.offset
        ll, score, info = self._loglik_terms(eta)
        pen = 0.5 * np.sum(self.P0 * (v - self.m0) ** 2, axis=1)
        return ll.sum(axis=1) - pen, score, info

    def _mode(self, alg, W: int, iters: int = 40, tol: float = 1e-7):
        """Joint mode of (u, beta) and the factor of the negative Hessian there (damped Newton)."""
        v = np.tile(self._v_start, (W, 1))
        f, score, info = self._penalized(alg, v)
        for _ in range(iters):
            g = alg.gradient(score) - self.P0 * (v - self.m0)
            step = alg.factor(info, self.P0).solve(g)
            t = np.ones(W)
            for _ in range(30):                          # halve the step where the objective went down
                v_new = v + t[:, None] * step
                f_new, s_new, i_new = self._penalized(alg, v_new)
                worse = ~(f_new >= f - 1e-10)
                if not worse.any():
                    break
                t = np.where(worse, 0.5 * t, t)
            done = np.max(np.abs(t[:, None] * step)) < tol
            v, f, score, info = v_new, f_new, s_new, i_new
            if done:
                break
        return v, alg.factor(info, self.P0)

    def _logjoint(self, alg, V):
        """log p(y, v | theta) for V (W, N, d) with the exact coefficient prior."""
        eta = alg.linpred(V) + self.offset
        ll = self._loglik(eta).sum(axis=2)
        u, beta = V[..., :self.q], V[..., self.q:]
        lp = -0.5 * np.sum(u * u, axis=2) - 0.5 * self.q * _LOG2PI
        W, N = V.shape[:2]
        lb = coefficient_logprior(self.priors, self.names, beta.reshape(W * N, self.p)).reshape(W, N)
        return ll + lp + lb

    # ---- targets -----------------------------------------------------------------------------
    def _at_mode(self, x):
        """(log prior, design, joint mode v-hat, Cholesky factor L of the Hessian there) for each
        walker, or None where the Newton search fails."""
        chols, lp = self._unpack(x)
        alg = self._design(chols)
        try:
            v, fac = self._mode(alg, lp.size)
        except np.linalg.LinAlgError:
            return None
        return lp, alg, v, fac

    def laplace_log_prob(self, x) -> np.ndarray:
        """The Laplace approximation of log p(theta | y) (used only to find a starting point)."""
        with np.errstate(all="ignore"):
            at = self._at_mode(x)
            if at is None:
                return np.full(np.atleast_2d(x).shape[0], -np.inf)
            lp, alg, v, fac = at
            lj = self._logjoint(alg, v[:, None, :])[:, 0]
            out = lp + lj - fac.half_logdet + 0.5 * self.d * _LOG2PI
        return np.where(np.isfinite(out), out, -np.inf)

    def log_prob(self, x):
        """Pseudo-marginal target: (log p_hat(y | theta) + log p(theta), chosen importance draw (W, d))."""
        x = np.atleast_2d(x)
        W = x.shape[0]
        with np.errstate(all="ignore"):
            at = self._at_mode(x)
            if at is None:
                return np.full(W, -np.inf), np.zeros((W, self.d))
            lp, alg, v, fac = at
            nu, d, N = self.df, self.d, self.N
            z = self.rng.standard_normal((W, N, d)) * np.sqrt(nu / self.rng.chisquare(nu, (W, N, 1)))
            # v = v_hat + L^{-T} z  so that (v - v_hat)' H (v - v_hat) = |z|^2
            V = v[:, None, :] + fac.solve_upper(z)
            logq = (special.gammaln((nu + d) / 2) - special.gammaln(nu / 2) - 0.5 * d * np.log(nu * np.pi)
                    + fac.half_logdet[:, None] - 0.5 * (nu + d) * np.log1p(np.sum(z * z, axis=2) / nu))
            logw = self._logjoint(alg, V) - logq
            logw = np.where(np.isfinite(logw), logw, -np.inf)
            est = special.logsumexp(logw, axis=1) - np.log(N)
            prob = np.exp(logw - logw.max(axis=1, keepdims=True))
            prob /= prob.sum(axis=1, keepdims=True)
            cum = np.cumsum(prob, axis=1)
            pick = np.minimum((cum < self.rng.random((W, 1))).sum(axis=1), N - 1)
            chosen = V[np.arange(W), pick]
            out = lp + est
        return np.where(np.isfinite(out), out, -np.inf), chosen

    def warm_start(self, x: np.ndarray):
        """Start later Newton searches from the joint mode at x (the posterior mode of theta)."""
        chols, lp = self._unpack(x)
        v, _ = self._mode(self._design(chols), lp.size)
        self._v_start = v[0]

    def start(self) -> np.ndarray:
        """Unconstrained parameters at Sigma = 0.25 I per term (a moderate starting point for the mode search)."""
        x = []
        for ct in self.cov_terms:
            x += list(ct.inverse(0.25 * np.eye(ct.k), 1.0))
        return np.asarray(x, dtype=float)

    def draw(self, x: np.ndarray, blobs: np.ndarray) -> dict:
        """Sigma, beta (original X scale) and b per term from the kept states and their importance draws."""
        chols, _ = self._unpack(x)
        u, beta_c = blobs[:, :self.q], blobs[:, self.q:]
        out = {"sigma": np.ones(x.shape[0]), "Sigma": [L @ np.swapaxes(L, 1, 2) for L in chols],
               "beta": self.centering.uncenter(beta_c), "b": []}
        off = 0
        for t, L in zip(self.terms, chols):
            ui = u[:, off:off + t.n_coefs].reshape(-1, t.n_levels, t.k)
            out["b"].append(np.einsum("sab,sjb->sja", L, ui))
            off += t.n_coefs
        return out
