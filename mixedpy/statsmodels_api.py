"""statsmodels' result names on every lmer and glmer fit (``MixedLMResults``' attributes).

:class:`StatsmodelsResults` is mixed into :class:`mixedpy.results.MixedModelFit`, so lmer and glmer
fits (and the fits of ``mp.LMM.from_formula(...).fit()``, the same object) answer to

* ``params`` and ``fe_params``: the fixed effects (a Series; statsmodels' ``params`` also lists the
  variance parameters, here they stay in ``cov_re``/``scale``), ``bse`` their standard errors,
  ``tvalues`` = params / bse, ``pvalues``: Satterthwaite's t tests for lmer (lmerTest's
  ``summary``), z tests for glmer (lme4's);
* ``conf_int(alpha=0.05)``: Wald intervals params -/+ z_{1-alpha/2} bse, a DataFrame with columns
  0 and 1; normal quantiles, as statsmodels' MixedLM (``use_t`` is False there);
* ``llf`` (the log-likelihood: the REML one for a REML fit, as statsmodels' and lme4's),
  ``scale`` (the residual variance sigma^2 of an lmer fit; 1 for binomial and Poisson),
  ``cov_re`` (the random-effects covariance, on the data's scale), ``df_resid`` = n - p (statsmodels'
  ``nobs - rank(exog)``), ``model`` (formula, endog, exog and names);
* ``fittedvalues`` (on the response scale) and ``resid`` (lme4's residuals), Series indexed like
  the rows of the data the fit used;
* ``random_effects``: {level: Series of that level's predicted random effects}, as
  ``MixedLMResults.random_effects``; with several grouping factors the keys are
  (factor, level) pairs.

``aic``, ``bic`` and ``nobs`` keep lme4's meaning (API.md): statsmodels gives NaN AIC/BIC for a
REML fit, lme4 (and mixedpy) the REML-criterion ones.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from scipy import stats
import scipy.linalg as sla


@dataclass(frozen=True)
class FitModel:
    """statsmodels' ``result.model`` of a mixedpy fit: the formula and the fitted arrays."""

    formula: str
    endog: np.ndarray
    exog: np.ndarray
    endog_names: str
    exog_names: list[str]
    family: object = None

    @property
    def nobs(self) -> int:
        return int(self.exog.shape[0])


class StatsmodelsResults:
    """statsmodels' ``MixedLMResults`` names (see the module docstring) on a mixed-model fit."""

    def _fixef_series(self, values) -> pd.Series:
        return pd.Series(np.asarray(values, dtype=float), index=pd.Index(self.fixef_names))

    @property
    def params(self) -> pd.Series:
        """The fixed effects (lme4's ``fixef``)."""
        return self._fixef_series(self.beta)

    @property
    def fe_params(self) -> pd.Series:
        return self.params

    @property
    def bse(self) -> pd.Series:
        return self._fixef_series(self.se_fixef)

    @property
    def tvalues(self) -> pd.Series:
        return self.params / self.bse

    @cached_property
    def pvalues(self) -> pd.Series:
        """Satterthwaite's t tests for lmer (lmerTest), z tests for glmer."""
        from .lmertest import coef_table

        tab = coef_table(self, ddf="Satterthwaite")
        return tab["Pr(>|t|)" if "Pr(>|t|)" in tab else "Pr(>|z|)"].rename(None)

    def conf_int(self, alpha: float = 0.05) -> pd.DataFrame:
        """Wald intervals of the fixed effects with normal quantiles, columns 0 and 1 (statsmodels)."""
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
        z = stats.norm.isf(alpha / 2)
        return pd.DataFrame({0: self.params - z * self.bse, 1: self.params + z * self.bse})

    @property
    def llf(self) -> float:
        return float(self.loglik)

    @property
    def df_resid(self) -> int:
        return int(self.nobs - len(self.beta))

    @property
    def cov_re(self) -> pd.DataFrame:
        """Covariance of the random effects (block diagonal over the terms), on the data's scale;
        rows and columns are the coefficient names, prefixed by the term label when there are
        several terms."""
        vc = self.varcorr()
        covs = [t.cov for t in vc.terms]
        if len(vc.terms) == 1:
            names = list(vc.terms[0].coef_names)
        else:
            names = [f"{t.label}:{c}" for t in vc.terms for c in t.coef_names]
        return pd.DataFrame(sla.block_diag(*covs) if covs else np.zeros((0, 0)), index=names, columns=names)

    @property
    def fittedvalues(self):
        """Fitted values on the response scale (lme4's ``fitted``), indexed like the data's rows."""
        f = self.fitted
        return pd.Series(f, index=self.design.row_index) if isinstance(f, np.ndarray) else f

    @property
    def random_effects(self) -> dict:
        """{level: Series of its random effects} (statsmodels); (factor, level) keys for several factors."""
        frames = self.ranef_frames()
        several = len(frames) > 1
        out = {}
        for g, df in frames.items():
            for level, row in df.iterrows():   # one Series per level is the structure asked for
                out[(g, level) if several else level] = row.rename(None)
        return out

    # a cached_property, not a property: the Dask fits set their own ``model`` attribute
    @cached_property
    def model(self) -> FitModel:
        """The fitted model's formula and arrays (statsmodels' ``result.model``)."""
        d = self.design
        return FitModel(formula=d.formula, endog=np.asarray(d.y), exog=np.asarray(d.X),
                        endog_names=d.response_name, exog_names=list(d.fixef_names),
                        family=getattr(self, "family", None))


__all__ = ["StatsmodelsResults", "FitModel"]
