"""Issue 10, item 6: the layout follows the engine.

The import graph is one-way (fit results below the modules that build or read them), binomial
trials have one reading, and every prediction builds its rows of new data the same way.
"""
from __future__ import annotations

import ast
import pathlib
import warnings

import numpy as np
import pandas as pd
import pytest

from scipy import special, stats

import mixedpy as mp
from mixedpy.bayes.glmm_posterior import GLMMPosterior
from mixedpy.bayes.posterior import Posterior
from mixedpy.formula.design import build_design
from mixedpy.newdata import model_rows, selected_terms
from mixedpy.trials import binomial_counts, cbind_response

from conftest import ref_data

PACKAGE = pathlib.Path(mp.__file__).parent

#: the modules that build fits or read them from above: nothing below them may import them
UPPER = {"arm", "lmer", "glmer", "tidy", "accessors", "pooling", "plot", "modular", "cli", "bayes", "inference"}
#: modules below the fit classes: they work on a fit's attributes and import no fit module
BELOW_RESULTS = ["printing", "varcorr", "rformat", "simulate", "newdata", "trials", "sdcor", "profile",
                 "bootstrap", "intervals", "likelihood_ratio", "lmm_optimize"]


def _imported_modules(name: str) -> set[str]:
    """First component of every mixedpy module ``name`` imports, at the top or inside functions."""
    tree = ast.parse((PACKAGE / f"{name}.py").read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                out.add(node.module.split(".")[0])
            else:
                out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mixedpy."):
            out.add(node.module.split(".")[1])
    return out


def test_results_imports_no_module_above_it():
    assert not _imported_modules("results") & UPPER


@pytest.mark.parametrize("name", BELOW_RESULTS)
def test_modules_below_the_fits_import_no_fit_module(name):
    assert not _imported_modules(name) & (UPPER | {"results"})


def test_inference_is_split_by_concern():
    assert not (PACKAGE / "inference.py").exists()
    assert mp.confint.__module__ == "mixedpy.intervals" and mp.anova.__module__ == "mixedpy.likelihood_ratio"
    assert not hasattr(mp.arm, "simulate")


# --------------------------------------------------------------------------------------------
# binomial trials
# --------------------------------------------------------------------------------------------


def test_binomial_counts_read_the_three_forms_as_r():
    # R 4.2: glm(cbind(s, f) ~ 1, binomial)$prior.weights is 4 4 5 4 and $y 0.75 0 1 0.5; the
    # proportions with weights = s + f give the same prior weights, y and logLik (-8.339351)
    s, f = np.array([3.0, 0, 5, 2]), np.array([1.0, 4, 0, 2])
    k, n = binomial_counts(np.column_stack([s, f]))
    np.testing.assert_array_equal(n, [4, 4, 5, 4])
    np.testing.assert_array_equal(k / n, [0.75, 0, 1, 0.5])
    k2, n2 = binomial_counts(k / n, n)
    np.testing.assert_array_equal(n2, n)
    np.testing.assert_allclose(k2, s)
    k3, n3 = binomial_counts(np.array([1.0, 0, 1]))
    np.testing.assert_array_equal(n3, [1, 1, 1])
    np.testing.assert_array_equal(k3, [1, 0, 1])
    np.testing.assert_array_equal(cbind_response(k / n, n), np.column_stack([s, f]))


def _posterior(formula, data, weights=None, S=40, seed=0):
    """A binomial Posterior with fixed random draws of (beta, b), and the trials bayes_glmer passes."""
    design = build_design(formula, data, weights=weights)
    rng = np.random.default_rng(seed)
    t = design.terms[0]
    p = design.X.shape[1]
    draws = {"beta": rng.normal(0, 0.5, (S, p)) - 1.5 * (np.arange(p) == 0),
             "b": [rng.normal(0, 0.5, (S, t.n_levels, t.k))], "Sigma": [np.full((S, 1, 1), 0.25)]}
    trials = GLMMPosterior(design, "binomial", "logit", None).trials
    return Posterior(design, "binomial", "logit", None, draws, (2, S // 2), 1, {}, "test", trials)


def test_posterior_loglik_of_proportions_with_weights_is_the_cbind_one():
    """Defect: the pointwise log-likelihood of a proportion response with weights=trials used the
    proportion as the count of successes (R: both forms have one likelihood, see above)."""
    cb = ref_data("cbpp.csv")
    cb["prop"] = cb["incidence"] / cb["size"]
    counts = _posterior("cbind(incidence, size - incidence) ~ period + (1 | herd)", cb)
    props = _posterior("prop ~ period + (1 | herd)", cb, weights="size")
    ll = counts.log_likelihood()
    np.testing.assert_allclose(props.log_likelihood(), ll, rtol=1e-12)
    # dbinom(incidence, size, plogis(eta)) at every draw
    eta = counts.posterior_linpred()
    np.testing.assert_allclose(ll, stats.binom.logpmf(cb["incidence"], cb["size"], special.expit(eta)), rtol=1e-12)
    # the observed response that arviz and pp_check compare with posterior_predict: successes in both
    # forms (it was the proportion for prop ~ ... with weights), and predictions are counts too
    for post in (counts, props):
        np.testing.assert_allclose(post.observed_response, cb["incidence"], rtol=1e-12)
        np.testing.assert_allclose(post.to_inference_data().observed_data["y"].values, cb["incidence"], rtol=1e-12)
    assert props.posterior_predict(seed=1).max() > 1


def test_posterior_predicts_its_own_rows_when_sampling_merged_them():
    """Defect: pass/fail rows sharing group and covariates are merged for sampling; the posterior's
    own-row predictions used the merged trials and failed on the row count."""
    rng = np.random.default_rng(2)
    g = np.repeat(np.arange(12), 6)
    df = pd.DataFrame({"y": (rng.random(g.size) < 0.3 + 0.03 * g).astype(float), "g": g.astype(str)})
    post = _posterior("y ~ 1 + (1 | g)", df)
    assert GLMMPosterior(post.design, "binomial", "logit", None).trials.size < len(df)   # merged for sampling
    np.testing.assert_array_equal(post.trials, np.ones(len(df)))
    yrep = post.posterior_predict(seed=1)
    assert yrep.shape == (post.n_draws, len(df)) and set(np.unique(yrep)) <= {0.0, 1.0}
    assert post.log_likelihood().shape == (post.n_draws, len(df))


# --------------------------------------------------------------------------------------------
# one path from newdata to (X, codes, term matrices)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sleep_fit():
    return mp.lmer("Reaction ~ Days + (Days | Subject)", ref_data("sleepstudy.csv"))


def test_model_rows_on_new_levels_and_missing_groups(sleep_fit):
    nd = pd.DataFrame({"Days": [1.0, 2.0, 3.0, 4.0, 5.0], "Subject": ["308", "zz", None, "aa", "zz"]})
    rows = model_rows(sleep_fit.design, [0], nd, allow_new_levels=True)
    tr = rows.terms[0]
    assert tr.codes[0] == list(sleep_fit.terms[0].levels).index("308") and (tr.codes[1:] == -1).all()
    # distinct new levels in sorted order of their labels; a missing group is a level of its own
    lv = tr.new_levels
    assert lv[0] == -1 and lv[1] == lv[4] and len({lv[1], lv[2], lv[3]}) == 3
    np.testing.assert_array_equal(rows.X, np.column_stack([np.ones(5), nd["Days"]]))
    with pytest.raises(mp.DataError, match="new levels"):
        model_rows(sleep_fit.design, [0], nd.iloc[[1]], allow_new_levels=False)
    assert selected_terms(sleep_fit.terms, "~0") == [] and selected_terms(sleep_fit.terms, None) == [0]


def test_missing_groups_get_their_own_effect_in_every_prediction(sleep_fit):
    """A row whose group is missing is an unknown group: arm's predictive draws and the posterior's
    new-level draws give two such rows independent effects (they were shared by the posterior)."""
    nd = pd.DataFrame({"Days": [0.0, 0.0], "Subject": [None, None]})
    draws = mp.predictive_draws(sleep_fit, nd, n_sims=200, seed=1, what="eta")
    assert not np.allclose(draws[:, 0], draws[:, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = mp.bayes_lmer("Reaction ~ Days + (1 | Subject)", ref_data("sleepstudy.csv"), chains=2, iter=64,
                             seed=3, progress=False)
    lp = post.posterior_linpred(newdata=nd, allow_new_levels=True, seed=1)
    assert not np.allclose(lp[:, 0], lp[:, 1])
