"""lme4's "sd/cor" parameter scale, on which confint, profile and bootMer report the variance
parameters, and the interval table those report in.

Parameters are reported with lme4's old names (``oldNames = TRUE``): per random-effects term, in the
order of theta (vech, column-major), a diagonal entry becomes the standard deviation of that
coefficient and an off-diagonal one the correlation; the names are ``.sig01, .sig02, ...``, then
``.sigma`` (models with a scale), then the fixed effects.  A structured term (:mod:`mixedpy.covstruct`)
contributes its natural parameters instead, as lme4 2.x's ``par``: its SDs, then rho (cs, homcs, ar1).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .covstruct import CovStructure, Unstructured


@dataclass(frozen=True)
class SdCorMap:
    """Map between (theta, sigma) and the sd/cor parameter vector for a list of terms.

    Each term's part is its covariance structure's natural parameters
    (:meth:`mixedpy.covstruct.CovStructure.to_sdcor`): lme4's sd's and correlations for an
    unstructured term, the SDs then rho for cs/homcs/ar1 (lme4 2.x's ``par``), the SDs for diag."""

    structures: tuple[CovStructure, ...]   # an int k stands for lme4's unstructured k x k term
    use_scale: bool

    def __post_init__(self):
        object.__setattr__(self, "structures", tuple(Unstructured(st) if isinstance(st, (int, np.integer)) else st
                                                     for st in self.structures))

    @classmethod
    def for_fit(cls, fit) -> "SdCorMap":
        return cls(tuple(t.covstruct for t in fit.terms), bool(fit.use_scale))

    @property
    def n_var(self) -> int:
        return len(self.kinds())

    def kinds(self) -> list[str]:
        """"sd", "cor" or "sigma" per parameter."""
        out = [kind for st in self.structures for kind in st.kinds()]
        return out + (["sigma"] if self.use_scale else [])

    def names(self) -> list[str]:
        n = self.n_var - int(self.use_scale)
        width = max(2, len(str(n)))
        return [f".sig{i + 1:0{width}d}" for i in range(n)] + ([".sigma"] if self.use_scale else [])

    def from_theta(self, theta: np.ndarray, sigma: float) -> np.ndarray:
        s = sigma if self.use_scale else 1.0
        out, start = [], 0
        for st in self.structures:
            out.append(st.to_sdcor(theta[start:start + st.n_theta], s))
            start += st.n_theta
        if self.use_scale:
            out.append([sigma])
        return np.concatenate(out) if out else np.zeros(0)

    def to_theta(self, phi: np.ndarray) -> tuple[np.ndarray | None, float]:
        """(theta, sigma); theta is None when the parameters give no covariance matrix (correlations
        that do not form a PSD matrix)."""
        sigma = float(phi[-1]) if self.use_scale else 1.0
        out, start = [], 0
        for st in self.structures:
            m = len(st.kinds())
            theta_i = st.from_sdcor(np.asarray(phi[start:start + m], dtype=float), sigma)
            start += m
            if theta_i is None:
                return None, sigma
            out.append(theta_i)
        return np.concatenate(out) if out else np.zeros(0), sigma

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo = [st.sdcor_bounds()[0] for st in self.structures]
        hi = [st.sdcor_bounds()[1] for st in self.structures]
        if self.use_scale:
            lo.append([0.0])
            hi.append([np.inf])
        return (np.concatenate(lo) if lo else np.zeros(0)), (np.concatenate(hi) if hi else np.zeros(0))


def interval_frame(names, lower, upper, level) -> pd.DataFrame:
    """The table of intervals confint returns: columns "2.5 %", "97.5 %" (for level 0.95)."""
    a = (1 - level) / 2
    cols = [f"{100 * a:.3g} %", f"{100 * (1 - a):.3g} %"]
    return pd.DataFrame({cols[0]: np.asarray(lower, float), cols[1]: np.asarray(upper, float)},
                        index=pd.Index(list(names)))


def select_parameters(names: list[str], parm) -> list[int]:
    """Positions of confint's ``parm`` in ``names``: None is all, "theta_" the variance parameters and
    "beta_" the fixed effects (as lme4), else a name or a list of names."""
    if parm is None:
        return list(range(len(names)))
    if isinstance(parm, str):
        parm = [parm]
    if parm == ["theta_"]:
        return [i for i, n in enumerate(names) if n.startswith(".sig")]
    if parm == ["beta_"]:
        return [i for i, n in enumerate(names) if not n.startswith(".sig")]
    out = []
    for p in parm:
        if p not in names:
            raise ValueError(f"parm {p!r} is not a parameter; choose from {names}")
        out.append(names.index(p))
    return out


__all__ = ["SdCorMap", "interval_frame", "select_parameters"]
