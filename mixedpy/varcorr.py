"""Variance components (lme4 ``VarCorr``): per term Sigma_i = sigma^2 T_i T_i' (LMM) or T_i T_i' (GLMM)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .rformat import format_r


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


class VarCorr:
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
        groups, names, sds, vars_, corr_rows = [], [], [], [], []
        max_k = max((len(t.coef_names) for t in self.terms), default=1)
        for t in self.terms:
            c = t.corr
            for i, name in enumerate(t.coef_names):
                groups.append(t.label if i == 0 else "")
                names.append(name)
                sds.append(t.sd[i])
                vars_.append(t.cov[i, i])
                corr_rows.append([f"{c[i, j]:.{max(2, digits - 2)}f}" for j in range(i)])
        if self.sigma is not None:
            groups.append("Residual")
            names.append("")
            sds.append(self.sigma)
            vars_.append(self.sigma ** 2)
            corr_rows.append([])
        header = ["Groups", "Name"] + (["Variance"] if variance else []) + ["Std.Dev."]
        cols = [groups, names]
        if variance:
            cols.append(format_r(vars_, digits))
        cols.append(format_r(sds, digits))
        n_corr = max_k - 1
        if n_corr > 0:
            header += ["Corr"] + [""] * (n_corr - 1)
            for j in range(n_corr):
                cols.append([r[j] if j < len(r) else "" for r in corr_rows])
        widths = [max(len(h), *(len(v) for v in col)) for h, col in zip(header, cols)]
        # lme4 formats each numeric column to a common width, then left-justifies it in the table
        lines = [" " + " ".join(h.ljust(w) for h, w in zip(header, widths))]
        for r in range(len(groups)):
            lines.append(" " + " ".join(col[r].ljust(w) for col, w in zip(cols, widths)))
        return "\n".join(line.rstrip() for line in lines)

    def __repr__(self) -> str:
        return self.format()

    __str__ = __repr__
