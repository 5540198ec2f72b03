"""The parametric bootstrap of a mixed model, as lme4's ``bootMer(type = "parametric")``, and its
percentile, basic and normal intervals (the boot package's ``boot.ci``), on the sd/cor scale of
:mod:`mixedpy.sdcor`.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm

from .errors import BootstrapWarning, MixedpyError, MixedpyInfo
from .linalg.blocked import NotPositiveDefinite
from .progress import track
from .sdcor import SdCorMap, interval_frame
from .simulate import simulate


@dataclass
class BootResult:
    """Parametric bootstrap replicates (lme4 ``bootMer``): ``t`` is (nsim, n_params) with the
    sd/cor parameters, sigma and the fixed effects of each refit; ``t0`` the original values."""

    t0: pd.Series
    t: pd.DataFrame
    n_singular: int
    messages: list[str]
    n_failed: int = 0
    #: ``messages`` with their warning categories: failed refits are a BootstrapWarning, the count
    #: of singular refits is informational (MixedpyInfo)
    notes: tuple[tuple[type, str], ...] = ()

    def confint(self, level: float = 0.95, type: str = "perc") -> pd.DataFrame:
        a = (1 - level) / 2
        lo, hi = np.full(self.t.shape[1], np.nan), np.full(self.t.shape[1], np.nan)
        for c in range(self.t.shape[1]):
            x = self.t.iloc[:, c].to_numpy()
            x = np.sort(x[np.isfinite(x)])
            if x.size < 2:
                continue
            t0 = self.t0.iloc[c]
            if type == "perc":
                lo[c], hi[c] = _norm_inter(x, a), _norm_inter(x, 1 - a)
            elif type == "basic":
                lo[c], hi[c] = 2 * t0 - _norm_inter(x, 1 - a), 2 * t0 - _norm_inter(x, a)
            elif type == "norm":
                bias, sd = x.mean() - t0, x.std(ddof=1)
                z = norm.ppf(1 - a)
                lo[c], hi[c] = t0 - bias - z * sd, t0 - bias + z * sd
            else:
                raise ValueError(f"boot_type must be 'perc', 'basic' or 'norm', got {type!r}")
        return interval_frame(self.t.columns, lo, hi, level)


def _norm_inter(x_sorted: np.ndarray, alpha: float) -> float:
    """Quantile of bootstrap replicates as the boot package's ``norm.inter``: order statistic
    (R+1) alpha, interpolated on the normal-quantile scale between neighbours."""
    R = x_sorted.size
    rk = (R + 1) * alpha
    k = int(np.floor(rk))
    if abs(rk - round(rk)) < 1e-10 and 1 <= round(rk) <= R:
        return float(x_sorted[int(round(rk)) - 1])
    if k < 1:
        return float(x_sorted[0])
    if k >= R:
        return float(x_sorted[-1])
    h, lo_q, hi_q = norm.ppf(alpha), norm.ppf(k / (R + 1)), norm.ppf((k + 1) / (R + 1))
    return float(x_sorted[k - 1] + (h - lo_q) / (hi_q - lo_q) * (x_sorted[k] - x_sorted[k - 1]))


def bootstrap(fit, nsim: int = 500, seed=None, progress: bool | None = None) -> BootResult:
    """Parametric bootstrap as lme4's ``bootMer(fit, FUN, nsim, use.u = FALSE, type =
    "parametric")``: responses are simulated with new random effects (``simulate(fit)``) and
    the model is refitted to each with the same criterion (REML, ML or glmer's Laplace/AGQ),
    starting at the estimates.  The statistic is the sd/cor parameters, sigma (when the model has
    one) and the fixed effects.  Refits that raise a :class:`~mixedpy.errors.MixedpyError` (the
    fit failed) or a linear-algebra error are dropped and counted in ``messages``.  ``progress``
    draws a bar over the refits (True, False, or None: only in an interactive session; see
    :mod:`mixedpy.progress`)."""
    nsim = int(nsim)
    if nsim < 2:
        raise ValueError(f"nsim must be at least 2 for bootstrap intervals, got {nsim}")
    m = SdCorMap.for_fit(fit)
    names = m.names() + list(fit.fixef_names)
    t0 = pd.Series(np.concatenate([m.from_theta(fit.theta, fit.sigma), fit.beta]), index=names)
    Y = simulate(fit, nsim=nsim, seed=seed).to_numpy()
    out = np.full((nsim, len(names)), np.nan)
    n_singular, failed = 0, 0
    for s in track(range(nsim), nsim, progress=progress, desc="bootstrap refits", unit="refit"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = fit.refit(newresp=Y[:, s], calc_derivs=False, quiet=True)
        except (NotPositiveDefinite, np.linalg.LinAlgError, MixedpyError):
            failed += 1
            continue
        n_singular += bool(r.is_singular)
        out[s] = np.concatenate([m.from_theta(r.theta, r.sigma), r.beta])
    notes = []
    if n_singular:
        notes.append((MixedpyInfo, f"{n_singular} of {nsim} refits were singular (boundary) fits"))
    if failed:
        notes.append((BootstrapWarning, f"{failed} of {nsim} refits failed and were dropped; the intervals use "
                      f"the other {nsim - failed}. Increase nsim, or check the model for convergence problems"))
    return BootResult(t0=t0, t=pd.DataFrame(out, columns=names), n_singular=n_singular,
                      messages=[m for _, m in notes], n_failed=failed, notes=tuple(notes))


# --------------------------------------------------------------------------------------------
# confint dispatcher


__all__ = ["bootstrap", "BootResult"]
