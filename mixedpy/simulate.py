"""lme4's ``simulate.merMod``: new responses drawn from a fitted mixed model (ALGORITHMS.md 1.8).

Written against what lmer and glmer fits share (``predict``, ``terms``, ``relative_factors``,
``use_scale``, ``sigma``, ``family``, ``design``; a GLMM's own rows also ``problem.resp``), so it
needs no fit class.  The response draws are the family's ``simulate``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .frames import to_pandas
from .newdata import model_rows, selected_terms


def simulate(fit, nsim: int = 1, seed=None, newdata: pd.DataFrame | None = None, re_form="~0",
             allow_new_levels: bool = False) -> pd.DataFrame:
    """New responses from the fitted model, as lme4's ``simulate.merMod`` (ALGORITHMS.md 1.8).

        eta0 = predict(newdata, re_form)                      (beta-hat, offset, chosen b-hat)
        u ~ N(0, I) for the terms not in re_form,  r = Z_c Lambda_c u
        LMM:  y = eta0 + sigma-hat (r + eps),  eps ~ N(0, I)   (prior weights ignored, as lme4)
        GLMM: y ~ family(linkinv(eta0 + r)), with dispersion sigma-hat^2 for Gamma (shape w / phi),
              inverse.gaussian (lambda = w / phi) and gaussian (variance phi / w)

    ``re_form="~0"`` (the default, lme4's ``use.u = FALSE``) simulates new random effects for
    every term; ``re_form=None`` conditions on all the conditional modes.  For newdata, the
    simulated terms use newdata's own levels, so new levels need no ``allow_new_levels``.
    Returns a DataFrame with columns ``sim_1 .. sim_nsim``.  Binomial responses come back on the
    family's scale, the proportion of successes out of each row's trials (lme4 returns a
    (successes, failures) matrix per simulation for a ``cbind`` response; multiply by the trials
    to get counts).  That is the scale ``fit.refit(newresp=...)`` takes.
    """
    nsim = int(nsim)
    if nsim < 1:
        raise ValueError(f"nsim must be a positive integer, got {nsim}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    eta0 = fit.linear_predictor(newdata, re_form=re_form, allow_new_levels=allow_new_levels)
    chosen = set(selected_terms(fit.terms, re_form))
    drawn = [i for i in range(len(fit.terms)) if i not in chosen]
    rows = model_rows(fit.design, drawn, newdata, allow_new_levels=True)
    Ts = fit.relative_factors()
    n = eta0.size
    r = np.zeros((n, nsim))
    for tr in rows.terms:
        codes, J = tr.own_levels()
        # one block of q_c x nsim standard normals, drawn before the residual noise (lme4's order)
        u = rng.standard_normal((J, fit.terms[tr.index].k, nsim))
        b = np.einsum("ab,jbs->jas", Ts[tr.index], u)
        contrib = np.einsum("nk,nks->ns", tr.matrix, b[np.clip(codes, 0, None)])
        r += np.where((codes >= 0)[:, None], contrib, 0.0)
    if fit.use_scale and getattr(fit, "family", None) is None:
        y = eta0[:, None] + fit.sigma * (r + rng.standard_normal((n, nsim)))
    else:
        y = _simulate_family(fit, eta0[:, None] + r, rng, newdata is None)
    index = fit.design.row_index if newdata is None else pd.DataFrame(to_pandas(newdata, "newdata")).index
    return pd.DataFrame(y, index=index, columns=[f"sim_{j + 1}" for j in range(nsim)])


def _simulate_family(fit, eta: np.ndarray, rng, own_rows: bool) -> np.ndarray:
    """y ~ family(linkinv(eta)) for eta (rows, nsim), drawn one simulation after another (rows fastest,
    as R's ``rep_len(mu, n * nsim)``).  The fit's own rows keep their prior weights and binomial
    trials (lme4's ``weights(object)``); new rows have unit weights and one trial each.  phi = sigma^2
    (1 for the families without a dispersion)."""
    resp = fit.problem.resp if own_rows else None
    mu = fit._linkinv(eta)
    return fit.family.simulate(rng, mu.T, resp, dispersion=fit.sigma ** 2).T


__all__ = ["simulate"]
