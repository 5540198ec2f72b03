"""``confint``: confidence intervals for the parameters of a mixed model, as lme4's
``confint.merMod``: Wald intervals here, profile likelihood in :mod:`mixedpy.profile`, the
parametric bootstrap in :mod:`mixedpy.bootstrap`; all on the sd/cor scale of :mod:`mixedpy.sdcor`.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy.stats import norm

from .bootstrap import bootstrap
from .profile import confint_profile
from .sdcor import SdCorMap, interval_frame, select_parameters
from .threads import controls_threads


def confint_wald(fit, level: float = 0.95) -> pd.DataFrame:
    """beta-hat +- z_{(1+level)/2} se (lme4 ``method="Wald"``); NaN for the variance parameters."""
    m = SdCorMap.for_fit(fit)
    z = norm.ppf((1 + level) / 2)
    beta = np.asarray(fit.beta, float)
    se = np.sqrt(np.diag(np.asarray(fit.vcov_array)))
    nan = np.full(m.n_var, np.nan)
    return interval_frame(m.names() + list(fit.fixef_names), np.concatenate([nan, beta - z * se]),
                          np.concatenate([nan, beta + z * se]), level)


@controls_threads
def confint(fit, method: str = "Wald", level: float = 0.95, parm=None, nsim: int = 500, seed=None,
            boot_type: str = "perc", progress: bool | None = None) -> pd.DataFrame:
    """Confidence intervals for the parameters of a mixed model, as lme4's ``confint.merMod``.

    Parameters
    ----------
    method : "Wald" (fixed effects only; NaN for variance parameters), "profile" (profile
        likelihood: the ML refit of an lmer model, the Laplace/AGQ deviance of a glmer model) or
        "boot" (parametric bootstrap percentile intervals; lmer and glmer)
    level : coverage, e.g. 0.95
    parm : parameter names to report (default all; "theta_" or "beta_" as lme4)
    nsim, seed, boot_type : bootstrap settings (``boot_type`` "perc", "basic" or "norm").  The
        bootstrap's notes are warnings: :class:`~mixedpy.errors.BootstrapWarning` when refits
        failed and were dropped, :class:`~mixedpy.errors.MixedpyInfo` for the count of singular refits
    progress : a tqdm bar over the profiled parameters or the bootstrap refits: True always,
        False never, None (default) only in an interactive session (see :mod:`mixedpy.progress`)

    Returns
    -------
    DataFrame indexed by ``.sig01, ..., .sigma, <fixed effects>`` with columns "2.5 %", "97.5 %".
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    key = str(method).lower()
    if key == "wald":
        out = confint_wald(fit, level)
    elif key == "profile":
        return confint_profile(fit, level, parm, progress=progress)
    elif key == "boot":
        res = bootstrap(fit, nsim=nsim, seed=seed, progress=progress)
        for category, msg in res.notes:
            warnings.warn(msg, category, stacklevel=3)
        out = res.confint(level, boot_type)
    else:
        raise ValueError(f"method must be 'Wald', 'profile' or 'boot', got {method!r}")
    return out.iloc[select_parameters(list(out.index), parm)]


__all__ = ["confint", "confint_wald"]
