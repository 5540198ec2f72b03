"""``lmer``: formula -> design -> LMM problem -> optimizer -> LmerFit (lme4's four stages)."""
from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from . import threads
from .formula.design import ModelDesign, build_design
from .lmm import LMMProblem
from .optimize import (assess, boundary_snap, emit, finite_difference_derivs, is_singular, minimize,
                       require_finite, restart_edge)
from .results import LmerFit
from .validation import check_bool, check_constant_response, check_single_response


def caller_namespace(depth: int = 2) -> dict:
    """Variables visible where the user called us, so formulas can use them (as R's environment).

    ``depth`` counts frames up from this function (2: the caller of the function calling us);
    the thread-control wrappers of :mod:`mixedpy.threads` in between are skipped."""
    frame = sys._getframe(depth)  # inspect.stack() would read every caller's source lines
    try:
        while frame.f_back is not None and frame.f_globals.get("__name__") == threads.__name__:
            frame = frame.f_back
        return {**frame.f_globals, **frame.f_locals}
    finally:
        del frame


def data_name(namespace: dict, data) -> str:
    """The caller's name for ``data`` (for display()'s deparsed call, as R shows it), else "data"."""
    return next((k for k, v in namespace.items() if v is data and not k.startswith("_")), "data")


@threads.controls_threads
def fit_problem(design: ModelDesign, problem: LMMProblem, reml: bool = True, start=None,
                optimizer: str = "bobyqa", calc_derivs: bool = True, data_name: str = "data",
                quiet: bool = False) -> LmerFit:
    """Optimize the profiled criterion over theta and build the fit (lme4 ``optimizeLmer`` +
    ``mkMerMod``), with restart_edge, boundary.tol and checkConv as lme4 does them.

    The fit's ``convergence`` record (:class:`mixedpy.optimize.Convergence`) holds the optimizer's
    status and the derivative checks; its warnings are issued unless ``quiet``.  An objective that
    is not finite at the optimum raises :class:`~mixedpy.errors.FitError`: there is no fit to return.
    """
    def objective(theta):
        return problem.scale_free_objective(theta, reml)

    x0 = problem.start_theta() if start is None else np.asarray(start, dtype=float)
    if len(x0) != len(problem.lower):
        raise ValueError(f"start has {len(x0)} values but the model has {len(problem.lower)} theta parameters")
    opt = minimize(objective, x0, problem.lower, optimizer=optimizer)
    require_finite(opt, f"lmer could not fit {design.formula!r}")
    opt = restart_edge(objective, opt, optimizer)
    require_finite(opt, f"lmer could not fit {design.formula!r}")
    opt = boundary_snap(objective, opt)
    singular = is_singular(opt.x, problem.lower)
    if calc_derivs and not singular:
        opt.gradient, opt.hessian = finite_difference_derivs(objective, opt.x)
    conv = assess(opt, singular)
    if not quiet:
        emit(list(conv.warnings))
    opt.fmin += problem.scale_offset(reml)
    state = problem.profile(opt.x)
    return LmerFit(design, problem, reml, opt, state, conv.messages, data_name)


@threads.controls_threads
def lmer(formula: str, data: pd.DataFrame, REML: bool = True, weights=None, offset=None, start=None,
         optimizer: str = "bobyqa", calc_derivs: bool = True) -> LmerFit:
    """Fit a linear mixed model by REML (default) or ML, as lme4's ``lmer``.

    Parameters
    ----------
    formula : lme4 formula, e.g. ``"Reaction ~ Days + (Days | Subject)"``
    data : DataFrame
    REML : REML (True) or maximum likelihood (False)
    weights, offset : column names, Series (aligned by the data's index) or arrays of prior weights /
        an offset; rows with weight 0 are left out with a ZeroWeightsWarning (as R's lm; lme4's lmer
        has logLik -Inf for them)
    start : starting theta (lme4's default when None)
    optimizer : "bobyqa" (NLopt, as lme4), "scipy" (L-BFGS-B) or "nelder_mead"

    The model is y | b ~ N(X beta + Z b + offset, sigma^2 W^{-1}), b ~ N(0, Sigma_theta); beta and
    sigma are profiled out of the deviance (Bates et al. 2015, J. Stat. Softw. 67(1)).
    """
    REML = check_bool(REML, "REML")
    namespace = caller_namespace()
    design = build_design(formula, data, weights=weights, offset=offset, env=namespace)
    return fit_problem(design, lmm_problem(design), reml=REML, start=start, optimizer=optimizer,
                       calc_derivs=calc_derivs, data_name=data_name(namespace, data))


def lmm_problem(design: ModelDesign) -> LMMProblem:
    """The LMM arrays of a design; a two-column (cbind) response is an error naming the fix."""
    check_single_response(design.y, design.response_name, "lmer",
                          "cbind responses are for glmer with family='binomial'")
    check_constant_response(design.y, design.weights, design.response_name, "a linear mixed model")
    return LMMProblem(design.terms, design.X, design.y, design.weights, design.offset)


class LMM:
    """statsmodels-style entry: ``LMM.from_formula(formula, data).fit(reml=True)``."""

    def __init__(self, formula: str, data: pd.DataFrame, weights=None, offset=None, env=None):
        self.formula, self.data = formula, data
        self.design = build_design(formula, data, weights=weights, offset=offset, env=env)
        self.problem = lmm_problem(self.design)

    @classmethod
    def from_formula(cls, formula: str, data: pd.DataFrame, weights=None, offset=None) -> "LMM":
        return cls(formula, data, weights=weights, offset=offset, env=caller_namespace())

    def fit(self, reml: bool = True, start=None, optimizer: str = "bobyqa") -> LmerFit:
        return fit_problem(self.design, self.problem, reml=check_bool(reml, "reml"), start=start, optimizer=optimizer)
