"""Structured covariance terms: us(), diag(), cs(), homcs(), ar1() (issue 13, part 3).

Reference values: tests/reference/gen/covstruct.R (glmmTMB 1.1.5 for cs, ar1, diag, us, REML and ML
and two glmers; lme4 1.1-31 with lmerTest/pbkrtest for the fits that us(), diag() and homcs() must
reproduce: (x | g), (x || g) and, for rho >= 0, (1 | g) + (1 | g:f)).
"""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedpy as mp
from mixedpy.covstruct import (AR1, CompoundSymmetry, Diagonal, HomogeneousCompoundSymmetry, Unstructured,
                               make_structure)
from mixedpy.errors import FormulaError, MixedpyError
from mixedpy.formula.bars import BarTerm, parse_formula
from mixedpy.kenward_roger import kr_adjusted
from mixedpy.satterthwaite import varpar_covariance
from mixedpy.sdcor import SdCorMap

REF_DIR = Path(__file__).parent / "reference" / "covstruct"
REF = json.loads((REF_DIR / "covstruct.json").read_text())
DATA = pd.read_csv(REF_DIR / "repeated.csv")

#: glmmTMB's estimates are converged to about 1e-5; the log-likelihoods agree far more closely
LOGLIK_RTOL = 1e-8
PAR_RTOL = 2e-4


def _lmer(formula, reml):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mp.errors.MixedpyWarning)
        return mp.lmer(formula, DATA, REML=reml)


def _glmer(formula, family):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mp.errors.MixedpyWarning)
        return mp.glmer(formula, DATA, family=family)


_fits: dict = {}


def fit_of(formula, reml=True, family=None):
    key = (formula, reml, family)
    if key not in _fits:
        _fits[key] = _lmer(formula, reml) if family is None else _glmer(formula, family)
    return _fits[key]


def _check_against(fit, ref, loglik_rtol=LOGLIK_RTOL, par_rtol=PAR_RTOL):
    np.testing.assert_allclose(fit.loglik, ref["logLik"], rtol=loglik_rtol)
    assert fit.df == ref["df"]
    np.testing.assert_allclose(fit.beta, list(ref["fixef"].values()), rtol=par_rtol, atol=par_rtol)
    vc = mp.VarCorr(fit).terms[0]
    r = ref["varcorr"]["subj"]
    np.testing.assert_allclose(vc.sd, r["sd"], rtol=par_rtol)
    np.testing.assert_allclose(vc.corr, r["corr"], atol=par_rtol)
    if "sigma" in ref:
        np.testing.assert_allclose(fit.sigma, ref["sigma"], rtol=par_rtol)


# ----------------------------------------------------------------------------------------------
# fits against glmmTMB and lme4
# ----------------------------------------------------------------------------------------------

LMM_CASES = [("cs", "y ~ time + cs(0 + time | subj)"), ("ar1", "y ~ time + ar1(0 + time | subj)"),
             ("us_tmb", "y ~ x + us(x | subj)"), ("diag_tmb", "y ~ x + diag(x | subj)"),
             ("diag_factor_tmb", "y ~ time + diag(time | subj)")]


@pytest.mark.parametrize("reml", [True, False], ids=["reml", "ml"])
@pytest.mark.parametrize("case,formula", LMM_CASES, ids=[c for c, _ in LMM_CASES])
def test_lmer_structured_matches_glmmtmb(case, formula, reml):
    _check_against(fit_of(formula, reml), REF[f"{case}_{'reml' if reml else 'ml'}"])


@pytest.mark.parametrize("reml", [True, False], ids=["reml", "ml"])
def test_us_is_lme4s_unstructured_term(reml):
    """us(x | g) is lme4's (x | g): the same theta (bit for bit) and lme4's fit."""
    fit = fit_of("y ~ x + us(x | subj)", reml)
    plain = fit_of("y ~ x + (x | subj)", reml)
    np.testing.assert_array_equal(fit.theta, plain.theta)
    assert fit.theta_names == plain.theta_names == ["subj.(Intercept)", "subj.x.(Intercept)", "subj.x"]
    ref = REF[f"us_lme4_{'reml' if reml else 'ml'}"]
    np.testing.assert_allclose(fit.loglik, ref["logLik"], rtol=1e-10)
    np.testing.assert_allclose(fit.theta, ref["theta"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("reml", [True, False], ids=["reml", "ml"])
def test_diag_is_lme4s_double_bar_for_numeric_x(reml):
    """diag(x | g) is one term with T = diag(theta): lme4's (x || g), i.e. (1 | g) + (0 + x | g)."""
    fit = fit_of("y ~ x + diag(x | subj)", reml)
    ref = REF[f"diag_lme4_{'reml' if reml else 'ml'}"]
    np.testing.assert_allclose(fit.loglik, ref["logLik"], rtol=1e-10)
    np.testing.assert_allclose(fit.theta, ref["theta"], rtol=1e-4)
    np.testing.assert_allclose(mp.VarCorr(fit).terms[0].sd,
                               [ref["varcorr"]["subj"]["sd"], ref["varcorr"]["subj.1"]["sd"]], rtol=1e-4)
    assert fit.df == ref["df"]
    assert fit.theta_names == ["subj.(Intercept)", "subj.x"]


def test_diag_of_a_factor_is_glmmtmbs_not_lme4_11s_double_bar():
    """For a factor, diag(time | g) makes every model-matrix column independent (glmmTMB); lme4
    1.1's (time || g) keeps the factor's dummies in one unstructured term, a different model."""
    fit = fit_of("y ~ time + diag(time | subj)", True)
    assert mp.VarCorr(fit).terms[0].coef_names == ["(Intercept)", "timet2", "timet3", "timet4", "timet5"]
    lme4_double_bar = REF["diag_factor_lme4_reml"]
    assert lme4_double_bar["df"] == 1 + 15 + 1 + 5 != fit.df == 5 + 5 + 1
    assert abs(lme4_double_bar["logLik"] - fit.loglik) > 1.0


@pytest.mark.parametrize("reml", [True, False], ids=["reml", "ml"])
def test_homcs_is_nested_intercepts_for_positive_rho(reml):
    """homcs(0 + f | g): s^2 ((1 - rho) I + rho 11') is (1 | g) + (1 | g:f) with s^2 = s_g^2 + s_gf^2,
    rho = s_g^2 / s^2 when rho >= 0 (lme4's fit; glmmTMB 1.1.5 has no homcs)."""
    fit = fit_of("y ~ time + homcs(0 + time | subj)", reml)
    ref = REF[f"homcs_lme4_{'reml' if reml else 'ml'}"]
    np.testing.assert_allclose(fit.loglik, ref["logLik"], rtol=1e-10)
    np.testing.assert_allclose(fit.beta, list(ref["fixef"].values()), rtol=1e-5)
    v_g = ref["varcorr"]["subj"]["sd"] ** 2
    v_gf = ref["varcorr"]["subj:time"]["sd"] ** 2
    vc = mp.VarCorr(fit).terms[0]
    np.testing.assert_allclose(vc.sd, np.sqrt(v_g + v_gf), rtol=1e-4)
    np.testing.assert_allclose(vc.rho, v_g / (v_g + v_gf), rtol=1e-4)
    np.testing.assert_allclose(fit.sigma, ref["sigma"], rtol=1e-5)
    assert fit.df == ref["df"] == 5 + 2 + 1
    assert fit.theta_names == ["subj.*", "subj.rho_t"]


GLMM_CASES = [("ar1_poisson", "count ~ time + ar1(0 + time | subj)", "poisson"),
              ("cs_binomial", "cbind(succ, fail) ~ time + cs(0 + time | subj)", "binomial"),
              ("diag_poisson_tmb", "count ~ x + diag(x | subj)", "poisson")]


@pytest.mark.parametrize("case,formula,family", GLMM_CASES, ids=[c for c, _, _ in GLMM_CASES])
def test_glmer_structured_matches_glmmtmb(case, formula, family):
    """glmmTMB's Laplace fits.  glmer's reported deviance carries lme4's PIRLS-path noise (up to
    ~0.006 for the ar1 Poisson fit, whose exact optimum is glmmTMB's to 1e-7), hence the looser
    tolerances (issue 13: 1e-3 relative)."""
    _check_against(fit_of(formula, family=family), REF[case], loglik_rtol=1e-5, par_rtol=1e-3)


def test_glmer_diag_is_lme4s_double_bar():
    fit = fit_of("count ~ x + diag(x | subj)", family="poisson")
    ref = REF["diag_poisson_lme4"]
    np.testing.assert_allclose(fit.loglik, ref["logLik"], rtol=1e-8)
    np.testing.assert_allclose(fit.theta, ref["theta"], rtol=1e-3)


@pytest.mark.parametrize("case,formula,family", [
    ("cs_reml", "y ~ time + cs(0 + time | subj)", None),
    ("ar1_reml", "y ~ time + ar1(0 + time | subj)", None),
    ("ar1_poisson", "count ~ time + ar1(0 + time | subj)", "poisson")], ids=["cs", "ar1", "ar1_poisson"])
def test_ranef_matches_glmmtmb(case, formula, family):
    fit = fit_of(formula, True, family)
    got = mp.ranef(fit)["subj"]
    ref = REF[case]["ranef"]["subj"]
    assert list(got.columns) == ref["names"] and list(got.index) == ref["levels"]
    np.testing.assert_allclose(got.to_numpy(), ref["values"], atol=2e-3 if family else 1e-4)


@pytest.mark.parametrize("case,formula", [("cs_reml", "y ~ time + cs(0 + time | subj)"),
                                          ("cs_ml", "y ~ time + cs(0 + time | subj)"),
                                          ("ar1_reml", "y ~ time + ar1(0 + time | subj)"),
                                          ("ar1_ml", "y ~ time + ar1(0 + time | subj)")])
def test_varcorr_prints_as_glmmtmb(case, formula):
    """The same rows, names, notes and column positions; the numbers agree to glmmTMB's convergence
    (its last printed digit may differ)."""
    fit = fit_of(formula, case.endswith("reml"))
    want = [line.rstrip() for line in REF[case]["print_varcorr"].splitlines()[2:]]
    got = str(mp.VarCorr(fit)).splitlines()
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert len(g) == len(w)
        assert [m.start() for m in re.finditer(r"\S+", g)] == [m.start() for m in re.finditer(r"\S+", w)]
        for a, b in zip(g.split(), w.split()):
            try:
                np.testing.assert_allclose(float(a), float(b), rtol=1e-4)
            except ValueError:
                assert a == b


def test_varcorr_diag_prints_sds_only_and_summary_shows_the_structure():
    fit = fit_of("y ~ x + diag(x | subj)", True)
    lines = str(mp.VarCorr(fit)).splitlines()
    assert lines[0].split() == ["Groups", "Name", "Std.Dev."]
    assert "(ar1)" in str(fit_of("y ~ time + ar1(0 + time | subj)", True).summary())
    frame = mp.VarCorr(fit_of("y ~ time + ar1(0 + time | subj)", True)).to_frame()
    rho = REF["ar1_reml"]["varcorr"]["subj"]["corr"][0][1]
    row = frame[(frame.var1 == "timet1") & (frame.var2 == "timet3")]
    np.testing.assert_allclose(row.sdcor.iloc[0], rho ** 2, rtol=1e-3)


# ----------------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("formula,match", [
    ("y ~ x + ar1(0 + x | subj)", "ar1\\(\\) .* expects a single factor"),   # glmmTMB errors too
    ("y ~ time + ar1(time | subj)", "has an intercept"),                      # glmmTMB only warns
    ("y ~ time + cs(time | subj)", "has an intercept"),
    ("y ~ time + homcs(1 + time | subj)", "has an intercept"),
    ("y ~ x + cs(0 + x | subj)", "at least two columns"),
    ("y ~ time + cs(0 + time || subj)", "single bar"),
    ("y ~ time + ar1(0 + time)", "needs a random-effects term"),
])
def test_bad_structured_terms_are_named(formula, match):
    with pytest.raises(FormulaError, match=match):
        mp.lmer(formula, DATA)
    assert "single, factor variable" in REF["errors"]["ar1_numeric"]
    assert "not meaningful with intercept" in REF["errors"]["ar1_intercept"]


def test_parse_structured_terms():
    p = parse_formula("y ~ time + cs(0 + time | a/b) + diag(x | g) + us(x | h) + (1 | k)")
    assert p.fixed_rhs == "time"
    assert p.bars == (BarTerm("0 + time", ("a",), "cs"), BarTerm("0 + time", ("b", "a"), "cs"),
                      BarTerm("x", ("g",), "diag"), BarTerm("x", ("h",), "us"), BarTerm("1", ("k",), "us"))


def test_bayes_refuses_structured_terms():
    with pytest.raises(FormulaError, match="ar1\\(0 \\+ time \\| subj\\) has a covariance structure"):
        mp.bayes_lmer("y ~ time + ar1(0 + time | subj)", DATA)


# ----------------------------------------------------------------------------------------------
# the structure maps
# ----------------------------------------------------------------------------------------------

def _cs_cov(sd, rho):
    k = len(sd)
    R = (1 - rho) * np.eye(k) + rho * np.ones((k, k))
    return np.outer(sd, sd) * R


@pytest.mark.parametrize("rho", [0.0, 0.37, -0.2, 0.999, 1.0, -0.25])
def test_cs_factor_is_the_cholesky_of_compound_symmetry(rho):
    st = CompoundSymmetry(5)
    sd = np.array([0.5, 1.0, 1.5, 2.0, 0.1])
    theta = np.append(sd, st.t_from_rho(rho))
    T = st.factor(theta)
    np.testing.assert_allclose(T @ T.T, _cs_cov(sd, rho), atol=1e-12)
    assert np.allclose(T, np.tril(T))
    if -0.25 < rho < 1:
        np.testing.assert_allclose(T, np.linalg.cholesky(_cs_cov(sd, rho)), atol=1e-12)


@pytest.mark.parametrize("rho", [0.0, 0.6, -0.7, 1.0, -1.0])
def test_ar1_factor_gives_rho_to_the_lag(rho):
    st = AR1(4)
    T = st.factor([1.7, st.t_from_rho(rho)])
    lag = np.abs(np.subtract.outer(np.arange(4), np.arange(4)))
    np.testing.assert_allclose(T @ T.T, 1.7 ** 2 * float(rho) ** lag, atol=1e-12)
    # glmmTMB's transform
    np.testing.assert_allclose(st.rho_from_t(0.8), 0.8 / np.sqrt(1.64))


def test_cs_transform_is_glmmtmbs_and_starts_at_zero():
    st = CompoundSymmetry(5)
    a = 0.25
    np.testing.assert_allclose(st.rho_from_t(0.3), 1 / (1 + np.exp(-0.3)) * (1 + a) - a)
    np.testing.assert_allclose(st.rho(st.start()), 0.0, atol=1e-15)
    np.testing.assert_allclose(st.factor(st.start()), np.eye(5), atol=1e-15)
    assert st.rho_bounds() == (-0.25, 1.0)


@pytest.mark.parametrize("st", [Unstructured(3), Diagonal(3), CompoundSymmetry(3),
                                HomogeneousCompoundSymmetry(4), AR1(4)], ids=lambda s: s.name)
def test_sdcor_round_trip_and_bounds(st):
    rng = np.random.default_rng(3)
    theta = st.start() + 0.3 * rng.random(st.n_theta)
    phi = st.to_sdcor(theta, 2.0)
    np.testing.assert_allclose(st.from_sdcor(phi, 2.0), theta, rtol=1e-10)
    lo, hi = st.sdcor_bounds()
    assert len(lo) == len(phi) == len(st.kinds()) and np.all((lo <= phi) & (phi <= hi))
    assert len(st.theta_names("g", [f"c{i}" for i in range(st.k)])) == st.n_theta == len(st.lower())
    basis = st.linear_basis()
    if basis is not None:   # Sigma is linear in the basis' coefficients
        S = (st.factor(theta) @ st.factor(theta).T)
        coef = np.linalg.lstsq(np.column_stack([G.ravel() for G in basis]), S.ravel(), rcond=None)[0]
        np.testing.assert_allclose(sum(c * G for c, G in zip(coef, basis)), S, atol=1e-12)


def test_sdcor_map_accepts_lme4_ks_and_structures():
    m = SdCorMap((2, AR1(5)), True)
    assert m.kinds() == ["sd", "cor", "sd", "sd", "cor", "sigma"]
    assert m.names() == [".sig01", ".sig02", ".sig03", ".sig04", ".sig05", ".sigma"]
    assert m.bounds()[0].tolist() == [0, -1, 0, 0, -1, 0]


def test_unknown_structure_and_short_terms():
    with pytest.raises(FormulaError, match="unknown covariance structure"):
        make_structure("toep", 3)
    with pytest.raises(FormulaError, match="at least two"):
        make_structure("ar1", 1)


# ----------------------------------------------------------------------------------------------
# downstream of theta
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case,formula", [("diag_lme4_reml", "y ~ x + diag(x | subj)"),
                                          ("homcs_lme4_reml", "y ~ time + homcs(0 + time | subj)")])
def test_satterthwaite_and_kenward_roger_match_lme4s_equivalent_fit(case, formula):
    """Satterthwaite's df come from numerical derivatives in theta, so any theta map gives lmerTest's
    df of the equivalent lme4 fit; Kenward-Roger uses the structure's linear basis (pbkrtest's)."""
    fit = fit_of(formula, True)
    ref = REF[case]
    p = len(fit.beta)
    satt = [varpar_covariance(fit).df(np.eye(p)[i]) for i in range(p)]
    np.testing.assert_allclose(satt, ref["satterthwaite_df"], rtol=1e-4)
    kr = [kr_adjusted(fit).ddf(np.eye(p)[i:i + 1])[0] for i in range(p)]
    np.testing.assert_allclose(kr, ref["kr_df"], rtol=1e-4)


@pytest.mark.parametrize("formula", ["y ~ time + ar1(0 + time | subj)", "y ~ time + cs(0 + time | subj)"])
def test_kenward_roger_refuses_a_nonlinear_structure(formula):
    fit = fit_of(formula, True)
    with pytest.raises(MixedpyError, match="linear in its parameters"):
        kr_adjusted(fit)
    table = mp.lmertest.coef_table(fit)          # Satterthwaite works (theta-map invariant, see above)
    assert np.all((table["df"] > 30) & (table["df"] < fit.nobs - len(fit.beta)))


def test_profile_intervals_match_glmmtmb():
    """glmmTMB profiles log(SD) and rho's transform; a profile interval maps through monotone
    transforms, so its ends are our SD and rho intervals (lme4 profiles the ML refit too)."""
    fit = fit_of("y ~ time + ar1(0 + time | subj)", False)
    ci = fit.confint(method="profile")
    ref = REF["ar1_ml_profile"]
    np.testing.assert_allclose(ci.loc[".sig01"], [ref["sd_lower"], ref["sd_upper"]], rtol=1e-4)
    np.testing.assert_allclose(ci.loc[".sig02"], [ref["rho_lower"], ref["rho_upper"]], rtol=1e-4)
    # glmmTMB interpolates the fixed effects' profiles on a grid (lme4 does too): ~4e-4 of the width
    got = ci.loc[ref["fixef_names"]].to_numpy()
    want = np.column_stack([ref["fixef_lower"], ref["fixef_upper"]])
    np.testing.assert_allclose(got, want, atol=1e-3 * np.min(want[:, 1] - want[:, 0]))


def test_bootstrap_wald_predict_simulate_work_on_a_structured_fit():
    fit = fit_of("y ~ time + cs(0 + time | subj)", True)
    boot = fit.confint(method="boot", nsim=12, seed=1)
    assert list(boot.index[:7]) == [f".sig0{i}" for i in range(1, 7)] + [".sigma"]
    assert np.all(boot.iloc[5].between(-0.25, 1.0))                 # rho's interval inside its bounds
    wald = fit.confint(method="Wald")
    np.testing.assert_allclose(wald.loc["timet5"].mean(), fit.beta[-1])
    nd = pd.DataFrame({"time": ["t1", "t3", "t3"], "subj": ["s01", "s01", "new"]})
    pred = fit.predict(nd, allow_new_levels=True).to_numpy()
    b = mp.ranef(fit)["subj"].loc["s01"]
    np.testing.assert_allclose(pred[:2], [fit.beta[0] + b["timet1"], fit.beta[0] + fit.beta[2] + b["timet3"]])
    np.testing.assert_allclose(pred[2], fit.beta[0] + fit.beta[2])
    sims = fit.simulate(nsim=400, seed=2)
    # the simulated within-subject covariance carries the cs correlation: corr of time-means of two subjects
    wide = sims.groupby([DATA.subj, DATA.time]).mean()
    corr = np.corrcoef(np.stack([wide.xs("t1", level=1).to_numpy().ravel(),
                                 wide.xs("t2", level=1).to_numpy().ravel()]))[0, 1]
    vc = mp.VarCorr(fit).terms[0]
    s1, s2 = vc.sd[0] ** 2 + fit.sigma ** 2 / 2, vc.sd[1] ** 2 + fit.sigma ** 2 / 2
    np.testing.assert_allclose(corr, vc.rho * vc.sd[0] * vc.sd[1] / np.sqrt(s1 * s2), atol=0.03)


@pytest.mark.slow
def test_glmer_profile_intervals_match_glmmtmb():
    """glmer profiles on the (SD, rho) scale against glmmTMB's profile of (log SD, t).  glmmTMB
    interpolates its profile: its lower rho end 0.471016 has zeta = -1.967 on the exactly converged
    Laplace deviance, ours (0.47174) has -1.95997, so the tolerance there is 2e-3."""
    fit = fit_of("count ~ time + ar1(0 + time | subj)", family="poisson")
    ci = fit.confint(method="profile", parm="theta_")
    ref = REF["ar1_poisson_profile"]
    np.testing.assert_allclose(ci.loc[".sig01"], [ref["sd_lower"], ref["sd_upper"]], rtol=2e-4)
    np.testing.assert_allclose(ci.loc[".sig02"], [ref["rho_lower"], ref["rho_upper"]], rtol=2e-3)


def test_glmmtmb_sleepstudy_example():
    """glmmTMB's example Reaction ~ 1 + (1 | Subject) + ar1(0 + factor(Days) | Subject): 180 random
    effects for 180 rows, which lme4 2.x's check.nobs.vs.nRE skips for structured terms.  The fit
    puts the intercept SD at its bound 0 (glmmTMB's log-SD gets to 0.06, a log-likelihood 4e-6 lower)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mp.errors.SingularFitWarning)
        fit = mp.lmer("Reaction ~ 1 + (1 | Subject) + ar1(0 + factor(Days) | Subject)",
                      mp.datasets.load("sleepstudy"))
    ref = REF["sleepstudy_ar1"]
    assert fit.loglik >= ref["logLik"] and fit.loglik - ref["logLik"] < 1e-5
    vc = {t.label: t for t in mp.VarCorr(fit).terms}
    np.testing.assert_allclose(vc["Subject.1"].sd[0], ref["ar1_sd"], rtol=1e-3)
    np.testing.assert_allclose(vc["Subject.1"].rho, ref["ar1_rho"], rtol=1e-3)
    np.testing.assert_allclose(fit.sigma, ref["sigma"], rtol=1e-3)
    assert fit.is_singular and vc["Subject"].sd[0] == 0
