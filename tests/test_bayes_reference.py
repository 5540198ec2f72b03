"""Slow reference and calibration tests of the Bayesian mode.

* rstanarm references (tests/reference/rstanarm, made by R 4.2.2 / rstanarm 2.21.3, 4 chains x 2000):
  posterior means within 4 combined Monte-Carlo standard errors, sqrt(sd^2/ess_ours + sd^2/n_eff_rstanarm),
  posterior SDs within 10 % (12 % for the heavy-tailed variance parameters), R-hat < 1.01.
* Simulation-based calibration (Talts et al. 2018): data drawn from the prior, the rank of the truth
  among the posterior draws is uniform.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import mixedpy as mp

from conftest import load_ref, ref_data

pytestmark = pytest.mark.slow


def _check_against(post, ref):
    s = post.summary()
    assert s["rhat"].max() < 1.01
    for k, r in ref["params"].items():
        sd_r = r["sd"][0]
        mcse = np.sqrt(s.loc[k, "sd"] ** 2 / s.loc[k, "ess_bulk"] + sd_r ** 2 / r["n_eff"])
        assert abs(s.loc[k, "mean"] - r["mean"]) < 4 * mcse, (k, s.loc[k, "mean"], r["mean"], mcse)
        # the SD of a variance draws is itself noisy (heavy right tail): allow a little more
        tol = 0.15 if k.startswith("Sigma") else 0.10
        assert abs(s.loc[k, "sd"] / sd_r - 1) < tol, (k, s.loc[k, "sd"], sd_r)


@pytest.mark.parametrize("name", ["bayes_exam_slopes", "bayes_dyestuff"])
def test_lmm_references(name):
    ref = load_ref(name, "rstanarm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = mp.bayes_lmer(ref["formula"], ref_data(ref["data"]), seed=31, progress=False)
    _check_against(post, ref)
    for g, sds in ref["varcorr_sd"].items():
        vc = post.varcorr("mean")[g]
        for c, v in sds.items():
            assert np.sqrt(vc.loc[c, c]) == pytest.approx(v, rel=0.05)


def test_cbpp_binomial_reference():
    ref = load_ref("bayes_cbpp", "rstanarm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = mp.bayes_glmer(ref["formula"], ref_data(ref["data"]), family="binomial", seed=31, progress=False)
    _check_against(post, ref)
    assert np.sqrt(post.varcorr("mean")["herd"].iloc[0, 0]) == pytest.approx(ref["varcorr_sd"]["herd"]["(Intercept)"],
                                                                              rel=0.05)


def _sbc_ranks(n_rep: int, seed: int, family: str):
    """Ranks of the true (intercept, group SD[, sigma]) among thinned posterior draws, one row per dataset."""
    rng = np.random.default_rng(seed)
    J, m = 6, 5
    g = np.repeat(np.arange(J), m)
    ranks = []
    for _ in range(n_rep):
        alpha = rng.normal(0, 1)
        tau = rng.exponential(1.0)               # decov(1,1,1,1) with k = 1: sd = tau * sigma_disp
        if family == "gaussian":
            sigma = rng.exponential(1.0)
            b = rng.normal(0, tau * sigma, J)
            y = alpha + b[g] + rng.normal(0, sigma, J * m)
            df = pd.DataFrame({"y": y, "g": g.astype(str)})
            post = mp.bayes_lmer("y ~ 1 + (1 | g)", df, prior_intercept=mp.normal(0, 1), prior_aux=mp.exponential(1),
                                 chains=2, iter=400, seed=int(rng.integers(1 << 30)), progress=False)
            truth = {"(Intercept)": alpha, "Sigma[g:(Intercept),(Intercept)]": (tau * sigma) ** 2, "sigma": sigma}
        else:
            b = rng.normal(0, tau, J)
            n = np.full(J * m, 10)
            k = rng.binomial(n, 1 / (1 + np.exp(-(alpha + b[g]))))
            df = pd.DataFrame({"k": k, "f": n - k, "g": g.astype(str)})
            post = mp.bayes_glmer("cbind(k, f) ~ 1 + (1 | g)", df, family="binomial", prior_intercept=mp.normal(0, 1),
                                  chains=2, iter=400, seed=int(rng.integers(1 << 30)), progress=False)
            truth = {"(Intercept)": alpha, "Sigma[g:(Intercept),(Intercept)]": tau ** 2}
        D = post.draws
        ranks.append([float(np.mean(D[k].to_numpy() < v)) for k, v in truth.items()])
    return np.asarray(ranks)


@pytest.mark.parametrize("family,n_rep", [("gaussian", 60), ("binomial", 30)])
def test_simulation_based_calibration(family, n_rep):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ranks = _sbc_ranks(n_rep, 7, family)
    for j in range(ranks.shape[1]):
        # posterior quantiles of the truth are uniform: KS test at a lenient level (few replications)
        assert stats.kstest(ranks[:, j], "uniform").pvalue > 0.005, (j, np.sort(ranks[:, j]))
