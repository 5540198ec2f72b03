"""``lmer``: formula -> design -> LMM problem -> optimizer -> LmerFit (lme4's four stages)."""
from __future__ import annotations

import sys

import pandas as pd

from . import threads
from .control import lmerControl, require_dask_control, resolve_control
from .formula.design import ModelDesign, build_design
from .lmm import LMMProblem
from .lmm_optimize import optimize_lmm
from .residuals import check_na_action, with_na_action
from .results import LmerFit
from .scale import is_dask_frame
from .scale.lmer import lmer as scale_lmer
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


def fit_problem(design: ModelDesign, problem: LMMProblem, reml: bool = True, start=None,
                optimizer: str | None = None, calc_derivs: bool | None = None, data_name: str = "data",
                quiet: bool = False, control: lmerControl | None = None) -> LmerFit:
    """Optimize the profiled criterion over theta and build the fit (lme4 ``optimizeLmer`` +
    ``mkMerMod``; :func:`mixedpy.lmm_optimize.optimize_lmm` has the optimization and its checks).
    ``optimizer``/``calc_derivs``, when given, replace those fields of ``control``."""
    ctl = resolve_control(control, lmerControl, optimizer=optimizer, calc_derivs=calc_derivs)
    opt, state, messages = optimize_lmm(problem, reml, start=start, quiet=quiet, formula=design.formula,
                                        control=ctl)
    return LmerFit(design, problem, reml, opt, state, messages, data_name, control=ctl)


@threads.controls_threads
def lmer(formula: str, data: pd.DataFrame, REML: bool = True, weights=None, offset=None, start=None,
         optimizer: str | None = None, calc_derivs: bool | None = None,
         control: lmerControl | None = None, na_action: str = "omit") -> LmerFit:
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
    optimizer : "bobyqa" (NLopt, lme4's default "nloptwrap"), "nelder_mead" (scipy's Nelder-Mead) or
        "scipy" (L-BFGS-B); replaces ``control.optimizer`` when given
    calc_derivs : finite-difference gradient and Hessian for the convergence checks (default True);
        replaces ``control.calc_derivs`` when given
    control : :class:`mixedpy.lmerControl` (lme4's ``lmerControl()``): optimizer and its ``optCtrl``
        (maxeval, ftol_abs, xtol_abs), restart_edge, boundary_tol, calc_derivs and the tolerances and
        actions of the convergence checks; lme4 settings mixedpy cannot honour raise ControlError
    na_action : "omit" (default, R's na.omit) or "exclude" (R's na.exclude): rows with missing values
        are left out of the fit either way; with "exclude", ``fitted``, ``resid``, ``residuals()`` and
        ``predict()`` without newdata have one entry per row of the data, NaN for the rows left out
        (:mod:`mixedpy.residuals`)

    Notes
    -----
    The model is y | b ~ N(X beta + Z b + offset, sigma^2 W^{-1}), b ~ N(0, Sigma_theta); beta and
    sigma are profiled out of the deviance (Bates et al. 2015, J. Stat. Softw. 67(1)).
    """
    REML = check_bool(REML, "REML")
    namespace = caller_namespace()
    ctl = resolve_control(control, lmerControl, optimizer=optimizer, calc_derivs=calc_derivs)
    check_na_action(na_action, dask=is_dask_frame(data))
    if is_dask_frame(data):  # out of core, from sums over the partitions (mixedpy.scale)
        require_dask_control(ctl, lmerControl)
        return scale_lmer(formula, data, REML, weights, offset, start, ctl.optimizer, ctl.calc_derivs,
                          env=namespace, data_name=data_name(namespace, data))
    design = build_design(formula, data, weights=weights, offset=offset, env=namespace)
    fit = fit_problem(design, lmm_problem(design), reml=REML, start=start, data_name=data_name(namespace, data),
                      control=ctl)
    return with_na_action(fit, na_action, data)


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

    def fit(self, reml: bool = True, start=None, optimizer: str | None = None,
            control: lmerControl | None = None) -> LmerFit:
        return fit_problem(self.design, self.problem, reml=check_bool(reml, "reml"), start=start, optimizer=optimizer,
                           control=control)
