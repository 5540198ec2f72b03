"""lme4's ``simulate.merMod``: new responses drawn from a fitted mixed model (ALGORITHMS.md 1.8).

Written against what lmer and glmer fits share (``predict``, ``terms``, ``relative_factors``,
``use_scale``, ``sigma``, ``family``, ``design``), so it needs no fit class.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .families import single_column_response
from .frames import to_pandas
from .newdata import model_rows, selected_terms
from .trials import binomial_counts


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
    mu = fit._linkinv(eta)
    family = fit.family
    resp = getattr(getattr(fit, "problem", None), "resp", None)
    if family.has_dispersion:
        # Gamma, inverse.gaussian, gaussian: dispersion phi = sigma^2 (lme4's simfuns; new rows have
        # unit prior weights)
        if not own_rows or resp is None:
            resp = single_column_response(np.ones(eta.shape[0]))
        return np.asarray(family.simulate(rng, mu.T, resp, dispersion=fit.sigma ** 2), dtype=float).T
    if own_rows and resp is not None and hasattr(family, "simulate"):
        # the family's own generator knows the trials of a binomial response (lme4's rbinom/weights)
        return np.asarray(family.simulate(rng, mu.T, resp), dtype=float).T
    name = family.name
    if name == "negative_binomial":   # rnbinom(theta, mu) needs nothing of the rows
        return np.asarray(family.simulate(rng, mu.T), dtype=float).T
    if name == "poisson":
        return rng.poisson(mu).astype(float)
    if name == "binomial":
        # new rows carry no weights: one trial each
        trials = binomial_counts(fit.design.y, fit.design.weights)[1] if own_rows else np.ones(eta.shape[0])
        size = np.rint(trials).astype(np.int64)[:, None]
        k = rng.binomial(size, mu)
        return np.divide(k, size, out=np.zeros(k.shape), where=size > 0)
    raise ValueError(f"simulate() is implemented for gaussian, binomial and poisson models, not {name!r}")


__all__ = ["simulate"]
