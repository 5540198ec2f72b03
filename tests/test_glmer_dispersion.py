"""glmer with a dispersion parameter (Gamma, inverse.gaussian, gaussian with a non-identity link)
against lme4 1.1-31 (tests/reference/glmer_dispersion, made by tests/reference/gen/glmer_dispersion.R).

lme4 fits these families with the PIRLS of binomial/Poisson and the Laplace objective
ldL2 + ||u||^2 + aic, where R's ``family$aic`` plugs in the dispersion dev / n (and adds 2); AGQ
uses the deviance residuals only.  sigma() is sqrt((wrss + ||u||^2) / n) and scales VarCorr.
"""
from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import mixedpy as mp
from conftest import load_ref, ref_data
from mixedpy.errors import DataError, FamilyWarning
from mixedpy.families import (Binomial, Gamma, Gaussian, InverseGaussian, NegativeBinomial, Poisson,
                              get_family)

CASES = ["gamma_log", "gamma_log_nagq0", "gamma_log_agq5", "gamma_inverse", "gaussian_log",
         "gamma_log_slope", "gamma_identity", "gaussian_inverse", "invgauss", "invgauss_log", "invgauss_log_nagq0",
         "gamma_log_weights", "gamma_inverse_slope", "gamma_inverse_slope_nagq0"]
_FITS: dict[str, mp.GlmerFit] = {}


def ref(name):
    return load_ref(name, "glmer_dispersion")


def fit_case(name):
    r = ref(name)
    if name not in _FITS:
        _FITS[name] = mp.glmer(r["formula"], ref_data(r["data"]), family=r["family"], link=r["link"],
                               nAGQ=r["nAGQ"], weights=r.get("weights"))
    return _FITS[name], r


def rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-8)))


@pytest.mark.parametrize("name", CASES)
def test_matches_lme4(name):
    fit, r = fit_case(name)
    assert fit.fixef_names == list(r["fixef"])
    assert rel(fit.beta, list(r["fixef"].values())) < 1e-4
    assert rel(fit.theta, r["theta"]) < 1e-4
    assert fit.loglik == pytest.approx(r["logLik"], rel=1e-6)
    assert fit.df == r["df"]
    assert fit.aic == pytest.approx(r["AIC"], rel=1e-6)
    assert fit.bic == pytest.approx(r["BIC"], rel=1e-6)
    assert fit.deviance == pytest.approx(r["deviance"], rel=1e-4)
    assert fit.sigma == pytest.approx(r["sigma"], rel=1e-4)
    assert rel(fit.se_fixef, list(r["se_fixef"].values())) < 2e-3
    np.testing.assert_allclose(fit.fitted[:10], r["fitted_head"], rtol=1e-4)
    np.testing.assert_allclose(fit.residuals("pearson")[:10], r["pearson_head"], rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(fit.resid[:10], r["resid_head"], rtol=1e-3, atol=1e-5)
    p = r["predict"]
    nd = pd.DataFrame(p["newdata"])
    np.testing.assert_allclose(fit.predict(nd, allow_new_levels=True), p["with_re"], rtol=2e-4)
    np.testing.assert_allclose(fit.predict(nd, re_form="NA"), p["fixed_only"], rtol=2e-4)
    np.testing.assert_allclose(fit.predict(nd, allow_new_levels=True, type="response"), p["response"], rtol=2e-4)


@pytest.mark.parametrize("name", ["gamma_log", "gamma_log_slope", "invgauss"])
def test_varcorr_has_residual_row_scaled_by_sigma(name):
    fit, r = fit_case(name)
    got = mp.VarCorr(fit).to_frame()
    want = r["varcorr_df"]
    assert list(got["grp"]) == want["grp"]
    np.testing.assert_allclose(got["vcov"], want["vcov"], rtol=5e-4, atol=1e-7)
    np.testing.assert_allclose(got["sdcor"], want["sdcor"], rtol=5e-4, atol=1e-7)


def strip(text):
    return [line.rstrip().replace("‘", "'").replace("’", "'") for line in text.splitlines()]


@pytest.mark.parametrize("name,exact", [("gamma_log", True), ("gamma_log_agq5", True), ("invgauss", False),
                                        ("gaussian_log", False)])
def test_summary_lines_match_lme4(name, exact):
    """lme4's summary lines; ``exact=False``: the 5th-6th digits of sigma^2 and of the Hessian's SEs
    carry the optimizers' tolerance (~1e-5), so only the layout and the criterion row are compared."""
    fit, r = fit_case(name)
    got = strip(fit.summary())
    want = strip(r["summary"])
    assert got[1] == want[2]                       # " Family: Gamma  ( log )"
    # the criterion row, the random effects with their Residual row, the fixed-effects table
    crit = want.index("     AIC      BIC   logLik deviance df.resid")
    lo, hi = want.index("Random effects:"), next(i for i, w in enumerate(want) if w.startswith("Number of obs"))
    fx, corr = want.index("Fixed effects:"), want.index("Correlation of Fixed Effects:")
    for line in want[crit:crit + 2] + want[lo:hi + 1] + want[fx:corr]:
        if exact or not re.search(r"^ Residual|^\(Intercept\)|^x ", line):
            assert line in got
    res = next(line for line in got if line.startswith(" Residual"))
    assert float(res.split()[1]) == pytest.approx(fit.sigma ** 2, rel=1e-3)
    assert float(res.split()[1]) == pytest.approx(r["sigma"] ** 2, rel=1e-4)
    assert "t value Pr(>|z|)" in got[got.index("Fixed effects:") + 1]


@pytest.mark.parametrize("name", ["gamma_log", "gamma_log_slope", "invgauss", "gaussian_log"])
def test_scaled_residual_quantiles(name):
    fit, r = fit_case(name)
    got = np.asarray(fit.residuals("pearson")) / fit.sigma
    np.testing.assert_allclose(np.quantile(got, [0, 0.25, 0.5, 0.75, 1]), r["scaled_resid_quantiles"], rtol=2e-4)


@pytest.mark.parametrize("name", ["gamma_log", "invgauss", "gamma_log_slope"])
def test_display_matches_arm(name):
    fit, r = fit_case(name)
    text = mp.display(fit, print_output=False)
    want = r["display"]
    assert strip(text[text.index("coef.est"):]) == strip(want[want.index("coef.est"):])


def test_varcorr_print_has_residual():
    fit, r = fit_case("gamma_log")
    assert strip(str(mp.VarCorr(fit)))[:2] == strip(r["varcorr_print"])[:2]
    assert strip(str(mp.VarCorr(fit)))[2].startswith(" Residual             0.5817")


@pytest.mark.parametrize("name", ["gamma_log", "invgauss_log_nagq0"])
def test_wald_confint(name):
    fit, r = fit_case(name)
    ci = mp.confint(fit, method="Wald")
    assert list(ci.index[:2]) == [".sig01", ".sigma"]
    assert ci.iloc[:2].isna().all().all()          # lme4: NA for the variance parameters
    np.testing.assert_allclose(ci.iloc[2:].to_numpy(), r["wald"], rtol=1e-3)


def test_profile_refused_as_lme4():
    fit, _ = fit_case("gamma_log")
    with pytest.raises(mp.MixedpyError, match="can't \\(yet\\) profile GLMMs with non-fixed scale"):
        mp.confint(fit, method="profile")


def test_boot_confint_has_sigma_row():
    fit, _ = fit_case("gamma_log")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ci = mp.confint(fit, method="boot", nsim=20, seed=3)
    assert list(ci.index) == [".sig01", ".sigma", "(Intercept)", "x"]
    lo, hi = ci.iloc[1]
    assert lo < fit.sigma < hi and hi < 1.0      # around sigma-hat = 0.58 (lme4 1.1-31's simulate gives > 1.1)


@pytest.mark.parametrize("name", ["gamma_log", "invgauss", "gaussian_log"])
def test_simulate_uses_the_dispersion(name):
    fit, _ = fit_case(name)
    y = fit.simulate(nsim=400, seed=5, re_form=None).to_numpy()
    mu = np.asarray(fit.fitted)
    np.testing.assert_allclose(y.mean(axis=1).mean(), mu.mean(), rtol=0.02)
    phi = np.mean((y - mu[:, None]) ** 2 / fit.family.variance(mu)[:, None])
    assert phi == pytest.approx(fit.sigma ** 2, rel=0.03)
    if fit.family.name != "gaussian":
        assert np.all(y > 0)
    nd = pd.DataFrame({"x": [0.1, 0.5], "g": ["g01", "NEW"]})
    assert fit.simulate(nsim=2, seed=1, newdata=nd, allow_new_levels=True).shape == (2, 2)


def test_arm_sim_has_no_scale_draws_and_predictive_draws_use_phi():
    fit, _ = fit_case("gamma_log")
    s = mp.sim(fit, n_sims=200, seed=2)
    assert s.sigma is None                          # arm's sim.merMod: sigma NA for every GLMM
    nd = pd.DataFrame({"x": np.zeros(2000), "g": ["g01"] * 2000})
    y = mp.predictive_draws(s, newdata=nd, seed=4, re_form=None)
    assert np.all(y > 0)
    mu = mp.predictive_draws(s, newdata=nd, seed=4, re_form=None, what="mu")
    assert np.var(y / mu) == pytest.approx(fit.sigma ** 2, rel=0.1)


# -- families ------------------------------------------------------------------------------------------
FF = None


def family_ref():
    global FF
    if FF is None:
        FF = ref("family_functions")
    return FF


MAKERS = {"Gamma": Gamma, "inverse.gaussian": InverseGaussian, "gaussian": Gaussian}


@pytest.mark.parametrize("fname", list(MAKERS))
def test_family_functions_match_r(fname):
    ff = family_ref()
    y, mu, wt = (np.asarray(ff[k], float) for k in ("y", "mu", "wt"))
    want = ff["families"][fname]
    for lname, lw in want["links"].items():
        fam = get_family(fname, lname)
        assert isinstance(fam, MAKERS[fname]) and fam.link.name == lname
        np.testing.assert_allclose(fam.linkfun(mu), lw["linkfun"], rtol=1e-12)
        np.testing.assert_allclose(fam.linkinv(np.asarray(lw["linkfun"])), lw["linkinv"], rtol=1e-12)
        np.testing.assert_allclose(fam.mu_eta(np.asarray(lw["linkfun"])), lw["mu_eta"], rtol=1e-12)
    fam = MAKERS[fname]()
    resp = fam.prepare(y, wt)
    np.testing.assert_allclose(fam.variance(mu), want["variance"], rtol=1e-12)
    np.testing.assert_allclose(fam.dev_resids(y, mu, wt), want["dev_resids"], rtol=1e-12)
    assert fam.aic(resp, mu) == pytest.approx(want["aic"], rel=1e-12)
    # the plug-in per-observation log-likelihood sums to -(aic - 2) / 2
    eta = fam.linkfun(mu)
    assert fam.loglik_eta(eta, resp).sum() == pytest.approx(-(want["aic"] - 2) / 2, rel=1e-12)


def test_default_links_are_r_defaults():
    assert Gamma().link.name == "inverse"
    assert InverseGaussian().link.name == "1/mu^2"
    assert Gaussian().link.name == "identity"
    assert str(get_family("gamma", "log")) == "Gamma(log)"
    with pytest.raises(ValueError, match="not available for family 'Gamma'"):
        Gamma("logit")


@pytest.mark.parametrize("fam,aux,logpdf", [
    (Gamma("log"), 2.5, lambda y, mu, a: stats.gamma.logpdf(y, a, scale=mu / a)),
    (InverseGaussian("log"), 3.0, lambda y, mu, lam: stats.invgauss.logpdf(y, mu / lam, scale=lam)),
    (Gaussian("log"), 0.7, lambda y, mu, s: stats.norm.logpdf(y, mu, s)),
])
def test_loglik_eta_with_aux_is_rstanarm_density(fam, aux, logpdf):
    rng = np.random.default_rng(1)
    y = rng.gamma(3.0, 0.5, 50)
    eta = rng.normal(0.2, 0.3, (4, 50))            # leading axis: draws
    resp = fam.prepare(y, None)
    mu = fam.linkinv(eta)
    np.testing.assert_allclose(fam.loglik_eta(eta, resp, aux=aux), logpdf(y, mu, aux), rtol=1e-10)
    auxes = np.array([1.0, 2.0, 3.0, 4.0])        # one aux per draw
    np.testing.assert_allclose(fam.loglik_eta(eta, resp, aux=auxes), logpdf(y, mu, auxes[:, None]), rtol=1e-10)
    # const is the data-only part
    np.testing.assert_allclose(fam.loglik_eta(eta, resp, const=fam.loglik_const(resp), aux=aux),
                               logpdf(y, mu, aux), rtol=1e-10)
    # score = d l / d eta (central differences), information = w mu_eta^2 / (phi V)
    score, info = fam.score_info(eta, resp, aux=auxes)
    h = 1e-6
    num = (fam.loglik_eta(eta + h, resp, aux=auxes) - fam.loglik_eta(eta - h, resp, aux=auxes)) / (2 * h)
    np.testing.assert_allclose(score, num, rtol=1e-6, atol=1e-8)
    phi = fam.dispersion_from_aux(auxes)[:, None]
    np.testing.assert_allclose(info, fam.mu_eta(eta) ** 2 / (phi * fam.variance(mu)), rtol=1e-12)
    # E[score^2] = information (a Monte Carlo check of the Fisher information at one eta)
    e1 = np.full(20000, 0.3)
    draws = fam.simulate(np.random.default_rng(2), fam.linkinv(e1), fam.prepare(np.ones(20000), None),
                         dispersion=float(fam.dispersion_from_aux(aux)))
    if fam.name != "gaussian":
        s, i = fam.score_info(e1, fam.prepare(draws, None), aux=aux)
        assert np.mean(s ** 2) == pytest.approx(i[0], rel=0.05)


def test_aux_names_and_dispersion_maps():
    assert (Gamma().aux_name, InverseGaussian().aux_name, Gaussian().aux_name) == ("shape", "lambda", "sigma")
    assert Gamma().aux_from_dispersion(0.25) == pytest.approx(4.0)
    assert InverseGaussian().aux_from_dispersion(0.5) == pytest.approx(2.0)
    assert Gaussian().aux_from_dispersion(4.0) == pytest.approx(2.0)
    assert Binomial().aux_name is None and Binomial().aux_from_dispersion(1.0) is None
    assert not Poisson().has_dispersion and Gamma().has_dispersion
    # binomial / poisson accept aux=None
    resp = Poisson().prepare(np.array([1.0, 3.0]), None)
    np.testing.assert_allclose(Poisson().loglik_eta(np.zeros(2), resp, aux=None), stats.poisson.logpmf([1, 3], 1.0))
    assert len(Poisson().score_info(np.zeros(2), resp, aux=None)) == 2


def test_statsmodels_family_objects():
    sm = pytest.importorskip("statsmodels.api")
    cases = [(sm.families.Gamma(sm.families.links.Log()), Gamma, "log"),
             (sm.families.Gamma(), Gamma, "inverse"),
             (sm.families.InverseGaussian(), InverseGaussian, "1/mu^2"),
             (sm.families.Gaussian(sm.families.links.Log()), Gaussian, "log"),
             (sm.families.Binomial(), Binomial, "logit"),
             (sm.families.Binomial(sm.families.links.CLogLog()), Binomial, "cloglog"),
             (sm.families.Poisson(), Poisson, "log")]
    for smf, cls, link in cases:
        fam = get_family(smf)
        assert type(fam) is cls and fam.link.name == link
    nb = get_family(sm.families.NegativeBinomial(alpha=0.5))
    assert isinstance(nb, NegativeBinomial) and nb.theta == pytest.approx(2.0)
    with pytest.raises(ValueError, match="no glmer equivalent"):
        get_family(sm.families.Tweedie())
    fit, r = fit_case("gamma_log")
    f2 = mp.glmer(r["formula"], ref_data(r["data"]), family=sm.families.Gamma(sm.families.links.Log()))
    assert f2.loglik == pytest.approx(fit.loglik, rel=1e-10)


@pytest.mark.parametrize("family,link", [("Gamma", "log"), ("inverse.gaussian", None), ("gaussian", "log")])
def test_non_positive_response_is_an_error_naming_the_column(family, link):
    d = ref_data("gamma_log.csv").rename(columns={"y": "time"})
    d.loc[3, "time"] = 0.0
    with pytest.raises(DataError, match="response 'time' has 1 value.*first 0 at row 3"):
        mp.glmer("time ~ x + (1 | g)", d, family=family, link=link)


def test_gaussian_identity_warns_and_fits_lmer():
    d = ref_data("gamma_log.csv")
    with pytest.warns(FamilyWarning, match="shortcut to lmer"):
        f = mp.glmer("y ~ x + (1 | g)", d, family="gaussian")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = mp.lmer("y ~ x + (1 | g)", d)
    assert isinstance(f, mp.LmerFit) and f.reml
    assert f.loglik == pytest.approx(want.loglik, rel=1e-12)


def test_dask_frame_is_refused_for_dispersion_families():
    dd = pytest.importorskip("dask.dataframe")
    d = dd.from_pandas(ref_data("gamma_log.csv"), npartitions=2)
    with pytest.raises(NotImplementedError, match="not Gamma"):
        mp.glmer("y ~ x + (1 | g)", d, family="Gamma", link="log")


def test_tidy_has_z_p_values_as_summary():
    fit, r = fit_case("invgauss")
    td = mp.tidy(fit, effects="fixed")
    # summary(glmer) prints "t value" and Pr(>|z|) for a family with a dispersion: 6.37e-07 and 0.0431
    np.testing.assert_allclose(td["p.value"], [6.37e-07, 0.0431], rtol=2e-3)


def test_inverse_link_slope_from_lme4s_stage1_theta_reaches_lme4s_optimum():
    """Gamma(inverse) with (x | g): the nAGQ = 0 objective is multimodal.  Started at lme4's stage-1
    theta, both stages reproduce lme4 (so the objective is lme4's); the default start is tested below."""
    r, r0 = ref("gamma_inverse_slope"), ref("gamma_inverse_slope_nagq0")
    d = ref_data(r["data"])
    f0 = mp.glmer(r["formula"], d, family="Gamma", nAGQ=0, start=r0["theta"])
    assert rel(f0.theta, r0["theta"]) < 1e-4 and f0.loglik == pytest.approx(r0["logLik"], rel=1e-8)
    f = mp.glmer(r["formula"], d, family="Gamma", start={"theta": r0["theta"]})
    assert rel(f.theta, r["theta"]) < 1e-4 and rel(f.beta, list(r["fixef"].values())) < 1e-4
    assert f.loglik == pytest.approx(r["logLik"], rel=1e-8)


@pytest.mark.parametrize("name", ["gamma_inverse_slope", "gamma_inverse_slope_nagq0"])
def test_inverse_link_slope_from_the_default_start_restarts_off_the_boundary(name):
    """From the default start NLopt's BOBYQA (2n + 1 interpolation points) takes stage 1 to a singular
    local optimum (nAGQ = 0 deviance 1417.98) where lme4's minqa BOBYQA (n + 2 points) reaches the
    interior one (1385.89); the restart off the boundary reaches lme4's optimum (test_matches_lme4
    checks every number) and says so with a MixedpyInfo note."""
    r = ref(name)
    with pytest.warns(mp.MixedpyInfo, match=r"stage-1 \(nAGQ = 0\) optimizer stopped on the boundary.*lower objective"):
        f = mp.glmer(r["formula"], ref_data(r["data"]), family="Gamma", nAGQ=r["nAGQ"])
    restart = f.result.boundary_restart
    assert restart.accepted and restart.on_boundary == (0,)
    assert restart.f == pytest.approx(-2 * ref("gamma_inverse_slope_nagq0")["logLik"], rel=1e-8)
    assert rel(f.theta, r["theta"]) < 1e-4 and f.loglik == pytest.approx(r["logLik"], rel=1e-8)
    assert f.is_singular is ref(name)["is_singular"] is False
