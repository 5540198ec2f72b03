"""Nakagawa's R^2 and the intraclass correlation, as R's performance package computes them.

performance's ``r2_nakagawa`` and ``icc`` (Nakagawa, Johnson & Schielzeth 2017, J. R. Soc.
Interface 14: 20170213; the variances of insight's ``get_variance``):

* var_fixed = var(X beta-hat) (sample variance, n - 1);
* var_random = sum over the random-effects terms of mean_i z_i' Sigma_t z_i, z_i the row of the
  term's columns that are also fixed-effects columns (or the intercept) -- Johnson's (2014) mean
  over the observations for random slopes;
* var_residual: sigma^2 for lmer; the distribution-specific variance for glmer: pi^2/3 (logit),
  1 (probit), pi^2/6 (cloglog), and log(1 + 1/mu) for Poisson with mu = exp(beta_0) of the null
  model (intercept and the same random effects, refitted), the lognormal approximation.

R2_marginal = var_fixed / total, R2_conditional = (var_fixed + var_random) / total,
ICC_adjusted = var_random / (var_random + var_residual), ICC_unadjusted = var_random / total.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .errors import DiagnosticWarning, MixedpyError
from .threads import controls_threads


def _variances(fit) -> tuple[float, float, float]:
    X = np.asarray(fit.design.X, dtype=float)
    beta = np.asarray(fit.beta, dtype=float)
    var_fixed = float(np.var(X @ beta, ddof=1))
    names = set(fit.fixef_names) | {"(Intercept)"}
    n = fit.nobs
    var_random = 0.0
    s2 = fit.scale   # sigma^2 (1 without dispersion)
    for t, T in zip(fit.terms, fit.relative_factors()):
        if t.n_levels == n:
            continue        # an observation-level term is dispersion, not a random-effect variance
        keep = [j for j, c in enumerate(t.coef_names) if c in names]
        Sigma = s2 * (T @ T.T)[np.ix_(keep, keep)]
        Zt = t.model_matrix[:, keep]
        var_random += float(np.einsum("na,ab,nb->", Zt, Sigma, Zt) / n)
    return var_fixed, var_random, _residual_variance(fit)


def _residual_variance(fit) -> float:
    fam = getattr(fit, "family", None)
    if fam is None:
        return float(fit.sigma) ** 2
    link = fam.link if isinstance(fam.link, str) else getattr(fam.link, "name", str(fam.link))
    if fam.name == "binomial":
        table = {"logit": np.pi ** 2 / 3, "probit": 1.0, "cloglog": np.pi ** 2 / 6}
        if link not in table:
            raise MixedpyError(f"no distribution-specific variance for the binomial link {link!r}")
        return float(table[link])
    if fam.name == "poisson" and link == "log":
        mu = float(np.exp(_null_model_intercept(fit)))
        if mu < 6:
            warnings.warn(f"mu of {mu:.1f} is too close to zero, estimate of the random-effect variances "
                          "may be unreliable (performance's warning)", DiagnosticWarning, stacklevel=4)
        return float(np.log1p(1.0 / mu))
    raise MixedpyError(f"no distribution-specific variance for family {fam.name!r} with link {link!r}")


def _null_model_intercept(fit) -> float:
    """beta_0 of the model with the same response, random effects and offset but only an intercept."""
    from .glmm import GLMMProblem, fit_glmm

    problem = GLMMProblem(fit.design.terms, np.ones((fit.nobs, 1)), fit.problem.resp, fit.family,
                          fit.design.offset)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit_glmm(problem, nAGQ=fit.nAGQ)
    return float(np.asarray(result.beta)[0])


@controls_threads
def r2(fit) -> pd.Series:
    """Nakagawa's marginal and conditional R^2 (performance ``r2_nakagawa``) of an lmer or glmer
    (binomial, Poisson) fit: a Series with ``R2_marginal`` and ``R2_conditional``."""
    vf, vr, ve = _variances(fit)
    total = vf + vr + ve
    return pd.Series({"R2_marginal": vf / total, "R2_conditional": (vf + vr) / total})


@controls_threads
def icc(fit) -> pd.Series:
    """The adjusted and unadjusted intraclass correlation (performance ``icc``): a Series with
    ``ICC_adjusted`` = var_random / (var_random + var_residual) and ``ICC_unadjusted`` =
    var_random / (var_fixed + var_random + var_residual)."""
    vf, vr, ve = _variances(fit)
    return pd.Series({"ICC_adjusted": vr / (vr + ve), "ICC_unadjusted": vr / (vf + vr + ve)})
