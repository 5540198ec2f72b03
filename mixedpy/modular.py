"""lme4's modular fitting: the profiled deviance as a function of theta (``lmer(..., devFunOnly=TRUE)``).

    >>> dev = mp.lmer_devfun("Reaction ~ Days + (Days | Subject)", sleep)
    >>> dev(dev.start), dev.lower
    >>> scipy.optimize.minimize(dev, dev.start, bounds=list(zip(dev.lower, dev.upper)))

The callable evaluates lme4's REML criterion or ML deviance (Bates et al. 2015, eqs. 34 and 41)
with beta and sigma profiled out; it is the same function ``lmer`` optimizes.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .formula.design import ModelDesign, build_design
from .lmm import LMMProblem, Profiled
from .linalg.structure import BlockDescription, block_description


class DevFun:
    """Deviance (ML) or REML criterion of an LMM as a function of theta.

    Attributes
    ----------
    lower, upper : bounds of theta (0 for diagonal elements of the relative factors, -inf otherwise)
    start : lme4's starting theta
    REML : which criterion is evaluated
    theta_names : lme4's names of the theta components
    design, problem : the model's design and its arrays
    """

    def __init__(self, design: ModelDesign, problem: LMMProblem, REML: bool):
        self.design, self.problem, self.REML = design, problem, bool(REML)
        self.lower = problem.lower.copy()
        self.upper = np.full_like(self.lower, np.inf)
        self.start = problem.start_theta()
        self.theta_names = [name for t in design.terms for name in t.theta_names()]

    def __call__(self, theta) -> float:
        theta = np.asarray(theta, dtype=float)
        if theta.shape != self.lower.shape:
            raise ValueError(f"theta has {theta.size} values but the model has {self.lower.size}")
        return float(self.problem.objective(theta, self.REML))

    @property
    def n_evals(self) -> int:
        return self.problem.n_evals

    def profile(self, theta) -> Profiled:
        """beta-hat, u-hat, the pieces of the criterion and the factor at theta."""
        return self.problem.profile(np.asarray(theta, dtype=float))

    def block_description(self) -> BlockDescription:
        return block_description(self.problem)

    def __repr__(self) -> str:
        crit = "REML criterion" if self.REML else "deviance"
        return f"<lmer {crit} of theta ({self.lower.size} parameters): {self.design.formula}>"


def lmer_devfun(formula: str, data: pd.DataFrame, REML: bool = True, weights=None, offset=None) -> DevFun:
    """The profiled REML criterion (``REML=True``) or deviance of ``formula`` as a function of theta,
    as lme4's ``lmer(formula, data, REML, devFunOnly = TRUE)``; ``.lower`` and ``.start`` give the
    bounds and lme4's starting values."""
    from .lmer import caller_namespace, lmm_problem

    design = build_design(formula, data, weights=weights, offset=offset, env=caller_namespace())
    return DevFun(design, lmm_problem(design), REML)
