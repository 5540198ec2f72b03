"""Shift and scale invariance of lmer and the Bayesian LMM (issue 9, part B: no silent wrong answers).

The profiled REML criterion and ML deviance are invariant to y -> y + X a (beta-hat moves by a) and
change by the known constant 2 (n - p) log|k| (REML) or 2 n log|k| (ML) under y -> k y, with theta
unchanged and sigma, beta-hat, u-hat scaled by k (Bates et al. 2015, eqs. 34 and 41).  Before the fix
the cross-products held y'Wy itself, and a large mean cost digits by cancellation: y + 1e6 moved the
criterion by ~0.35 on the 400-row model below and raised convergence warnings; y + 1e8 crashed.

Responses are put on a dyadic grid (multiples of 2^-20) so that y + a with an integer |a| <= 1e8 is
exactly representable: any difference between the fits of y and y + a is then the algorithm's, and
mixedpy gives bit-identical fits.  Scaling by k is not exact in floating point.  The optimizer
minimizes the criterion of y_tilde = residual / RMS, the same function for y and k y up to ~1e-13,
but BOBYQA stops once a step gains less than ftol_abs = 1e-8 (lme4's setting), which leaves theta
determined only to about sqrt(2e-8 / H); where in that slack it stops depends on rounding, so theta
agrees to 1e-8 for the scales tested deterministically and to ~5e-6 at worst over random designs.
Converging further (a Newton step at the end) would make theta agree to 1e-8 everywhere but would no
longer reproduce lme4's own estimates, which stop at the same tolerance.
"""
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mixedpy as mp
from mixedpy.formula.design import build_design
from mixedpy.sdcor import SdCorMap
from mixedpy.linalg.response import ResponseScaling
from mixedpy.lmer import lmm_problem

FORMULAS = {"intercept": "y ~ x + (1 | g)", "slopes": "y ~ x + (x | g)", "crossed": "y ~ x + (1 | g) + (1 | h)",
            "weights": "y ~ x + (1 | g) + (1 | h)", "slopes_crossed": "y ~ x + (x | g) + (1 | h)",
            "no_intercept": "y ~ 0 + x + (1 | g)"}
FAST = settings(deadline=None, max_examples=25, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def dyadic(v):
    return np.round(np.asarray(v) * 2.0 ** 20) / 2.0 ** 20


def make_data(seed, kind, n=80):
    rng = np.random.default_rng(seed)
    J, K = 8, 5
    g = np.concatenate([np.arange(J), rng.integers(0, J, n - J)])
    h = rng.integers(0, K, n)
    x = np.round(rng.normal(size=n) * 8) / 8
    y = (1.5 + 0.7 * x + rng.normal(size=J)[g] + 0.5 * rng.normal(size=J)[g] * x
         + 0.6 * rng.normal(size=K)[h] + rng.normal(size=n))
    w = rng.choice([0.5, 1.0, 2.0, 4.0], size=n) if kind == "weights" else np.ones(n)
    return pd.DataFrame({"y": dyadic(y), "x": x, "g": g.astype(str), "h": h.astype(str), "w": w})


def fit(formula, data, weights=None, REML=True):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        m = mp.lmer(formula, data, weights=weights, REML=REML)
    return m, sorted({f"{type(r.message).__name__}: {str(r.message)[:40]}" for r in rec})


def problem(formula, data, weights=None):
    return lmm_problem(build_design(formula, data, weights=weights))


kinds = st.sampled_from(list(FORMULAS))
seeds = st.integers(0, 10 ** 6)
shifts = st.integers(1, 10 ** 8).map(float) | st.sampled_from([1e6, 1e8, -1e8])
scales = st.floats(-8, 8).map(lambda e: 10.0 ** e) | st.sampled_from([1e8, 1e-8, -1.0, -1e6])


# ------------------------------------------------------------------------------------------------
# the criterion and the profiled pieces at fixed theta
# ------------------------------------------------------------------------------------------------
@FAST
@given(kind=kinds, seed=seeds, shift=shifts, scale=scales)
def test_profiled_pieces_invariant_at_fixed_theta(kind, seed, shift, scale):
    d = make_data(seed, kind)
    f, w = FORMULAS[kind], ("w" if kind == "weights" else None)
    base = problem(f, d, w)
    rng = np.random.default_rng(seed)
    thetas = [base.start_theta()] + [np.maximum(base.lower, 0) + rng.uniform(0.05, 2.0, base.lower.size)
                                     for _ in range(2)]
    cases = [(d.y * scale, 0.0, scale)]
    if kind != "no_intercept":
        cases.append((d.y + shift, shift, 1.0))
    n, p = base.n, base.p
    for y, a, k in cases:
        other = problem(f, d.assign(y=y), w)
        # the start of theta is invariant too
        np.testing.assert_allclose(other.start_theta(), base.start_theta(), rtol=1e-12, atol=1e-14)
        for th in thetas:
            s0, s1 = base.profile(th), other.profile(th)
            lk = 2 * np.log(abs(k))
            assert s1.reml_crit - (n - p) * lk == pytest.approx(s0.reml_crit, abs=1e-9)
            assert s1.deviance_ml - n * lk == pytest.approx(s0.deviance_ml, abs=1e-9)
            assert other.objective(th, True) == pytest.approx(s1.reml_crit, abs=1e-9)
            np.testing.assert_allclose(s1.pwrss / k ** 2, s0.pwrss, rtol=1e-10)
            np.testing.assert_allclose(s1.sigma_reml / abs(k), s0.sigma_reml, rtol=1e-10)
            scale_u = np.max(np.abs(s0.u)) + 1e-300
            np.testing.assert_allclose(s1.u / k, s0.u, rtol=0, atol=1e-9 * scale_u + 1e-12)
            beta0 = s0.beta.copy()
            if a:
                beta0[0] += a / k          # (Intercept) is the first column
            np.testing.assert_allclose(s1.beta / k, beta0, rtol=1e-10, atol=1e-10 * (1 + abs(a)))


# ------------------------------------------------------------------------------------------------
# fitted models
# ------------------------------------------------------------------------------------------------
@FAST
@given(kind=kinds.filter(lambda k: k != "no_intercept"), seed=seeds, shift=shifts, reml=st.booleans())
def test_fit_shift_invariant(kind, seed, shift, reml):
    d = make_data(seed, kind)
    f, w = FORMULAS[kind], ("w" if kind == "weights" else None)
    m0, w0 = fit(f, d, w, reml)
    m1, w1 = fit(f, d.assign(y=d.y + shift), w, reml)
    assert w1 == w0                      # no convergence warning that the unshifted fit does not give
    np.testing.assert_allclose(m1.theta, m0.theta, rtol=1e-8, atol=1e-8)
    assert m1.sigma == pytest.approx(m0.sigma, rel=1e-8)
    assert m1.deviance == pytest.approx(m0.deviance, abs=1e-8)
    assert m1.loglik == pytest.approx(m0.loglik, abs=1e-8)
    np.testing.assert_allclose(m1.beta - np.r_[shift, 0.0], m0.beta, atol=1e-8 * max(1.0, abs(shift)) * 1e-6)
    np.testing.assert_allclose(m1.u, m0.u, atol=1e-8)
    np.testing.assert_allclose(m1.vcov_array, m0.vcov_array, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(np.asarray(m1.fitted) - shift, np.asarray(m0.fitted), atol=1e-7)


@FAST
@given(kind=kinds, seed=seeds, scale=scales, reml=st.booleans())
def test_fit_scale_invariant(kind, seed, scale, reml):
    d = make_data(seed, kind)
    f, w = FORMULAS[kind], ("w" if kind == "weights" else None)
    m0, w0 = fit(f, d, w, reml)
    m1, w1 = fit(f, d.assign(y=d.y * scale), w, reml)
    assert w1 == w0
    n, p = m0.nobs, len(m0.beta)
    const = (n - p if reml else n) * 2 * np.log(abs(scale))
    # the optimum reached is as good: the criterion agrees far below the optimizer's ftol_abs = 1e-8
    assert m1.deviance - const == pytest.approx(m0.deviance, abs=1e-8)
    # theta to BOBYQA's stopping slack (module docstring), sigma accordingly
    np.testing.assert_allclose(m1.theta, m0.theta, rtol=0, atol=1e-5)
    assert m1.sigma / abs(scale) == pytest.approx(m0.sigma, rel=1e-5)
    # ... and at the same theta, exactly scaled
    prof = m1.problem.profile(m0.theta)
    assert prof.sigma_reml / abs(scale) == pytest.approx(m0.state.sigma_reml, rel=1e-10)
    np.testing.assert_allclose(prof.beta / scale, m0.beta, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# the reported defect, deterministic
# ------------------------------------------------------------------------------------------------
def data_400(seed=1, n=400):
    rng = np.random.default_rng(seed)
    g, h = rng.integers(0, 40, n), rng.integers(0, 12, n)
    x = rng.normal(size=n)
    y = 2 + 0.5 * x + rng.normal(size=40)[g] + 0.5 * rng.normal(size=40)[g] * x + 0.7 * rng.normal(size=12)[h] \
        + rng.normal(size=n)
    return pd.DataFrame({"y": dyadic(y), "x": x, "g": g.astype(str), "h": h.astype(str)})


F400 = "y ~ x + (x | g) + (1 | h)"


def test_400_rows_large_mean_same_criterion_no_warning():
    """Before the fix: criterion 1330.035 vs 1329.687, two convergence warnings, and at 1e8 a crash."""
    d = data_400()
    m0, w0 = fit(F400, d)
    assert w0 == []
    for a in (1e6, 1e8):
        m1, w1 = fit(F400, d.assign(y=d.y + a))
        assert w1 == []
        assert m1.reml_crit == m0.reml_crit                  # pure shift: the same criterion
        np.testing.assert_array_equal(m1.theta, m0.theta)
        assert m1.sigma == pytest.approx(m0.sigma, rel=1e-12)
        assert m1.beta[0] - a == pytest.approx(m0.beta[0], abs=2 * np.spacing(a))   # rounding of ~a
    nmp = m0.nobs - 2
    for k in (1e8, 1e-8):
        m1, w1 = fit(F400, d.assign(y=d.y * k))
        assert w1 == []
        assert m1.reml_crit - 2 * nmp * np.log(k) == pytest.approx(m0.reml_crit, abs=1e-8)
        np.testing.assert_allclose(m1.theta, m0.theta, rtol=1e-8, atol=1e-8)
        assert m1.sigma / k == pytest.approx(m0.sigma, rel=1e-8)


def test_400_rows_criterion_without_stabilizing_is_wrong():
    """The defect itself: forming the cross-products from y + 1e6 directly moves the criterion."""
    from mixedpy.linalg.blocked import CrossProducts

    d = data_400()
    P0, P1 = problem(F400, d), problem(F400, d.assign(y=d.y + 1e6))
    theta = P0.start_theta()
    P1.cross = CrossProducts(P1.blocks, P1.X, P1.y - P1.offset, None, stabilize=False)
    assert abs(P1.objective(theta, True) - P0.objective(theta, True)) > 1e-3
    P1.cross = CrossProducts(P1.blocks, P1.X, P1.y - P1.offset, None, stabilize=True)
    assert P1.objective(theta, True) == P0.objective(theta, True)


def test_offset_with_large_values_enters_as_y_minus_offset():
    d = data_400()
    off = 1e6 + dyadic(np.linspace(0, 3, len(d)))
    m_off = mp.lmer(F400, d.assign(y=d.y + off), offset=off)
    m0 = mp.lmer(F400, d)
    np.testing.assert_array_equal(m_off.theta, m0.theta)
    assert m_off.reml_crit == pytest.approx(m0.reml_crit, abs=1e-9)
    np.testing.assert_allclose(m_off.beta, m0.beta, atol=1e-8)


def test_no_fixed_effects_scale_only():
    rng = np.random.default_rng(5)
    d = pd.DataFrame({"y": dyadic(rng.normal(size=60) + 3), "g": rng.integers(0, 6, 60).astype(str)})
    m0 = mp.lmer("y ~ 0 + (1 | g)", d)
    for k in (1e8, 1e-8):
        m1 = mp.lmer("y ~ 0 + (1 | g)", d.assign(y=d.y * k))
        assert m1.deviance - 2 * 60 * np.log(k) == pytest.approx(m0.deviance, abs=1e-8)
        np.testing.assert_allclose(m1.theta, m0.theta, rtol=1e-8, atol=1e-8)


def test_profile_deviance_shift_invariant():
    """The profile code factors problem.cross itself: its deviance must see the same pwrss, and the
    intervals of the variance parameters and the slope are the same for y + 1e6."""
    d = make_data(3, "intercept")
    m0 = mp.lmer("y ~ x + (1 | g)", d)
    m1 = mp.lmer("y ~ x + (1 | g)", d.assign(y=d.y + 1e6))
    c0, c1 = m0.confint(method="profile"), m1.confint(method="profile")
    rows = [".sig01", ".sigma", "x"]
    np.testing.assert_allclose(c1.loc[rows].to_numpy(), c0.loc[rows].to_numpy(), atol=1e-6)


def _mapped_interval(ci, kinds, names, shift, k):
    """The interval ends of y expected from those of a + k y: sd's and sigma divide by |k|,
    correlations stay, the fixed effects divide by k (the ends swap for k < 0) after the intercept
    loses a."""
    out = np.empty_like(ci)
    for i, n in enumerate(names):
        kind = kinds[i] if i < len(kinds) else "beta"
        if kind == "cor":
            out[i] = ci[i]
        elif kind in ("sd", "sigma"):
            out[i] = ci[i] / abs(k)
        else:
            out[i] = np.sort((ci[i] - (shift if n == "(Intercept)" else 0.0)) / k)
    return out


@pytest.mark.parametrize("kind", ["intercept", "slopes"])
def test_profile_confint_shift_and_scale_invariant(kind):
    """Profile intervals are equivariant under y -> a + k y to 1e-6 of the interval width: every
    tolerance of the profile (Brent's method, the inner BOBYQA fits, the bound tests) is relative
    to the parameter's scale.  With absolute tolerances the intercept's ends moved by 0.03 at y + 1e6
    and the sd's and sigma by up to 14% of the width at 1e-8 y."""
    f = FORMULAS[kind]
    d = make_data(3, kind)
    m0 = mp.lmer(f, d)
    kinds = SdCorMap.for_fit(m0).kinds()
    assert ("cor" in kinds) == (kind == "slopes")
    c0 = m0.confint(method="profile")
    names = list(c0.index)
    c0 = c0.to_numpy()
    width = c0[:, 1] - c0[:, 0]
    assert np.all(width > 0)
    for a, k in [(1e6, 1.0), (0.0, 1e-8), (0.0, 1e8), (-3e4, -1e3)]:
        ck = mp.lmer(f, d.assign(y=a + k * d.y)).confint(method="profile").to_numpy()
        err = np.abs(_mapped_interval(ck, kinds, names, a, k) - c0) / width[:, None]
        assert err.max() < 1e-6, (a, k, err)


def test_arm_sim_sigma_scales():
    d = make_data(4, "slopes")
    m0, m1 = mp.lmer("y ~ x + (x | g)", d), mp.lmer("y ~ x + (x | g)", d.assign(y=d.y * 1e6))
    s0, s1 = mp.sim(m0, n_sims=50, seed=1), mp.sim(m1, n_sims=50, seed=1)
    np.testing.assert_allclose(np.asarray(s1.sigma) / 1e6, np.asarray(s0.sigma), rtol=1e-5)


# ------------------------------------------------------------------------------------------------
# the response transform itself
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("weighted", [False, True])
def test_response_scaling_reconstructs_y(weighted):
    rng = np.random.default_rng(0)
    X = np.column_stack([np.ones(50), rng.normal(size=50)])
    y = 1e7 + 3 * X[:, 1] + rng.normal(size=50)
    sw = np.sqrt(rng.uniform(0.5, 2, 50)) if weighted else None
    sc, yt = ResponseScaling.of(X, y, sw)
    np.testing.assert_allclose(X @ sc.c + sc.s * yt, y, rtol=1e-15)
    ytw = yt if sw is None else yt * sw
    assert np.sqrt(np.mean(ytw ** 2)) == pytest.approx(1.0, rel=1e-14)   # scaled by its own RMS
    Xw = X if sw is None else X * sw[:, None]
    np.testing.assert_allclose(Xw.T @ ytw, 0, atol=1e-9)        # the weighted OLS residual
    sc0, yt0 = ResponseScaling.of(np.zeros((50, 0)), y)        # p = 0: scaling only
    assert sc0.c.size == 0
    np.testing.assert_allclose(sc0.s * yt0, y, rtol=1e-15)


# ------------------------------------------------------------------------------------------------
# the Bayesian LMM
# ------------------------------------------------------------------------------------------------
def posterior_model(d, formula, prior="default"):
    from mixedpy.bayes.lmm_posterior import LMMPosterior
    from mixedpy.bayes.priors import resolve_priors
    from mixedpy.lmer import fit_problem

    design = build_design(formula, d)
    priors = resolve_priors("gaussian", "identity", design.y, design.X, design.fixef_names, prior,
                            "default", "default", None)
    model = LMMPosterior(design, priors)
    return model, fit_problem(design, lmm_problem(design), quiet=True, calc_derivs=False)


@settings(deadline=None, max_examples=10, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["intercept", "slopes", "crossed"]), seed=seeds, shift=shifts,
       scale=st.floats(-8, 8).map(lambda e: 10.0 ** e), t_prior=st.booleans())
def test_bayes_log_posterior_and_draws_invariant(kind, seed, shift, scale, t_prior):
    """log p(sigma, Sigma[, beta] | y) at corresponding points: equal for y + a, and lower by
    (n + #autoscaled coefficient priors) log k for k y (the Jacobians); conditional draws of beta
    and b move accordingly."""
    d = make_data(seed, kind, n=60)
    f = FORMULAS[kind]
    prior = mp.student_t(3, 0, 2.5, autoscale=True) if t_prior else "default"
    m0, fit0 = posterior_model(d, f, prior)
    x0 = m0.start(fit0)
    X = x0 + 0.1 * np.random.default_rng(seed).standard_normal((6, x0.size))
    lp0 = m0.log_prob(X)
    d0 = m0.draw(X, np.random.default_rng(1))
    pb = 0 if m0.integrate_beta else m0.p
    for y, a, k in [(d.y + shift, shift, 1.0), (d.y * scale, 0.0, scale)]:
        m1, _ = posterior_model(d.assign(y=y), f, prior)
        X1 = X.copy()
        X1[:, 0] += np.log(k)
        if pb:
            X1[:, -pb:] *= k
            X1[:, -pb] += a                                       # the intercept comes first
        lp1 = m1.log_prob(X1) + (m0.n + pb) * np.log(k)
        # beta + a and mean(y + a) (the intercept prior's location) carry rounding of ulp(a)
        np.testing.assert_allclose(lp1, lp0, rtol=1e-10, atol=1e-8 + 1e-15 * abs(a))
        d1 = m1.draw(X1, np.random.default_rng(1))
        np.testing.assert_allclose(d1["sigma"] / k, d0["sigma"], rtol=1e-12)
        beta0 = d0["beta"].copy()
        beta0[:, 0] += a / k
        np.testing.assert_allclose(d1["beta"] / k, beta0, rtol=1e-8, atol=1e-8 * (1 + abs(a)))
        for b1, b0 in zip(d1["b"], d0["b"]):
            np.testing.assert_allclose(b1 / k, b0, rtol=0, atol=1e-8 * (1 + np.abs(b0).max()))


def test_bayes_lmer_fixed_seed_shift_and_scale():
    """Whole runs with one seed.  y + 1e6 and y + 1e8 give the same draws of sigma (the autoscaled
    priors take the moments of y about one of its own values, an exact shift); for 1e6 y the emcee
    ensemble (DEMove) amplifies the last-bit differences of k y until the chains are different, so
    that run agrees to Monte-Carlo error: the medians within 0.25 posterior SD."""
    d = make_data(11, "intercept", n=120)
    kw = dict(chains=2, iter=1000, seed=1, progress=False)
    runs = {}
    for lab, y in [("y", d.y), ("+1e6", d.y + 1e6), ("+1e8", d.y + 1e8), ("*1e6", d.y * 1e6)]:
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            runs[lab] = mp.bayes_lmer("y ~ x + (1 | g)", d.assign(y=y), **kw).draws
        assert not [r for r in rec if "converge" in str(r.message).lower()]
    base = runs["y"]
    for lab, a in [("+1e6", 1e6), ("+1e8", 1e8)]:
        np.testing.assert_array_equal(runs[lab]["sigma"], base["sigma"])
        np.testing.assert_allclose(runs[lab]["(Intercept)"] - a, base["(Intercept)"], atol=4 * np.spacing(a))
    sig = [c for c in base.columns if c.startswith("Sigma")]
    for lab, a, k in [("+1e6", 1e6, 1.0), ("+1e8", 1e8, 1.0), ("*1e6", 0.0, 1e6)]:
        o = runs[lab]
        for col, shift, power in [("sigma", 0, 1), ("(Intercept)", a, 1), ("x", 0, 1)] + [(c, 0, 2) for c in sig]:
            moved = (o[col] - shift) / k ** power
            assert abs(moved.median() - base[col].median()) < 0.25 * base[col].std(), (lab, col)
