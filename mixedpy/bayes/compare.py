"""``compare(fit, post)``: lmer/glmer estimates beside posterior medians and intervals, and the
variance-partition ratios (between-group share of variance) with posterior intervals.

For a term with an intercept, the variance partition coefficient at covariates 0 is

    VPC_g = Sigma_g[(Intercept)] / (sum_h Sigma_h[(Intercept)] + sigma_e^2),

with sigma_e^2 the residual variance (gaussian) or the latent-scale variance pi^2/3 (logit) or 1
(probit) (Goldstein, Browne & Rasbash 2002; Gelman & Hill 2007, 12.5).  Poisson models get no VPC.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .family import resolve_family
from .posterior import Posterior, mad_sd


def _residual_variance(post: Posterior, sigma):
    if post.family == "gaussian":
        return sigma ** 2
    if post.family == "binomial":
        return np.pi ** 2 / 3 if post.link == "logit" else 1.0
    return None


def _frequentist_aux(fit, post: Posterior) -> float:
    """The fit's estimate of the posterior's auxiliary parameter, in rstanarm's parameterization:
    the negative binomial size theta (lme4's ``getME(fit, "glmer.nb.theta")``) for
    neg_binomial_2, else rstanarm's parameter at lme4's dispersion phi = sigma(fit)^2 (gaussian
    sigma, Gamma shape 1/phi, inverse.gaussian lambda 1/phi).  NaN when the fit is of another
    family and so has no such parameter."""
    family = getattr(getattr(fit, "family", None), "name", "gaussian")   # lmer fits have no family
    try:
        same = resolve_family(family, None)[0] == post.family
    except ValueError:                 # a family rstanarm does not have
        same = False
    if not same:
        return np.nan
    if post.family == "neg_binomial_2":
        return float(fit.nb_theta)
    return float(post._family.aux_from_dispersion(float(fit.sigma) ** 2))


def compare(fit, post: Posterior, probs=(0.025, 0.975)) -> pd.DataFrame:
    """One table: rows are fixed effects, the auxiliary parameter under rstanarm's name (``sigma``
    for gaussian, ``reciprocal_dispersion`` for neg_binomial_2, ``shape`` for Gamma, ``lambda``
    for inverse.gaussian; none for binomial and Poisson), random-effect SDs and correlations and
    VPCs; columns ``lmer`` (the frequentist estimate: for the auxiliary parameter ``fit.sigma``,
    ``fit.nb_theta`` or 1 / ``fit.sigma``^2 as the family's parameterization needs, NaN if the fit
    is of another family), ``lmer_se`` (fixed effects), ``median``, ``mad_sd`` and the posterior
    quantiles."""
    if not isinstance(post, Posterior):
        raise TypeError(f"compare(fit, post) needs a Posterior as second argument, got {type(post).__name__}")
    if list(fit.fixef_names) != list(post.fixef_names):
        raise ValueError("fit and post have different fixed effects; fit the same formula both ways")
    rows, freq, fse, samples = [], [], [], []
    B = post._d["beta"]
    for j, nm in enumerate(post.fixef_names):
        rows.append(nm)
        freq.append(float(fit.beta[j]))
        fse.append(float(fit.se_fixef[j]))
        samples.append(B[:, j])
    sig = post._d["sigma"] if post.use_scale else None
    if post.aux_name is not None:
        rows.append(post.aux_name)
        freq.append(_frequentist_aux(fit, post))
        fse.append(np.nan)
        samples.append(post.aux)
    vc = fit.varcorr()
    for lab, t, S, ft in zip(post.term_labels, post.terms, post._d["Sigma"], vc.terms):
        sd = np.sqrt(np.diagonal(S, axis1=1, axis2=2))
        for a, c in enumerate(t.coef_names):
            rows.append(f"sd_{lab}__{c}")
            freq.append(float(ft.sd[a]))
            fse.append(np.nan)
            samples.append(sd[:, a])
        for a in range(t.k):
            for b in range(a + 1, t.k):
                rows.append(f"cor_{lab}__{t.coef_names[a]}.{t.coef_names[b]}")
                freq.append(float(ft.corr[b, a]))
                fse.append(np.nan)
                samples.append(S[:, b, a] / (sd[:, a] * sd[:, b]))
    resid = _residual_variance(post, sig)
    if resid is not None:
        ints = [(lab, i) for i, (lab, t) in enumerate(zip(post.term_labels, post.terms))
                if "(Intercept)" in t.coef_names]
        if ints:
            var = lambda S, t: S[..., t.coef_names.index("(Intercept)"), t.coef_names.index("(Intercept)")]  # noqa: E731
            tot = resid + sum(var(post._d["Sigma"][i], post.terms[i]) for _, i in ints)
            f_res = float(fit.sigma) ** 2 if post.use_scale else resid
            f_tot = f_res + sum(var(vc.terms[i].cov, post.terms[i]) for _, i in ints)
            for lab, i in ints:
                rows.append(f"vpc_{lab}")
                freq.append(float(var(vc.terms[i].cov, post.terms[i]) / f_tot))
                fse.append(np.nan)
                samples.append(var(post._d["Sigma"][i], post.terms[i]) / tot)
    A = np.column_stack(samples)
    out = pd.DataFrame({"lmer": freq, "lmer_se": fse, "median": np.median(A, 0), "mad_sd": mad_sd(A)},
                       index=rows)
    for p in probs:
        out[f"q{100 * p:g}"] = np.quantile(A, p, axis=0)
    return out
