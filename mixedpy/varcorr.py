"""Variance components (lme4 ``VarCorr``): per term Sigma_i = sigma^2 T_i T_i' (LMM) or T_i T_i' (GLMM).

A structured term (:mod:`mixedpy.covstruct`) prints as glmmTMB prints it: cs and homcs list the SDs
with the one correlation and a note, ``0.502 (cs)``, on the first row; ar1 has one row (the first
level's name, the common SD, ``0.663 (ar1)``); diag lists the SDs without correlations (as lme4's
``||`` terms print).  Indexing and ``to_frame`` give the full implied covariance of every term.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .covstruct import CORRELATED_STRUCTURES
from .printing import HtmlPre, varcorr_table


def unique_labels(names: list[str]) -> list[str]:
    """R's ``make.unique``: Subject, Subject.1, Subject.2, ..."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        if n in seen:
            seen[n] += 1
            out.append(f"{n}.{seen[n]}")
        else:
            seen[n] = 0
            out.append(n)
    return out


@dataclass(frozen=True)
class VarCorrTerm:
    label: str          # unique label (Subject, Subject.1), as lme4 prints and names terms
    group: str          # grouping factor name
    coef_names: list[str]
    cov: np.ndarray     # k x k covariance
    structure: str = "us"   # mixedpy.covstruct name: us (lme4's), diag, cs, homcs, ar1

    @property
    def sd(self) -> np.ndarray:
        return np.sqrt(np.diag(self.cov))

    @property
    def corr(self) -> np.ndarray:
        sd = self.sd
        with np.errstate(invalid="ignore", divide="ignore"):
            c = self.cov / np.outer(sd, sd)
        np.fill_diagonal(c, 1.0)
        return c

    @property
    def rho(self) -> float | None:
        """The structure's one correlation (cs, homcs: any pair; ar1: neighbouring levels), else None."""
        if self.structure in CORRELATED_STRUCTURES:
            return float(self.corr[1, 0])
        return None

    def table_rows(self, corr_decimals: int) -> list[tuple[str, float, float, list[str]]]:
        """(name, SD, variance, correlation cells) per printed row."""
        sd, var, c = self.sd, np.diag(self.cov), self.corr
        k = len(self.coef_names)
        if self.structure == "diag":
            return [(self.coef_names[i], sd[i], var[i], []) for i in range(k)]
        if self.structure in CORRELATED_STRUCTURES:
            note = [f"{self.rho:.{corr_decimals}f} ({self.structure})"]
            rows = [(self.coef_names[i], sd[i], var[i], note if i == 0 else [])
                    for i in range(1 if self.structure == "ar1" else k)]
            return rows
        return [(self.coef_names[i], sd[i], var[i], [f"{c[i, j]:.{corr_decimals}f}" for j in range(i)])
                for i in range(k)]


class VarCorr(HtmlPre):
    """Estimated variances, SDs and correlations of the random effects, printing like lme4.

    Indexing by the unique term label gives the covariance matrix as a DataFrame.
    """

    def __init__(self, terms: list[VarCorrTerm], sigma: float | None):
        self.terms = terms
        self.sigma = sigma  # residual SD, None when the family has no scale

    def __getitem__(self, label: str) -> pd.DataFrame:
        for t in self.terms:
            if t.label == label:
                return pd.DataFrame(t.cov, index=t.coef_names, columns=t.coef_names)
        raise KeyError(f"no random-effects term {label!r}; terms are {[t.label for t in self.terms]}")

    def keys(self) -> list[str]:
        return [t.label for t in self.terms]

    def to_frame(self) -> pd.DataFrame:
        """R's ``as.data.frame(VarCorr(fit))``: grp, var1, var2, vcov, sdcor."""
        rows = []
        for t in self.terms:
            sd, cor = t.sd, t.corr
            for i, name in enumerate(t.coef_names):
                rows.append((t.label, name, None, t.cov[i, i], sd[i]))
            for j in range(len(t.coef_names)):
                for i in range(j + 1, len(t.coef_names)):
                    rows.append((t.label, t.coef_names[j], t.coef_names[i], t.cov[i, j], cor[i, j]))
        if self.sigma is not None:
            rows.append(("Residual", None, None, self.sigma ** 2, self.sigma))
        return pd.DataFrame(rows, columns=["grp", "var1", "var2", "vcov", "sdcor"])

    def format(self, digits: int = 5, variance: bool = False) -> str:
        """lme4's ``print(VarCorr(fit))`` layout (``comp=c("Variance","Std.Dev.")`` with variance=True)."""
        return varcorr_table(self, digits, variance)

    def __repr__(self) -> str:
        return self.format()

    __str__ = __repr__
