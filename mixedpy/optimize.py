"""Optimizer backends, one record of each optimization, and lme4's convergence checks.

The default is NLopt's BOBYQA with lme4's ``nloptwrap`` settings (xtol_abs = ftol_abs
= 1e-8, maxeval = 1e5): the same algorithm lme4 uses, so fits take the same path.
scipy's bounded L-BFGS-B and Nelder-Mead are available as ``optimizer="scipy"`` /
``"nelder_mead"``.  After the optimizer, lme4's ``restart_edge`` and ``boundary.tol``
steps are applied, and the finite-difference gradient and Hessian feed ``checkConv``
(ALGORITHMS.md 1.3-1.4); glmer's stage 1 has its own restart off the boundary
(:func:`restart_off_boundary`), for a criterion with a singular local optimum.  The settings of a
fit (optimizer, optCtrl, tolerances and actions of the checks) come from its
:class:`mixedpy.control.lmerControl` / ``glmerControl``.

Every fit carries one :class:`Convergence` record: the optimizer's status code (never read from
its message text), the gradient and Hessian checks, and the warnings with their categories.  A
fit is ``converged`` only when the code is ``Status.CONVERGED`` and neither check failed.  An
objective that is not finite at the optimum (+inf everywhere, or -inf somewhere: the criterion
is unbounded below) is a failure, never an optimum.
"""
from __future__ import annotations

import enum
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import scipy.optimize as so

from .control import ConvCheck, optimizer_name
from .errors import ConvergenceError, ConvergenceWarning, FitError, MixedpyInfo, SingularFitWarning

SINGULAR_TOL = 1e-4


class Status(str, enum.Enum):
    """How an optimizer stopped, from its status code (lme4's ``optinfo$conv$opt``)."""

    CONVERGED = "converged"    # a tolerance was met (NLopt 1-4, scipy success)
    MAXEVAL = "maxeval"        # evaluation or iteration limit reached
    ROUNDOFF = "roundoff"      # NLopt ROUNDOFF_LIMITED: rounding errors stopped progress
    NONFINITE = "nonfinite"    # the objective is not finite at the optimum (+inf everywhere, or -inf)
    FAILED = "failed"          # any other failure the optimizer reports


@dataclass(frozen=True)
class GradientCheck:
    """lme4's scaled-gradient check: max_i min(|(R^-T g)_i|, |g_i|) with H = R'R against ``tol``.
    ``max_scaled`` is NaN when it cannot be evaluated (H not positive definite or not finite)."""

    max_scaled: float
    tol: float

    @property
    def ok(self) -> bool:
        return bool(np.isfinite(self.max_scaled) and self.max_scaled <= self.tol)


@dataclass(frozen=True)
class HessianCheck:
    """Eigenvalues of the finite-difference Hessian and what is wrong with them (lme4 ``checkConv``).

    ``problem`` is "" (none), "nonfinite", "negative" (degenerate: a saddle or maximum),
    "singular" (an eigenvalue within tol of 0), "large" (an eigenvalue above 1/tol) or "ratio"
    (condition number above 1/tol).  The last three make parameters weakly identified but are not
    convergence failures, as in lme4."""

    eigenvalues: tuple[float, ...]
    tol: float
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.problem not in ("nonfinite", "negative")


@dataclass(frozen=True)
class Convergence:
    """The structured convergence record of a fit.

    Attributes
    ----------
    status : how the optimizer stopped (:class:`Status`)
    optimizer : the backend that ran ("bobyqa", "L-BFGS-B", "Nelder-Mead")
    optimizer_message : the backend's own description of its stop (for people, never parsed)
    warnings : (category, message) pairs, in the order they are issued
    gradient, hessian : the checks at the optimum, or None when they were not made (singular fit,
        ``calc_derivs=False``)
    singular : the estimate is on the boundary (lme4 ``isSingular``); the checks are skipped
    """

    status: Status
    optimizer: str = ""
    optimizer_message: str = ""
    warnings: tuple[tuple[type, str], ...] = ()
    gradient: GradientCheck | None = None
    hessian: HessianCheck | None = None
    singular: bool = False

    @property
    def converged(self) -> bool:
        """The optimizer met a tolerance and neither the gradient nor the Hessian check failed."""
        return (self.status is Status.CONVERGED and (self.gradient is None or self.gradient.ok)
                and (self.hessian is None or self.hessian.ok))

    @property
    def messages(self) -> list[str]:
        return [m for _, m in self.warnings]


@dataclass
class OptSummary:
    """What happened in one optimization (MixedModels.jl ``OptSummary``).

    ``converged`` is True when the optimizer itself reported success (``code`` is
    ``Status.CONVERGED``); the fit's verdict, which adds the derivative checks, is ``convergence``.
    """

    optimizer: str
    x0: np.ndarray
    lower: np.ndarray
    x: np.ndarray = None
    fmin: float = np.nan
    n_evals: int = 0
    status: str = ""
    converged: bool = True
    gradient: np.ndarray | None = None
    hessian: np.ndarray | None = None
    messages: list[str] = field(default_factory=list)
    code: Status = Status.CONVERGED
    convergence: Convergence | None = None


_NLOPT_NAMES = {1: "SUCCESS", 2: "STOPVAL_REACHED", 3: "FTOL_REACHED", 4: "XTOL_REACHED",
                5: "MAXEVAL_REACHED", 6: "MAXTIME_REACHED", -1: "FAILURE", -2: "INVALID_ARGS",
                -3: "OUT_OF_MEMORY", -4: "ROUNDOFF_LIMITED", -5: "FORCED_STOP"}


def _nlopt_status(code: int) -> Status:
    if code in (1, 2, 3, 4):
        return Status.CONVERGED
    if code in (5, 6):
        return Status.MAXEVAL
    if code == -4:
        return Status.ROUNDOFF
    return Status.FAILED


class _NoFiniteValue(Exception):
    """Raised inside the objective to stop an optimizer that has found no finite value."""


class _Tracked:
    """The objective as the optimizer sees it: the best finite value is remembered, and a non-finite
    one is shown to the optimizer as ``huge`` (BOBYQA needs finite values, so 1e300 there; scipy gets
    +inf) -- +inf marks "no factor", -inf an unbounded criterion, and the first -inf is remembered.
    NaN is treated like +inf."""

    def __init__(self, fun, x0, huge: float = 1e300):
        self.fun = fun
        self.huge = huge
        self.f = np.inf
        self.x = np.asarray(x0, dtype=float).copy()
        self.minus_inf_at = None
        self.n = 0
        # with no finite value after this many evaluations, searching on is pointless (Nelder-Mead
        # would otherwise spin to maxiter on a simplex of infinities)
        self.give_up = 200 + 20 * len(self.x)

    def __call__(self, x):
        self.n += 1
        f = float(self.fun(x))
        if not np.isfinite(self.f) and self.n > self.give_up:
            raise _NoFiniteValue
        if np.isfinite(f):
            if f < self.f:
                self.f, self.x = f, np.array(x, dtype=float)
            return f
        if f == -np.inf and self.minus_inf_at is None:
            self.minus_inf_at = np.array(x, dtype=float)
        return self.huge


def _nlopt_bobyqa(fun, x0, lower, upper, xtol_abs=1e-8, ftol_abs=1e-8, maxeval=100_000, initial_step=None):
    import nlopt

    tracked = _Tracked(fun, x0)
    opt = nlopt.opt(nlopt.LN_BOBYQA, len(x0))
    opt.set_min_objective(lambda x, grad: tracked(x))
    opt.set_lower_bounds(lower.tolist())
    opt.set_upper_bounds(upper.tolist())
    opt.set_xtol_abs(xtol_abs)
    opt.set_ftol_abs(ftol_abs)
    opt.set_maxeval(maxeval)
    if initial_step is not None:  # minqa's rhobeg, as lme4's glmer stages set it
        opt.set_initial_step(np.broadcast_to(np.asarray(initial_step, dtype=float), (len(x0),)).tolist())
    try:
        opt.optimize(np.clip(np.asarray(x0, dtype=float), lower, upper))
        code = int(opt.last_optimize_result())
    except nlopt.RoundoffLimited:
        code = -4
    except (nlopt.ForcedStop, _NoFiniteValue):
        code = -5
    message = f"nlopt status {code} (NLOPT_{_NLOPT_NAMES.get(code, 'UNKNOWN')})"
    return tracked, max(opt.get_numevals(), tracked.n), message, _nlopt_status(code)


def _scipy(fun, x0, lower, upper, method, maxeval=None, xtol_abs=None, ftol_abs=None, initial_step=None):
    tracked = _Tracked(fun, x0, huge=np.inf)
    bounds = list(zip(np.where(np.isfinite(lower), lower, None), np.where(np.isfinite(upper), upper, None)))
    opts = {"maxiter": 100_000}
    if method == "Nelder-Mead":
        # scipy's tolerances are scalars: the smallest of per-parameter ones is the safe choice
        opts.update(xatol=1e-8 if xtol_abs is None else float(np.min(xtol_abs)),
                    fatol=1e-10 if ftol_abs is None else float(ftol_abs), adaptive=len(x0) > 4)
        if maxeval is not None:
            opts["maxfev"] = int(maxeval)
        if initial_step is not None:  # lme4's Nelder_Mead xst: the simplex spans x0 + step_i e_i
            start = np.clip(np.asarray(x0, dtype=float), lower, upper)
            step = np.broadcast_to(np.asarray(initial_step, dtype=float), start.shape)
            # step away from a bound the start sits on, so that no vertex is clipped onto another
            sign = np.where(start + step > upper, -1.0, 1.0)
            opts["initial_simplex"] = np.vstack([start, start + np.diag(sign * step)])
    elif maxeval is not None:
        opts["maxfun"] = int(maxeval)
    try:
        res = so.minimize(tracked, x0, method=method, bounds=bounds, options=opts)
    except _NoFiniteValue:
        return tracked, tracked.n, f"scipy {method} stopped: no finite objective value", Status.FAILED
    # scipy's codes: L-BFGS-B 1 = function-evaluation/iteration limit; Nelder-Mead 1 and 2 = limits
    if res.success:
        code = Status.CONVERGED
    elif (method == "L-BFGS-B" and res.status == 1) or (method == "Nelder-Mead" and res.status in (1, 2)):
        code = Status.MAXEVAL
    else:
        code = Status.FAILED
    return tracked, int(res.nfev), f"scipy {method} status {res.status}: {res.message}", code


def _another_optimizer(used: str) -> str:
    """The optimizer to suggest after ``used`` failed (each is accepted by lmer and glmer)."""
    return "optimizer='bobyqa'" if used in ("Nelder-Mead", "nelder_mead") else "optimizer='nelder_mead'"


def _advice(code: Status, used: str) -> str:
    other = _another_optimizer(used)
    return {
        Status.MAXEVAL: "the optimizer reached its evaluation limit before converging; refit starting from "
                        "the current estimates (start=fit.theta), raise the limit (control=mp.lmerControl(optCtrl="
                        "{'maxeval': ...}), mp.glmerControl for glmer) or try another optimizer "
                        f"({other})",
        Status.ROUNDOFF: "rounding errors stopped the optimizer before it converged; the estimates may not "
                         f"be the optimum: try another optimizer ({other}) or rescale the predictors",
        Status.FAILED: f"the optimizer failed; try another optimizer ({other}), rescale the predictors or "
                       "give start values",
    }[code]


def minimize(fun: Callable[[np.ndarray], float], x0: np.ndarray, lower: np.ndarray,
             upper: np.ndarray | None = None, optimizer: str = "bobyqa", initial_step=None,
             xtol_abs=None, ftol_abs: float | None = None, maxeval: int | None = None) -> OptSummary:
    """Minimize ``fun`` over the box [lower, upper]; returns the :class:`OptSummary`.

    ``optimizer`` is "bobyqa" (NLopt; lme4's "nloptwrap"), "nelder_mead" or "scipy" (L-BFGS-B), in
    mixedpy's or lme4's spelling (:data:`mixedpy.control.OPTIMIZERS`).  Settings left None are the
    backend's defaults: lme4's ``nloptwrap`` ones for BOBYQA (xtol_abs = ftol_abs = 1e-8, maxeval =
    1e5), xatol 1e-8 / fatol 1e-10 for Nelder-Mead.  ``initial_step`` is BOBYQA's initial trust
    region (glmer's stages set it and the tolerances as minqa's rhobeg/rhoend) or the size of
    Nelder-Mead's initial simplex (lme4's ``xst``); ``xtol_abs`` may be per parameter.  L-BFGS-B
    takes only ``maxeval``.
    """
    x0 = np.asarray(x0, dtype=float)
    lower = np.asarray(lower, dtype=float)
    upper = np.full_like(x0, np.inf) if upper is None else np.asarray(upper, dtype=float)
    optimizer = optimizer_name(optimizer)
    summary = OptSummary(optimizer=optimizer, x0=x0.copy(), lower=lower)
    if optimizer == "bobyqa":
        try:
            tracked, ne, status, code = _nlopt_bobyqa(
                fun, x0, lower, upper, 1e-8 if xtol_abs is None else xtol_abs,
                1e-8 if ftol_abs is None else ftol_abs, 100_000 if maxeval is None else int(maxeval), initial_step)
        except ImportError:
            summary.optimizer = "L-BFGS-B"
            tracked, ne, status, code = _scipy(fun, x0, lower, upper, "L-BFGS-B", maxeval)
    elif optimizer == "scipy":
        summary.optimizer = "L-BFGS-B"
        tracked, ne, status, code = _scipy(fun, x0, lower, upper, "L-BFGS-B", maxeval)
    else:
        summary.optimizer = "Nelder-Mead"
        tracked, ne, status, code = _scipy(fun, x0, lower, upper, "Nelder-Mead", maxeval, xtol_abs, ftol_abs,
                                           initial_step)
    summary.x, summary.fmin, summary.n_evals, summary.status = tracked.x, float(tracked.f), ne, status
    if tracked.minus_inf_at is not None:
        code = Status.NONFINITE
        summary.messages.append(
            f"the objective is -inf at {np.round(tracked.minus_inf_at, 6).tolist()}: the criterion is unbounded "
            "below (for an LMM, the penalized residual sum of squares is zero, so the model reproduces the "
            "response exactly), so it has no optimum; check for a response that is a copy of a predictor or "
            "a grouping factor with one observation per level and no residual variation")
    elif not np.isfinite(tracked.f):
        code = Status.NONFINITE
        summary.messages.append(
            f"the objective is not finite at any of the {ne} points the optimizer tried, starting at "
            f"{np.round(x0, 6).tolist()}; give start values where it is finite, rescale the predictors or "
            "simplify the model")
    elif code is not Status.CONVERGED:
        summary.messages.append(f"optimizer ({summary.optimizer}) did not report convergence: {status}; "
                                + _advice(code, summary.optimizer))
    summary.code = code
    summary.converged = code is Status.CONVERGED
    return summary


def restart_edge(fun, summary: OptSummary, optimizer: str, step: float = 1e-5, **settings) -> OptSummary:
    """lme4 ``restart_edge``: if moving any bound-hugging theta_i off its bound lowers the
    objective, the optimizer stopped too early; restart from the solution (with the same
    ``optimizer`` and :func:`minimize` ``settings``)."""
    x, f0 = summary.x, summary.fmin
    on_bound = np.flatnonzero(x == summary.lower)
    for i in on_bound:
        xp = x.copy()
        xp[i] = summary.lower[i] + step
        if (fun(xp) - f0) / step < 0:
            again = minimize(fun, x, summary.lower, optimizer=optimizer, **settings)
            again.x0 = summary.x0
            again.n_evals += summary.n_evals
            return again
    return summary


@dataclass(frozen=True)
class BoundaryRestart:
    """What :func:`restart_off_boundary` did at an optimum on the boundary.

    The optimizer stopped at ``x_boundary`` (objective ``f_boundary``) with the parameters
    ``on_boundary`` at their bound; it was rerun from ``x_start`` (those parameters back at their
    start values) to ``x`` (objective ``f``, ``n_evals`` evaluations).  ``accepted``: ``f`` is lower
    than ``f_boundary`` by more than ``gain_tol``, so ``x`` replaced ``x_boundary``.
    """

    on_boundary: tuple[int, ...]
    x_boundary: np.ndarray
    f_boundary: float
    x_start: np.ndarray
    x: np.ndarray
    f: float
    gain_tol: float
    n_evals: int
    accepted: bool

    @property
    def gain(self) -> float:
        return self.f_boundary - self.f

    def describe(self, what: str = "", name: str = "theta") -> str:
        """One sentence for the fit's note (accepted) or its optimizer message (rejected); ``name``
        names the parameter vector (its entries are given 0-based)."""
        where = f"{what} " if what else ""
        params = ", ".join(f"{name}[{i}]" for i in self.on_boundary)
        head = (f"the {where}optimizer stopped on the boundary ({params} at the bound, objective "
                f"{self.f_boundary:.10g}); a restart with {'it' if len(self.on_boundary) == 1 else 'them'} back at "
                "the start values")
        if self.accepted:
            return (f"{head} reached a lower objective ({self.f:.10g}, {self.gain:.4g} lower), and its estimates "
                    "replace the boundary optimum, which is a local optimum only")
        return (f"{head} did not lower it by more than {self.gain_tol:.3g} (change {self.f - self.f_boundary:+.3g}); "
                "estimates kept")


def restart_off_boundary(fun, summary: OptSummary, reset: np.ndarray, gain_tol: float,
                         tol: float = SINGULAR_TOL, optimizer: str = "bobyqa",
                         **settings) -> tuple[OptSummary, BoundaryRestart | None]:
    """A restart for an optimum on the boundary of a criterion with several local optima.

    lme4's ``restart_edge`` (:func:`restart_edge`) looks only at the one-sided derivative at the
    bound, so it cannot tell a boundary *local* optimum from the global one.  The nAGQ = 0 criterion
    of a GLMM with a random slope can have both (an inverse-link Gamma fit has a singular optimum 32
    deviance units above its interior one), and which one an optimizer reaches depends on its path
    (minqa's BOBYQA with n + 2 interpolation points, lme4's stage 1, reaches the interior one on that
    fit; NLopt's with 2n + 1 points, the boundary one).  So when parameters whose lower bound is 0
    end within ``tol`` of it (lme4's ``isSingular``), the optimizer (``optimizer`` with the
    :func:`minimize` ``settings``) is rerun from the optimum with those parameters set back to
    ``reset`` (the start values, off the boundary), and its result is kept when it lowers the
    objective by more than ``gain_tol``.  A truly singular fit returns to the same optimum and keeps
    its estimates; the cost is one more optimization.  Returns the summary and the record (None when
    no parameter is on the boundary).
    """
    x, lower = summary.x, summary.lower
    reset = np.asarray(reset, dtype=float)
    on = (lower == 0) & (x - lower < tol) & (reset - lower >= tol)
    if not on.any() or not np.isfinite(summary.fmin):
        return summary, None
    start = np.where(on, reset, x)
    again = minimize(fun, start, lower, optimizer=optimizer, **settings)
    accepted = bool(again.code is not Status.NONFINITE and np.isfinite(again.fmin)
                    and again.fmin < summary.fmin - gain_tol)
    record = BoundaryRestart(tuple(int(i) for i in np.flatnonzero(on)), x.copy(), float(summary.fmin), start,
                             again.x.copy(), float(again.fmin), float(gain_tol), again.n_evals, accepted)
    if not accepted:
        summary.n_evals += again.n_evals
        return summary, record
    again.x0 = summary.x0
    again.n_evals += summary.n_evals
    return again, record


def boundary_snap(fun, summary: OptSummary, tol: float = 1e-5) -> OptSummary:
    """lme4 ``boundary.tol``: a theta_i within tol of its bound is set to the bound when that
    does not raise the objective."""
    x = summary.x.copy()
    near = np.flatnonzero((x - summary.lower > 0) & (x - summary.lower < tol))
    for i in near:
        trial = x.copy()
        trial[i] = summary.lower[i]
        f = fun(trial)
        if np.isfinite(f) and f <= summary.fmin:  # never accept a non-finite value as the optimum
            x, summary.fmin = trial, f
    summary.x = x
    return summary


def finite_difference_derivs(fun, x: np.ndarray, delta: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """Central-difference gradient and Hessian, lme4's ``deriv12`` (no bound handling)."""
    n = len(x)
    f0 = fun(x)
    grad = np.empty(n)
    hess = np.empty((n, n))
    fp = np.empty(n)
    fm = np.empty(n)
    for i in range(n):
        e = np.zeros(n)
        e[i] = delta
        fp[i], fm[i] = fun(x + e), fun(x - e)
        grad[i] = (fp[i] - fm[i]) / (2 * delta)
        hess[i, i] = (fp[i] - 2 * f0 + fm[i]) / delta ** 2
    for i in range(n):
        for j in range(i):
            ei = np.zeros(n)
            ej = np.zeros(n)
            ei[i] = delta
            ej[j] = delta
            h = (fun(x + ei + ej) - fun(x + ei - ej) - fun(x - ei + ej) + fun(x - ei - ej)) / (4 * delta ** 2)
            hess[i, j] = hess[j, i] = h
    return grad, hess


def is_singular(theta: np.ndarray, lower: np.ndarray, tol: float = SINGULAR_TOL) -> bool:
    """lme4 ``isSingular``: a theta entry bounded below by 0 lies below tol."""
    theta, lower = np.asarray(theta), np.asarray(lower)
    bounded = lower == 0
    return bool(np.any(theta[bounded] < tol))


_SINGULAR_MSG = ("boundary (singular) fit: a variance component is estimated as zero (or a correlation as +-1); "
                 "see is_singular. Consider simplifying the random-effects structure.")


def _gradient_check(g: np.ndarray, H: np.ndarray, tol: float, used: str = "bobyqa") -> tuple[GradientCheck, list]:
    """lme4: scaled = solve(chol(H), g); max(pmin(|scaled|, |g|)) against tol.  The advice names an
    optimizer other than ``used``."""
    try:
        R = np.linalg.cholesky(H).T
        scaled = np.linalg.solve(R, g)
    except np.linalg.LinAlgError:
        return GradientCheck(np.nan, tol), [(ConvergenceWarning, (
            "unable to evaluate scaled gradient: the Hessian is not positive definite; check the model for "
            "over-parameterised random effects (simplify them) or refit from the current estimates "
            "(start=fit.theta)."))]
    m = float(np.max(np.minimum(np.abs(scaled), np.abs(g)))) if g.size else 0.0
    msgs = []
    if m > tol:
        msgs.append((ConvergenceWarning, f"Model failed to converge with max|grad| = {m:.6g} (tol = {tol:g}): try "
                     f"another optimizer ({_another_optimizer(used)}), rescaling predictors, or a refit "
                     "starting from the current estimates (start=fit.theta)."))
    return GradientCheck(m, tol), msgs


def _hessian_check(H: np.ndarray, tol: float, label: str) -> tuple[HessianCheck, list]:
    ev = np.linalg.eigvalsh(0.5 * (H + H.T))
    evs = tuple(float(v) for v in ev)
    if np.any(ev < -tol):
        return HessianCheck(evs, tol, "negative"), [(ConvergenceWarning, (
            f"Model failed to converge: degenerate {label}Hessian with {int(np.sum(ev < -tol))} negative "
            "eigenvalues; simplify the random effects or rescale variables."))]
    if np.any(np.abs(ev) < tol):
        return HessianCheck(evs, tol, "singular"), [(ConvergenceWarning, (
            f"{label}Hessian is numerically singular: parameters are not uniquely determined; simplify the "
            "random effects or rescale variables."))]
    if ev.size and ev.max() * tol > 1:
        msg = "Model is nearly unidentifiable: very large eigenvalue - rescale variables?"
        return HessianCheck(evs, tol, "large"), [(ConvergenceWarning, msg)]
    if ev.size and ev.min() / ev.max() < tol:
        msg = "Model is nearly unidentifiable: large eigenvalue ratio - rescale variables?"
        return HessianCheck(evs, tol, "ratio"), [(ConvergenceWarning, msg)]
    return HessianCheck(evs, tol), []


_DEFAULT_CHECKS = {"singular": ConvCheck("message", SINGULAR_TOL), "grad": ConvCheck("warning", 2e-3),
                   "hess": ConvCheck("warning", 1e-6)}


def _apply_action(check: ConvCheck, msgs: list[tuple[type, str]], singular: bool = False) -> list:
    """The messages of one check as its control ``action`` says (lme4's ``check.conv.*`` actions)."""
    if not msgs or check.action == "warning":
        return msgs
    if check.action == "ignore":
        return []
    if check.action == "stop":
        raise ConvergenceError(msgs[0][1])
    return msgs if singular else [(MixedpyInfo, m) for _, m in msgs]   # "message"


def assess(summary: OptSummary, singular: bool, grad_tol: float = 2e-3, hess_tol: float = 1e-6,
           label: str = "", extra: list[tuple[type, str]] | None = None, control=None) -> Convergence:
    """lme4 ``checkConv`` as a :class:`Convergence` record; also stored as ``summary.convergence``.

    The warnings are: the singular-fit note, then the gradient and Hessian checks (skipped for a
    singular fit, as in lme4, and when the derivatives were not computed), then the optimizer's own
    failure (``summary.messages``), then ``extra``.  A gradient or Hessian with a non-finite entry
    (the objective is not finite next to the estimates) fails both checks with one warning.

    ``control`` (an :class:`~mixedpy.control.lmerControl`/``glmerControl``) gives the tolerances
    and actions of the checks (``check_conv_grad``, ``check_conv_hess``, ``check_conv_singular``)
    in place of ``grad_tol``/``hess_tol`` and the default actions; "stop" raises
    :class:`~mixedpy.errors.ConvergenceError`.  The record keeps every check whatever its action.
    """
    checks = dict(_DEFAULT_CHECKS, grad=ConvCheck("warning", grad_tol), hess=ConvCheck("warning", hess_tol))
    if control is not None:
        checks = {"singular": control.check_conv_singular, "grad": control.check_conv_grad,
                  "hess": control.check_conv_hess}
    grad_tol, hess_tol = checks["grad"].tol, checks["hess"].tol
    msgs: list[tuple[type, str]] = []
    gcheck = hcheck = None
    g, H = summary.gradient, summary.hessian
    if singular:
        msgs += _apply_action(checks["singular"], [(SingularFitWarning, _SINGULAR_MSG)], singular=True)
    elif g is not None and H is not None:
        g, H = np.asarray(g, dtype=float), np.asarray(H, dtype=float)
        if not (np.all(np.isfinite(g)) and np.all(np.isfinite(H))):
            gcheck = GradientCheck(np.nan, grad_tol)
            hcheck = HessianCheck(tuple(np.full(len(g), np.nan)), hess_tol, "nonfinite")
            msgs += _apply_action(checks["grad"], [(ConvergenceWarning, (
                f"Model failed to converge: the finite-difference gradient or {label}Hessian is not finite at "
                "the estimates (the objective is not finite next to them), so convergence cannot be checked; "
                f"refit from other start values, try another optimizer ({_another_optimizer(summary.optimizer)}) "
                "or rescale the predictors."))])
        else:
            gcheck, gm = _gradient_check(g, H, grad_tol, summary.optimizer)
            hcheck, hm = _hessian_check(H, hess_tol, label)
            msgs += _apply_action(checks["grad"], gm) + _apply_action(checks["hess"], hm)
    msgs += [(ConvergenceWarning, m) for m in summary.messages]
    msgs += list(extra or [])
    conv = Convergence(status=summary.code, optimizer=summary.optimizer, optimizer_message=summary.status,
                       warnings=tuple(msgs), gradient=gcheck, hessian=hcheck, singular=bool(singular))
    summary.convergence = conv
    return conv


def require_finite(opt: OptSummary, what: str, advice: str = "") -> None:
    """A stage whose objective is not finite at its optimum (``Status.NONFINITE``: +inf everywhere,
    or -inf) has no fit to continue from: FitError with ``what`` and the optimizer's account of it."""
    if opt.code is Status.NONFINITE:
        raise FitError(f"{what}: {opt.messages[-1]}" + (f". {advice}" if advice else ""))


def emit(messages: list[tuple[type, str]]) -> None:
    for category, msg in messages:
        warnings.warn(msg, category, stacklevel=4)
