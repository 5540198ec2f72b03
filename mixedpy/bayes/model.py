"""What the LMM and GLMM posteriors share: rstanarm's centering of X and the parameter layout."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .covariance import CovariancePrior
from .priors import ResolvedPriors


@dataclass(frozen=True)
class Centering:
    """rstanarm centers every non-intercept column when there is an intercept; gamma is the intercept
    of the centered predictors and the reported intercept is alpha = gamma - xbar' beta (ALGORITHMS.md 4.1)."""

    xbar: np.ndarray          # (p,) column means, 0 for the intercept column and without an intercept
    intercept: int | None     # position of the intercept column

    @classmethod
    def of(cls, X: np.ndarray, names: list[str]) -> "Centering":
        if "(Intercept)" in names:
            j = names.index("(Intercept)")
            xbar = X.mean(axis=0)
            xbar[j] = 0.0
            return cls(xbar, j)
        return cls(np.zeros(X.shape[1]), None)

    def center(self, X: np.ndarray) -> np.ndarray:
        return X - self.xbar

    def uncenter(self, beta_c: np.ndarray) -> np.ndarray:
        """(S, p) coefficients of the centered X -> coefficients of the original X."""
        out = np.array(beta_c, dtype=float, copy=True)
        if self.intercept is not None:
            out[:, self.intercept] -= beta_c @ self.xbar
        return out

    def to_centered(self, beta: np.ndarray) -> np.ndarray:
        out = np.array(beta, dtype=float, copy=True)
        if self.intercept is not None:
            out[..., self.intercept] += beta @ self.xbar
        return out


def coefficient_prior_arrays(priors: ResolvedPriors, names: list[str]):
    """Per-coefficient (kind, location, precision) in X's column order, from the resolved priors."""
    p = len(names)
    loc, prec = np.zeros(p), np.zeros(p)
    others = [j for j, nm in enumerate(names) if nm != "(Intercept)"]
    if priors.intercept is not None:
        j = names.index("(Intercept)")
        loc[j] = priors.intercept.location[0]
        prec[j] = priors.intercept.precision()[0]
    loc[others] = priors.coef.location
    prec[others] = priors.coef.precision()
    return loc, prec, others


def coefficient_logprior(priors: ResolvedPriors, names: list[str], beta: np.ndarray) -> np.ndarray:
    """log p(beta) for (W, p) coefficients of the centered X."""
    others = [j for j, nm in enumerate(names) if nm != "(Intercept)"]
    lp = priors.coef.logpdf(beta[:, others])
    if priors.intercept is not None:
        j = names.index("(Intercept)")
        lp = lp + priors.intercept.logpdf(beta[:, [j]])
    return lp


def covariance_priors(terms, priors: ResolvedPriors) -> list[CovariancePrior]:
    return [CovariancePrior(t.k, priors.covariance, i, priors.cov_scale) for i, t in enumerate(terms)]
