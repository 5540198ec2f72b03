"""Family objects: links against numerical derivatives, deviance and AIC against scipy's
log-likelihoods, R's starting values, and the response checks users meet first."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mixedpy.errors import DataError
from mixedpy.families import Binomial, Link, Poisson, binomial, get_family, poisson

LINKS = [("logit", 0.3), ("probit", 0.3), ("cloglog", 0.3), ("log", 2.0)]


@pytest.mark.parametrize("name,mu0", LINKS)
def test_link_inverse_and_derivative(name, mu0):
    link = Link(name)
    mu = np.linspace(0.5, 1.5, 7) * mu0
    eta = link.linkfun(mu)
    np.testing.assert_allclose(link.linkinv(eta), mu, rtol=1e-12)
    h = 1e-6
    numeric = (link.linkinv(eta + h) - link.linkinv(eta - h)) / (2 * h)
    np.testing.assert_allclose(link.mu_eta(eta), numeric, rtol=1e-6)


def test_links_clamp_like_r():
    eps = np.finfo(float).eps
    logit = Link("logit")
    assert logit.linkinv(np.array([-40.0]))[0] == eps
    assert logit.mu_eta(np.array([40.0]))[0] == eps
    assert Link("log").linkinv(np.array([-800.0]))[0] == eps
    assert 0 < Link("cloglog").linkinv(np.array([-50.0]))[0] < 1e-15
    assert Link("probit").linkinv(np.array([50.0]))[0] < 1.0


def test_binomial_deviance_and_aic_match_scipy():
    rng = np.random.default_rng(1)
    fam = binomial()
    s = rng.integers(0, 9, 30).astype(float)
    f = rng.integers(0, 9, 30).astype(float)
    resp = fam.prepare(np.column_stack([s, f]), None)
    mu = rng.uniform(0.05, 0.95, 30)
    n = s + f
    ll = stats.binom.logpmf(s, n, mu)
    assert fam.aic(resp, mu) == pytest.approx(-2 * ll.sum(), rel=1e-12)
    # deviance residuals: 2 (loglik(saturated) - loglik(mu)) per row
    sat = stats.binom.logpmf(s, n, np.where(n > 0, s / np.maximum(n, 1), 0.5))
    np.testing.assert_allclose(fam.dev_resids(resp.y, mu, resp.weights), 2 * (sat - ll), atol=1e-10)


def test_binomial_proportions_with_weights_equal_cbind():
    fam = binomial()
    s = np.array([2.0, 0.0, 5.0, 3.0])
    n = np.array([4.0, 3.0, 5.0, 6.0])
    a = fam.prepare(np.column_stack([s, n - s]), None)
    b = fam.prepare(s / n, n)
    mu = np.array([0.3, 0.2, 0.8, 0.5])
    assert fam.aic(a, mu) == pytest.approx(fam.aic(b, mu), rel=1e-14)
    np.testing.assert_allclose(fam.mustart(a), fam.mustart(b))
    np.testing.assert_allclose(fam.mustart(a), (s + 0.5) / (n + 1))


def test_poisson_deviance_and_aic_match_scipy():
    rng = np.random.default_rng(2)
    fam = poisson()
    y = rng.poisson(3.0, 40).astype(float)
    resp = fam.prepare(y, None)
    mu = rng.uniform(0.5, 6.0, 40)
    ll = stats.poisson.logpmf(y, mu)
    assert fam.aic(resp, mu) == pytest.approx(-2 * ll.sum(), rel=1e-12)
    sat = stats.poisson.logpmf(y, np.maximum(y, 1e-300))
    np.testing.assert_allclose(fam.dev_resids(y, mu, resp.weights), 2 * (sat - ll), atol=1e-9)
    np.testing.assert_allclose(fam.mustart(resp), y + 0.1)


def test_poisson_rejects_non_integer_and_negative_counts():
    with pytest.raises(DataError, match="non-integer"):
        poisson().prepare(np.array([1.0, 2.5, 3.0]), None)
    with pytest.raises(DataError, match="negative"):
        poisson().prepare(np.array([1.0, -2.0]), None)
    with pytest.raises(DataError, match="single column"):
        poisson().prepare(np.ones((3, 2)), None)


def test_binomial_response_errors():
    fam = binomial()
    with pytest.raises(DataError, match="successes exceed trials"):
        fam.prepare(np.array([[3.0, 2.0], [5.0, -1.0]]), None)
    with pytest.raises(DataError, match="0/1 or a proportion"):
        fam.prepare(np.array([0.0, 2.0, 1.0]), None)
    with pytest.raises(DataError, match="successes exceed trials"):
        fam.prepare(np.array([0.5, 3.0]), np.array([4.0, 5.0]))
    with pytest.raises(DataError, match="whole-number"):
        fam.prepare(np.array([[1.5, 2.0]]), None)
    with pytest.warns(UserWarning, match="non-integer number of successes"):
        fam.prepare(np.array([0.3, 0.5]), None)


def test_get_family():
    assert isinstance(get_family("binomial"), Binomial)
    assert get_family("binomial", "probit").link.name == "probit"
    assert get_family(Poisson()).name == "poisson"
    assert get_family(binomial, "cloglog").link.name == "cloglog"
    with pytest.raises(ValueError, match="glmer supports"):
        get_family("tweedie")
    with pytest.raises(ValueError, match="not available for family 'binomial'"):
        binomial("log")


def test_simulate_draws_counts():
    rng = np.random.default_rng(3)
    fam = binomial()
    resp = fam.prepare(np.column_stack([np.full(2000, 3.0), np.full(2000, 7.0)]), None)
    y = fam.simulate(rng, np.full(2000, 0.3), resp)
    assert np.allclose(y * 10, np.round(y * 10))
    assert y.mean() == pytest.approx(0.3, abs=0.01)
    yp = poisson().simulate(rng, np.full(2000, 4.0), poisson().prepare(np.zeros(2000), None))
    assert yp.mean() == pytest.approx(4.0, abs=0.15)
