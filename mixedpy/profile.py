"""Profile-likelihood intervals, as lme4's ``profile.merMod`` and ``confint(profile(fit))``, on the
sd/cor scale of :mod:`mixedpy.sdcor`.

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

from functools import singledispatch

import numpy as np
import pandas as pd
from scipy import optimize as sopt
from scipy.stats import norm

from .errors import MixedpyError
from .glmm import PIRLSError
from .linalg.blocked import NotPositiveDefinite
from .lmm import LMMProblem
from .optimize import minimize
from .progress import track
from .sdcor import SdCorMap, interval_frame, select_parameters


@singledispatch
def profiler(fit):
    """The deviance profiler of a fit (:class:`LmerProfiler`, :class:`GlmerProfiler`); each fit class
    registers its own where it is defined, so this module needs none of them."""
    raise NotImplementedError(f"profile intervals are implemented for lmer and glmer fits; "
                              f"for a {type(fit).__name__} use method='Wald'")


class LmerProfiler:
    """The ML deviance of an lmer fit as a function of lme4's (sd/cor, sigma) parameters and the
    fixed effects, and its profiles."""

    def __init__(self, fit):
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


class GlmerProfiler(LmerProfiler):
    """The Laplace (or AGQ) deviance of a glmer fit as a function of (sd/cor, beta); each profile
    point minimizes it over all the other parameters jointly, as lme4's ``profile.merMod`` does for
    GLMMs (there is no closed-form profiling of beta).  PIRLS restarts from the fit's linear
    predictor at every evaluation, so the function is the one the fit minimized."""

    def __init__(self, fit):
        if fit.use_scale:  # lme4 1.1's profile.merMod refuses these too
            raise MixedpyError(f"can't (yet) profile GLMMs with non-fixed scale parameters (the {fit.family.name} "
                               "family has a dispersion): use confint(method='Wald') or method='boot'")
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


def confint_profile(fit, level: float = 0.95, parm=None, progress: bool | None = None) -> pd.DataFrame:
    """Profile-likelihood intervals (lme4 ``confint(profile(fit))``), on the sd/cor scale and for
    the fixed effects: from the ML refit of an lmer model (as lme4's ``devfun2`` does), or from the
    Laplace/AGQ deviance of a glmer fit.  ``progress`` draws a bar over the parameters (True,
    False, or None: only in an interactive session; see :mod:`mixedpy.progress`)."""
    prof = profiler(fit)
    names = prof.map.names() + list(fit.fixef_names)
    which = select_parameters(names, parm)
    lower, upper = np.full(len(which), np.nan), np.full(len(which), np.nan)
    for a, i in track(enumerate(which), len(which), progress=progress, desc="profile", unit="parameter"):
        lower[a], upper[a] = prof.interval(i, level)
    return interval_frame([names[i] for i in which], lower, upper, level)


__all__ = ["confint_profile", "profiler", "LmerProfiler", "GlmerProfiler"]
