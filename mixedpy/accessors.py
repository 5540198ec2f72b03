"""lme4/arm accessors as generic functions: ``fixef``, ``ranef``, ``coef``, ``VarCorr``,
``sigma_hat``, ``se_fixef``, ``se_ranef``.

Each is a ``functools.singledispatch`` function; the frequentist fits register here, and other
result types (``sim`` draws, Bayesian posteriors) register their own implementation.
"""
from __future__ import annotations

from functools import singledispatch

import pandas as pd

from .results import MixedModelFit
from .varcorr import VarCorr as _VarCorrClass


def _unsupported(name, obj):
    return TypeError(f"{name}() does not know objects of type {type(obj).__name__}")


@singledispatch
def fixef(fit) -> pd.Series:
    """Fixed-effect estimates as a Series named by lme4's column names."""
    raise _unsupported("fixef", fit)


@singledispatch
def ranef(fit, condvar: bool = False) -> dict[str, pd.DataFrame]:
    """Conditional modes per grouping factor: DataFrame (levels x coefficients).  With
    ``condvar=True`` each frame carries ``.attrs["condsd"]`` (conditional SDs, same shape) and
    ``.attrs["postVar"]`` (list of (J, k, k) conditional covariances, one per term).

    For a fit the result is a :class:`mixedpy.results.Ranef` (a dict): ``.condsd`` gives the SD
    frames and ``.to_frame()`` lme4's ``as.data.frame(ranef(fit, condVar = TRUE))``, the long table
    grpvar, term, grp, condval, condsd."""
    raise _unsupported("ranef", fit)


@singledispatch
def coef(fit) -> dict[str, pd.DataFrame]:
    """fixef + ranef per level (lme4 ``coef``)."""
    raise _unsupported("coef", fit)


@singledispatch
def VarCorr(fit) -> _VarCorrClass:  # noqa: N802 - lme4's name
    """Variance components, printing like lme4; ``.to_frame()`` as ``as.data.frame(VarCorr(m))``."""
    raise _unsupported("VarCorr", fit)


@singledispatch
def sigma_hat(fit) -> dict:
    """arm's ``sigma.hat``: {"data": residual SD (1 without a scale), "<term>": Series of SDs}."""
    raise _unsupported("sigma_hat", fit)


@singledispatch
def se_fixef(fit) -> pd.Series:
    """Standard errors of the fixed effects, sqrt(diag(vcov))."""
    raise _unsupported("se_fixef", fit)


@singledispatch
def se_ranef(fit) -> dict[str, pd.DataFrame]:
    """Conditional SDs of the random effects per factor (arm ``se.ranef``; also for factors
    carrying several terms, where arm fails)."""
    raise _unsupported("se_ranef", fit)


@fixef.register
def _(fit: MixedModelFit) -> pd.Series:
    return pd.Series(fit.beta, index=fit.fixef_names, name="fixef")


@ranef.register
def _(fit: MixedModelFit, condvar: bool = False):
    return fit.ranef_frames(condvar=condvar)


@coef.register
def _(fit: MixedModelFit):
    return fit.coef_frames()


@VarCorr.register
def _(fit: MixedModelFit):
    return fit.varcorr()


@sigma_hat.register
def _(fit: MixedModelFit):
    vc = fit.varcorr()
    out: dict = {"data": fit.sigma if fit.use_scale else 1.0}
    for t in vc.terms:
        out[t.label] = pd.Series(t.sd, index=t.coef_names)
    return out


@se_fixef.register
def _(fit: MixedModelFit):
    return pd.Series(fit.se_fixef, index=fit.fixef_names, name="se")


@se_ranef.register
def _(fit: MixedModelFit):
    return {g: df.attrs["condsd"] for g, df in fit.ranef_frames(condvar=True).items()}


def vcov(fit) -> pd.DataFrame:
    """Variance-covariance matrix of the fixed effects."""
    return fit.vcov


__all__ = ["fixef", "ranef", "coef", "VarCorr", "sigma_hat", "se_fixef", "se_ranef", "vcov"]
