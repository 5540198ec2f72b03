"""Complete / no / partial pooling table: each column against a direct dense computation."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import mixedpy as mp
from mixedpy.pooling import no_pooling, pooling


@pytest.fixture(scope="module")
def radon():
    return mp.datasets.load("radon")


@pytest.fixture(scope="module")
def radon_fit(radon):
    return mp.lmer("log_radon ~ floor + (1 | county)", radon)


def test_varying_intercept_table_against_dense_least_squares(radon, radon_fit):
    tab = mp.pooling(radon_fit)
    assert list(tab.columns) == ["term", "n", "complete", "no_pooling", "se_no_pooling", "partial", "se_partial"]
    assert tab.index.name == "county" and len(tab) == 85 and set(tab.term) == {"(Intercept)"}
    # complete pooling: lm(log_radon ~ floor)
    X = np.column_stack([np.ones(len(radon)), radon.floor])
    b_cp = np.linalg.lstsq(X, radon.log_radon, rcond=None)[0]
    np.testing.assert_allclose(tab.complete, b_cp[0])
    # no pooling: lm(log_radon ~ floor + factor(county) - 1), as Gelman & Hill fit it
    D = pd.get_dummies(radon.county).astype(float)
    A = np.column_stack([radon.floor, D.to_numpy()])
    coef, *_ = np.linalg.lstsq(A, radon.log_radon, rcond=None)
    resid = radon.log_radon - A @ coef
    s2 = resid @ resid / (len(radon) - A.shape[1])
    se = np.sqrt(s2 * np.diag(np.linalg.inv(A.T @ A)))
    order = [list(D.columns).index(c) for c in tab.index]
    np.testing.assert_allclose(tab.no_pooling, coef[1:][order], rtol=1e-10)
    np.testing.assert_allclose(tab.se_no_pooling, se[1:][order], rtol=1e-10)
    np.testing.assert_array_equal(tab.n, radon.county.value_counts().loc[tab.index].to_numpy())
    # partial pooling: coef(lmer) and se.ranef
    np.testing.assert_allclose(tab.partial, mp.coef(radon_fit)["county"]["(Intercept)"].to_numpy())
    np.testing.assert_allclose(tab.se_partial, mp.se_ranef(radon_fit)["county"]["(Intercept)"].to_numpy())


def test_partial_pooling_is_the_shrinkage_formula():
    """For y ~ 1 + (1|g): partial_j - mu = n_j tau^2 / (n_j tau^2 + sigma^2) (ybar_j - mu)."""
    rng = np.random.default_rng(3)
    sizes = rng.integers(1, 30, size=25)
    g = np.repeat(np.arange(25), sizes)
    y = 5 + 2 * rng.normal(size=25)[g] + 3 * rng.normal(size=g.size)
    df = pd.DataFrame({"y": y, "g": [f"s{k:02d}" for k in g]})
    tab = pooling("y ~ 1 + (1 | g)", df)
    fit = mp.lmer("y ~ 1 + (1 | g)", df)
    tau2, s2, mu = (fit.sigma * fit.theta[0]) ** 2, fit.sigma ** 2, fit.beta[0]
    ybar = df.groupby("g").y.mean().loc[tab.index].to_numpy()
    n = tab.n.to_numpy()
    np.testing.assert_allclose(tab.no_pooling, ybar, rtol=1e-10)
    np.testing.assert_allclose(tab.partial - mu, n * tau2 / (n * tau2 + s2) * (ybar - mu), rtol=1e-6)
    np.testing.assert_allclose(tab.complete, y.mean())
    # shrinkage is strongest for small groups
    between = np.abs(tab.partial - mu) <= np.abs(tab.no_pooling - mu) + 1e-12
    assert between.all()


def test_varying_slopes_and_identifiability(radon):
    tab = pooling("log_radon ~ floor + (1 + floor | county)", radon, group="county")
    assert list(tab.term.unique()) == ["(Intercept)", "floor"]
    slopes = tab[tab.term == "floor"]
    # a county whose houses all share one floor value cannot identify its own slope: NaN
    floors = radon.groupby("county").floor.nunique()
    flat = floors[floors == 1].index
    assert slopes.loc[flat, "no_pooling"].isna().all()
    assert slopes.loc[floors[floors > 1].index, "no_pooling"].notna().all()
    assert slopes.partial.notna().all()
    # an identifiable county's no-pooling fit is its own regression of y on floor
    c = floors[floors > 1].index[0]
    sub = radon[radon.county == c]
    b = np.polyfit(sub.floor, sub.log_radon, 1)
    assert slopes.loc[c, "no_pooling"] == pytest.approx(b[0], rel=1e-8)


def test_no_pooling_kernel_against_dense_with_weights():
    rng = np.random.default_rng(8)
    n, J = 200, 12
    codes = rng.integers(0, J, n)
    x = rng.normal(size=n)
    z = rng.normal(size=n)
    y = rng.normal(size=n) + codes * 0.3 + x
    w = rng.uniform(0.5, 2, n)
    term = type("T", (), {"codes": codes, "model_matrix": np.column_stack([np.ones(n), z]), "n_levels": J, "k": 2})()
    a, se, sigma = no_pooling(y, x[:, None], term, weights=w)
    Zd = np.zeros((n, 2 * J))
    Zd[np.arange(n), 2 * codes] = 1
    Zd[np.arange(n), 2 * codes + 1] = z
    A = np.column_stack([Zd, x])
    sw = np.sqrt(w)
    coef, *_ = np.linalg.lstsq(A * sw[:, None], y * sw, rcond=None)
    r = (y - A @ coef) * sw
    s2 = r @ r / (n - A.shape[1])
    cov = s2 * np.linalg.inv((A * w[:, None]).T @ A)
    np.testing.assert_allclose(a.ravel(), coef[:-1], rtol=1e-9)
    np.testing.assert_allclose(se.ravel(), np.sqrt(np.diag(cov))[:-1], rtol=1e-9)
    assert sigma == pytest.approx(np.sqrt(s2))


def test_several_terms_on_one_factor_are_merged():
    data = mp.datasets.load("sleepstudy")
    tab = pooling("Reaction ~ Days + (Days || Subject)", data)
    assert list(tab.term.unique()) == ["(Intercept)", "Days"]
    days = tab[tab.term == "Days"]
    sub = data[data.Subject.astype(str) == days.index[0]]
    assert days.no_pooling.iloc[0] == pytest.approx(np.polyfit(sub.Days, sub.Reaction, 1)[0], rel=1e-8)


def test_pooling_errors(radon, radon_fit):
    with pytest.raises(mp.DataError, match="not a grouping factor"):
        pooling(radon_fit, group="state")
    with pytest.raises(ValueError, match="data is needed"):
        pooling("log_radon ~ floor + (1 | county)")
    with pytest.raises(TypeError, match="lmer fit or a formula"):
        pooling(object())


def test_binomial_glmer_pooling_on_the_probability_scale():
    """For a binomial GLMM with a random intercept: raw proportions per group (no pooling) and
    invlogit(beta_0 + b_j) (partial pooling), with trials as the group size."""
    cb = mp.datasets.load("cbpp")
    g = mp.glmer("cbind(incidence, size - incidence) ~ 1 + (1 | herd)", cb, family="binomial")
    tab = pooling(g)
    assert tab.attrs["scale"] == "probability"
    raw = cb.groupby("herd")["incidence"].sum() / cb.groupby("herd")["size"].sum()
    np.testing.assert_allclose(tab["no_pooling"].to_numpy(), raw.loc[tab.index].to_numpy())
    np.testing.assert_allclose(tab["n"].to_numpy(), cb.groupby("herd")["size"].sum().loc[tab.index].to_numpy())
    b = mp.ranef(g)["herd"]["(Intercept)"].loc[tab.index].to_numpy()
    np.testing.assert_allclose(tab["partial"].to_numpy(), 1 / (1 + np.exp(-(g.beta[0] + b))))
