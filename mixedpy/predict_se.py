"""Standard errors and intervals of predictions (``predict(..., se_fit=True, interval=...)``).

The conditional prediction of row i is eta_i = x_i' beta-hat + z_i' b-hat.  Given theta, (beta, b)
given y is Gaussian, and the error of (beta-hat, b-hat) has the covariance of the penalized
least-squares system (Bates et al. 2015, section 3; later lme4's ``vcov(fit, full = TRUE)`` and
``predict(se.fit = TRUE)``):

    Cov(b-hat - b, beta-hat - beta) = sigma^2 D A^{-1} D',   D = blockdiag(Lambda, I),
    A = [[Lambda'Z'WZ Lambda + I, Lambda'Z'WX], [X'WZ Lambda, X'WX]] = L L'

with L the fit's blocked Cholesky factor in the (u, beta) coordinates.  For the row r_i = [z_i'
Lambda, x_i'] in those coordinates,

    se_fit_i^2 = sigma^2 r_i A^{-1} r_i' = sigma^2 ||L^{-1} r_i'||^2,

computed from the blocked factor by :mod:`mixedpy.row_quadratic` (no n x n matrix is formed).  The
terms a prediction leaves out (``re_form``) and the rows of a new level contribute 0 to r_i, as their
effects are 0 in the prediction; with no random effects (``re_form=NA``) this is
sqrt(x_i' sigma^2 (R_X'R_X)^{-1} x_i), the fixed effects' vcov.  theta is held at its estimate (its
uncertainty is not propagated, as in lme4).  For glmer the factor is the one at the final PIRLS
weights with sigma = 1, so the fixed-effects block is the R_X-based covariance (as lme4's se.fit
uses), not the Hessian-based ``vcov``.

Intervals use normal quantiles z = qnorm((1 + level) / 2):

* ``interval="confidence"``: eta -/+ z se_fit;
* ``interval="prediction"`` (lmer): eta -/+ z sqrt(se_fit^2 + sigma^2 + v_i), a new observation on
  the row, where v_i = sum over the terms whose effect the prediction does not condition on (the
  terms left out by ``re_form`` and, for the others, a row's new level) of z_ti' Sigma_t z_ti: the
  variance of a new group's effect.  So ``re_form=NA`` gives the interval of an observation of a
  new group; ``re_form=None`` on fitted levels only adds sigma^2.  Prior weights are not applied to
  the new observation.

For glmer, ``type="link"`` gives eta and its se; ``type="response"`` gives mu = g^{-1}(eta), the
delta-method se |d mu / d eta| se_fit, and the link-scale interval mapped through g^{-1}.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .newdata import ModelRows, model_rows, selected_terms, term_matrices
from .residuals import data_rows, is_glmm
from .row_quadratic import unscaled_quadratic


def _left_out_variance(fit, rows: ModelRows, chosen: list[int], newdata) -> np.ndarray:
    """v_i: z_ti' Sigma_t z_ti summed over the terms left out and the chosen terms' new levels."""
    vc = fit.varcorr()
    out = np.zeros(rows.X.shape[0])
    left = [i for i in range(len(fit.terms)) if i not in chosen]
    for i, M in zip(left, term_matrices(fit.design, left, newdata)):
        out += np.einsum("ia,ab,ib->i", M, vc.terms[i].cov, M)
    for tr in rows.terms:
        new = tr.codes < 0
        if new.any():
            M = tr.matrix
            out += np.where(new, np.einsum("ia,ab,ib->i", M, vc.terms[tr.index].cov, M), 0.0)
    return out


def check_interval(interval, level: float) -> float:
    """z = qnorm((1 + level) / 2) after checking the arguments."""
    if interval not in (None, "confidence", "prediction"):
        raise ValueError(f"interval must be None, 'confidence' or 'prediction', got {interval!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    return float(stats.norm.ppf(0.5 + level / 2))


def prediction_frame(fit, newdata=None, re_form=None, allow_new_levels: bool = False, type: str = "link",
                     interval: str | None = None, level: float = 0.95) -> pd.DataFrame:
    """Columns ``fit`` and ``se_fit``, and ``lwr``/``upr`` when ``interval`` is given (module
    docstring); rows as ``fit.predict`` lays them out."""
    from .scale import is_dask_frame

    z = check_interval(interval, level)
    if is_dask_frame(newdata) or (newdata is None and is_dask_frame(getattr(fit, "data", None))):
        raise NotImplementedError("se_fit/interval of a fit on a Dask frame need in-memory newdata (the fit "
                                  "keeps its factor, not its rows)")
    glmm = is_glmm(fit)
    if interval == "prediction" and glmm:
        raise ValueError("interval='prediction' adds the residual variance of a Gaussian model (lmer); for a "
                         "glmer fit use interval='confidence' or simulate new responses")
    chosen = selected_terms(fit.terms, re_form)
    rows = model_rows(fit.design, chosen, newdata, allow_new_levels)
    eta = rows.linear_predictor(fit.beta, fit.b_list)
    var = fit.scale * unscaled_quadratic(fit, rows)
    se = np.sqrt(var)
    out = {"fit": eta, "se_fit": se}
    if interval is not None:
        half = z * (np.sqrt(var + fit.scale + _left_out_variance(fit, rows, chosen, newdata))
                    if interval == "prediction" else se)
        out["lwr"], out["upr"] = eta - half, eta + half
    if glmm and type == "response":
        fam = fit.family
        out["fit"] = fam.linkinv(eta)
        out["se_fit"] = se * np.abs(fam.mu_eta(eta))
        if interval is not None:
            a, b = fam.linkinv(out["lwr"]), fam.linkinv(out["upr"])
            out["lwr"], out["upr"] = np.minimum(a, b), np.maximum(a, b)
    return pd.DataFrame({c: prediction_rows(fit, v, newdata) for c, v in out.items()})


def prediction_rows(fit, values: np.ndarray, newdata=None) -> pd.Series:
    """Predictions ``values`` (one per row predicted) as ``predict`` returns them: indexed like
    ``newdata`` (0..n-1 when it is not a pandas object), or for the fit's own rows (``newdata``
    None) like the data's rows as ``fit.na_action`` lays them out (:func:`mixedpy.residuals.data_rows`)."""
    if newdata is None:
        return data_rows(fit, values)
    index = newdata.index if isinstance(newdata, (pd.DataFrame, pd.Series)) else pd.RangeIndex(len(values))
    return pd.Series(values, index=index)


__all__ = ["prediction_frame", "prediction_rows", "check_interval"]
