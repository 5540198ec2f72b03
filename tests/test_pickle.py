"""Fits pickle and keep predicting (issue 9, defect 10): the design keeps only the caller's names
the formula uses and no patsy DesignInfo; the stateful transforms' state travels with it."""
import pickle

import numpy as np
import pytest

import mixedpy as mp

pytestmark = pytest.mark.filterwarnings("ignore::mixedpy.SingularFitWarning")


@pytest.fixture(scope="module")
def sleep():
    return mp.datasets.load("sleepstudy")


def _roundtrip(obj):
    return pickle.loads(pickle.dumps(obj))


def test_lmer_fit_pickles_and_predicts_identically(sleep):
    fit = mp.lmer("Reaction ~ poly(Days, 2) + I(scale(Days)^3) + (Days | Subject)", sleep)
    fit.summary()
    mp.ranef(fit)
    fit.confint(method="Wald")  # fill the cached members before pickling
    new = sleep.iloc[[0, 15, 33, 120]].assign(Days=[0.5, 3.0, 7.5, 11.0])
    again = _roundtrip(fit)
    np.testing.assert_array_equal(again.predict(new), fit.predict(new))
    np.testing.assert_array_equal(again.predict(new, re_form="NA"), fit.predict(new, re_form="NA"))
    assert list(mp.fixef(again).index) == list(mp.fixef(fit).index)


def test_fit_keeps_only_the_names_the_formula_uses(sleep):
    big_unrelated_array = np.zeros(2_000_000)  # noqa: F841 - must not be captured by the fit
    day_weight = np.linspace(0.5, 1.5, len(sleep))
    fit = mp.lmer("Reaction ~ Days + day_weight + (1 | Subject)", sleep)
    assert set(fit.design.env) == {"np", "numpy", "day_weight"}
    assert len(pickle.dumps(fit)) < 2_000_000
    np.testing.assert_array_equal(_roundtrip(fit).design.env["day_weight"], day_weight)


def test_glmer_fit_pickles_and_predicts_identically():
    cbpp = mp.datasets.load("cbpp")
    gm = mp.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial")
    gm.summary()
    again = _roundtrip(gm)
    new = cbpp.iloc[:6]
    np.testing.assert_array_equal(again.predict(new, type="response"), gm.predict(new, type="response"))


def test_bayes_posterior_pickles_and_predicts_identically(sleep):
    post = mp.bayes_lmer("Reaction ~ poly(Days, 2) + (1 | Subject)", sleep, chains=2, iter=300, seed=1,
                         progress=False)
    again = _roundtrip(post)
    new = sleep.iloc[[0, 15, 33]]
    np.testing.assert_array_equal(again.posterior_predict(new, seed=3), post.posterior_predict(new, seed=3))
    assert again.messages == post.messages


@pytest.mark.slow
def test_bayes_glmer_posterior_pickles_and_predicts_identically():
    cbpp = mp.datasets.load("cbpp")
    post = mp.bayes_glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial",
                          chains=2, iter=200, seed=1, progress=False)
    again = _roundtrip(post)
    new = cbpp.iloc[:4]
    np.testing.assert_array_equal(again.posterior_predict(new, seed=2), post.posterior_predict(new, seed=2))
