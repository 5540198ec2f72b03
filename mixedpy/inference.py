"""Frequentist intervals and tests for mixed models: ``confint`` (Wald, profile, bootstrap) and
``anova`` (likelihood-ratio tests), as lme4's ``confint.merMod``, ``profile.merMod``,
``bootMer`` and ``anova.merMod``.

Parameters are reported on lme4's "sd/cor" scale with its old names (``oldNames = TRUE``):
per random-effects term, in the order of theta (vech, column-major), a diagonal entry becomes
the standard deviation of that coefficient and an off-diagonal one the correlation; the names
are ``.sig01, .sig02, ...``, then ``.sigma`` (models with a scale), then the fixed effects.

Profile likelihood (Bates et al. 2015, sec. 5.1; lme4 ``profile.merMod``/``devfun2``): the model
is refitted by ML, and for each parameter phi_j the signed root of the deviance change

    zeta(v) = sign(v - phi_j-hat) sqrt( min_{phi_-j} d(phi_j = v, phi_-j) - d(phi-hat) )

is computed, where d is the ML deviance with sigma *not* profiled out,

    d(theta, sigma) = log|L_theta|^2 - sum log w + n log(2 pi sigma^2) + pwrss(theta) / sigma^2.

For a fixed effect, beta_j = v moves x_j v into the offset and d is minimized over theta (sigma
and the other betas profiled out).  The interval ends solve zeta(v) = +-z_{(1+level)/2}; we
find them by bracketing and Brent's method on the exact profile (lme4 interpolates a spline
through a grid, so the two differ by lme4's interpolation error, around 1e-4 relative).

Every tolerance is relative to the parameter's natural scale, so the intervals are equivariant
under y -> a + k y (the sd's, sigma and the fixed effects map by k, the intercept also moves by a,
correlations are unchanged): the inner fits over the variance parameters run on phi / scale with
scale = sigma-hat for sd's and sigma (1 for correlations and for models without a scale), the fixed
effects of a glmer profile on beta / se(beta), and Brent's method stops at 1e-6 of the first
bracketing step (a multiple of se(beta_j) or sigma-hat), never at an absolute or |hat|-relative
width.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize as sopt
from scipy.stats import chi2, norm

from .errors import BootstrapWarning, DataError, MixedpyError, MixedpyInfo
from .linalg.blocked import NotPositiveDefinite
from .lmm import LMMProblem
from .optimize import minimize
from .terms import vech_indices
from .threads import controls_threads

# --------------------------------------------------------------------------------------------
# theta, sigma  <->  lme4's sd/cor parameters
# --------------------------------------------------------------------------------------------


def _psd_cholesky(C: np.ndarray, tol: float = 1e-12) -> np.ndarray | None:
    """Lower Cholesky factor of a positive semi-definite matrix (zero pivots give zero columns,
    so a correlation of exactly +-1 or an sd of 0 is allowed); None if C is not PSD."""
    k = C.shape[0]
    L = np.zeros_like(C)
    scale = max(float(np.max(np.abs(np.diag(C)))), 1e-300)
    for j in range(k):
        d = C[j, j] - L[j, :j] @ L[j, :j]
        if d < -tol * scale:
            return None
        if d <= tol * scale:
            if np.any(np.abs(C[j + 1:, j] - L[j + 1:, :j] @ L[j, :j]) > 1e-8 * scale):
                return None
            continue
        L[j, j] = np.sqrt(d)
        L[j + 1:, j] = (C[j + 1:, j] - L[j + 1:, :j] @ L[j, :j]) / L[j, j]
    return L


@dataclass(frozen=True)
class SdCorMap:
    """Map between (theta, sigma) and lme4's sd/cor parameter vector for a list of terms."""

    ks: tuple[int, ...]
    use_scale: bool

    @classmethod
    def for_fit(cls, fit) -> "SdCorMap":
        return cls(tuple(t.k for t in fit.terms), bool(fit.use_scale))

    @property
    def n_var(self) -> int:
        return sum(k * (k + 1) // 2 for k in self.ks) + int(self.use_scale)

    def kinds(self) -> list[str]:
        """"sd", "cor" or "sigma" per parameter."""
        out = []
        for k in self.ks:
            r, c = vech_indices(k)
            out += ["sd" if i == j else "cor" for i, j in zip(r, c)]
        return out + (["sigma"] if self.use_scale else [])

    def names(self) -> list[str]:
        n = sum(k * (k + 1) // 2 for k in self.ks)
        width = max(2, len(str(n)))
        return [f".sig{i + 1:0{width}d}" for i in range(n)] + ([".sigma"] if self.use_scale else [])

    def from_theta(self, theta: np.ndarray, sigma: float) -> np.ndarray:
        s = sigma if self.use_scale else 1.0
        out, start = [], 0
        for k in self.ks:
            r, c = vech_indices(k)
            T = np.zeros((k, k))
            T[r, c] = theta[start:start + len(r)]
            start += len(r)
            C = s * s * (T @ T.T)
            sd = np.sqrt(np.diag(C))
            with np.errstate(invalid="ignore", divide="ignore"):
                R = C / np.outer(sd, sd)
            out += [sd[i] if i == j else R[i, j] for i, j in zip(r, c)]
        if self.use_scale:
            out.append(sigma)
        return np.asarray(out, dtype=float)

    def to_theta(self, phi: np.ndarray) -> tuple[np.ndarray | None, float]:
        """(theta, sigma); theta is None when the correlations do not form a PSD matrix."""
        sigma = float(phi[-1]) if self.use_scale else 1.0
        out, start = [], 0
        for k in self.ks:
            r, c = vech_indices(k)
            vals = phi[start:start + len(r)]
            start += len(r)
            sd = np.zeros(k)
            R = np.eye(k)
            for v, i, j in zip(vals, r, c):
                if i == j:
                    sd[i] = v
                else:
                    R[i, j] = R[j, i] = v
            L = _psd_cholesky(np.outer(sd, sd) * R)
            if L is None:
                return None, sigma
            out.append(L[r, c] / sigma)
        return np.concatenate(out) if out else np.zeros(0), sigma

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        kinds = self.kinds()
        lo = np.array([-1.0 if k == "cor" else 0.0 for k in kinds])
        hi = np.array([1.0 if k == "cor" else np.inf for k in kinds])
        return lo, hi


# --------------------------------------------------------------------------------------------
# Wald
# --------------------------------------------------------------------------------------------


def _interval_frame(names, lower, upper, level) -> pd.DataFrame:
    a = (1 - level) / 2
    cols = [f"{100 * a:.3g} %", f"{100 * (1 - a):.3g} %"]
    return pd.DataFrame({cols[0]: np.asarray(lower, float), cols[1]: np.asarray(upper, float)},
                        index=pd.Index(list(names)))


def confint_wald(fit, level: float = 0.95) -> pd.DataFrame:
    """beta-hat +- z_{(1+level)/2} se (lme4 ``method="Wald"``); NaN for the variance parameters."""
    m = SdCorMap.for_fit(fit)
    z = norm.ppf((1 + level) / 2)
    beta = np.asarray(fit.beta, float)
    se = np.sqrt(np.diag(np.asarray(fit.vcov_array)))
    nan = np.full(m.n_var, np.nan)
    return _interval_frame(m.names() + list(fit.fixef_names), np.concatenate([nan, beta - z * se]),
                           np.concatenate([nan, beta + z * se]), level)


# --------------------------------------------------------------------------------------------
# profile
# --------------------------------------------------------------------------------------------


def _require_lmer(fit, what: str):
    from .results import LmerFit

    if not isinstance(fit, LmerFit):
        raise NotImplementedError(f"{what} intervals are implemented for lmer and glmer fits; "
                                  f"for a {type(fit).__name__} use method='Wald'")


class _Profiler:
    """The ML deviance of an lmer fit as a function of lme4's (sd/cor, sigma) parameters and the
    fixed effects, and its profiles."""

    def __init__(self, fit):
        _require_lmer(fit, "profile")
        self.ml = fit.refit(reml=False, quiet=True) if fit.reml else fit
        self.problem: LMMProblem = self.ml.problem
        self.map = SdCorMap.for_fit(fit)
        self.phi_hat = self.map.from_theta(self.ml.theta, self.ml.sigma)
        self.lo, self.hi = self.map.bounds()
        self.n = self.problem.n
        self.base = float(self.ml.deviance)
        self.beta_hat = np.asarray(self.ml.beta, float)
        self.se = np.sqrt(np.diag(self.ml.vcov_array))
        self.var_scale = _var_scale(self.map, self.ml.sigma)

    # -- variance parameters ------------------------------------------------------------
    def deviance(self, phi: np.ndarray) -> float:
        """ML deviance at (sd/cor, sigma) with beta profiled out (lme4 ``devfun2``)."""
        theta, sigma = self.map.to_theta(phi)
        if theta is None or not sigma > 0:
            return np.inf
        try:
            f = self.problem.cross.factor(self.problem.relative_factors(theta))
        except NotPositiveDefinite:
            return np.inf
        s2 = sigma * sigma
        return float(f.ldL2 - self.problem.ldW + f.pwrss / s2 + self.n * np.log(2 * np.pi * s2))

    #: how far an inner start is moved off a correlation bound of +-1 (BOBYQA started exactly on
    #: such a bound can stop at once and report success, leaving the profile too high)
    COR_MARGIN = 0.02

    def _off_bounds(self, x: np.ndarray, free: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """A start for the inner fit inside the box and off the correlation bounds."""
        x = np.clip(x, lo, hi)
        kinds = self.map.kinds()  # variance parameters only; indices past them are fixed effects
        cor = np.array([i < len(kinds) and kinds[i] == "cor" for i in free], dtype=bool)
        if cor.any():
            x[cor] = np.clip(x[cor], -1 + self.COR_MARGIN, 1 - self.COR_MARGIN)
        return x

    def profile_var(self, j: int, v: float, start: np.ndarray) -> tuple[float, np.ndarray]:
        """min over the other parameters of the deviance with phi_j = v; returns (dev, phi).

        The inner fit runs from ``start`` (the nearest profile point) moved off the correlation
        bounds; when that start or its optimum lies on a bound (a correlation of +-1, an SD of 0) it
        runs again from the ML estimates and the lower optimum is kept, so a warm start stuck at a
        boundary cannot make the profile too high.
        """
        free = np.array([i for i in range(self.map.n_var) if i != j])
        if free.size == 0:
            phi = np.array([v])
            return self.deviance(phi), phi
        # the inner fit sees x = phi / scale (sd's and sigma relative to sigma-hat), so BOBYQA's
        # absolute x tolerance and the bound test of _touches mean the same for y and a + k y
        sc = self.var_scale[free]

        def fun(x):
            phi = start.copy()
            phi[free] = x * sc
            phi[j] = v
            return self.deviance(phi)

        lo = self.lo[free] / sc
        kinds = self.map.kinds()
        # keep strictly positive sigma away from its bound of 0 (sigma / sigma-hat >= 1e-10)
        lo[[kinds[i] == "sigma" for i in free]] = 1e-10
        hi = self.hi[free] / sc
        best = _fit_with_mle_retry(lambda x0: minimize(fun, self._off_bounds(x0, free, lo, hi), lo, hi),
                                   start[free] / sc, self.phi_hat[free] / sc, lo, hi)
        phi = start.copy()
        phi[free] = best.x * sc
        phi[j] = v
        return float(best.fmin), phi

    # -- fixed effects --------------------------------------------------------------------
    def profile_beta(self, j: int, v: float, start: np.ndarray) -> tuple[float, np.ndarray]:
        """min over theta of the ML profiled deviance with beta_j = v (x_j v moved to the offset),
        from ``start``, and again from the ML theta when either end of that fit is on a bound (the
        lower optimum is kept)."""
        P = self.problem
        X = np.delete(P.X, j, axis=1)
        sub = LMMProblem(P.terms, X, P.y, P.weights, P.offset + P.X[:, j] * v)
        best = _fit_with_mle_retry(lambda th0: minimize(lambda th: sub.objective(th, False), th0, sub.lower),
                                   start, self.ml.theta, sub.lower, np.full(len(sub.lower), np.inf))
        return float(best.fmin), best.x

    def var_start(self) -> np.ndarray:
        return self.phi_hat.copy()

    def beta_start(self) -> np.ndarray:
        return self.ml.theta.copy()

    # -- zeta and interval ends -------------------------------------------------------------
    def interval(self, j_all: int, level: float) -> tuple[float, float]:
        """Interval for parameter j_all (variance parameters first, then fixed effects)."""
        zc = norm.ppf((1 + level) / 2)
        nv = self.map.n_var
        if j_all < nv:
            j, hat, lo_b, hi_b = j_all, self.phi_hat[j_all], self.lo[j_all], self.hi[j_all]
            kind = self.map.kinds()[j]
            start0 = self.var_start()
            fun = self.profile_var
            step = {"sd": 0.5 * hat + 0.1 * self.ml.sigma if self.map.use_scale else 0.5 * hat + 0.05,
                    "cor": 0.3 * (1 - abs(hat)) + 1e-3, "sigma": 0.1 * hat}[kind]
        else:
            j = j_all - nv
            hat, lo_b, hi_b = self.beta_hat[j], -np.inf, np.inf
            start0 = self.beta_start()
            fun = self.profile_beta
            step = zc * self.se[j]
        return (self._end(fun, j, hat, -1, zc, lo_b, step, start0),
                self._end(fun, j, hat, +1, zc, hi_b, step, start0))

    def _end(self, fun, j, hat, direction, zc, bound, step, start0) -> float:
        """The end of the interval on one side: bracket zeta = +-zc by growing steps from ``hat``
        (the first one ``step``, the parameter's natural scale), then Brent's method to 1e-6 of
        ``step``, so the end is located to the same fraction of the interval width for y and
        a + k y (an x tolerance in absolute terms or relative to |hat| is not: an intercept of 1e6
        gets a tolerance of 0.1)."""
        cache: dict[float, tuple[float, np.ndarray]] = {}
        starts = {hat: start0}

        def zeta(v: float) -> float:
            if v not in cache:
                # warm start from the evaluated point nearest to v
                near = min(starts, key=lambda a: abs(a - v))
                dev, x = fun(j, v, starts[near])
                cache[v] = (dev, x)
                starts[v] = x
                _monotone(v)
            dev = cache[v][0]
            return direction * np.sqrt(max(dev - self.base, 0.0))

        def _monotone(v: float) -> None:
            """The profile deviance cannot fall moving away from the optimum: a nearer point with a
            higher deviance than v was a stuck inner fit, so refit it from v's optimum."""
            for w in [w for w in cache if direction * (w - hat) > 0 and abs(w - hat) < abs(v - hat)]:
                # differences below the inner fits' ftol_abs are their noise, not a stuck fit
                # (an absolute deviance difference: it is the same for y and a + k y)
                if cache[w][0] > cache[v][0] + 1e-8:
                    dev, x = fun(j, w, cache[v][1])
                    if dev < cache[w][0]:
                        cache[w] = (dev, x)
                        starts[w] = x

        target = zc
        a = hat
        width = step
        for _ in range(60):
            b = hat + direction * width
            if np.isfinite(bound) and direction * (b - bound) >= 0:
                b = bound
            zb = direction * zeta(b)  # >= 0 on this side
            if zb >= target:
                g = lambda v: direction * zeta(v) - target  # noqa: E731
                # rtol at its floor: brentq's rtol * |v| would be relative to the location (1e-4
                # for an intercept of 1e6), not to the width
                return float(sopt.brentq(g, a, b, xtol=max(1e-6 * step, np.finfo(float).tiny),
                                         rtol=4 * np.finfo(float).eps))
            if b == bound:
                return float(bound)  # the profile never reaches the critical value inside the bounds
            # secant extrapolation of zeta, at most tripling the width per step
            grow = target / zb * 1.05 if zb > 1e-8 else 3.0
            a = b
            width *= float(np.clip(grow, 1.2, 3.0))
        raise RuntimeError(f"profile of parameter {j} did not reach zeta = {target:.3g}; "
                           "the likelihood is too flat to bound this interval")


class _GlmerProfiler(_Profiler):
    """The Laplace (or AGQ) deviance of a glmer fit as a function of (sd/cor, beta); each profile
    point minimizes it over all the other parameters jointly, as lme4's ``profile.merMod`` does for
    GLMMs (there is no closed-form profiling of beta).  PIRLS restarts from the fit's linear
    predictor at every evaluation, so the function is the one the fit minimized."""

    def __init__(self, fit):
        from .glmm import PIRLSError

        self.ml = fit
        self.problem = fit.problem
        self.nAGQ = fit.nAGQ
        self.map = SdCorMap.for_fit(fit)
        self.phi_hat = self.map.from_theta(fit.theta, 1.0)
        self.lo, self.hi = self.map.bounds()
        self.beta_hat = np.asarray(fit.beta, float)
        self.se = np.asarray(fit.se_fixef, float)
        self.nv, self.p = self.map.n_var, len(self.beta_hat)
        self.var_scale = _var_scale(self.map, 1.0)
        se_ok = np.isfinite(self.se) & (self.se > 0)
        self.par_scale = np.concatenate([self.var_scale, np.where(se_ok, self.se, 1.0)])
        self._eta_start = self.problem.offset + (fit.state.eta - self.problem.offset)
        self._failures = (PIRLSError, NotPositiveDefinite, np.linalg.LinAlgError)
        self.base = self.deviance_full(np.concatenate([self.phi_hat, self.beta_hat]))

    def deviance_full(self, pars: np.ndarray) -> float:
        theta, _ = self.map.to_theta(pars[:self.nv])
        if theta is None:
            return np.inf
        try:
            st = self.problem.pirls(theta, pars[self.nv:], self._eta_start)
        except self._failures:
            return np.inf
        return float(self.problem.objective(st, self.nAGQ))

    def _profile(self, i: int, v: float, start: np.ndarray) -> tuple[float, np.ndarray]:
        """min over every parameter but number i (of (sd/cor, beta)) with that one at v."""
        free = np.array([a for a in range(self.nv + self.p) if a != i])
        # the fixed effects enter the inner fit as beta / se(beta), so its x tolerance and first
        # step mean the same whatever the units of the predictors (sd's and correlations are on
        # the scale of the linear predictor already)
        sc = self.par_scale[free]
        lo = np.concatenate([self.lo, np.full(self.p, -np.inf)])[free]
        hi = np.concatenate([self.hi, np.full(self.p, np.inf)])[free]
        step = np.concatenate([0.1 * np.abs(self.phi_hat) + 0.02, np.full(self.p, 0.2)])[free]

        def fun(x):
            pars = start.copy()
            pars[free] = x * sc
            pars[i] = v
            return self.deviance_full(pars)

        def run(x0):
            return minimize(fun, self._off_bounds(x0, free, lo, hi), lo, hi, initial_step=step,
                            xtol_abs=1e-6, ftol_abs=1e-8)

        # as for lmer profiles: a start or optimum on a bound may be a stuck fit; retry from the MLE
        res = _fit_with_mle_retry(run, start[free] / sc, self.var_start()[free] / sc, lo, hi)
        pars = start.copy()
        pars[free] = res.x * sc
        pars[i] = v
        return float(res.fmin), pars

    def profile_var(self, j, v, start):
        return self._profile(j, v, start)

    def profile_beta(self, j, v, start):
        return self._profile(self.nv + j, v, start)

    def var_start(self) -> np.ndarray:
        return np.concatenate([self.phi_hat, self.beta_hat])

    beta_start = var_start


def _var_scale(m: SdCorMap, sigma: float) -> np.ndarray:
    """The natural scale of each (sd/cor, sigma) parameter: sigma-hat for sd's and sigma, which are
    in the units of y in a model with a scale; 1 for correlations and for models without one."""
    s = float(sigma) if m.use_scale and np.isfinite(sigma) and sigma > 0 else 1.0
    return np.array([1.0 if k == "cor" else s for k in m.kinds()])


def _fit_with_mle_retry(run, start: np.ndarray, mle: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    """An inner profile fit ``run(start)``; when the start or its optimum is on a bound (a warm start
    stuck at a correlation of +-1 or an SD of 0), ``run(mle)`` too, keeping the lower optimum.
    ``start`` and ``mle`` are in the inner fit's coordinates."""
    best = run(start)
    if (_touches(start, lo, hi) or _touches(best.x, lo, hi)) and not np.array_equal(start, mle):
        again = run(mle)
        best = again if again.fmin < best.fmin else best
    return best


def _touches(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, tol: float = 1e-6) -> bool:
    """Some coordinate is on (within tol of) its bound: an inner fit started or ended there may be
    stuck, so it is repeated from the ML estimates.  Callers pass scale-free coordinates
    (phi / scale), so tol is relative to the parameter's scale."""
    return bool(np.any(x - lo <= tol) or np.any(hi - x <= tol))


def confint_profile(fit, level: float = 0.95, parm=None) -> pd.DataFrame:
    """Profile-likelihood intervals (lme4 ``confint(profile(fit))``), on the sd/cor scale and for
    the fixed effects: from the ML refit of an lmer model (as lme4's ``devfun2`` does), or from the
    Laplace/AGQ deviance of a glmer fit."""
    from .glmer import GlmerFit

    prof = _GlmerProfiler(fit) if isinstance(fit, GlmerFit) else _Profiler(fit)
    names = prof.map.names() + list(fit.fixef_names)
    which = _select(names, parm)
    lower, upper = np.full(len(which), np.nan), np.full(len(which), np.nan)
    for a, i in enumerate(which):
        lower[a], upper[a] = prof.interval(i, level)
    return _interval_frame([names[i] for i in which], lower, upper, level)


def _select(names: list[str], parm) -> list[int]:
    if parm is None:
        return list(range(len(names)))
    if isinstance(parm, str):
        parm = [parm]
    if parm == ["theta_"]:
        return [i for i, n in enumerate(names) if n.startswith(".sig")]
    if parm == ["beta_"]:
        return [i for i, n in enumerate(names) if not n.startswith(".sig")]
    out = []
    for p in parm:
        if p not in names:
            raise ValueError(f"parm {p!r} is not a parameter; choose from {names}")
        out.append(names.index(p))
    return out


# --------------------------------------------------------------------------------------------
# parametric bootstrap
# --------------------------------------------------------------------------------------------


def _progress(iterable, total: int, enabled: bool, desc: str):
    """A tqdm progress bar when the user asked for one (``progress=True``); library code never
    prints otherwise."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc)


@dataclass
class BootResult:
    """Parametric bootstrap replicates (lme4 ``bootMer``): ``t`` is (nsim, n_params) with the
    sd/cor parameters, sigma and the fixed effects of each refit; ``t0`` the original values."""

    t0: pd.Series
    t: pd.DataFrame
    n_singular: int
    messages: list[str]
    n_failed: int = 0
    #: ``messages`` with their warning categories: failed refits are a BootstrapWarning, the count
    #: of singular refits is informational (MixedpyInfo)
    notes: tuple[tuple[type, str], ...] = ()

    def confint(self, level: float = 0.95, type: str = "perc") -> pd.DataFrame:
        a = (1 - level) / 2
        lo, hi = np.full(self.t.shape[1], np.nan), np.full(self.t.shape[1], np.nan)
        for c in range(self.t.shape[1]):
            x = self.t.iloc[:, c].to_numpy()
            x = np.sort(x[np.isfinite(x)])
            if x.size < 2:
                continue
            t0 = self.t0.iloc[c]
            if type == "perc":
                lo[c], hi[c] = _norm_inter(x, a), _norm_inter(x, 1 - a)
            elif type == "basic":
                lo[c], hi[c] = 2 * t0 - _norm_inter(x, 1 - a), 2 * t0 - _norm_inter(x, a)
            elif type == "norm":
                bias, sd = x.mean() - t0, x.std(ddof=1)
                z = norm.ppf(1 - a)
                lo[c], hi[c] = t0 - bias - z * sd, t0 - bias + z * sd
            else:
                raise ValueError(f"boot_type must be 'perc', 'basic' or 'norm', got {type!r}")
        return _interval_frame(self.t.columns, lo, hi, level)


def _norm_inter(x_sorted: np.ndarray, alpha: float) -> float:
    """Quantile of bootstrap replicates as the boot package's ``norm.inter``: order statistic
    (R+1) alpha, interpolated on the normal-quantile scale between neighbours."""
    R = x_sorted.size
    rk = (R + 1) * alpha
    k = int(np.floor(rk))
    if abs(rk - round(rk)) < 1e-10 and 1 <= round(rk) <= R:
        return float(x_sorted[int(round(rk)) - 1])
    if k < 1:
        return float(x_sorted[0])
    if k >= R:
        return float(x_sorted[-1])
    h, lo_q, hi_q = norm.ppf(alpha), norm.ppf(k / (R + 1)), norm.ppf((k + 1) / (R + 1))
    return float(x_sorted[k - 1] + (h - lo_q) / (hi_q - lo_q) * (x_sorted[k] - x_sorted[k - 1]))


def bootstrap(fit, nsim: int = 500, seed=None, progress: bool = False) -> BootResult:
    """Parametric bootstrap as lme4's ``bootMer(fit, FUN, nsim, use.u = FALSE, type =
    "parametric")``: responses are simulated with new random effects (``simulate(fit)``) and
    the model is refitted to each with the same criterion (REML, ML or glmer's Laplace/AGQ),
    starting at the estimates.  The statistic is the sd/cor parameters, sigma (when the model has
    one) and the fixed effects.  Refits that raise a :class:`~mixedpy.errors.MixedpyError` (the
    fit failed) or a linear-algebra error are dropped and counted in ``messages``."""
    from .arm import simulate

    nsim = int(nsim)
    if nsim < 2:
        raise ValueError(f"nsim must be at least 2 for bootstrap intervals, got {nsim}")
    m = SdCorMap.for_fit(fit)
    names = m.names() + list(fit.fixef_names)
    t0 = pd.Series(np.concatenate([m.from_theta(fit.theta, fit.sigma), fit.beta]), index=names)
    Y = simulate(fit, nsim=nsim, seed=seed).to_numpy()
    out = np.full((nsim, len(names)), np.nan)
    n_singular, failed = 0, 0
    for s in _progress(range(nsim), nsim, progress, "bootstrap refits"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = fit.refit(newresp=Y[:, s], calc_derivs=False, quiet=True)
        except (NotPositiveDefinite, np.linalg.LinAlgError, MixedpyError):
            failed += 1
            continue
        n_singular += bool(r.is_singular)
        out[s] = np.concatenate([m.from_theta(r.theta, r.sigma), r.beta])
    notes = []
    if n_singular:
        notes.append((MixedpyInfo, f"{n_singular} of {nsim} refits were singular (boundary) fits"))
    if failed:
        notes.append((BootstrapWarning, f"{failed} of {nsim} refits failed and were dropped; the intervals use "
                      f"the other {nsim - failed}. Increase nsim, or check the model for convergence problems"))
    return BootResult(t0=t0, t=pd.DataFrame(out, columns=names), n_singular=n_singular,
                      messages=[m for _, m in notes], n_failed=failed, notes=tuple(notes))


# --------------------------------------------------------------------------------------------
# confint dispatcher
# --------------------------------------------------------------------------------------------


@controls_threads
def confint(fit, method: str = "Wald", level: float = 0.95, parm=None, nsim: int = 500, seed=None,
            boot_type: str = "perc", progress: bool = False) -> pd.DataFrame:
    """Confidence intervals for the parameters of a mixed model, as lme4's ``confint.merMod``.

    Parameters
    ----------
    method : "Wald" (fixed effects only; NaN for variance parameters), "profile" (profile
        likelihood: the ML refit of an lmer model, the Laplace/AGQ deviance of a glmer model) or
        "boot" (parametric bootstrap percentile intervals; lmer and glmer)
    level : coverage, e.g. 0.95
    parm : parameter names to report (default all; "theta_" or "beta_" as lme4)
    nsim, seed, boot_type, progress : bootstrap settings (``boot_type`` "perc", "basic" or
        "norm"; ``progress=True`` shows a tqdm progress bar).  The bootstrap's notes are warnings:
        :class:`~mixedpy.errors.BootstrapWarning` when refits failed and were dropped,
        :class:`~mixedpy.errors.MixedpyInfo` for the count of singular refits

    Returns
    -------
    DataFrame indexed by ``.sig01, ..., .sigma, <fixed effects>`` with columns "2.5 %", "97.5 %".
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    key = str(method).lower()
    if key == "wald":
        out = confint_wald(fit, level)
    elif key == "profile":
        return confint_profile(fit, level, parm)
    elif key == "boot":
        res = bootstrap(fit, nsim=nsim, seed=seed, progress=progress)
        for category, msg in res.notes:
            warnings.warn(msg, category, stacklevel=3)
        out = res.confint(level, boot_type)
    else:
        raise ValueError(f"method must be 'Wald', 'profile' or 'boot', got {method!r}")
    return out.iloc[_select(list(out.index), parm)]


# --------------------------------------------------------------------------------------------
# anova
# --------------------------------------------------------------------------------------------


def _caller_names(objs, depth: int = 2) -> list[str | None]:
    """Names the caller gave these objects (as R's anova labels models by their symbols)."""
    import inspect

    frame = inspect.currentframe()
    try:
        for _ in range(depth):
            frame = frame.f_back
        scope = {**frame.f_globals, **frame.f_locals}
        out = []
        for o in objs:
            hits = [k for k, v in scope.items() if v is o and not k.startswith("_")]
            out.append(hits[0] if hits else None)
        return out
    finally:
        del frame


def _npar(fit) -> int:
    df = getattr(fit, "df", None)
    if df is not None:
        return int(df)
    return len(fit.beta) + len(fit.theta) + int(fit.use_scale)


def anova(*fits, refit: bool = True, names: list[str] | None = None) -> pd.DataFrame:
    """Likelihood-ratio tests between nested mixed models (lme4 ``anova.merMod``).

    REML fits are refitted by ML first (``refit=True``, lme4's default), because REML
    likelihoods of models with different fixed effects are not comparable; lme4's message
    "refitting model(s) with ML (instead of REML)" is then a :class:`~mixedpy.errors.MixedpyInfo`
    warning.  The models are
    ordered by their number of parameters and each is tested against the previous one:

        Chisq = deviance_{m-1} - deviance_m,  Df = npar_m - npar_{m-1},  p = P(chi^2_Df > Chisq).

    Returns a DataFrame with columns npar, AIC, BIC, logLik, deviance, Chisq, Df, Pr(>Chisq),
    indexed by the names the models have in the caller (or ``names``).
    """
    if len(fits) < 2:
        raise ValueError("anova() needs at least two fitted models to compare")
    for f in fits:
        if not hasattr(f, "loglik") or not hasattr(f, "theta"):
            raise TypeError(f"anova() compares fitted mixed models, got {type(f).__name__}")
    n = {f.nobs for f in fits}
    if len(n) > 1:
        raise DataError(f"models were not all fitted to the same number of observations ({sorted(n)}); "
                        "refit them on the same rows (e.g. drop missing values first)")
    if names is None:
        found = _caller_names(fits)
        names = [nm if nm else f"model{i + 1}" for i, nm in enumerate(found)]
        if len(set(names)) < len(names):
            names = [f"model{i + 1}" for i in range(len(fits))]
    elif len(names) != len(fits):
        raise ValueError(f"{len(names)} names given for {len(fits)} models")
    fits = list(fits)
    if refit and any(getattr(f, "reml", False) for f in fits):
        warnings.warn("refitting model(s) with ML (instead of REML)", MixedpyInfo, stacklevel=2)
        fits = [f.refit(reml=False) if getattr(f, "reml", False) else f for f in fits]
    npar = np.array([_npar(f) for f in fits])
    order = np.argsort(npar, kind="stable")
    fits = [fits[i] for i in order]
    names = [names[i] for i in order]
    npar = npar[order]
    loglik = np.array([float(f.loglik) for f in fits])
    nobs = fits[0].nobs
    dev = -2 * loglik
    chisq = np.concatenate([[np.nan], dev[:-1] - dev[1:]])
    ddf = np.concatenate([[np.nan], np.diff(npar)]).astype(float)
    with np.errstate(invalid="ignore"):
        p = np.where(ddf > 0, chi2.sf(np.clip(chisq, 0, None), np.where(ddf > 0, ddf, 1)), np.nan)
    p[0] = np.nan
    return pd.DataFrame({"npar": npar, "AIC": dev + 2 * npar, "BIC": dev + np.log(nobs) * npar,
                         "logLik": loglik, "deviance": dev, "Chisq": chisq, "Df": ddf, "Pr(>Chisq)": p},
                        index=pd.Index(names))


__all__ = ["confint", "confint_wald", "confint_profile", "bootstrap", "BootResult", "anova", "SdCorMap"]
