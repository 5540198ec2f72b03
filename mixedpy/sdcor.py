"""lme4's "sd/cor" parameter scale, on which confint, profile and bootMer report the variance
parameters, and the interval table those report in.

Parameters are reported with lme4's old names (``oldNames = TRUE``): per random-effects term, in the
order of theta (vech, column-major), a diagonal entry becomes the standard deviation of that
coefficient and an off-diagonal one the correlation; the names are ``.sig01, .sig02, ...``, then
``.sigma`` (models with a scale), then the fixed effects.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .terms import vech_indices


def _psd_cholesky(C: np.ndarray, tol: float = 1e-12) -> np.ndarray | None:
    """Lower Cholesky factor of a positive semi-definite matrix (zero pivots give zero columns,
    so a correlation of exactly +-1 or an sd of 0 is allowed); None if C is not PSD."""
    k = C.shape[0]
    L = np.zeros_like(C)
    scale = max(float(np.max(np.abs(np.diag(C)))), 1e-300)
    for j in range(k):
        d = C[j, j] - L[j, :j] @ L[j, :j]
        if d < -tol * scale:
            return None
        if d <= tol * scale:
            if np.any(np.abs(C[j + 1:, j] - L[j + 1:, :j] @ L[j, :j]) > 1e-8 * scale):
                return None
            continue
        L[j, j] = np.sqrt(d)
        L[j + 1:, j] = (C[j + 1:, j] - L[j + 1:, :j] @ L[j, :j]) / L[j, j]
    return L


@dataclass(frozen=True)
class SdCorMap:
    """Map between (theta, sigma) and lme4's sd/cor parameter vector for a list of terms."""

    ks: tuple[int, ...]
    use_scale: bool

    @classmethod
    def for_fit(cls, fit) -> "SdCorMap":
        return cls(tuple(t.k for t in fit.terms), bool(fit.use_scale))

    @property
    def n_var(self) -> int:
        return sum(k * (k + 1) // 2 for k in self.ks) + int(self.use_scale)

    def kinds(self) -> list[str]:
        """"sd", "cor" or "sigma" per parameter."""
        out = []
        for k in self.ks:
            r, c = vech_indices(k)
            out += ["sd" if i == j else "cor" for i, j in zip(r, c)]
        return out + (["sigma"] if self.use_scale else [])

    def names(self) -> list[str]:
        n = sum(k * (k + 1) // 2 for k in self.ks)
        width = max(2, len(str(n)))
        return [f".sig{i + 1:0{width}d}" for i in range(n)] + ([".sigma"] if self.use_scale else [])

    def from_theta(self, theta: np.ndarray, sigma: float) -> np.ndarray:
        s = sigma if self.use_scale else 1.0
        out, start = [], 0
        for k in self.ks:
            r, c = vech_indices(k)
            T = np.zeros((k, k))
            T[r, c] = theta[start:start + len(r)]
            start += len(r)
            C = s * s * (T @ T.T)
            sd = np.sqrt(np.diag(C))
            with np.errstate(invalid="ignore", divide="ignore"):
                R = C / np.outer(sd, sd)
            out += [sd[i] if i == j else R[i, j] for i, j in zip(r, c)]
        if self.use_scale:
            out.append(sigma)
        return np.asarray(out, dtype=float)

    def to_theta(self, phi: np.ndarray) -> tuple[np.ndarray | None, float]:
        """(theta, sigma); theta is None when the correlations do not form a PSD matrix."""
        sigma = float(phi[-1]) if self.use_scale else 1.0
        out, start = [], 0
        for k in self.ks:
            r, c = vech_indices(k)
            vals = phi[start:start + len(r)]
            start += len(r)
            sd = np.zeros(k)
            R = np.eye(k)
            for v, i, j in zip(vals, r, c):
                if i == j:
                    sd[i] = v
                else:
                    R[i, j] = R[j, i] = v
            L = _psd_cholesky(np.outer(sd, sd) * R)
            if L is None:
                return None, sigma
            out.append(L[r, c] / sigma)
        return np.concatenate(out) if out else np.zeros(0), sigma

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        kinds = self.kinds()
        lo = np.array([-1.0 if k == "cor" else 0.0 for k in kinds])
        hi = np.array([1.0 if k == "cor" else np.inf for k in kinds])
        return lo, hi


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
