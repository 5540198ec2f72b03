"""Bayesian mode: rstanarm's models and priors, sampled with emcee (see :mod:`mixedpy.bayes.fit`)."""
from . import accessors as _accessors  # noqa: F401  (registers fixef/ranef/... for Posterior)
from .compare import compare
from .fit import BayesConvergenceWarning, bayes_glmer, bayes_lmer
from .posterior import Posterior
from .priors import cauchy, decov, exponential, lkj, normal, student_t

__all__ = ["bayes_lmer", "bayes_glmer", "Posterior", "normal", "student_t", "cauchy", "exponential", "decov",
           "lkj", "compare", "BayesConvergenceWarning"]
