"""mixedpy: linear and generalized linear mixed-effects models with lme4's numbers,
arm's conveniences and a Bayesian mode.

    >>> import mixedpy as mp
    >>> fit = mp.lmer("Reaction ~ Days + (Days | Subject)", mp.datasets.load("sleepstudy"))
    >>> mp.fixef(fit)
"""
from . import datasets
from .accessors import VarCorr, coef, fixef, ranef, se_fixef, se_ranef, sigma_hat, vcov
from .errors import ConvergenceWarning, DataError, FormulaError, MixedpyError, SingularFitWarning
from .lmer import LMM, lmer
from .results import LmerFit

__version__ = "0.1.0"

__all__ = ["datasets", "lmer", "LMM", "LmerFit", "fixef", "ranef", "coef", "VarCorr", "sigma_hat",
           "se_fixef", "se_ranef", "vcov", "ConvergenceWarning", "SingularFitWarning", "DataError",
           "FormulaError", "MixedpyError"]
