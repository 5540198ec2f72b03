"""confint (Wald, profile, parametric bootstrap) and anova against lme4 1.1-31, plus the
coverage of sim() and bootstrap intervals on data simulated from a known model."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

import mixedpy as mp
from conftest import load_ref, ref_data
from mixedpy.bootstrap import BootResult, _norm_inter, bootstrap
from mixedpy.intervals import confint
from mixedpy.sdcor import SdCorMap

CASES = {c["name"]: c for c in load_ref("confint_cases")["cases"]}
MORE = load_ref("confint_more")
_FITS: dict = {}


def fit_of(formula: str, data: str, reml: bool = True):
    key = (formula, data, reml)
    if key not in _FITS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _FITS[key] = mp.lmer(formula, ref_data(data), REML=reml)
    return _FITS[key]


def as_array(values):
    return np.array([np.nan if v is None else v for v in values], dtype=float)


# --------------------------------------------------------------------------------------------
# Wald and profile against lme4
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_wald_matches_lme4(name):
    c = CASES[name]
    fit = fit_of(c["formula"], c["data"], c["REML"])
    ci = fit.confint()  # Wald is the default method
    assert list(ci.index) == c["Wald"]["rows"]
    assert list(ci.columns) == ["2.5 %", "97.5 %"]
    np.testing.assert_allclose(ci.iloc[:, 0], as_array(c["Wald"]["lower"]), rtol=1e-6)
    np.testing.assert_allclose(ci.iloc[:, 1], as_array(c["Wald"]["upper"]), rtol=1e-6)


@pytest.mark.parametrize("name", list(CASES))
def test_profile_matches_lme4(name):
    c = CASES[name]
    fit = fit_of(c["formula"], c["data"], c["REML"])
    ci = fit.confint(method="profile")
    assert list(ci.index) == c["profile"]["rows"]
    np.testing.assert_allclose(ci.iloc[:, 0], c["profile"]["lower"], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(ci.iloc[:, 1], c["profile"]["upper"], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("case", MORE["profile"], ids=[c["name"] for c in MORE["profile"]])
def test_profile_more_models(case):
    """Singular fit (lower end 0), nested factors, two terms on one factor, an ML fit."""
    fit = fit_of(case["formula"], case["data"], case["REML"])
    ci = confint(fit, method="profile")
    assert list(ci.index) == case["rows"]
    np.testing.assert_allclose(ci.iloc[:, 0], case["lower"], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(ci.iloc[:, 1], case["upper"], rtol=1e-3, atol=1e-3)


def test_profile_level_and_parm():
    c = CASES["sleepstudy_reml"]
    fit = fit_of(c["formula"], c["data"])
    ci90 = fit.confint("profile", level=0.9, parm=["Days", ".sigma"])
    assert list(ci90.index) == ["Days", ".sigma"] and list(ci90.columns) == ["5 %", "95 %"]
    ci95 = fit.confint("profile", parm="Days")
    assert ci95.iloc[0, 0] < ci90.loc["Days"].iloc[0] < fit.beta[1] < ci90.loc["Days"].iloc[1] < ci95.iloc[0, 1]
    assert list(fit.confint("Wald", parm="beta_").index) == ["(Intercept)", "Days"]
    with pytest.raises(ValueError, match="not a parameter"):
        fit.confint("profile", parm="nope")


def test_profile_zeta_is_signed_sqrt_of_deviance_change():
    """At an interval end the profiled ML deviance exceeds its minimum by z^2."""
    from mixedpy.profile import LmerProfiler as _Profiler

    c = CASES["sleepstudy_reml"]
    fit = fit_of(c["formula"], c["data"])
    prof = _Profiler(fit)
    assert prof.base == pytest.approx(1751.939344, abs=2e-5)
    assert prof.deviance(prof.phi_hat) == pytest.approx(prof.base, abs=1e-6)
    lo, hi = prof.interval(3, 0.95)  # .sigma
    z = norm.ppf(0.975)
    dev_hi, _ = prof.profile_var(3, hi, prof.phi_hat)
    assert dev_hi - prof.base == pytest.approx(z ** 2, abs=1e-4)


# --------------------------------------------------------------------------------------------
# parametric bootstrap
# --------------------------------------------------------------------------------------------


def _mc_tolerance(boot: BootResult, level=0.95, nsim_ref=500, k=4.0) -> np.ndarray:
    """Combined Monte-Carlo SE of two percentile ends (ours and R's), from the replicate spread:
    se(q_a) = sqrt(a (1-a) / R) / f(q_a), f approximated by a normal density."""
    sd = boot.t.std().to_numpy()
    a = (1 - level) / 2
    dens = norm.pdf(norm.ppf(a)) / sd
    se = lambda R: np.sqrt(a * (1 - a) / R) / dens  # noqa: E731
    return k * np.sqrt(se(len(boot.t)) ** 2 + se(nsim_ref) ** 2)


def test_boot_penicillin_within_monte_carlo_error():
    c = CASES["penicillin_crossed"]
    fit = fit_of(c["formula"], c["data"])
    boot = bootstrap(fit, nsim=400, seed=1, progress=False)
    ci = boot.confint()
    assert list(ci.index) == c["boot"]["rows"]
    tol = _mc_tolerance(boot, nsim_ref=c["boot"]["nsim"])
    assert np.all(np.abs(ci.iloc[:, 0].to_numpy() - c["boot"]["lower"]) < tol)
    assert np.all(np.abs(ci.iloc[:, 1].to_numpy() - c["boot"]["upper"]) < tol)
    # replicate means and sds against bootMer's (2000 replicates in R)
    ref = next(b for b in MORE["boot"] if b["name"] == "penicillin_crossed")
    sd = np.asarray(ref["sd"])
    assert np.all(np.abs(boot.t.mean().to_numpy() - ref["mean"]) < 4.5 * sd * np.sqrt(1 / 400 + 1 / 2000))
    np.testing.assert_allclose(boot.t.std().to_numpy(), sd, rtol=0.15)


@pytest.mark.slow
def test_boot_sleepstudy_confint_matches_lme4():
    c = CASES["sleepstudy_reml"]
    fit = fit_of(c["formula"], c["data"])
    boot = bootstrap(fit, nsim=1000, seed=3, progress=False)
    ci = boot.confint()
    ref = next(b for b in MORE["boot"] if b["name"] == "sleepstudy_reml")
    assert list(ci.index) == ref["rows"]
    tol = _mc_tolerance(boot, nsim_ref=ref["nsim"])
    assert np.all(np.abs(ci.iloc[:, 0].to_numpy() - ref["lower"]) < tol)
    assert np.all(np.abs(ci.iloc[:, 1].to_numpy() - ref["upper"]) < tol)
    sd = np.asarray(ref["sd"])
    assert np.all(np.abs(boot.t.mean().to_numpy() - ref["mean"]) < 4.5 * sd * np.sqrt(1 / 1000 + 1 / 2000))
    np.testing.assert_allclose(boot.t.std().to_numpy(), sd, rtol=0.1)


def test_boot_is_seeded_and_other_types():
    fit = fit_of("Yield ~ 1 + (1 | Batch)", "dyestuff.csv")
    a = bootstrap(fit, nsim=30, seed=5, progress=False)
    b = bootstrap(fit, nsim=30, seed=5, progress=False)
    pd.testing.assert_frame_equal(a.t, b.t)
    assert list(a.t0.index) == [".sig01", ".sigma", "(Intercept)"]
    assert a.t0[".sigma"] == pytest.approx(fit.sigma)
    basic = a.confint(type="basic")
    perc = a.confint(type="perc")
    np.testing.assert_allclose(basic.iloc[:, 0], 2 * a.t0.to_numpy() - perc.iloc[:, 1].to_numpy())
    normal = a.confint(type="norm")
    assert np.all(normal.iloc[:, 0] < normal.iloc[:, 1])
    with pytest.raises(ValueError, match="boot_type"):
        a.confint(type="bca")
    # fit.confint(method="boot") is the same replicates' percentile interval
    pd.testing.assert_frame_equal(fit.confint(method="boot", nsim=30, seed=5, progress=False), perc)


def test_norm_inter_order_statistics():
    """boot's quantile rule: order statistic (R+1) a when it is whole, else normal-scale interpolation."""
    x = np.arange(1.0, 1000.0)            # R = 999, (R+1) * 0.025 = 25
    assert _norm_inter(x, 0.025) == 25.0
    assert _norm_inter(x, 0.975) == 975.0
    y = np.arange(1.0, 501.0)             # R = 500, (R+1) * 0.025 = 12.525
    v = _norm_inter(y, 0.025)
    assert 12.0 < v < 13.0
    assert _norm_inter(np.array([1.0, 2.0, 3.0]), 0.01) == 1.0


# --------------------------------------------------------------------------------------------
# anova
# --------------------------------------------------------------------------------------------


def test_anova_matches_lme4():
    ref = load_ref("confint_cases")["anova"]
    m_slope = fit_of("Reaction ~ Days + (Days | Subject)", "sleepstudy.csv")
    m_int = fit_of("Reaction ~ Days + (1 | Subject)", "sleepstudy.csv")
    with pytest.warns(mp.MixedpyInfo, match=r"refitting model\(s\) with ML"):
        tab = mp.anova(m_slope, m_int)
    assert list(tab.index) == ref["rows"]  # ordered by npar, named as in the caller
    for col in ref["cols"]:
        np.testing.assert_allclose(tab[col].to_numpy(), as_array(ref["table"][col]), rtol=1e-7, equal_nan=True)


def test_anova_three_models_mixed_reml_ml():
    ref = MORE["anova"]
    m0 = fit_of("Reaction ~ 1 + (1 | Subject)", "sleepstudy.csv", reml=False)
    m1 = fit_of("Reaction ~ Days + (1 | Subject)", "sleepstudy.csv")
    m2 = fit_of("Reaction ~ Days + (Days | Subject)", "sleepstudy.csv")
    tab = mp.anova(m2, m0, m1)
    assert list(tab.index) == ref["rows"]
    for col, vals in ref["table"].items():
        np.testing.assert_allclose(tab[col].to_numpy(), as_array(vals), rtol=1e-7, equal_nan=True)
    named = mp.anova(m2, m0, names=["slopes", "null"])
    assert list(named.index) == ["null", "slopes"]


def test_anova_errors():
    m1 = fit_of("Reaction ~ Days + (1 | Subject)", "sleepstudy.csv")
    with pytest.raises(ValueError, match="at least two"):
        mp.anova()   # one lmer fit is lmerTest's F table (issue 12; tests/test_lmertest_summary.py)
    other = fit_of("Yield ~ 1 + (1 | Batch)", "dyestuff.csv")
    with pytest.raises(mp.DataError, match="same number of observations"):
        mp.anova(m1, other)
    with pytest.raises(TypeError, match="fitted mixed models"):
        mp.anova(m1, "not a fit")


# --------------------------------------------------------------------------------------------
# parameter maps and errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ks,scale", [((2,), True), ((3, 1), True), ((1, 1), False)])
def test_sdcor_map_round_trip(ks, scale):
    rng = np.random.default_rng(1)
    m = SdCorMap(ks, scale)
    theta = []
    for k in ks:
        T = np.tril(rng.normal(size=(k, k)))
        T[np.diag_indices(k)] = np.abs(T[np.diag_indices(k)]) + 0.1
        r, c = np.tril_indices(k)
        order = np.lexsort((r, c))  # column-major vech
        theta.append(T[r[order], c[order]])
    theta = np.concatenate(theta)
    sigma = 2.5 if scale else 1.0
    phi = m.from_theta(theta, sigma)
    back, s = m.to_theta(phi)
    np.testing.assert_allclose(back, theta, rtol=1e-10)
    assert s == sigma
    assert len(m.names()) == len(phi) == m.n_var


def test_sdcor_map_rejects_non_psd_correlations():
    m = SdCorMap((3,), True)
    phi = np.array([1.0, 0.9, -0.9, 1.0, 0.9, 1.0, 1.0])  # sd1, r21, r31, sd2, r32, sd3, sigma
    theta, _ = m.to_theta(phi)
    assert theta is None


def test_confint_bad_arguments():
    fit = fit_of("Yield ~ 1 + (1 | Batch)", "dyestuff.csv")
    with pytest.raises(ValueError, match="method must be"):
        fit.confint(method="bayes")
    with pytest.raises(ValueError, match="level"):
        fit.confint(level=1.5)
    with pytest.raises(ValueError, match="nsim"):
        bootstrap(fit, nsim=1)


def test_profile_needs_an_lmer_or_glmer_fit():
    from test_arm import _NoScaleView

    fit = fit_of("Reaction ~ Days + (Days | Subject)", "sleepstudy.csv")
    view = _NoScaleView(fit)
    wald = confint(view)
    assert list(wald.index)[:3] == [".sig01", ".sig02", ".sig03"] and ".sigma" not in wald.index
    with pytest.raises(NotImplementedError, match="method='Wald'"):
        confint(view, method="profile")


# --------------------------------------------------------------------------------------------
# coverage on data from a known model
# --------------------------------------------------------------------------------------------


def _simulated_data(rng, J=20, n=8, beta=(10.0, 2.0), tau=1.5, sigma=2.0):
    g = np.repeat(np.arange(J), n)
    x = rng.normal(size=J * n)
    y = beta[0] + beta[1] * x + tau * rng.normal(size=J)[g] + sigma * rng.normal(size=J * n)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{k:02d}" for k in g]})


@pytest.mark.slow
def test_sim_and_boot_intervals_cover_the_truth():
    """95% intervals for beta from sim() quantiles (300 data sets) and bootstrap percentiles
    (60 data sets) contain the true value at about the nominal rate."""
    rng = np.random.default_rng(2024)
    truth = np.array([10.0, 2.0])
    hits_sim = np.zeros(2)
    reps = 300
    hits_boot = np.zeros(3)
    boot_reps = 60
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for r in range(reps):
            fit = mp.lmer("y ~ x + (1 | g)", _simulated_data(rng))
            s = mp.sim(fit, n_sims=2000, seed=r)
            lo, hi = np.quantile(s.fixef.to_numpy(), [0.025, 0.975], axis=0)
            hits_sim += (lo <= truth) & (truth <= hi)
            if r < boot_reps:
                ci = fit.confint(method="boot", nsim=150, seed=r, progress=False)
                est_truth = np.array([1.5, 2.0, 10.0])  # .sig01, .sigma, (Intercept)
                hits_boot += (ci.iloc[:3, 0].to_numpy() <= est_truth) & (est_truth <= ci.iloc[:3, 1].to_numpy())
    cov_sim = hits_sim / reps
    assert np.all((cov_sim > 0.91) & (cov_sim < 0.985)), cov_sim
    cov_boot = hits_boot / boot_reps
    assert np.all(cov_boot > 0.8), cov_boot


# --------------------------------------------------------------------------------------------
# refit(newresp) and the glmer bootstrap
# --------------------------------------------------------------------------------------------


def test_refit_newresp_with_own_response_reproduces_the_fit():
    import mixedpy as mp

    fit = fit_of("Reaction ~ Days + (Days | Subject)", "sleepstudy.csv")
    again = fit.refit(newresp=fit.design.y)
    np.testing.assert_allclose(again.theta, fit.theta, rtol=1e-5)
    shifted = fit.refit(newresp=fit.design.y + 10.0)  # a constant shift moves only the intercept
    np.testing.assert_allclose(shifted.beta, fit.beta + [10.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(shifted.resid, fit.resid, atol=1e-3)  # both stop within the optimizer tolerance
    with pytest.raises(mp.DataError, match="newresp has shape"):
        fit.refit(newresp=np.ones(3))
    g = mp.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", mp.datasets.load("cbpp"),
                 family="binomial")
    g2 = g.refit(newresp=g.problem.resp.y)
    np.testing.assert_allclose(g2.beta, g.beta, rtol=1e-4)
    np.testing.assert_allclose(g2.design.y, g.design.y)
    assert g.refit(reml=False) is g


def test_glmer_bootstrap_rows_and_seed():
    import mixedpy as mp

    g = mp.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", mp.datasets.load("cbpp"),
                 family="binomial")
    a = bootstrap(g, nsim=12, seed=4, progress=False)
    b = bootstrap(g, nsim=12, seed=4, progress=False)
    pd.testing.assert_frame_equal(a.t, b.t)
    assert list(a.t0.index) == [".sig01", "(Intercept)", "period2", "period3", "period4"]  # no .sigma
    assert a.t.notna().all().all()


@pytest.mark.slow
def test_glmer_boot_confint_matches_bootmer():
    """cbpp: percentile intervals within Monte-Carlo error of lme4's confint(method = "boot")."""
    import mixedpy as mp

    ref = load_ref("confint_glmer")["boot"]
    g = mp.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", mp.datasets.load("cbpp"),
                 family="binomial")
    boot = bootstrap(g, nsim=300, seed=2, progress=False)
    ci = boot.confint()
    assert list(ci.index) == ref["rows"]
    tol = _mc_tolerance(boot, nsim_ref=ref["nsim"])
    # about 2-3% of replicates are singular (sd = 0), so the 2.5% quantile of .sig01 sits on the edge
    # of a point mass and is not a smooth Monte-Carlo estimate: that end is checked through the
    # replicate distribution instead
    assert np.all(np.abs(ci.iloc[1:, 0].to_numpy() - ref["lower"][1:]) < tol[1:])
    assert np.all(np.abs(ci.iloc[:, 1].to_numpy() - ref["upper"]) < tol)
    sig = boot.t[".sig01"]
    assert 0.005 < (sig < 1e-4).mean() < 0.06
    se = ref["sd"][0] * np.sqrt(1 / 300 + 1 / ref["nsim"])
    assert abs(sig.mean() - ref["mean"][0]) < 4 * se
    assert sig.std() == pytest.approx(ref["sd"][0], rel=0.15)
    np.testing.assert_allclose(boot.t.median().to_numpy()[1:4], np.asarray(ref["mean"])[1:4], atol=0.1)


def test_glmer_profile_confint_matches_lme4():
    """cbpp: profile intervals of the Laplace deviance over (sd, beta), as lme4's confint(profile(m))."""
    import mixedpy as mp

    ref = load_ref("confint_glmer")["profile"]
    g = mp.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", mp.datasets.load("cbpp"),
                 family="binomial")
    ci = g.confint(method="profile")
    assert list(ci.index) == ref["rows"]
    np.testing.assert_allclose(ci.iloc[:, 0], ref["lower"], rtol=1e-3)
    np.testing.assert_allclose(ci.iloc[:, 1], ref["upper"], rtol=1e-3)
