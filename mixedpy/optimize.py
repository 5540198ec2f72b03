"""Optimizer backends, one record of each optimization, and lme4's convergence checks.

The default is NLopt's BOBYQA with lme4's ``nloptwrap`` settings (xtol_abs = ftol_abs
= 1e-8, maxeval = 1e5): the same algorithm lme4 uses, so fits take the same path.
scipy's bounded L-BFGS-B and Nelder-Mead are available as ``optimizer="scipy"`` /
``"nelder_mead"``.  After the optimizer, lme4's ``restart_edge`` and ``boundary.tol``
steps are applied, and the finite-difference gradient and Hessian feed ``checkConv``
(ALGORITHMS.md 1.3-1.4).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import scipy.optimize as so

from .errors import ConvergenceWarning, SingularFitWarning

SINGULAR_TOL = 1e-4


@dataclass
class OptSummary:
    """What happened in one optimization (MixedModels.jl ``OptSummary``)."""

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


def _nlopt_bobyqa(fun, x0, lower, upper, xtol_abs=1e-8, ftol_abs=1e-8, maxeval=100_000, initial_step=None):
    import nlopt

    best = {"f": np.inf, "x": np.asarray(x0, dtype=float)}

    def tracked(x, grad):
        f = float(fun(x))
        if f < best["f"]:
            best["f"], best["x"] = f, np.array(x)
        return f if np.isfinite(f) else 1e300  # BOBYQA needs finite values; +inf marks "no factor"

    opt = nlopt.opt(nlopt.LN_BOBYQA, len(x0))
    opt.set_min_objective(tracked)
    opt.set_lower_bounds(lower.tolist())
    opt.set_upper_bounds(upper.tolist())
    opt.set_xtol_abs(xtol_abs)
    opt.set_ftol_abs(ftol_abs)
    opt.set_maxeval(maxeval)
    if initial_step is not None:  # minqa's rhobeg, as lme4's glmer stages set it
        opt.set_initial_step(np.broadcast_to(np.asarray(initial_step, dtype=float), (len(x0),)).tolist())
    try:
        opt.optimize(np.clip(np.asarray(x0, dtype=float), lower, upper))
        status = opt.last_optimize_result()
    except nlopt.RoundoffLimited:
        status = nlopt.ROUNDOFF_LIMITED
    ok = status > 0 and status != nlopt.MAXEVAL_REACHED or status == nlopt.ROUNDOFF_LIMITED
    return best["x"], best["f"], opt.get_numevals(), f"nlopt status {status}", ok


def _scipy(fun, x0, lower, upper, method):
    bounds = list(zip(np.where(np.isfinite(lower), lower, None), np.where(np.isfinite(upper), upper, None)))
    opts = {"maxiter": 100_000}
    if method == "Nelder-Mead":
        opts.update(xatol=1e-8, fatol=1e-10, adaptive=len(x0) > 4)
    res = so.minimize(fun, x0, method=method, bounds=bounds, options=opts)
    return res.x, res.fun, res.nfev, str(res.message), bool(res.success)


def minimize(fun: Callable[[np.ndarray], float], x0: np.ndarray, lower: np.ndarray,
             upper: np.ndarray | None = None, optimizer: str = "bobyqa", initial_step=None,
             xtol_abs: float = 1e-8, ftol_abs: float = 1e-8, maxeval: int = 100_000) -> OptSummary:
    """Minimize ``fun`` over the box [lower, upper]; returns the :class:`OptSummary`.

    The defaults are lme4's ``nloptwrap`` settings; ``initial_step``, ``xtol_abs``, ``ftol_abs`` and
    ``maxeval`` apply to BOBYQA (glmer's stages set them as minqa's rhobeg/rhoend).
    """
    x0 = np.asarray(x0, dtype=float)
    lower = np.asarray(lower, dtype=float)
    upper = np.full_like(x0, np.inf) if upper is None else np.asarray(upper, dtype=float)
    summary = OptSummary(optimizer=optimizer, x0=x0.copy(), lower=lower)
    if optimizer == "bobyqa":
        try:
            x, f, ne, status, ok = _nlopt_bobyqa(fun, x0, lower, upper, xtol_abs, ftol_abs, maxeval,
                                                 initial_step)
        except ImportError:
            summary.optimizer = "L-BFGS-B"
            x, f, ne, status, ok = _scipy(fun, x0, lower, upper, "L-BFGS-B")
    elif optimizer in ("scipy", "L-BFGS-B"):
        x, f, ne, status, ok = _scipy(fun, x0, lower, upper, "L-BFGS-B")
    elif optimizer in ("nelder_mead", "Nelder-Mead"):
        x, f, ne, status, ok = _scipy(fun, x0, lower, upper, "Nelder-Mead")
    else:
        raise ValueError(f"unknown optimizer {optimizer!r}; use 'bobyqa', 'scipy' or 'nelder_mead'")
    summary.x, summary.fmin, summary.n_evals, summary.status, summary.converged = x, float(f), ne, status, ok
    if not ok:
        summary.messages.append(f"optimizer ({summary.optimizer}) did not report convergence: {status}")
    return summary


def restart_edge(fun, summary: OptSummary, optimizer: str, step: float = 1e-5) -> OptSummary:
    """lme4 ``restart_edge``: if moving any bound-hugging theta_i off its bound lowers the
    objective, the optimizer stopped too early; restart from the solution."""
    x, f0 = summary.x, summary.fmin
    on_bound = np.flatnonzero(x == summary.lower)
    for i in on_bound:
        xp = x.copy()
        xp[i] = summary.lower[i] + step
        if (fun(xp) - f0) / step < 0:
            again = minimize(fun, x, summary.lower, optimizer=optimizer)
            again.x0 = summary.x0
            again.n_evals += summary.n_evals
            return again
    return summary


def boundary_snap(fun, summary: OptSummary, tol: float = 1e-5) -> OptSummary:
    """lme4 ``boundary.tol``: a theta_i within tol of its bound is set to the bound when that
    does not raise the objective."""
    x = summary.x.copy()
    near = np.flatnonzero((x - summary.lower > 0) & (x - summary.lower < tol))
    for i in near:
        trial = x.copy()
        trial[i] = summary.lower[i]
        f = fun(trial)
        if f <= summary.fmin:
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


def check_convergence(summary: OptSummary, singular: bool, grad_tol: float = 2e-3,
                      hess_tol: float = 1e-6, label: str = "") -> list[str]:
    """lme4 ``checkConv``: the warnings a user should see, each with what to do about it.

    Singular fits skip the gradient and Hessian checks, as in lme4.
    """
    msgs: list[tuple[type, str]] = []
    if singular:
        msgs.append((SingularFitWarning, "boundary (singular) fit: a variance component is estimated as zero (or a correlation "
                    "as +-1); see is_singular. Consider simplifying the random-effects structure."))
        return msgs
    g, H = summary.gradient, summary.hessian
    if g is None or H is None:
        return msgs
    try:
        R = np.linalg.cholesky(H).T
        scaled = np.linalg.solve(R, g)
        m = float(np.max(np.minimum(np.abs(scaled), np.abs(g))))
        if m > grad_tol:
            msgs.append((ConvergenceWarning, f"Model failed to converge with max|grad| = {m:.6g} (tol = {grad_tol:g}): try "
                        "another optimizer (optimizer='nelder_mead'), rescaling predictors, or a refit "
                        "starting from the current estimates (start=fit.theta)."))
    except np.linalg.LinAlgError:
        msgs.append((ConvergenceWarning, "unable to evaluate scaled gradient: the Hessian is not positive definite; "
                    "check the model for over-parameterised random effects."))
    ev = np.linalg.eigvalsh(H)
    if np.any(ev < -hess_tol):
        msgs.append((ConvergenceWarning, f"Model failed to converge: degenerate {label}Hessian with {int(np.sum(ev < -hess_tol))} "
                    "negative eigenvalues; simplify the random effects or rescale variables."))
    elif np.any(np.abs(ev) < hess_tol):
        msgs.append((ConvergenceWarning, f"{label}Hessian is numerically singular: parameters are not uniquely determined."))
    elif ev.max() * hess_tol > 1:
        msgs.append((ConvergenceWarning, "Model is nearly unidentifiable: very large eigenvalue - rescale variables?"))
    elif ev.min() / ev.max() < hess_tol:
        msgs.append((ConvergenceWarning, "Model is nearly unidentifiable: large eigenvalue ratio - rescale variables?"))
    return msgs


def emit(messages: list[tuple[type, str]]) -> None:
    for category, msg in messages:
        warnings.warn(msg, category, stacklevel=4)
