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
from .arm import SimResult, display, predictive_draws, sim
from .inference import anova, confint
from .pooling import pooling
from . import plot
from .tidy import glance, tidy
from . import families
from .glmer import GlmerFit, glmer

__version__ = "0.1.0"

__all__ = ["datasets", "lmer", "LMM", "LmerFit", "fixef", "ranef", "coef", "VarCorr", "sigma_hat",
           "se_fixef", "se_ranef", "vcov", "ConvergenceWarning", "SingularFitWarning", "DataError",
           "FormulaError", "MixedpyError"]
__all__ += ["display", "sim", "SimResult", "predictive_draws", "anova", "confint", "pooling"]
__all__ += ["plot", "tidy", "glance"]
__all__ += ["glmer", "GlmerFit", "families"]
from .bayes import bayes_glmer, bayes_lmer, cauchy, compare, decov, exponential, lkj, normal, student_t  # noqa: E402
__all__ += ["bayes_lmer", "bayes_glmer", "normal", "student_t", "cauchy", "exponential", "decov", "lkj", "compare"]
