"""``glmer_nb``: a negative binomial GLMM with its size theta estimated, as lme4's ``glmer.nb``.

The model is y_i | b ~ NB(mu_i, theta), V(mu) = mu + mu^2 / theta, log mu = x_i'beta + z_i'b
(+ offset), b ~ N(0, Sigma).  lme4 (``R/nbinom.R``) estimates theta outside glmer:

1. fit the Poisson GLMM and take MASS's ``theta.ml`` of its fitted means as the first theta
   (Newton's method on the NB log-likelihood of theta with mu held fixed; Venables & Ripley 2002,
   section 7.4);
2. fit glmer with ``negative.binomial(theta)`` there;
3. minimize the profiled deviance  D(t) = min_{theta_RE, beta} -2 log L_Laplace(theta_RE, beta | e^t)
   over t = log theta with Brent's method (R's ``optimize``; scipy's bounded ``minimize_scalar`` is the
   same Forsythe-Malcolm-Moler ``fmin``) on t in log(theta_0) +- 3, tolerance 5e-5, each evaluation a
   stage-2 refit warm-started at the previous evaluation's (theta_RE, beta) (lme4's ``refitNB``);
4. the result is the refit at the minimizing theta (R's ``optimize`` evaluates its minimum once more,
   so lme4's ``lastfit`` is the fit there).

One deliberate difference: lme4's refits minimize its Laplace value, whose log-determinant comes from
the last PIRLS iteration; that value carries a path-dependent error (up to ~1e-3 on the deviance for
grouseticks with two terms) that is far larger than the deviance differences Brent's last steps
compare (~1e-8).  mixedpy's refits minimize the same deviance with PIRLS converged tightly and the
factor taken at the converged weights (smooth), restarting BOBYQA until it gains < 1e-9, so theta and
the estimates are those of the exact optimum; the reported logLik is lme4's value there.

Everything downstream (summary, vcov, confint, profile, simulate, refit) treats theta as fixed, as
lme4 does; logLik's df counts it (lme4's ``npar.merMod``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, special

from .control import glmerControl, resolve_control
from .errors import ConvergenceWarning, MixedpyError
from .families import Family, NegativeBinomial, Poisson
from .formula.design import ModelDesign, build_design
from .glmer import GlmerFit
from .glmm import (POLISH_MAXEVAL_PER_PAR, TOL_TIGHT, GLMMProblem, GlmmFitResult, PIRLSError, fit_glmm,
                   hessian_vcov)
from .linalg.blocked import NotPositiveDefinite
from .lmer import caller_namespace, data_name
from .optimize import OptSummary, assess, emit, finite_difference_derivs, is_singular, minimize, require_finite
from .profile import GlmerProfiler, profiler
from .residuals import check_na_action, with_na_action
from .scale import is_dask_frame
from .threads import controls_threads
from .validation import check_bool, check_constant_response

#: lme4's glmer.nb defaults: optimize()'s tolerance on log theta, the half-width of its interval
#: around log(theta_0), and theta.ml's iteration limit (its tolerance is 2 * tol)
NB_TOL = 5e-5
NB_HALF_WIDTH = 3.0
THETA_ML_LIMIT = 20
#: each refit's BOBYQA is restarted (at most REFIT_PASSES runs) until a run lowers the deviance by less
#: than REFIT_GAIN: Brent's last steps compare deviances that differ by ~1e-8
REFIT_PASSES = 4
REFIT_GAIN = 1e-9


@dataclass(frozen=True)
class ThetaML:
    """MASS's ``theta.ml``: the estimate, its standard error sqrt(1 / information) and the
    iterations; ``warning`` is MASS's note ("iteration limit reached", "estimate truncated at zero")."""

    theta: float
    se: float
    iterations: int
    warning: str = ""


def theta_ml(y, mu, weights=None, limit: int = 10, eps: float = np.finfo(float).eps ** 0.25) -> ThetaML:
    """ML estimate of the negative binomial size theta for known means mu (MASS ``theta.ml``).

    Newton's method from the moment estimate t0 = n / sum_i w_i (y_i / mu_i - 1)^2 (n = sum w) on

        score(th) = sum_i w_i [psi(th + y_i) - psi(th) + log th + 1 - log(th + mu_i) - (y_i + th) / (mu_i + th)],
        info(th)  = sum_i w_i [-psi'(th + y_i) + psi'(th) - 1 / th + 2 / (mu_i + th) - (y_i + th) / (mu_i + th)^2],

    th <- |th| + score / info, until |step| <= eps or ``limit`` - 1 steps (MASS's loop).
    """
    y, mu = np.asarray(y, dtype=float), np.asarray(mu, dtype=float)
    w = np.ones_like(y) if weights is None else np.asarray(weights, dtype=float)
    t0 = w.sum() / np.sum(w * (y / mu - 1.0) ** 2)
    it, step, info = 0, 1.0, np.nan
    while True:
        it += 1
        if not (it < limit and abs(step) > eps):
            break
        t0 = abs(t0)
        score = np.sum(w * (special.digamma(t0 + y) - special.digamma(t0) + np.log(t0) + 1.0
                            - np.log(t0 + mu) - (y + t0) / (mu + t0)))
        info = np.sum(w * (-special.polygamma(1, t0 + y) + special.polygamma(1, t0) - 1.0 / t0
                           + 2.0 / (mu + t0) - (y + t0) / (mu + t0) ** 2))
        step = score / info
        t0 = t0 + step
    note = ""
    if t0 < 0:
        t0, note = 0.0, "estimate truncated at zero"
    if it == limit:
        note = "iteration limit reached"
    return ThetaML(float(t0), float(np.sqrt(1.0 / info)) if info > 0 else np.nan, it - 1, note)


@dataclass(frozen=True)
class NbThetaSearch:
    """How :func:`glmer_nb` found theta (lme4 keeps only ``attr(fit, "nevals")``).

    ``start`` is the first theta (MASS's ``theta.ml`` on the Poisson GLMM, or ``init_theta``),
    ``interval`` the log-theta interval of Brent's search and ``tol`` its tolerance;
    ``evaluations`` lists (theta, profiled deviance) in the order they were fitted: the refit at
    theta_0, then Brent's evaluations; ``messages`` are the warnings of the Poisson start and of the
    first fit at theta_0, which are not re-issued (lme4 shows the final fit's warnings).
    """

    start: float
    interval: tuple[float, float]
    tol: float
    evaluations: tuple[tuple[float, float], ...]
    converged: bool
    messages: tuple[tuple[type, str], ...] = ()

    @property
    def n_evals(self) -> int:
        """Number of refits at a negative binomial theta (lme4's ``attr(fit, "nevals")`` counts
        ``optimize``'s evaluations and its repeated one at the minimum, not the one at theta_0)."""
        return len(self.evaluations)


class GlmerNbFit(GlmerFit):
    """A negative binomial GLMM from :func:`glmer_nb` (lme4's ``glmerMod`` from ``glmer.nb``):
    a :class:`~mixedpy.glmer.GlmerFit` at the estimated theta (``nb_theta``), with the record of
    the search in ``nb_search``."""

    nb_search: NbThetaSearch | None = None

    @classmethod
    def from_fit(cls, fit: GlmerFit, search: NbThetaSearch) -> "GlmerNbFit":
        out = cls.__new__(cls)
        out.__dict__.update(fit.__dict__)
        out.nb_search = search
        return out


profiler.register(GlmerNbFit, GlmerProfiler)


class _Fitter:
    """One design, fitted under several families (Poisson, then NB at each theta)."""

    def __init__(self, design: ModelDesign, nAGQ: int, control: glmerControl, name: str):
        self.design, self.nAGQ, self.control, self.data_name = design, nAGQ, control, name
        self._first: GLMMProblem | None = None

    def problem(self, family: Family) -> GLMMProblem:
        """The design's GLMMProblem under ``family``; the block structure is analysed only once."""
        d = self.design
        resp = family.prepare(d.y, d.weights, name=d.response_name)
        check_constant_response(resp.y, resp.weights, d.response_name, f"a {family.name} GLMM")
        if self._first is None:
            self._first = GLMMProblem(d.terms, d.X, resp, family, d.offset)
            return self._first
        return self._first.with_family(family, resp)

    def fit(self, family: Family, start=None) -> GlmerFit:
        """glmer's two-stage fit (the Poisson start and the first fit at theta_0)."""
        problem = self.problem(family)
        result = fit_glmm(problem, nAGQ=self.nAGQ, start=start, control=self.control)
        return GlmerFit(self.design, problem, result, [m for _, m in result.messages], data_name=self.data_name)


@dataclass
class _Refit:
    """The optimum of one refit at a new NB theta: (theta_RE, beta), the exact objective there, and
    the conditional modes' linear predictor (the next refit's warm start)."""

    problem: GLMMProblem
    x: np.ndarray
    fmin: float
    eta: np.ndarray
    opt: OptSummary


def _exact_objective(problem: GLMMProblem, nagq: int, eta: np.ndarray, warm: bool):
    """The Laplace/AGQ deviance with PIRLS converged tightly and ldL2 factored at the converged
    weights: a smooth function of (theta_RE, beta) -- of theta_RE alone for nAGQ = 0, where PIRLS
    also finds beta -- free of the PIRLS-path noise of lme4's value.  PIRLS starts at ``eta``, or at
    the previous evaluation's mode when ``warm`` (the mode does not depend on the start)."""
    nth, memo = problem.n_theta, {"eta": eta}

    def fun(pars):
        beta = None if nagq == 0 else pars[nth:]
        try:
            st = problem.pirls(pars[:nth], beta, memo["eta"], TOL_TIGHT, refactor=True)
        except (PIRLSError, NotPositiveDefinite):
            return np.inf
        if warm:
            memo["eta"] = st.eta
        return problem.objective(st, nagq)

    return fun, memo


def _refit_at(fitter: _Fitter, theta_nb: float, link, prev_x: np.ndarray, prev_eta: np.ndarray,
              step: np.ndarray) -> _Refit:
    """lme4's ``refitNB``: stage 2 only (theta_RE and beta jointly; theta_RE for nAGQ = 0) from the
    previous optimum, on the exact objective (:func:`_exact_objective`), so that the profiled
    deviance D(log theta) is smooth enough for Brent's method to locate theta."""
    problem = fitter.problem(NegativeBinomial(theta_nb, link))
    exact, memo = _exact_objective(problem, fitter.nAGQ, prev_eta, warm=True)
    lower = np.concatenate([problem.lower, np.full(prev_x.size - problem.n_theta, -np.inf)])
    step = step[:prev_x.size]
    opt, n_evals = None, 0
    for k in range(REFIT_PASSES):
        # BOBYQA can stop while its trust region is still wide (NLopt's ftol on one step): restart it
        # from its optimum with a smaller region until a pass gains less than REFIT_GAIN
        x0 = prev_x if opt is None else opt.x
        run = minimize(exact, x0, lower, initial_step=step * 0.1 ** k, xtol_abs=1e-8 * step, ftol_abs=1e-11,
                       maxeval=POLISH_MAXEVAL_PER_PAR * 10 * (prev_x.size + 1))
        n_evals += run.n_evals
        gain = np.inf if opt is None else opt.fmin - run.fmin
        if opt is None or run.fmin < opt.fmin:
            opt = run
        if gain < REFIT_GAIN:
            break
    opt.n_evals = n_evals
    require_finite(opt, f"glmer_nb could not fit the model at theta = {theta_nb:.6g}",
                   "PIRLS fails at every parameter value tried.")
    exact(opt.x)
    return _Refit(problem, opt.x.copy(), float(opt.fmin), memo["eta"], opt)


def _scaled_derivs(fun, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Central-difference gradient and Hessian of ``fun`` at x with steps of 1e-2 of each
    parameter's approximate standard error s_i = sqrt(2 / H_ii) (from a first pass with steps of
    1e-3): the exact objective is reproducible only to ~1e-9 (PIRLS's relative tolerance), which
    lme4's fixed 1e-4 steps would amplify by 1e8 in the Hessian."""
    _, h0 = finite_difference_derivs(fun, x, delta=1e-3)
    d = np.diag(h0)
    s = np.where(np.isfinite(d) & (d > 0), np.sqrt(2.0 / np.where(d > 0, d, 1.0)), 1.0)
    g, h = finite_difference_derivs(lambda z: fun(x + s * z), np.zeros_like(x), delta=1e-2)
    return g / s, h / np.outer(s, s)


def _final_fit(fitter: _Fitter, ref: _Refit, first: GlmerFit) -> GlmerFit:
    """The fit object at the estimated theta: lme4's objective (PIRLS to tolPwrss from the linear
    predictor at the optimum, lme4's ``lp0`` of a refit), the finite-difference Hessian of the
    exact objective for the vcov (lme4's ``use.hessian``; R_X for nAGQ = 0) and lme4's checks."""
    problem, x, ctl, nagq = ref.problem, ref.x, fitter.control, fitter.nAGQ
    nth = problem.n_theta
    st = problem.pirls(x[:nth], None if nagq == 0 else x[nth:], ref.eta, ctl.tolPwrss)
    factor = problem.joint_factor(st)
    opt = ref.opt
    vcov, source, extra = None, "RX", []
    if ctl.calc_derivs and nagq > 0:
        opt.gradient, opt.hessian = _scaled_derivs(_exact_objective(problem, nagq, ref.eta, warm=False)[0], x)
        vcov = hessian_vcov(opt.hessian, nth) if np.all(np.isfinite(opt.hessian)) else None
        if vcov is None:
            extra.append((ConvergenceWarning, "the finite-difference Hessian is not positive definite, so the "
                          "fixed-effect vcov comes from R_X; standard errors may be unreliable"))
        else:
            source = "Hessian"
    if vcov is None:
        vcov = factor.unscaled_vcov()
    singular = is_singular(x[:nth], problem.lower, ctl.check_conv_singular.tol)
    conv = assess(opt, singular, extra=extra, control=ctl)
    opt.convergence = conv
    stages = (opt, None) if nagq == 0 else (first.result.opt_stage1, opt)
    result = GlmmFitResult(nagq, st.theta, st.beta.copy() if nagq == 0 else x[nth:].copy(), st, factor,
                           problem.objective(st, nagq), vcov, source, *stages, list(conv.warnings), conv, control=ctl)
    return GlmerFit(fitter.design, problem, result, [m for _, m in result.messages], data_name=fitter.data_name)


@controls_threads
def glmer_nb(formula: str, data: pd.DataFrame, link: str = "log", nAGQ: int = 1, weights=None, offset=None,
             start=None, calc_derivs: bool | None = None, optimizer=None, control: glmerControl | None = None,
             interval: tuple[float, float] | None = None, tol: float = NB_TOL,
             init_theta: float | None = None, na_action: str = "omit") -> GlmerNbFit:
    """Fit a negative binomial GLMM, estimating its size theta, as lme4's ``glmer.nb``.

    Parameters
    ----------
    formula, data, weights, offset, start, calc_derivs, optimizer, control : as
        :func:`mixedpy.glmer` (``start`` is used by the first fits, the Poisson one and the one at
        theta_0; ``optimizer`` by those two fits)
    nAGQ : 1 (Laplace, the default) or 0 (beta from PIRLS); nAGQ > 1 raises (see the error message)
    link : "log" (lme4's, the default), "sqrt" or "identity" (the Poisson start uses the same link)
    interval : the interval of log(theta) searched (lme4's ``interval``; default log(theta_0) +- 3)
    tol : Brent's tolerance on log(theta) (R ``optimize``'s ``tol``; lme4's 5e-5)
    init_theta : the first theta (lme4's ``initCtrl$theta``), skipping the Poisson fit
    na_action : "omit" (default) or "exclude", as :func:`mixedpy.glmer`

    Returns
    -------
    :class:`GlmerNbFit`: the glmer fit at theta-hat (``fit.nb_theta``, lme4's
    ``getME(fit, "glmer.nb.theta")``), its summary headed ``Family: Negative Binomial(theta)``; the
    search is in ``fit.nb_search``.

    Notes
    -----
    theta_0 = MASS ``theta.ml`` of the Poisson GLMM's fitted means (20 iterations, tolerance
    2 * tol); then Brent's method on the Laplace deviance of the refitted GLMM as a function of
    log theta, each refit warm-started at the previous one (lme4's ``optTheta``; see the module
    docstring for the one deliberate difference).
    """
    namespace = caller_namespace()
    if is_dask_frame(data):
        raise MixedpyError("glmer_nb does not take a Dask frame yet; fit a sample in memory, or use mp.glmer with "
                           "family='negative_binomial' and a fixed nb_theta")
    check_na_action(na_action)
    if calc_derivs is not None:
        calc_derivs = check_bool(calc_derivs, "calc_derivs")
    ctl = resolve_control(control, glmerControl, optimizer=optimizer, calc_derivs=calc_derivs)
    tol = float(tol)
    if not (np.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    if int(nAGQ) > 1:
        raise ValueError("glmer_nb needs nAGQ = 0 or 1: the adaptive-quadrature deviance (lme4's, and mixedpy's) "
                         "sums deviance residuals, which leaves out the saturated log-likelihood -- a function of "
                         "theta -- so minimizing it over theta is not maximum likelihood (lme4's glmer.nb(nAGQ = 5) "
                         "returns such an estimate). Estimate theta with nAGQ=1, then fit glmer(..., nAGQ=k, "
                         "family='negative_binomial', nb_theta=fit.nb_theta)")
    nb = NegativeBinomial(1.0, link)   # checks the link before any fit
    design = build_design(formula, data, weights=weights, offset=offset, env=namespace, allow_n_levels=True,
                          drop_zero_weights=False)
    nb.prepare(design.y, design.weights, name=design.response_name)   # counts, checked as negative binomial
    fitter = _Fitter(design, nAGQ, ctl, data_name(namespace, data))
    kept: list[tuple[type, str]] = []

    if init_theta is None:
        g0 = fitter.fit(Poisson(link), start=start)
        kept += [(c, f"Poisson start: {m}") for c, m in g0.result.messages]
        est = theta_ml(g0.problem.y, g0.fitted, g0.problem.wt, limit=THETA_ML_LIMIT, eps=2 * tol)
        if est.warning:
            kept.append((ConvergenceWarning, f"theta.ml at the Poisson fit: {est.warning}"))
        if not est.theta > 0:
            raise MixedpyError("the Poisson fit shows no overdispersion to estimate a negative binomial theta "
                               f"from ({est.warning}); fit family='poisson' instead")
        theta0 = est.theta
    else:
        theta0 = NegativeBinomial(init_theta, link).theta
    lo, hi = ((np.log(theta0) - NB_HALF_WIDTH, np.log(theta0) + NB_HALF_WIDTH) if interval is None
              else (float(interval[0]), float(interval[1])))
    if not lo < hi:
        raise ValueError(f"interval must be (lower, upper) on log(theta) with lower < upper, got {interval!r}")

    first = fitter.fit(nb.with_theta(theta0), start=start)
    kept += [(c, f"fit at theta = {theta0:.6g}: {m}") for c, m in first.result.messages]
    nth = first.problem.n_theta
    step = 0.2 * np.concatenate([np.full(nth, 0.1), np.minimum(np.asarray(first.se_fixef, float), 10.0)])
    # the first refit starts at the first fit's optimum (so D(log theta_0) is on the same footing)
    x0 = first.theta if nAGQ == 0 else np.concatenate([first.theta, first.beta])
    last = _refit_at(fitter, theta0, nb.link, x0, first.state.eta, step)
    evaluations = [(theta0, last.fmin)]
    best: dict[float, _Refit] = {}   # Brent's answer is always its best evaluation

    def profiled_deviance(t: float) -> float:
        nonlocal last
        th = float(np.exp(t))
        last = _refit_at(fitter, th, nb.link, last.x, last.eta, step)
        if not best or last.fmin < next(iter(best.values())).fmin:
            best.clear()
            best[float(t)] = last
        evaluations.append((th, last.fmin))
        return last.fmin

    res = optimize.minimize_scalar(profiled_deviance, bounds=(lo, hi), method="bounded",
                                   options={"xatol": tol, "maxiter": 500})
    theta_hat = float(np.exp(res.x))
    # R's optimize() evaluates the minimum once more, so lme4's result is the refit there; Brent's
    # answer is its best evaluation, whose refit is kept
    if float(res.x) not in best:
        profiled_deviance(float(res.x))
    final = _final_fit(fitter, best.get(float(res.x), last), first)
    messages = list(final.result.messages)
    if not res.success:
        messages.append((ConvergenceWarning, f"the search for the negative binomial theta did not converge "
                                             f"({res.message}); theta = {theta_hat:.6g}"))
    if min(res.x - lo, hi - res.x) <= 2 * tol * max(1.0, abs(res.x)):
        messages.append((ConvergenceWarning, f"the negative binomial theta {theta_hat:.6g} is at the end of the "
                                             f"searched interval exp({lo:.4g}, {hi:.4g}); give a wider interval="))
    search = NbThetaSearch(theta0, (lo, hi), tol, tuple(evaluations), bool(res.success), tuple(kept))
    out = GlmerNbFit.from_fit(final, search)
    out.messages = [m for _, m in messages]
    emit(messages)
    return with_na_action(out, na_action, data)


__all__ = ["glmer_nb", "GlmerNbFit", "NbThetaSearch", "theta_ml", "ThetaML"]
