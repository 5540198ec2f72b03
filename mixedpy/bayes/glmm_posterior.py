"""GLMMs of every rstanarm family: pseudo-marginal emcee with Laplace importance sampling (exact).

Model (rstanarm ``stan_glmer``): y_i ~ Binomial(n_i, g^{-1}(eta_i)), Poisson(g^{-1}(eta_i)), or, with
an auxiliary parameter a (rstanarm's ``aux``), neg_binomial_2(mu_i, size a), Gamma(shape a,
rate a / mu_i), inverse.gaussian(mu_i, lambda a) or N(mu_i, sigma a), mu_i = g^{-1}(eta_i),
eta = X beta + Z b + offset, b = Lambda u with u ~ N(0, I) (the non-centered parameterization),
Lambda = blockdiag(I_J (x) chol(Sigma_i)), Sigma_i ~ decov with sigma_disp = 1 for binomial and
Poisson and sigma_disp = a for the families with an auxiliary parameter (rstanarm 2.21's
``continuous.stan`` and ``count.stan`` pass ``aux`` to ``make_theta_L`` for every family but
binomial and Poisson, so the decov scale is multiplied by the shape, size or lambda too).  Prior
weights multiply each observation's log-likelihood, as rstanarm's ``dot_product(weights, ...)``.

emcee explores only the covariance parameters and log a (its prior density times the Jacobian a of
the log map), theta.  For each proposed theta the marginal
likelihood p(y | theta) = int p(y, v | theta) dv over v = (u, beta) is estimated without bias by
importance sampling,

    p_hat(y | theta) = (1/N) sum_i p(y, v_i | theta) / q(v_i | theta),   v_i ~ q,

where q is a multivariate Student-t (nu = max(8, d), d = dim v) centred at the joint mode v-hat of
log p(y | v) - |u|^2 / 2 + log N(beta; prior) (found by damped Newton, i.e. PIRLS with the prior as
a penalty) with scale H^{-1}, H the negative Hessian at the mode (the Laplace approximation,
Bates et al. 2015 / lme4 section 2.3 of ALGORITHMS.md).  Because emcee keeps the stored value for
its current states, the chain is a pseudo-marginal sampler (Andrieu & Roberts 2009) and its
stationary law is the exact posterior; keeping one v_i per state, chosen with probability
proportional to its weight, gives exact joint draws of (theta, beta, b).  Given a, the integrand is
that of a GLMM with known dispersion, so the Laplace step and the weights use the family's
log-likelihood, score and Fisher information at that a.  The Laplace step only
decides how efficient the sampler is: any centre and any positive definite scale give an exact
sampler, provided log q is that of the draws, so the Newton search may stop early and the scale may
be the Hessian of its last iterate.

H = A'WA + diag(P0) with A = [Z Lambda | X_c] and W the Fisher information of each observation is
lme4's penalized least-squares matrix with the coefficient prior as p pseudo-observations
(x = e_j, weight P0_j).  Its Cholesky factor L comes from the project's blocked kernel
(:mod:`mixedpy.linalg.blocked`): the block structure is analysed once per model and every walker's
Newton step only refreshes the weights, so memory is O(nnz) for any term structure (crossed,
nested, vector-valued).  log|H| = ldL2 + ldRX2, Newton steps are H^{-1} g = L^{-T} L^{-1} g and the
proposal draws are v-hat + L^{-T} z.  The walkers are looped over for the factor; everything
else (linear predictors, gradients, log-likelihoods) is batched over walkers.  A single scalar term
(1 | g) has an arrowhead H, factored batched over walkers in closed form
(:class:`ScalarTermAlgebra`).  Log-likelihoods, scores and weights are those of
:mod:`mixedpy.families`, the objects glmer uses; W is the Fisher information, which for the
non-canonical links (probit, Gamma's log, ...) is not the observed one (Fisher scoring): it is still
a positive definite proposal scale, so the sampler stays exact.
"""
from __future__ import annotations

import numpy as np
from scipy import special

from ..families import Response, binomial_counts
from ..linalg.blocked import CrossProducts, NotPositiveDefinite, TermBlock
from ..validation import check_binomial_response, check_poisson_response
from .family import AUX_NAME, family_object
from .model import Centering, coefficient_logprior, coefficient_prior_arrays, covariance_priors
from .priors import ResolvedPriors

_LOG2PI = np.log(2 * np.pi)
#: the importance proposal's Newton search stops after the step whose decrement g'H^{-1}g is below
#: this for every walker: from the rescaled start (GLMMPosterior._start) that is usually the first
#: step, after which the centre is within about 1e-4 (squared Mahalanobis distance) of the mode;
#: this costs the importance weights nothing measurable and saves two or three factorizations
_PROPOSAL_DECREMENT = 1.0
#: linear predictors of the importance draws are formed this many entries at a time
_CHUNK = 4_000_000


def unit_columns(rows) -> list[list[bool]]:
    """For each term's model matrix, which columns are all ones."""
    return [[bool(np.all(M[:, a] == 1.0)) for a in range(M.shape[1])] for _, M, _ in rows]


class TermsAlgebra:
    """Products with A = [Z Lambda | X_c] for every walker without forming A (O(W n) memory).

    ``rows`` holds (codes (n,), model matrix (n, k), levels J) per term, ``chols`` the (W, k, k)
    factors Lambda_i of each term; v = (u_1, ..., u_T, beta) with u_i level-major (J_i x k_i).
    """

    def __init__(self, rows, chols, Xc: np.ndarray, unit=None):
        self.rows, self.chols, self.Xc = rows, chols, Xc
        self.q = sum(J * M.shape[1] for _, M, J in rows)
        #: per term and column, whether the model-matrix column is all ones (an intercept: no product)
        self.unit = unit_columns(rows) if unit is None else unit

    def linpred(self, V: np.ndarray, walkers: slice = slice(None)) -> np.ndarray:
        """A v for v of shape (W, d) -> (W, n), or (W, N, d) -> (W, N, n); ``walkers`` selects the
        walkers V belongs to."""
        W, d = V.shape[0], V.shape[-1]
        Vf = V.reshape(-1, d)                  # 2-d products: broadcast batched matmul is slow
        R = Vf.shape[0]
        eta = Vf[:, self.q:] @ self.Xc.T
        off = 0
        for (codes, M, J), L, unit in zip(self.rows, self.chols, self.unit):
            k = M.shape[1]
            L = L[walkers]
            u = Vf[:, off:off + J * k].reshape(W, R // W, J, k)
            for a in range(k):                 # b_j = Lambda u_j, column a, as k vector operations
                b = L[:, a, 0, None, None] * u[..., 0]
                for c in range(1, a + 1):
                    b += L[:, a, c, None, None] * u[..., c]
                g = np.take(b.reshape(R, J), codes, axis=1)
                if not unit[a]:
                    g *= M[:, a]
                eta += g
            off += J * k
        return eta.reshape(V.shape[:-1] + (eta.shape[-1],))

    def group_sum(self, codes: np.ndarray, J: int, values: np.ndarray) -> np.ndarray:
        """sum over the rows of each level: (W, n) -> (W, J)."""
        W = values.shape[0]
        idx = (np.arange(W)[:, None] * J + codes[None, :]).ravel()
        return np.bincount(idx, weights=values.ravel(), minlength=W * J).reshape(W, J)

    def gradient(self, score: np.ndarray) -> np.ndarray:
        """A' s for s (W, n): Lambda_i' Z_i' s per term and X_c' s."""
        out = []
        for (codes, M, J), L in zip(self.rows, self.chols):
            S = np.stack([self.group_sum(codes, J, score * M[:, a]) for a in range(M.shape[1])], axis=2)
            out.append((S @ L).reshape(score.shape[0], -1))          # (Lambda' s)_j = L' s_j
        out.append(score @ self.Xc)
        return np.concatenate(out, axis=1)


class KernelAlgebra(TermsAlgebra):
    """The Laplace step's factor from the blocked kernel, one :class:`CrossProducts` per walker.

    The cross-products are those of the rows augmented by p prior pseudo-observations
    (x = e_j, weight P0_j, no random effect) and one row with response 1 (so the [X | y] block stays
    positive definite); ``structure`` is their block structure, analysed once per model.
    """

    def __init__(self, rows, chols, Xc, blocks, X_aug, y_aug, structure, unit=None):
        super().__init__(rows, chols, Xc, unit)
        self.blocks, self.X_aug, self.y_aug, self.structure = blocks, X_aug, y_aug, structure

    def factor(self, info: np.ndarray, P0: np.ndarray) -> "KernelFactor":
        p = self.X_aug.shape[1]
        pseudo = np.concatenate([np.sqrt(P0[self.q:]), [1.0]])
        factors = []
        for w in range(info.shape[0]):
            sqrt_w = np.concatenate([np.sqrt(info[w]), pseudo])
            cp = CrossProducts(self.blocks, self.X_aug, self.y_aug, sqrt_w, structure=self.structure)
            try:
                factors.append(cp.factor([L[w] for L in self.chols]))
            except NotPositiveDefinite:
                factors.append(None)
        return KernelFactor(factors, self.q, p)


class KernelFactor:
    """H = L L' per walker from :class:`~mixedpy.linalg.blocked.BlockedFactor` (None where the
    factorization failed: its log-determinant and solves are NaN, so the walker's target is -inf)."""

    def __init__(self, factors, q: int, p: int):
        self.factors, self.d = factors, q + p
        self.half_logdet = np.array([np.nan if f is None else 0.5 * (f.ldL2 + f.ldRX2) for f in factors])

    def _each(self, solve, x: np.ndarray) -> np.ndarray:
        out = np.full(x.shape, np.nan)
        for w, f in enumerate(self.factors):
            if f is not None:
                out[w] = solve(f, x[w])
        return out

    def solve(self, g: np.ndarray) -> np.ndarray:
        """H^{-1} g for g (W, d)."""
        def one(f, gw):
            q1 = f.cp.q1
            c1, c2 = f.solve_lower(gw[:q1], gw[q1:])
            x1, x2 = f.solve_upper(c1, c2)
            return np.concatenate([x1, x2])
        return self._each(one, g)

    def solve_upper(self, z: np.ndarray) -> np.ndarray:
        """L^{-T} z for z (W, N, d)."""
        def one(f, zw):
            q1 = f.cp.q1
            x1, x2 = f.solve_upper(zw[:, :q1].T, zw[:, q1:].T)
            return np.concatenate([x1, x2], axis=0).T
        return self._each(one, z)


class ScalarTermAlgebra(TermsAlgebra):
    """The factor for one scalar term (1 | g) or (0 + x | g), batched over walkers in closed form.

    With a_i = lambda m_i on column codes_i, H = A'WA + diag(P0) is an arrowhead matrix:
    D (J, diagonal) = lambda^2 sum_{i in j} w_i m_i^2 + 1,  C (J x p) = lambda sum_{i in j} w_i m_i x_i',
    H_bb = X'WX + diag(P0_b); its Cholesky factor is [[D^1/2, 0], [C'D^-1/2, chol(S)]] with the Schur
    complement S = H_bb - C'D^{-1}C (the kernel's Diagonal first block and dense fixed block,
    written out for all walkers at once).  Each Newton step costs O(n p^2).
    """

    def factor(self, info: np.ndarray, P0: np.ndarray) -> "ArrowheadFactor":
        (codes, M, J), = self.rows
        lam = self.chols[0][:, 0, 0]
        m = M[:, 0]
        wm = info * m
        D = lam[:, None] ** 2 * self.group_sum(codes, J, wm * m) + P0[:J]
        C = np.zeros(D.shape + (self.Xc.shape[1],))
        for j, x in enumerate(self.Xc.T):
            C[:, :, j] = lam[:, None] * self.group_sum(codes, J, wm * x)
        Hbb = np.einsum("wn,np,nq->wpq", info, self.Xc, self.Xc) + np.diag(P0[J:])[None]
        return ArrowheadFactor(D, C, Hbb)


class ArrowheadFactor:
    """Cholesky factor of the arrowhead H = [[diag(D), C], [C', H_bb]] (see ScalarTermAlgebra)."""

    def __init__(self, D: np.ndarray, C: np.ndarray, Hbb: np.ndarray):
        self.D, self.C = D, C
        self.sqrtD = np.sqrt(D)
        self.CD = C / D[..., None]                                   # D^{-1} C
        S = Hbb - np.swapaxes(C, 1, 2) @ self.CD
        self.LS = np.linalg.cholesky(S)
        # the p x p triangles are tiny: one batched inverse beats a batched solve per use
        self.LSinv = np.linalg.inv(self.LS)
        self.half_logdet = np.log(self.sqrtD).sum(axis=1) + np.log(np.diagonal(self.LS, axis1=1, axis2=2)).sum(axis=1)

    def solve(self, g: np.ndarray) -> np.ndarray:
        J = self.D.shape[1]
        g_u, g_b = g[:, :J], g[:, J:]
        rhs = g_b - (g_u[:, None, :] @ self.CD)[:, 0]
        y = (self.LSinv @ rhs[..., None])[..., 0]
        step_b = (y[:, None, :] @ self.LSinv)[:, 0]
        step_u = g_u / self.D - (self.CD @ step_b[..., None])[..., 0]
        return np.concatenate([step_u, step_b], axis=1)

    def solve_upper(self, z: np.ndarray) -> np.ndarray:
        """L^{-T} z for z (W, N, d): L' = [[D^1/2, D^-1/2 C], [0, LS']]."""
        J = self.D.shape[1]
        z_u, z_b = z[..., :J], z[..., J:]
        x_b = z_b @ self.LSinv                                             # LS' x_b = z_b
        x_u = (z_u - (x_b @ np.swapaxes(self.C, 1, 2)) / self.sqrtD[:, None, :]) / self.sqrtD[:, None, :]
        return np.concatenate([x_u, x_b], axis=2)


class GLMMPosterior:
    """Posterior of a GLMM (rstanarm's families) as a pseudo-marginal target over the covariance
    parameters and, for families with one, the log of the auxiliary parameter (first coordinate)."""

    def __init__(self, design, family: str, link: str, priors: ResolvedPriors | None, n_importance: int = 16,
                 df: float | None = None):
        self.design, self.family, self.link = design, family, link
        self.fam = family_object(family, link)
        self.aux_name = AUX_NAME[family]
        self.terms = design.terms
        self.names = design.fixef_names
        y = np.asarray(design.y, dtype=float)
        w = design.weights
        if family == "binomial":
            check_binomial_response(y, w, design.response_name)
            self.k_obs, self.trials = binomial_counts(y, w)
            if y.ndim == 1 and w is not None:   # proportions x weights (rstanarm): whole up to rounding
                self.k_obs = np.round(self.k_obs)
            self.y_for_priors = np.where(self.trials > 0, self.k_obs / np.maximum(self.trials, 1), 0)
        elif family == "poisson":
            check_poisson_response(y, design.response_name)
            self.k_obs, self.trials, self.y_for_priors = y, None, y
        else:
            if family != "gaussian":    # rstanarm starts a gaussian model anywhere: any y for any link
                self.fam.prepare(y, None, design.response_name)
            elif y.ndim != 1:
                raise ValueError(f"gaussian response {design.response_name!r} must be a single numeric column")
            self.k_obs, self.trials, self.y_for_priors = y, None, y
        self.obs_w = np.ones(len(self.k_obs)) if (w is None or family == "binomial") else np.asarray(w, float)
        self._const = self.fam.loglik_const(self._response())
        X = np.asarray(design.X, dtype=float)
        self.centering = Centering.of(X, self.names)
        self.Xc = self.centering.center(X)
        self.offset = np.asarray(design.offset, dtype=float)
        self._rows = [(t.codes, t.model_matrix) for t in self.terms]
        if family == "binomial":
            self._collapse_identical_rows()
        self.resp = self._response()
        self.n, self.p = self.Xc.shape
        self.q = sum(t.n_coefs for t in self.terms)
        self.d = self.q + self.p
        self._scalar_term = len(self.terms) == 1 and self.terms[0].k == 1
        self._kernel_setup()
        # the radius of a d-variate t is sqrt(d F(d, nu)), whose relative spread sqrt(2/d + 2/nu) matches the
        # Laplace normal's sqrt(2/d) only for nu >~ d: nu = 8 in VerbAgg's 346 dimensions gave importance
        # log-weights of variance ~5000 (a Gaussian ~5), nu = d keeps polynomial tails without that cost
        self.N = int(n_importance)
        self.df = max(8.0, float(self.d)) if df is None else float(df)
        if self.N < 1:
            raise ValueError("n_importance must be at least 1")
        self.blob_dim = self.d
        self.rng = np.random.default_rng()
        if priors is not None:
            self.set_priors(priors)

    def _response(self) -> Response:
        """The response as a :class:`~mixedpy.families.Response`: binomial k successes of m trials
        (y = k / m, weights = m), Poisson counts with their weights, and for the families with an
        auxiliary parameter y with unit weights: their prior weights multiply the log-likelihood
        (:meth:`_loglik`), which for them differs from the families' glm weights (Gamma's w / phi
        shape, gaussian's precision weights)."""
        if self.family == "binomial":
            m = self.trials
            y = np.divide(self.k_obs, m, out=np.zeros_like(self.k_obs, dtype=float), where=m > 0)
            return Response(y=y, weights=m, trials=m, two_column=True)
        ones = np.ones_like(self.k_obs, dtype=float)
        w = ones if self.aux_name is not None else self.obs_w
        return Response(y=self.k_obs, weights=w, trials=ones, two_column=False)

    def _kernel_setup(self) -> None:
        """The rows of the blocked kernel and their block structure, analysed once per model:
        the data rows, p prior pseudo-observations and one row with response 1 (KernelAlgebra)."""
        extra = self.p + 1
        self._term_rows = [(np.asarray(c), np.asarray(M, dtype=float), t.n_levels)
                           for (c, M), t in zip(self._rows, self.terms)]
        self._unit = unit_columns(self._term_rows)
        # the pseudo-rows take the levels of the first data row, a combination that exists already,
        # so the block structure is the data's (a new level pair could turn a nested block dense)
        self._blocks = [TermBlock(np.concatenate([c, np.full(extra, c[0], dtype=c.dtype)]),
                                  np.vstack([M, np.zeros((extra, M.shape[1]))]), J) for c, M, J in self._term_rows]
        self._X_aug = np.vstack([self.Xc, np.eye(self.p), np.zeros((1, self.p))])
        self._y_aug = np.concatenate([np.zeros(self.n + self.p), [1.0]])
        self._structure = None if self._scalar_term else CrossProducts.analyse(
            self._blocks, [t.group_name for t in self.terms])

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
        self._const = np.bincount(inverse, weights=self._const, minlength=G)
        self.obs_w = np.ones(G)
        self.Xc, self.offset = self.Xc[first], self.offset[first]
        self._rows = [(c[first], M[first]) for c, M in self._rows]

    def set_priors(self, priors: ResolvedPriors):
        self.priors = priors
        self.cov_priors = covariance_priors(self.terms, priors)
        self.dim = sum(ct.dim for ct in self.cov_priors) + (self.aux_name is not None)
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
        if self.aux_name is not None and self.centering.intercept is not None:
            # mu = mean(y) everywhere: inside every link's domain (0 is not, for Gamma's inverse link)
            ybar = np.sum(self.obs_w * self.k_obs) / np.sum(self.obs_w)
            with np.errstate(all="ignore"):
                g0 = float(self.fam.linkfun(ybar))
            if np.isfinite(g0):         # (a gaussian [log] response with a mean <= 0 keeps the prior's)
                self._v_start[self.q + self.centering.intercept] = g0
        self.param_names = ([] if self.aux_name is None else [f"log_{self.aux_name}"]) + [
            f"{t.group_name}:{nm}" for t, ct in zip(self.terms, self.cov_priors) for nm in ct.names]

    # ---- pieces ------------------------------------------------------------------------------
    def _aux(self, x):
        """The auxiliary parameter exp(x[:, 0]) of each walker, None for binomial and Poisson."""
        return None if self.aux_name is None else np.exp(np.atleast_2d(x)[:, 0])

    def _unpack(self, x):
        """(chol(Sigma_i) per term, log prior + log Jacobian) of each walker, the auxiliary
        parameter's prior and Jacobian included."""
        x = np.atleast_2d(x)
        W = x.shape[0]
        chols, lp, pos = [], np.zeros(W), 0
        disp = np.ones(W)
        aux = self._aux(x)
        if aux is not None:
            lp = lp + self.priors.aux.logpdf(aux) + x[:, 0]       # Jacobian of aux = exp(log aux)
            disp, pos = aux, 1
        for ct in self.cov_priors:
            L, lpi = ct.transform(x[:, pos:pos + ct.dim], disp)
            chols.append(L)
            lp = lp + lpi
            pos += ct.dim
        return chols, lp

    def _design(self, chols):
        """The Laplace step's linear algebra for every walker: batched closed form for one scalar
        term, the blocked kernel otherwise."""
        if self._scalar_term:
            return ScalarTermAlgebra(self._term_rows, chols, self.Xc, self._unit)
        if self._structure is None:
            self._structure = CrossProducts.analyse(self._blocks, [t.group_name for t in self.terms])
        return KernelAlgebra(self._term_rows, chols, self.Xc, self._blocks, self._X_aug, self._y_aug,
                             self._structure, self._unit)

    @staticmethod
    def _per_walker(aux, eta):
        """The auxiliary parameter (W,) shaped to broadcast against eta (W, ..., n); None stays None."""
        return None if aux is None else np.reshape(aux, (-1,) + (1,) * (eta.ndim - 1))

    def _loglik(self, eta, aux=None):
        """log p(y | eta, aux) per observation (families.py, the functions glmer uses), times the prior
        weights for the families with an auxiliary parameter (their Response has unit weights)."""
        ll = self.fam.loglik_eta(eta, self.resp, self._const, aux=self._per_walker(aux, eta))
        return ll if self.aux_name is None else ll * self.obs_w

    def _score_info(self, eta, aux=None):
        """d l / d eta and the Fisher information at eta (and aux), weighted as :meth:`_loglik`."""
        score, info = self.fam.score_info(eta, self.resp, aux=self._per_walker(aux, eta))
        return (score, info) if self.aux_name is None else (score * self.obs_w, info * self.obs_w)

    def _penalized(self, alg, v, aux=None):
        eta = alg.linpred(v) + self.offset
        ll = self._loglik(eta, aux)
        score, info = self._score_info(eta, aux)
        pen = 0.5 * np.sum(self.P0 * (v - self.m0) ** 2, axis=1)
        return ll.sum(axis=1) - pen, score, info

    def _mode(self, alg, W: int, aux=None, iters: int = 40, tol: float = 1e-12, final_factor: bool = True):
        """Joint mode of (u, beta) and a factor of the negative Hessian (damped Newton).

        Stops after the step whose Newton decrement g'H^{-1}g is below ``tol`` for every walker
        (for the canonical links H is the exact Hessian and Newton converges quadratically: the
        iterate then is within about tol^2 of the mode; probit's Fisher scoring converges
        linearly, its last step leaves an error of order tol).  With
        ``final_factor=False`` the factor returned is the last one the search used, at the iterate
        before the last step, which saves a factorization and is a valid proposal scale all the
        same (module docstring)."""
        v = self._start(alg.chols)
        f, score, info = self._penalized(alg, v, aux)
        fac = None
        for _ in range(iters):
            g = alg.gradient(score) - self.P0 * (v - self.m0)
            fac = alg.factor(info, self.P0)
            step = fac.solve(g)
            step = np.where(np.isfinite(step), step, 0.0)     # a failed factor: the walker stays (-inf)
            decrement = np.sum(step * g, axis=1)
            decrement[~np.isfinite(decrement)] = 0.0          # a lost walker does not hold the others back
            t = np.ones(W)
            for _ in range(30):                          # halve the step where the objective went down
                v_new = v + t[:, None] * step
                f_new, s_new, i_new = self._penalized(alg, v_new, aux)
                worse = ~(f_new >= f - 1e-10)
                if not worse.any():
                    break
                t = np.where(worse, 0.5 * t, t)
            v, f, score, info = v_new, f_new, s_new, i_new
            if np.all(t == 1.0) and np.max(decrement) < tol:
                break
        if final_factor or fac is None:
            fac = alg.factor(info, self.P0)
        return v, fac

    def _logjoint(self, alg, V, aux=None):
        """log p(y, v | theta) for V (W, N, d) with the exact coefficient prior.

        The linear predictors are formed for a few walkers at a time, so that memory stays
        O(_CHUNK) beside the O(nnz) of the data whatever W N n is."""
        W, N = V.shape[:2]
        ll = np.empty((W, N))
        step = max(1, _CHUNK // max(1, N * self.n))
        for lo in range(0, W, step):
            sl = slice(lo, min(W, lo + step))
            eta = alg.linpred(V[sl], walkers=sl)
            eta += self.offset
            ll[sl] = self._loglik(eta, None if aux is None else aux[sl]).sum(axis=2)
        u, beta = V[..., :self.q], V[..., self.q:]
        lp = -0.5 * np.sum(u * u, axis=2) - 0.5 * self.q * _LOG2PI
        lb = coefficient_logprior(self.priors, self.names, beta.reshape(W * N, self.p)).reshape(W, N)
        return ll + lp + lb

    # ---- targets -----------------------------------------------------------------------------
    def _at_mode(self, x, **mode_options):
        """(log prior, design, joint mode v-hat, Cholesky factor L of the Hessian there, auxiliary
        parameter) for each walker, or None where the Newton search fails."""
        chols, lp = self._unpack(x)
        aux = self._aux(x)
        alg = self._design(chols)
        try:
            v, fac = self._mode(alg, lp.size, aux, **mode_options)
        except np.linalg.LinAlgError:
            return None
        return lp, alg, v, fac, aux

    def laplace_log_prob(self, x) -> np.ndarray:
        """The Laplace approximation of log p(theta | y) (used only to find a starting point)."""
        with np.errstate(all="ignore"):
            at = self._at_mode(x)
            if at is None:
                return np.full(np.atleast_2d(x).shape[0], -np.inf)
            lp, alg, v, fac, aux = at
            lj = self._logjoint(alg, v[:, None, :], aux)[:, 0]
            out = lp + lj - fac.half_logdet + 0.5 * self.d * _LOG2PI
        return np.where(np.isfinite(out), out, -np.inf)

    def _importance(self, alg, v, fac, t, aux=None):
        """Importance draws V = v-hat + L^{-T} t of the Student-t proposal q (scale H^{-1}) from
        standard multivariate-t draws t (W, N, d), and their log-weights log p(y, V | theta) - log q(V)
        (-inf where not finite).  (V - v-hat)' H (V - v-hat) = |t|^2 and |L^{-T}| = |H|^{-1/2}."""
        nu, d = self.df, self.d
        V = v[:, None, :] + fac.solve_upper(t)
        logq = (special.gammaln((nu + d) / 2) - special.gammaln(nu / 2) - 0.5 * d * np.log(nu * np.pi)
                + fac.half_logdet[:, None] - 0.5 * (nu + d) * np.log1p(np.sum(t * t, axis=2) / nu))
        logw = self._logjoint(alg, V, aux) - logq
        return V, np.where(np.isfinite(logw), logw, -np.inf)

    def log_prob(self, x):
        """Pseudo-marginal target: (log p_hat(y | theta) + log p(theta), chosen importance draw (W, d))."""
        x = np.atleast_2d(x)
        W = x.shape[0]
        with np.errstate(all="ignore"):
            at = self._at_mode(x, tol=_PROPOSAL_DECREMENT, final_factor=False)
            if at is None:
                return np.full(W, -np.inf), np.zeros((W, self.d))
            lp, alg, v, fac, aux = at
            nu, N = self.df, self.N
            t = self.rng.standard_normal((W, N, self.d)) * np.sqrt(nu / self.rng.chisquare(nu, (W, N, 1)))
            V, logw = self._importance(alg, v, fac, t, aux)
            top = logw.max(axis=1, keepdims=True)
            prob = np.exp(logw - top)
            total = prob.sum(axis=1, keepdims=True)
            est = (np.log(total) + top)[:, 0] - np.log(N)        # log-mean-exp of the weights
            prob /= total
            cum = np.cumsum(prob, axis=1)
            pick = np.minimum((cum < self.rng.random((W, 1))).sum(axis=1), N - 1)
            chosen = V[np.arange(W), pick]
            out = lp + est
        return np.where(np.isfinite(out), out, -np.inf), chosen

    def warm_start(self, x: np.ndarray):
        """Start later Newton searches from the joint mode at x (the posterior mode of theta),
        with each term's u rescaled to the proposed covariance (:meth:`_start`)."""
        chols, lp = self._unpack(x)
        aux = self._aux(x)
        alg = self._design(chols)
        v, _ = self._mode(alg, lp.size, aux)
        self._v_start = v[0]
        _, info = self._score_info(alg.linpred(v) + self.offset, aux)
        self._u_moves = []
        off = 0
        for (codes, M, J), L0 in zip(self._term_rows, chols):
            k = M.shape[1]
            D = np.empty((J, k, k))
            for a in range(k):
                for b in range(a, k):
                    D[:, a, b] = D[:, b, a] = np.bincount(codes, weights=info[0] * M[:, a] * M[:, b], minlength=J)
            u0 = v[0, off:off + J * k].reshape(J, k, 1)
            T0 = L0[0]
            r = D @ T0 @ u0 + np.linalg.solve(T0.T, u0)
            self._u_moves.append((D, r))
            off += J * k

    def _start(self, chols) -> np.ndarray:
        """The Newton start for each walker: beta and, per level, u(T) = (T'DT + I)^{-1} T' r.

        Linearising the score around the warm-start mode b0 = T0 u0 (D_j = Z_j'WZ_j there), the
        conditional mode of b_j under Sigma = TT' is (D_j + Sigma^{-1})^{-1} (D_j + Sigma0^{-1}) b0,
        i.e. u_j = (T'D_jT + I)^{-1} T' r_j with r_j = (D_j T0 + T0^{-T}) u0_j: shrinkage follows the
        proposed covariance, and the search needs one or two Newton steps instead of three or four."""
        W = chols[0].shape[0]
        v = np.tile(self._v_start, (W, 1))
        if getattr(self, "_u_moves", None) is None:
            return v
        off = 0
        for (D, r), L in zip(self._u_moves, chols):
            J, k = r.shape[0], r.shape[1]
            if k == 1:
                lam = L[:, 0, 0, None]
                v[:, off:off + J] = lam * r[None, :, 0, 0] / (lam * lam * D[None, :, 0, 0] + 1.0)
                off += J
                continue
            Tt = np.swapaxes(L, 1, 2)[:, None]                              # (W, 1, k, k)
            P = Tt @ D[None] @ L[:, None] + np.eye(k)
            v[:, off:off + J * k] = np.linalg.solve(P, Tt @ r[None]).reshape(W, J * k)
            off += J * k
        return v

    def _aux_start(self) -> float:
        """A moment estimate of the auxiliary parameter from y alone (a start for the mode search):
        var(y) = phi V(ybar) for Gamma and inverse.gaussian (aux = 1/phi), sd(y) for gaussian,
        ybar^2 / (var(y) - ybar) for neg_binomial_2 (10 when y is not overdispersed)."""
        y = self.k_obs
        m, v = float(np.mean(y)), float(np.var(y, ddof=1))
        if self.family == "gaussian":
            return max(np.sqrt(v), 1e-8)
        if self.family == "neg_binomial_2":
            return float(np.clip(m * m / (v - m), 0.1, 100.0)) if v > 1.05 * m else 10.0
        return float(self.fam.aux_from_dispersion(v / float(self.fam.variance(m))))

    def start(self) -> np.ndarray:
        """Unconstrained parameters at Sigma = 0.25 I per term (a moderate starting point for the mode
        search) and a moment estimate of the auxiliary parameter."""
        x, disp = [], 1.0
        if self.aux_name is not None:
            disp = self._aux_start()
            x.append(np.log(disp))
        for ct in self.cov_priors:
            x += list(ct.inverse(0.25 * np.eye(ct.k), disp))
        return np.asarray(x, dtype=float)

    def draw(self, x: np.ndarray, blobs: np.ndarray) -> dict:
        """Sigma, beta (original X scale), b per term and the auxiliary parameter ("aux"; also
        "sigma" for gaussian, ones otherwise) from the kept states and their importance draws."""
        chols, _ = self._unpack(x)
        aux = self._aux(x)
        u, beta_c = blobs[:, :self.q], blobs[:, self.q:]
        sigma = aux if self.family == "gaussian" else np.ones(x.shape[0])
        out = {"sigma": sigma, "Sigma": [L @ np.swapaxes(L, 1, 2) for L in chols],
               "beta": self.centering.uncenter(beta_c), "b": []}
        if aux is not None:
            out["aux"] = aux
        off = 0
        for t, L in zip(self.terms, chols):
            ui = u[:, off:off + t.n_coefs].reshape(-1, t.n_levels, t.k)
            out["b"].append(np.einsum("sab,sjb->sja", L, ui))
            off += t.n_coefs
        return out
