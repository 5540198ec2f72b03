"""lme4's ``optimizeLmer``: the profiled REML or ML criterion of an LMM minimized over theta, with
lme4's restart_edge, boundary.tol and checkConv.

It returns the pieces a fit is made of (the optimizer record, the profiled state at the optimum
and the convergence messages); :func:`mixedpy.lmer.fit_problem` and ``LmerFit.refit`` build the
fit from them, so this stage needs no fit class.
"""
from __future__ import annotations

import numpy as np

from .control import lmerControl, resolve_control
from .lmm import LMMProblem, Profiled
from .optimize import (OptSummary, assess, boundary_snap, emit, finite_difference_derivs, is_singular, minimize,
                       require_finite, restart_edge)
from .threads import controls_threads


@controls_threads
def optimize_lmm(problem: LMMProblem, reml: bool = True, start=None, optimizer: str | None = None,
                 calc_derivs: bool | None = None, quiet: bool = False, formula: str = "",
                 control: lmerControl | None = None) -> tuple[OptSummary, Profiled, list[str]]:
    """(opt, state, messages): theta-hat with the optimizer's record, the profiled state there and
    the convergence messages.

    ``control`` (:class:`~mixedpy.control.lmerControl`, lme4's defaults when None) sets the
    optimizer and its ``optCtrl``, ``restart_edge``, ``boundary_tol``, ``calc_derivs`` and the
    convergence checks; ``optimizer`` and ``calc_derivs``, when given, replace its fields.
    The record's ``convergence`` (:class:`mixedpy.optimize.Convergence`) holds the optimizer's
    status and the derivative checks; its warnings are issued unless ``quiet``.  An objective that
    is not finite at the optimum raises :class:`~mixedpy.errors.FitError` naming ``formula``: there
    is no fit to return.
    """
    ctl = resolve_control(control, lmerControl, optimizer=optimizer, calc_derivs=calc_derivs)

    def objective(theta):
        return problem.scale_free_objective(theta, reml)

    x0 = problem.start_theta() if start is None else np.asarray(start, dtype=float)
    if len(x0) != len(problem.lower):
        raise ValueError(f"start has {len(x0)} values but the model has {len(problem.lower)} theta parameters")
    opt = minimize(objective, x0, problem.lower, optimizer=ctl.optimizer, **ctl.opt_settings)
    require_finite(opt, f"lmer could not fit {formula!r}")
    if ctl.restart_edge:
        opt = restart_edge(objective, opt, ctl.optimizer, **ctl.opt_settings)
        require_finite(opt, f"lmer could not fit {formula!r}")
    if ctl.boundary_tol > 0:
        opt = boundary_snap(objective, opt, ctl.boundary_tol)
    singular = is_singular(opt.x, problem.lower, ctl.check_conv_singular.tol)
    if ctl.calc_derivs and not singular:
        opt.gradient, opt.hessian = finite_difference_derivs(objective, opt.x)
    conv = assess(opt, singular, control=ctl)
    if not quiet:
        emit(list(conv.warnings))
    opt.fmin += problem.scale_offset(reml)
    return opt, problem.profile(opt.x), conv.messages


__all__ = ["optimize_lmm"]
