"""The family layer's shared interfaces: ``aic(..., dev=)`` (R's ``family$aic(y, n, mu, wt, dev)``),
one ``simulate(rng, mu, resp=None, *, dispersion=None, aux=None)`` for every family, and
rstanarm's family tables read from the family classes.

R references: tests/reference/family_cleanup/aic_dev.json (tests/reference/gen/family_cleanup.R)
and tests/reference/glmer_dispersion/family_functions.json (gen/glmer_dispersion.R).
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import mixedpy as mp
from conftest import load_ref, ref_data
from mixedpy.bayes.family import DEFAULT_LINK, LINKS, family_object, resolve_family
from mixedpy.families import (Binomial, DispersionFamily, Gamma, Gaussian, InverseGaussian, NegativeBinomial,
                              Poisson, get_family, single_column_response)

ALL = ([Binomial(lk) for lk in Binomial.allowed_links] + [Poisson(lk) for lk in Poisson.allowed_links]
       + [NegativeBinomial(2.5, lk) for lk in NegativeBinomial.allowed_links]
       + [Gamma(lk) for lk in Gamma.allowed_links] + [InverseGaussian(lk) for lk in InverseGaussian.allowed_links]
       + [Gaussian(lk) for lk in Gaussian.allowed_links])
DISPERSION = [Gamma(), InverseGaussian(), Gaussian("log")]


def case(fam, n=40, seed=1):
    """A validated response and means for ``fam`` (weights not all 1; binomial as cbind counts)."""
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.5, 2.0, n)
    if fam.name == "binomial":
        resp = fam.prepare(np.column_stack([rng.integers(0, 5, n), rng.integers(1, 5, n)]).astype(float), w)
        return resp, rng.uniform(0.05, 0.95, n)
    if fam.name in ("poisson", "negative_binomial"):
        return fam.prepare(rng.integers(0, 9, n).astype(float), w), rng.uniform(0.5, 6.0, n)
    return fam.prepare(rng.uniform(0.5, 3.0, n), w), rng.uniform(0.5, 3.0, n)


def aic_ref():
    return load_ref("aic_dev", "family_cleanup")


# -- aic with the deviance ------------------------------------------------------------------------------
@pytest.mark.parametrize("fam", ALL, ids=str)
def test_aic_with_the_deviance_is_the_aic_without(fam):
    resp, mu = case(fam)
    dev = float(np.sum(fam.dev_resids(resp.y, mu, resp.weights)))
    const = fam.loglik_const(resp)
    assert fam.aic(resp, mu, dev=dev) == fam.aic(resp, mu)              # to the bit: PIRLS's numbers do not move
    assert fam.aic(resp, mu, const, dev=dev) == fam.aic(resp, mu, const)


@pytest.mark.parametrize("fname", ["Gamma", "inverse.gaussian", "gaussian"])
def test_aic_with_rs_deviance_is_rs_aic(fname):
    ff = load_ref("family_functions", "glmer_dispersion")
    y, mu, wt = (np.asarray(ff[k], float) for k in ("y", "mu", "wt"))
    want = ff["families"][fname]
    fam = get_family(fname)
    dev = float(np.sum(want["dev_resids"]))
    assert fam.aic(fam.prepare(y, wt), mu, dev=dev) == pytest.approx(want["aic"], rel=1e-12)


def test_gamma_aic_uses_the_deviance_it_is_given():
    """R's Gamma()$aic takes phi-hat = dev / sum(w) from the dev passed in."""
    r = aic_ref()["Gamma"]
    fam = Gamma()
    resp = fam.prepare(np.asarray(r["y"], float), np.asarray(r["wt"], float))
    mu = np.asarray(r["mu"], float)
    for s, want in zip(r["scales"], r["aic"]):
        assert fam.aic(resp, mu, dev=s * r["deviance"]) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("name", ["binomial", "poisson", "negative_binomial"])
def test_aic_without_a_dispersion_ignores_the_deviance_as_r(name):
    r = aic_ref()[name]
    if name == "binomial":
        fam = Binomial()
        k, m = np.asarray(r["successes"], float), np.asarray(r["trials"], float)
        resp = fam.prepare(np.column_stack([k, m - k]), None)
    else:
        fam = Poisson() if name == "poisson" else NegativeBinomial(r["theta"])
        resp = fam.prepare(np.asarray(r["y"], float), np.asarray(r["wt"], float))
    mu = np.asarray(r["mu"], float)
    for s, want in zip((0.5, 1.0, 1.5), r["aic"]):
        assert fam.aic(resp, mu, dev=s * r["deviance"]) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("fam", DISPERSION, ids=str)
def test_aic_with_the_deviance_skips_its_recomputation(fam, monkeypatch):
    """phi-hat comes from the dev given; Gamma's log-likelihood needs no d_i, inverse.gaussian's and
    gaussian's use them per observation (so one pass of dev_resids remains, where there were two)."""
    resp, mu = case(fam)
    dev = float(np.sum(fam.dev_resids(resp.y, mu, resp.weights)))
    want = fam.aic(resp, mu)
    calls = []
    original = type(fam).dev_resids

    def counted(self, *args):
        calls.append(1)
        return original(self, *args)

    monkeypatch.setattr(type(fam), "dev_resids", counted)
    assert fam.aic(resp, mu) == want
    without = len(calls)
    assert fam.aic(resp, mu, dev=dev) == want
    assert len(calls) - without == without - 1 == (0 if isinstance(fam, Gamma) else 1)


def test_laplace_objective_uses_the_pirls_deviance(monkeypatch):
    r = load_ref("gamma_log", "glmer_dispersion")
    fit = mp.glmer(r["formula"], ref_data(r["data"]), family=r["family"], link=r["link"])
    problem, st = fit.problem, fit.result.state
    want = st.ldL2 + st.ussq + problem.family.aic(problem.resp, st.mu)
    monkeypatch.setattr(Gamma, "dev_resids", lambda *a: pytest.fail("dev_resids recomputed"))  # PIRLS has them
    assert problem.laplace(st) == want
    assert -0.5 * problem.laplace(st) == pytest.approx(r["logLik"], rel=1e-6)


# -- one simulate signature -----------------------------------------------------------------------------
@pytest.mark.parametrize("fam", ALL, ids=str)
def test_simulate_without_rows_is_unit_weights_and_one_trial(fam):
    mu = np.tile(np.linspace(0.2, 0.8, 30), (3, 1))
    unit = single_column_response(np.ones(30))
    a = fam.simulate(np.random.default_rng(4), mu)
    b = fam.simulate(np.random.default_rng(4), mu, unit)
    assert a.shape == mu.shape and a.dtype == float
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("fam", [Binomial(), Poisson(), NegativeBinomial(3.0)], ids=str)
def test_simulate_without_a_dispersion_ignores_lme4s_sigma_of_one(fam):
    resp, mu = case(fam)
    np.testing.assert_array_equal(fam.simulate(np.random.default_rng(2), mu, resp, dispersion=1.0),
                                  fam.simulate(np.random.default_rng(2), mu, resp))


@pytest.mark.parametrize("fam", DISPERSION, ids=str)
def test_simulate_takes_rstanarms_aux_as_the_dispersion(fam):
    resp, mu = case(fam, n=20)
    mu2 = np.tile(mu, (4, 1))
    aux = np.array([0.5, 1.0, 2.0, 4.0])                     # one per draw (rstanarm's posterior_predict)
    phi = fam.dispersion_from_aux(aux)[:, None]
    np.testing.assert_array_equal(fam.simulate(np.random.default_rng(8), mu2, resp, aux=aux),
                                  fam.simulate(np.random.default_rng(8), mu2, resp, dispersion=phi))
    np.testing.assert_array_equal(fam.simulate(np.random.default_rng(8), mu, resp, aux=2.0),
                                  fam.simulate(np.random.default_rng(8), mu, resp,
                                               dispersion=float(fam.dispersion_from_aux(2.0))))
    with pytest.raises(ValueError, match="not both"):
        fam.simulate(np.random.default_rng(8), mu, resp, dispersion=1.0, aux=2.0)


def test_aux_draws_have_rstanarms_dispersion():
    """Gamma with shape aux: variance mu^2 / aux (rstanarm's .pp_Gamma)."""
    fam = Gamma("log")
    y = fam.simulate(np.random.default_rng(3), np.full((2, 40000), 2.0), aux=np.array([0.5, 8.0]))
    np.testing.assert_allclose(y.var(axis=1), 4.0 / np.array([0.5, 8.0]), rtol=0.05)


def poisson_fit():
    gt = mp.datasets.load("grouseticks")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mp.glmer("TICKS ~ YEAR + (1 | BROOD)", gt, family="poisson"), gt


def test_new_rows_draw_in_the_order_of_the_fits_own_rows():
    """simulate() of new rows drew binomial and Poisson responses simulation-major (rows x nsim in C
    order) and every other case rows-fastest (R's rep_len(mu, n * nsim)); now one order: the fit's
    own rows passed as newdata give the own-row draws."""
    fit, gt = poisson_fit()
    own = fit.simulate(nsim=4, seed=11, re_form=None).to_numpy()
    new = fit.simulate(nsim=4, seed=11, newdata=gt, re_form=None).to_numpy()
    np.testing.assert_allclose(np.asarray(fit.predict(gt, type="response")), np.asarray(fit.fitted), rtol=1e-12)
    np.testing.assert_array_equal(new, own)


def test_predictive_draws_are_floats_and_binomial_counts():
    cbpp = mp.datasets.load("cbpp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mp.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial")
    nd = pd.DataFrame({"period": ["1", "2", "3"], "herd": ["1", "2", "NEW"]})
    trials = np.array([1, 5, 20])
    y = mp.predictive_draws(fit, nd, n_sims=4000, seed=3, trials=trials)
    assert y.dtype == float and np.all(y == np.round(y)) and np.all((y >= 0) & (y <= trials))
    mu = mp.predictive_draws(fit, nd, n_sims=4000, seed=3, trials=trials, what="mu")
    np.testing.assert_allclose(y.mean(axis=0), (mu * trials).mean(axis=0), rtol=0.1)
    fit_p, gt = poisson_fit()
    assert mp.predictive_draws(fit_p, gt.iloc[:3], n_sims=5, seed=1).dtype == float


# -- rstanarm's tables from the classes -----------------------------------------------------------------
def test_rstanarm_default_links_are_rs():
    assert DEFAULT_LINK == aic_ref()["default_links"]
    for name, link in DEFAULT_LINK.items():
        assert resolve_family(name, None) == (name, link)
        assert family_object(name, link).link.name == link


def test_rstanarm_links_are_the_classes_links():
    for name, links in LINKS.items():
        fam = family_object(name, DEFAULT_LINK[name])
        assert set(links) <= set(fam.allowed_links)
        if isinstance(fam, (DispersionFamily, NegativeBinomial)):
            assert links == type(fam).allowed_links
    with pytest.raises(ValueError, match="not available for binomial"):
        resolve_family("binomial", "cloglog")      # a class link the sampler was not validated for


def test_families_take_none_for_their_default_link():
    for cls, want in [(Binomial, "logit"), (Poisson, "log"), (Gamma, "inverse"), (InverseGaussian, "1/mu^2"),
                      (Gaussian, "identity")]:
        assert cls(None).link.name == want
    assert NegativeBinomial(2.0, None).link.name == "log"
    assert Binomial(Binomial("probit").link).link.name == "probit"
