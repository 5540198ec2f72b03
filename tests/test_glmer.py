"""glmer against lme4 1.1-31 (tests/reference/lme4, made by R), PIRLS against a dense NumPy
computation, parameter recovery from simulated data, and the errors and warnings users meet.

lme4's objective restarts PIRLS from a stored linear predictor, and mixedpy does the same, so the
objective is the same function of (theta, beta): logLik agrees to ~1e-8.  The optimizers differ
(lme4: minqa bobyqa then Nelder-Mead; mixedpy: NLopt BOBYQA for both stages), so estimates agree
to the optimizers' tolerance, ~1e-5 relative, and are held to 1e-4 (SEs from the finite-difference
Hessian to 1e-3).
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import mixedpy as mp
from conftest import load_ref, ref_data
from mixedpy.errors import DataError
from mixedpy.families import binomial
from mixedpy.formula.design import build_design
from mixedpy.glmm import GLMMProblem, PIRLSError, SeparationWarning, fit_glmm, gh_rule

CASES = ["cbpp_laplace", "cbpp_agq25", "cbpp_agq9", "cbpp_nagq0", "cbpp_probit", "cbpp_prop_weights",
         "grouseticks_poisson", "grouseticks_offset", "cbpp_cloglog", "binary_slope"]
SLOW_CASES = ["verbagg_crossed"]
FIT_CACHE: dict[str, mp.GlmerFit] = {}


def fit_case(name: str):
    ref = load_ref(name)
    if name not in FIT_CACHE:
        data = ref_data(ref["data"])
        kw = {}
        if "weights" in ref:
            kw["weights"] = ref["weights"]
        if "offset" in ref:
            kw["offset"] = ref["offset"].split("=")[0].strip()
        FIT_CACHE[name] = mp.glmer(ref["formula"], data, family=ref["family"], link=ref["link"],
                                   nAGQ=ref["nAGQ"], **kw)
    return FIT_CACHE[name], ref


def rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-8)))


def _check_reference(name):
    fit, ref = fit_case(name)
    assert fit.fixef_names == list(ref["fixef"])
    assert rel(fit.beta, list(ref["fixef"].values())) < 1e-4
    assert rel(fit.se_fixef, list(ref["se_fixef"].values())) < 1e-3
    assert rel(fit.theta, ref["theta"]) < 1e-4
    names = ref["theta_names"]
    assert fit.theta_names == ([names] if isinstance(names, str) else names)
    assert fit.loglik == pytest.approx(ref["logLik"], rel=1e-7)
    assert fit.df == ref["df"]
    assert fit.aic == pytest.approx(ref["AIC"], rel=1e-7)
    assert fit.bic == pytest.approx(ref["BIC"], rel=1e-7)
    assert fit.deviance == pytest.approx(ref["deviance_ml"], rel=1e-4)
    assert fit.nobs == ref["nobs"]
    assert fit.ngrps == ref["ngrps"]
    assert fit.is_singular == ref["is_singular"]
    assert fit.sigma == 1.0
    V = np.asarray(ref["vcov"], float) if isinstance(ref["vcov"], list) else None
    if V is not None:  # on the correlation scale: tiny covariances carry the Hessian's noise
        sd = np.sqrt(np.diag(V))
        np.testing.assert_allclose(fit.vcov_array / np.outer(sd, sd), V / np.outer(sd, sd), atol=3e-3)
    np.testing.assert_allclose(fit.fitted[:10], ref["fitted_head"], rtol=2e-4)
    np.testing.assert_allclose(fit.resid[:10], ref["resid_head"], rtol=1e-3, atol=1e-4)
    re = mp.ranef(fit, condvar=True)
    for g, r in ref["ranef"].items():
        # R orders VerbAgg's items by its factor levels (lost in the CSV): align on the labels
        assert sorted(re[g].index) == sorted(r["levels"])
        got = re[g].loc[r["levels"]]
        np.testing.assert_allclose(got.to_numpy(), np.asarray(r["values"]), rtol=1e-3, atol=2e-4)
        sd = re[g].attrs["condsd"].loc[r["levels"]]
        np.testing.assert_allclose(sd.to_numpy(), np.asarray(r["condsd"]), rtol=1e-3)
    co = mp.coef(fit)
    for g, c in ref["coef"].items():
        np.testing.assert_allclose(co[g].loc[c["levels"]].to_numpy(), np.asarray(c["values"]), rtol=1e-3,
                                   atol=2e-4)
    if "predict" in ref:
        p = ref["predict"]
        nd = pd.DataFrame(p["newdata"])
        np.testing.assert_allclose(fit.predict(nd, allow_new_levels=True), p["with_re"], rtol=2e-4)
        np.testing.assert_allclose(fit.predict(nd, re_form="NA"), p["fixed_only"], rtol=2e-4)
        np.testing.assert_allclose(fit.predict(nd, allow_new_levels=True, type="response"), p["response"],
                                   rtol=2e-4)


@pytest.mark.parametrize("name", CASES)
def test_reference(name):
    _check_reference(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW_CASES)
def test_reference_slow(name):
    _check_reference(name)


@pytest.mark.parametrize("name", CASES)
def test_display_matches_arm(name):
    fit, ref = fit_case(name)
    text = mp.display(fit, print_output=False)
    want = ref["display"]
    assert text[text.index("coef.est"):] == want[want.index("coef.est"):]


def test_sim_matches_arm_moments():
    fit, ref = fit_case("cbpp_laplace")
    s = mp.sim(fit, n_sims=4000, seed=11)
    assert s.sigma is None or np.all(np.isnan(np.atleast_1d(s.sigma)))
    fx = np.asarray(s.fixef)
    # arm draws beta from R_X of the final PIRLS weights (quirk d): compare with its own moments
    np.testing.assert_allclose(fx.mean(axis=0), ref["sim"]["fixef_mean"], atol=0.02)
    np.testing.assert_allclose(fx.std(axis=0), ref["sim"]["fixef_sd"], rtol=0.06)
    assert s.ranef["herd"].shape == (4000, 15, 1)


def test_summary_layout():
    fit, _ = fit_case("cbpp_laplace")
    text = fit.summary()
    lines = text.splitlines()
    assert lines[0] == ("Generalized linear mixed model fit by maximum likelihood (Laplace Approximation) "
                        "[glmerMod]")
    assert lines[1] == " Family: binomial  ( logit )"
    # the lines below are copied from lme4 1.1-31's summary(gm) in R
    for want in ["     AIC      BIC   logLik deviance df.resid ",
                 "   194.1    204.2    -92.0    184.1       51 ",
                 "            Estimate Std. Error z value Pr(>|z|)    ",
                 "(Intercept)  -1.3983     0.2312  -6.048 1.47e-09 ***",
                 "period2      -0.9919     0.3032  -3.272 0.001068 ** ",
                 "period3      -1.1282     0.3228  -3.495 0.000474 ***",
                 "-2.3816 -0.7889 -0.2026  0.5143  2.8791 ",
                 "Number of obs: 56, groups:  herd, 15",
                 "period2 -0.363              ",
                 "period4 -0.260  0.213  0.198"]:
        assert want in lines, want
    agq, _ = fit_case("cbpp_agq9")
    assert "(Adaptive Gauss-Hermite Quadrature, nAGQ = 9)" in agq.summary().splitlines()[0]
    assert "192.0" not in repr(fit) and "194.0531" in repr(fit)


def test_accessors():
    fit, ref = fit_case("grouseticks_poisson")
    sh = mp.sigma_hat(fit)
    assert sh["data"] == 1.0
    np.testing.assert_allclose(sh["BROOD"].to_numpy(), [ref["varcorr"][0]["sd"][0]], rtol=1e-4)
    vc = mp.VarCorr(fit).to_frame()
    assert list(vc["grp"]) == ["BROOD", "LOCATION"]
    assert mp.fixef(fit).index.tolist() == list(ref["fixef"])
    se = mp.se_fixef(fit)
    assert se.to_numpy() == pytest.approx(fit.se_fixef)
    assert fit.converged
    assert set(mp.se_ranef(fit)) == {"BROOD", "LOCATION"}
    # fitted is mu; predict on the response scale without newdata gives the same
    np.testing.assert_allclose(fit.predict(type="response"), fit.fitted)
    np.testing.assert_allclose(np.log(fit.fitted), fit.predict())
    pear = fit.residuals("pearson")
    np.testing.assert_allclose(pear, (fit.problem.y - fit.fitted) / np.sqrt(fit.fitted))
    with pytest.raises(ValueError, match="type must be"):
        fit.residuals("raw")
    with pytest.raises(DataError, match="new levels"):
        fit.predict(pd.DataFrame({"YEAR": ["95"], "cHEIGHT": [0.0], "BROOD": ["zzz"], "LOCATION": ["32"]}))


def test_anova_likelihood_ratio():
    fit, _ = fit_case("cbpp_laplace")
    data = ref_data("cbpp.csv")
    small = mp.glmer("cbind(incidence, size - incidence) ~ 1 + (1 | herd)", data, family="binomial")
    tab = mp.anova(small, fit, names=["small", "full"])
    assert tab.loc["full", "Chisq"] == pytest.approx(2 * (fit.loglik - small.loglik), rel=1e-10)
    assert tab.loc["full", "Df"] == 3


def test_simulate():
    fit, _ = fit_case("cbpp_laplace")
    sims = fit.simulate(nsim=300, seed=5)
    assert sims.shape == (56, 300)
    trials = fit.trials
    counts = sims.to_numpy() * trials[:, None]
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-9)
    g, _ = fit_case("grouseticks_poisson")
    ys = g.simulate(nsim=200, seed=6, re_form=None).to_numpy()
    np.testing.assert_array_equal(ys, np.round(ys))
    # conditional on the modes, the mean of the simulated counts is mu-hat
    assert np.mean(ys.mean(axis=1) - g.fitted) == pytest.approx(0.0, abs=0.1)


# -- kernels against dense NumPy ---------------------------------------------------------------
def _cbpp_problem(link="logit"):
    d = ref_data("cbpp.csv")
    des = build_design("cbind(incidence, size - incidence) ~ period + (1 | herd)", d)
    fam = binomial(link)
    return GLMMProblem(des.terms, des.X, fam.prepare(des.y, None), fam, des.offset), des


def _dense_mode(problem, theta, beta):
    """Newton's method on pdev(u) = sum d_i + ||u||^2 with a dense Z; returns u-hat and the Laplace
    objective log|Lambda'Z'WZ Lambda + I| + ||u||^2 + aic at u-hat."""
    Z = np.hstack([t.z_matrix().toarray() for t in problem.terms])
    Lam = np.diag(np.concatenate([np.full(t.n_levels, th) for t, th in zip(problem.terms, theta)]))
    ZL = Z @ Lam
    fam, y, wt = problem.family, problem.y, problem.wt
    off = problem.offset + problem.X @ beta
    u = np.zeros(Z.shape[1])
    for _ in range(50):
        eta = off + ZL @ u
        mu, me = fam.linkinv(eta), fam.mu_eta(eta)
        w = me ** 2 * wt / fam.variance(mu)
        grad = ZL.T @ (wt * (y - mu) * me / fam.variance(mu)) - u
        H = ZL.T @ (w[:, None] * ZL) + np.eye(len(u))
        step = np.linalg.solve(H, grad)
        u = u + step
        if np.max(np.abs(step)) < 1e-13:
            break
    eta = off + ZL @ u
    mu = fam.linkinv(eta)
    w = fam.mu_eta(eta) ** 2 * wt / fam.variance(mu)
    H = ZL.T @ (w[:, None] * ZL) + np.eye(len(u))
    obj = np.linalg.slogdet(H)[1] + u @ u + fam.aic(problem.resp, mu)
    return u, obj


@pytest.mark.parametrize("link", ["logit", "probit", "cloglog"])
def test_pirls_against_dense_newton(link):
    problem, _ = _cbpp_problem(link)
    theta, beta = np.array([0.8]), np.array([-1.2, -0.9, -1.0, -1.4])
    st = problem.pirls(theta, beta, problem.initial_eta(), tol=1e-14, refactor=True)
    u, obj = _dense_mode(problem, theta, beta)
    np.testing.assert_allclose(st.u, u, atol=1e-8)
    assert problem.laplace(st) == pytest.approx(obj, abs=1e-8)


def test_pirls_joint_solves_beta_too():
    problem, _ = _cbpp_problem()
    theta = np.array([0.7])
    st = problem.pirls(theta, None, problem.initial_eta(), tol=1e-14)
    # at the joint mode, beta is the mode for fixed beta as well: PIRLS over u alone does not move
    st_u = problem.pirls(theta, st.beta, st.eta, tol=1e-14)
    np.testing.assert_allclose(st_u.u, st.u, atol=1e-7)
    # and the score for beta vanishes
    fam = problem.family
    score = problem.X.T @ (problem.wt * (problem.y - st.mu) * fam.mu_eta(st.eta) / fam.variance(st.mu))
    np.testing.assert_allclose(score, 0.0, atol=1e-6)


def test_agq_with_one_node_is_laplace_up_to_the_saturated_constant():
    problem, _ = _cbpp_problem()
    diffs = []
    for theta, beta in [(0.5, [-1.3, -1, -1.1, -1.5]), (0.9, [-1.5, -0.8, -1.2, -1.7])]:
        st = problem.pirls(np.array([theta]), np.array(beta), problem.initial_eta(), tol=1e-12)
        diffs.append(problem.agq(st, 1) - problem.laplace(st))
    # aic - sum(d_i) does not depend on the parameters, so the objectives differ by a constant
    assert diffs[0] == pytest.approx(diffs[1], abs=1e-6)


def test_agq_converges_with_more_nodes():
    problem, _ = _cbpp_problem()
    st = problem.pirls(np.array([0.65]), np.array([-1.4, -1.0, -1.13, -1.58]), problem.initial_eta(), tol=1e-12)
    vals = {k: problem.agq(st, k) for k in (3, 5, 9, 15, 25)}
    assert abs(vals[25] - vals[15]) < 1e-6
    assert abs(vals[9] - vals[25]) < abs(vals[3] - vals[25])
    z, w, ldn = gh_rule(3)
    np.testing.assert_allclose(z, [-np.sqrt(3), 0, np.sqrt(3)], atol=1e-14)
    np.testing.assert_allclose(w, [1 / 6, 2 / 3, 1 / 6], atol=1e-14)


def test_nagq1_and_default_agree():
    fit, _ = fit_case("cbpp_laplace")
    data = ref_data("cbpp.csv")
    again = mp.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", data, family="binomial")
    np.testing.assert_allclose(again.beta, fit.beta)
    assert fit.nAGQ == 1


def test_hessian_and_rx_vcov_are_close():
    fit, _ = fit_case("cbpp_laplace")
    rx = np.sqrt(np.diag(fit.state.factor.unscaled_vcov()))
    assert fit.vcov_source == "Hessian"
    assert rx[0] == pytest.approx(0.22785, abs=2e-4)  # ALGORITHMS.md 2.3
    np.testing.assert_allclose(fit.se_fixef, rx, rtol=0.03)


# -- recovery from simulated data -----------------------------------------------------------
def _simulated(family: str, seed: int, J=80, m=25):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(J), m)
    x = rng.normal(size=J * m)
    b = rng.normal(0, 0.8, J)
    eta = -0.3 + 0.7 * x + b[g]
    if family == "binomial":
        y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    else:
        y = rng.poisson(np.exp(eta))
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{v}" for v in g]})


@pytest.mark.parametrize("family", ["binomial", "poisson"])
def test_recovers_parameters(family):
    est = []
    for seed in range(3):
        d = _simulated(family, seed)
        fit = mp.glmer("y ~ x + (1 | g)", d, family=family)
        z = (fit.beta - np.array([-0.3, 0.7])) / fit.se_fixef
        assert np.all(np.abs(z) < 4), (seed, fit.beta, fit.se_fixef)
        est.append(fit.theta[0])
    assert np.mean(est) == pytest.approx(0.8, abs=0.2)


def test_offset_and_poisson_rate():
    rng = np.random.default_rng(7)
    J, m = 60, 15
    g = np.repeat(np.arange(J), m)
    expo = rng.uniform(0.5, 5, J * m)
    y = rng.poisson(expo * np.exp(0.4 + rng.normal(0, 0.5, J)[g]))
    d = pd.DataFrame({"y": y, "g": g.astype(str), "logE": np.log(expo)})
    a = mp.glmer("y ~ 1 + (1 | g)", d, family="poisson", offset="logE")
    b = mp.glmer("y ~ 1 + offset(logE) + (1 | g)", d, family="poisson")
    np.testing.assert_allclose(a.beta, b.beta, rtol=1e-6)
    assert a.beta[0] == pytest.approx(0.4, abs=4 * a.se_fixef[0])


# -- errors and warnings ---------------------------------------------------------------------
def test_errors_users_can_act_on():
    cb = ref_data("cbpp.csv")
    gt = ref_data("grouseticks.csv")
    with pytest.raises(ValueError, match="single, scalar random-effects term"):
        mp.glmer("TICKS ~ YEAR + (1 | BROOD) + (1 | LOCATION)", gt, family="poisson", nAGQ=5)
    with pytest.raises(ValueError, match="at most 25"):
        mp.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cb, family="binomial", nAGQ=30)
    bad = gt.assign(T2=gt["TICKS"] + 0.5)
    with pytest.raises(DataError, match="non-integer"):
        mp.glmer("T2 ~ YEAR + (1 | BROOD)", bad, family="poisson")
    with pytest.raises(DataError, match="successes exceed trials"):
        mp.glmer("cbind(incidence, size) ~ period + (1 | herd)", cb.assign(size=cb["size"] - 20),
                 family="binomial")
    with pytest.raises(DataError, match="0/1 or a proportion"):
        mp.glmer("incidence ~ period + (1 | herd)", cb, family="binomial")
    with pytest.raises(ValueError, match="unknown family"):
        mp.glmer("incidence ~ period + (1 | herd)", cb, family="tweedie")
    with pytest.raises(DataError, match="constant"):
        mp.glmer("z ~ period + (1 | herd)", cb.assign(z=0), family="binomial")
    with pytest.raises(ValueError, match="start fixef"):
        mp.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cb, family="binomial",
                 start={"theta": [1.0], "fixef": [0.0]})


def test_separation_warning():
    rng = np.random.default_rng(3)
    n = 200
    g = rng.integers(0, 10, n)
    x = rng.integers(0, 2, n).astype(float)
    y = np.where(x == 1, 1, rng.integers(0, 2, n))
    d = pd.DataFrame({"y": y, "x": x, "g": g.astype(str)})
    with warnings.catch_warnings():
        # the optimizer also (rightly) reports the flat likelihood; this test is about separation
        warnings.simplefilter("ignore", mp.ConvergenceWarning)
        with pytest.warns(SeparationWarning, match="separation"):
            mp.glmer("y ~ x + (1 | g)", d, family="binomial")


def test_pirls_failure_is_reported():
    problem, _ = _cbpp_problem()
    with pytest.raises(PIRLSError, match="did not converge"):
        problem.pirls(np.array([1.0]), None, problem.initial_eta(), tol=1e-300, maxit=2)


def test_start_values_are_used():
    cb = ref_data("cbpp.csv")
    fit, _ = fit_case("cbpp_laplace")
    again = mp.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cb, family="binomial",
                     start={"theta": fit.theta, "fixef": fit.beta})
    np.testing.assert_allclose(again.beta, fit.beta, rtol=1e-3)
    problem, _ = _cbpp_problem()
    res = fit_glmm(problem, nAGQ=1, start=[0.5], calc_derivs=False)
    assert res.vcov_source == "RX"
    assert res.opt_stage1.x0[0] == 0.5


def test_one_level_per_row_is_allowed_for_glmm():
    """lme4's glFormula allows as many levels as rows (an observation-level random effect), lmer does not."""
    frogs = mp.datasets.load("reedfrogs")
    fit = mp.glmer("cbind(surv, density - surv) ~ 1 + (1 | tank)", frogs, family="binomial")
    assert fit.ngrps == {"tank": 48}
    frogs = frogs.assign(y=frogs["surv"] / frogs["density"])
    with pytest.raises(mp.DataError, match="48 levels for 48 observations"):
        mp.lmer("y ~ 1 + (1 | tank)", frogs)
