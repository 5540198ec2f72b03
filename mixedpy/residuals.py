"""lme4's ``residuals.merMod`` and R's ``na.exclude``: residuals of each type, and per-row results
indexed like the data.

Residuals (lme4 1.1-31 ``residuals.lmResp`` / ``residuals.glmResp``), with y the response (the
proportion for a binomial), mu the fitted conditional mean, w the prior weights (times the trials
for a binomial) and eta the linear predictor:

* ``"response"``: y - mu (lmer's default);
* ``"pearson"``: sqrt(w) (y - mu) / sqrt(V(mu)), V = 1 for lmer (lme4's ``wtres``);
* ``"deviance"``: sign(y - mu) sqrt(d_i) with d_i the family's deviance residual (glmer's default;
  for lmer d_i = w (y - mu)^2, so it equals the Pearson residual as in lme4);
* ``"working"``: (y - mu) / (d mu / d eta) (y - mu for lmer).

``scaled=True`` divides by sigma (lme4: ``r / sigma(object)``; sigma is 1 for binomial and Poisson).

Missing values: a fit drops the rows with missing values in the columns it uses.  With
``na_action="omit"`` (the default, R's ``na.omit``) per-row results have one entry per row used,
indexed by those rows' labels.  With ``na_action="exclude"`` (R's ``na.exclude``) they have one entry
per row of the data, in the data's order and with its index, NaN for the rows the fit left out
(R's ``naresid``/``napredict``); the rows lmer leaves out for a zero weight are padded likewise.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import DataError

TYPES = ("response", "pearson", "deviance", "working")
NA_ACTIONS = ("omit", "exclude")


def check_na_action(na_action: str, dask: bool = False) -> str:
    """``na_action`` checked; "exclude" needs in-memory data (``dask``: the data is a Dask frame)."""
    if na_action not in NA_ACTIONS:
        raise ValueError(f"na_action must be 'omit' or 'exclude' (R's na.omit / na.exclude), got {na_action!r}")
    if dask and na_action == "exclude":
        raise ValueError("na_action='exclude' is for in-memory data; a Dask fit's per-row results are "
                         "computed per partition over the rows it used")
    return na_action


def with_na_action(fit, na_action: str, data: pd.DataFrame):
    """Record on ``fit`` how its per-row results are laid out (``data`` is the data it was fitted to)."""
    na_action = check_na_action(na_action)
    if na_action == "exclude":
        index = pd.DataFrame(data).index if not isinstance(data, pd.DataFrame) else data.index
        if not index.is_unique:
            raise DataError("na_action='exclude' pads the results to the data's rows by their index, which has "
                            "duplicate labels: reset the index (data.reset_index(drop=True)) first")
        fit.data_index = index   # fit.na_action is derived from it (mixedpy.results)
    return fit


def carry_na_action(old, new):
    """A refit keeps the layout of the fit it was made from."""
    new.data_index = getattr(old, "data_index", None)
    return new


def is_glmm(fit) -> bool:
    """A glmer fit (it has a family); lmer fits have none."""
    return getattr(fit, "family", None) is not None


def data_rows(fit, values: np.ndarray) -> pd.Series:
    """Per-row ``values`` of the rows the fit used as a Series laid out as ``fit.na_action`` says."""
    out = pd.Series(np.asarray(values, dtype=float), index=fit.design.row_index)
    if getattr(fit, "na_action", "omit") == "exclude":
        out = out.reindex(fit.data_index)
    return out


def check_type(type: str) -> str:
    """``type`` if it is one of lme4's residual types, else a ValueError naming them."""
    if type not in TYPES:
        raise ValueError(f"type must be one of {', '.join(map(repr, TYPES))}, got {type!r}")
    return type


def glmm_residuals(family, y, mu, wt, eta, type: str) -> np.ndarray:
    """lme4's ``residuals.glmResp``: sign(y - mu) sqrt(d_i) (deviance), (y - mu) sqrt(w / V(mu))
    (pearson), (y - mu) / (d mu / d eta) (working) or y - mu (response)."""
    if type == "deviance":
        d = np.sqrt(np.maximum(family.dev_resids(y, mu, wt), 0.0))
        return np.where(y > mu, d, -d)
    if type == "pearson":
        return (y - mu) * np.sqrt(wt / family.variance(mu))
    if type == "working":
        return (y - mu) / family.mu_eta(eta)
    return y - mu


def residual_values(fit, type: str | None = None, scaled: bool = False) -> np.ndarray:
    """The residuals of the rows the fit used (see the module docstring), as an array."""
    glmm = is_glmm(fit)
    type = check_type(("deviance" if glmm else "response") if type is None else type)
    eta = fit.linear_predictor()
    if glmm:
        r = glmm_residuals(fit.family, fit.problem.y, fit.family.linkinv(eta), fit.problem.wt, eta, type)
    else:
        r = np.asarray(fit.design.y, dtype=float) - eta
        if type in ("pearson", "deviance") and fit.design.weights is not None:
            r = r * np.sqrt(fit.design.weights)
    return r / fit.sigma if scaled else r


def _dask_residuals(fit, type: str | None, scaled: bool):
    """Residuals of a fit on a Dask frame, computed per partition."""
    if is_glmm(fit):
        r = fit.residuals("deviance" if type is None else type)   # DaskGlmerFit's own, per partition
    else:
        type = check_type("response" if type is None else type)
        if type in ("pearson", "deviance") and fit.design.weights is not None:
            raise NotImplementedError("weighted Pearson residuals of a Dask lmer fit: use type='response'")
        r = fit.resid
    return r / fit.sigma if scaled else r


def residuals(fit, type: str | None = None, scaled: bool = False):
    """lme4's ``residuals(fit, type, scaled)``: a Series indexed like the data (see the module
    docstring for the types and ``na_action``).  The default type is "response" for lmer and
    "deviance" for glmer; ``scaled=True`` divides by sigma.  ``fit.residuals(type=...)`` is this
    function.  A fit on a Dask frame gives a Dask Series."""
    from .scale import is_dask_frame

    if is_dask_frame(getattr(fit, "data", None)):
        return _dask_residuals(fit, type, scaled)
    return data_rows(fit, residual_values(fit, type, scaled))


__all__ = ["residuals", "residual_values", "glmm_residuals", "check_type", "data_rows", "with_na_action", "carry_na_action", "check_na_action", "is_glmm"]
