"""Simulate from known parameters, fit, and recover them (fixed seeds, tolerances from the
sampling error of the design)."""
import numpy as np
import pandas as pd
import pytest

import mixedpy as mp


def test_random_slopes_with_correlation_recovered():
    rng = np.random.default_rng(42)
    J, m = 150, 12
    sd_int, sd_slope, rho, sigma = 2.0, 0.8, -0.5, 1.0
    cov = np.array([[sd_int ** 2, rho * sd_int * sd_slope], [rho * sd_int * sd_slope, sd_slope ** 2]])
    b = rng.multivariate_normal([0, 0], cov, size=J)
    g = np.repeat(np.arange(J), m)
    x = rng.normal(size=J * m)
    y = 3.0 + b[g, 0] + (1.5 + b[g, 1]) * x + rng.normal(scale=sigma, size=J * m)
    fit = mp.lmer("y ~ x + (x | g)", pd.DataFrame({"y": y, "x": x, "g": g}))
    term = mp.VarCorr(fit).terms[0]
    assert np.all(np.abs(mp.fixef(fit).to_numpy() - [3.0, 1.5]) < 3 * mp.se_fixef(fit).to_numpy())
    np.testing.assert_allclose(term.sd, [sd_int, sd_slope], rtol=0.15)
    assert term.corr[0, 1] == pytest.approx(rho, abs=0.15)
    assert fit.sigma == pytest.approx(sigma, rel=0.05)
    # conditional modes track the true effects (shrunk, so correlation rather than equality)
    modes = mp.ranef(fit)["g"].to_numpy()
    assert np.corrcoef(modes[:, 0], b[:, 0])[0, 1] > 0.95
    assert np.corrcoef(modes[:, 1], b[:, 1])[0, 1] > 0.8


def test_crossed_factors_recovered():
    rng = np.random.default_rng(7)
    A, B, n = 60, 40, 6000
    sa, sb, sigma = 1.2, 0.6, 0.9
    a = rng.integers(0, A, n)
    bb = rng.integers(0, B, n)
    y = 10 + rng.normal(scale=sa, size=A)[a] + rng.normal(scale=sb, size=B)[bb] + rng.normal(scale=sigma, size=n)
    fit = mp.lmer("y ~ 1 + (1 | a) + (1 | b)", pd.DataFrame({"y": y, "a": a, "b": bb}))
    sd = {t.group: t.sd[0] for t in mp.VarCorr(fit).terms}
    assert sd["a"] == pytest.approx(sa, rel=0.2)
    assert sd["b"] == pytest.approx(sb, rel=0.25)
    assert fit.sigma == pytest.approx(sigma, rel=0.03)
    assert abs(fit.beta[0] - 10) < 3 * fit.se_fixef[0]


def test_nested_factors_recovered():
    rng = np.random.default_rng(9)
    n_outer, n_inner, m = 40, 5, 8
    s_out, s_in, sigma = 1.5, 0.7, 0.5
    outer = np.repeat(np.arange(n_outer), n_inner * m)
    inner = np.repeat(np.arange(n_inner), m)[np.newaxis].repeat(n_outer, 0).ravel()
    eff_out = rng.normal(scale=s_out, size=n_outer)
    eff_in = rng.normal(scale=s_in, size=(n_outer, n_inner))
    y = eff_out[outer] + eff_in[outer, inner] + rng.normal(scale=sigma, size=outer.size)
    fit = mp.lmer("y ~ 1 + (1 | outer/inner)", pd.DataFrame({"y": y, "outer": outer, "inner": inner}))
    sd = {t.group: t.sd[0] for t in mp.VarCorr(fit).terms}
    assert sd["inner:outer"] == pytest.approx(s_in, rel=0.15)
    assert sd["outer"] == pytest.approx(s_out, rel=0.25)
    assert fit.sigma == pytest.approx(sigma, rel=0.05)


def test_weights_are_inverse_variances():
    """With weights w, Var(e_i) = sigma^2 / w_i: a weighted fit recovers sigma on the unit scale."""
    rng = np.random.default_rng(3)
    J, m = 80, 10
    g = np.repeat(np.arange(J), m)
    w = rng.choice([0.5, 1.0, 4.0], size=J * m)
    y = 1 + rng.normal(scale=1.0, size=J)[g] + rng.normal(size=J * m) * 2.0 / np.sqrt(w)
    fit = mp.lmer("y ~ 1 + (1 | g)", pd.DataFrame({"y": y, "g": g}), weights=w)
    assert fit.sigma == pytest.approx(2.0, rel=0.06)
    unit = mp.lmer("y ~ 1 + (1 | g)", pd.DataFrame({"y": y, "g": g}), weights=np.ones_like(w))
    plain = mp.lmer("y ~ 1 + (1 | g)", pd.DataFrame({"y": y, "g": g}))
    assert unit.criterion == pytest.approx(plain.criterion, rel=1e-10)


def test_offset_shifts_intercept_exactly():
    rng = np.random.default_rng(4)
    g = np.repeat(np.arange(30), 5)
    y = rng.normal(size=150) + rng.normal(size=30)[g]
    df = pd.DataFrame({"y": y, "g": g})
    base = mp.lmer("y ~ 1 + (1 | g)", df)
    shifted = mp.lmer("y ~ 1 + (1 | g)", df.assign(y=y + 5.0), offset=np.full(150, 5.0))
    np.testing.assert_allclose(shifted.beta, base.beta, rtol=1e-8)
    np.testing.assert_allclose(shifted.theta, base.theta, rtol=1e-6)
