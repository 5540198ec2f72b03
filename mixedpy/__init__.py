"""mixedpy: linear and generalized linear mixed-effects models with lme4's numbers,
arm's conveniences and a Bayesian mode.

    >>> import mixedpy as mp
    >>> fit = mp.lmer("Reaction ~ Days + (Days | Subject)", mp.datasets.load("sleepstudy"))
    >>> mp.fixef(fit)
"""
from . import datasets, families, plot
from .accessors import VarCorr, coef, fixef, ranef, se_fixef, se_ranef, sigma_hat, vcov
from .arm import SimResult, display, predictive_draws, sim
from .control import ConvCheck, ControlError, glmerControl, lmerControl
from .bayes import bayes_glmer, bayes_lmer, cauchy, compare, decov, exponential, lkj, normal, student_t
from .errors import (BootstrapWarning, ConvergenceError, ConvergenceWarning, DataError, DataWarning, DiagnosticWarning, FamilyWarning, FitError,
                     FormulaError, FormulaWarning, MissingValuesWarning, MixedpyError, MixedpyInfo, MixedpyWarning,
                     RankDeficiencyWarning, ScaleWarning, SingularFitWarning, ZeroWeightsWarning)
from .glmer import GlmerFit, glmer
from .glmer_nb import GlmerNbFit, glmer_nb
from .allfit import allFit
from .getme import getME, model_matrix
from .intervals import confint
from .likelihood_ratio import anova
from .linalg.structure import block_description
from .lmer import LMM, lmer
from .lmertest import anova_table, coef_table, contest
from .marginal_means import contrast, emmeans
from .model_building import drop1, ranova, update, update_formula
from .modular import lmer_devfun
from .performance import icc, r2
from .pooling import pooling
from .results import LmerFit
from .influence import Influence, cooks_distance, hatvalues, influence
from .residuals import residuals
from .threads import get_num_threads, set_num_threads
from .tidy import glance, tidy

__version__ = "0.1.0"

__all__ = [
    # fitting
    "lmer", "LMM", "glmer", "lmer_devfun", "block_description", "bayes_lmer", "bayes_glmer", "LmerFit", "GlmerFit",
    # lme4 / arm accessors
    "fixef", "ranef", "coef", "VarCorr", "sigma_hat", "se_fixef", "se_ranef", "vcov",
    # arm layer and inference
    "display", "sim", "SimResult", "predictive_draws", "anova", "confint", "pooling",
    # Bayesian priors and comparison
    "normal", "student_t", "cauchy", "exponential", "decov", "lkj", "compare",
    # BLAS threads of the kernel
    "set_num_threads", "get_num_threads",
    # output, plots, data
    "tidy", "glance", "plot", "datasets", "families",
    # errors and warnings
    "ConvergenceWarning", "SingularFitWarning", "DataError", "FormulaError", "MixedpyError",
    "DataWarning", "FormulaWarning", "MissingValuesWarning", "ZeroWeightsWarning", "RankDeficiencyWarning", "ScaleWarning",
    "FitError", "MixedpyWarning", "MixedpyInfo", "BootstrapWarning", "DiagnosticWarning", "FamilyWarning",
]
__all__ += ["coef_table", "contest", "anova_table", "r2", "icc"]  # lmerTest / performance (issue 12)
__all__ += ["lmerControl", "glmerControl", "ConvCheck", "ControlError", "ConvergenceError"]  # issue 14
__all__ += ["emmeans", "contrast"]  # emmeans (issue 12)
__all__ += ["update", "update_formula", "drop1", "ranova", "getME", "model_matrix", "allFit"]  # model building (issue 12)
__all__ += ["residuals", "influence", "Influence", "hatvalues", "cooks_distance"]  # issue 12 part 6
__all__ += ["glmer_nb", "GlmerNbFit"]  # negative binomial GLMMs (issue 13)
