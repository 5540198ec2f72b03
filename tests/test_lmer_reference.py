"""lmer against lme4 1.1-31: every lmer case in tests/reference/lme4 (made by R, see its README).

The objective is the same function, so deviance, sigma and fixef agree to ~1e-6 relative;
theta and the quantities that move with it (variance components, conditional modes) are held
to 1e-4, the optimizers' tolerance.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import mixedpy as mp
from conftest import load_ref, ref_data

CASES = ["sleepstudy_reml", "sleepstudy_ml", "sleepstudy_uncorr", "sleepstudy_intercept",
         "dyestuff_reml", "dyestuff_ml", "dyestuff2_singular", "penicillin_crossed", "pastes_nested",
         "exam_slopes", "sleepstudy_rankdef", "sleepstudy_weights_offset"]

FIT_CACHE: dict[str, mp.LmerFit] = {}


def fit_case(name: str) -> tuple[mp.LmerFit, dict]:
    ref = load_ref(name)
    if name not in FIT_CACHE:
        data = ref_data(ref["data"])
        kw = {}
        if name == "sleepstudy_weights_offset":  # R: weights = 1 + (Days %% 3), offset = 0.5 * Days
            kw = dict(weights=1 + data["Days"] % 3, offset=0.5 * data["Days"])
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", mp.SingularFitWarning)
            FIT_CACHE[name] = mp.lmer(ref["formula"], data, REML=ref["REML"], **kw)
    return FIT_CACHE[name], ref


def rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-8))


@pytest.mark.parametrize("name", CASES)
def test_objective_sigma_fixef(name):
    fit, ref = fit_case(name)
    assert fit.nobs == ref["nobs"]
    assert fit.ngrps == ref["ngrps"]
    assert list(mp.fixef(fit).index) == list(ref["fixef"])
    assert rel(fit.beta, list(ref["fixef"].values())) < 2e-6
    assert rel(fit.sigma, ref["sigma"]) < 5e-6
    assert fit.loglik == pytest.approx(ref["logLik"], rel=1e-8)
    assert fit.aic == pytest.approx(ref["AIC"], rel=1e-8)
    assert fit.bic == pytest.approx(ref["BIC"], rel=1e-8)
    assert fit.df == ref["df"]
    if ref["REML"]:
        assert fit.reml_crit == pytest.approx(ref["REMLcrit"], rel=1e-8)


@pytest.mark.parametrize("name", CASES)
def test_theta_vcov_varcorr(name):
    fit, ref = fit_case(name)
    assert fit.theta_names == ref["theta_names"]
    np.testing.assert_allclose(fit.lower, np.array(ref["lower"], dtype=float))
    np.testing.assert_allclose(fit.theta, ref["theta"], atol=1e-4 * max(1, np.max(ref["theta"])))
    np.testing.assert_allclose(fit.vcov.to_numpy(), np.array(ref["vcov"]), rtol=1e-4)
    np.testing.assert_allclose(mp.se_fixef(fit), list(ref["se_fixef"].values()), rtol=1e-4)
    vc = mp.VarCorr(fit)
    for term, rv in zip(vc.terms, ref["varcorr"]):
        assert term.label == rv["group"] and term.coef_names == rv["terms"]
        np.testing.assert_allclose(term.sd, rv["sd"], rtol=1e-4, atol=1e-6 * max(1, ref["sigma"]))
        np.testing.assert_allclose(term.corr, np.array(rv["corr"]), atol=1e-4)
    assert fit.is_singular == ref["is_singular"]


@pytest.mark.parametrize("name", CASES)
def test_ranef_condvar_coef(name):
    fit, ref = fit_case(name)
    scale = max(1.0, np.abs(list(ref["fixef"].values())).max())
    re = mp.ranef(fit, condvar=True)
    assert list(re) == list(ref["ranef"])
    for g, rr in ref["ranef"].items():
        df = re[g]
        assert list(df.index) == rr["levels"]
        assert list(df.columns) == rr["terms"]
        np.testing.assert_allclose(df.to_numpy(), np.array(rr["values"]), atol=2e-4 * scale)
        np.testing.assert_allclose(df.attrs["condsd"].to_numpy(), np.array(rr["condsd"]), rtol=2e-4,
                                   atol=1e-6 * scale)
    co = mp.coef(fit)
    for g, rc in ref["coef"].items():
        assert list(co[g].columns) == rc["terms"]
        np.testing.assert_allclose(co[g].to_numpy(), np.array(rc["values"]), atol=2e-4 * scale)


@pytest.mark.parametrize("name", CASES)
def test_fitted_resid(name):
    fit, ref = fit_case(name)
    scale = max(1.0, np.abs(ref["fitted_head"]).max())
    np.testing.assert_allclose(fit.fitted[:10], ref["fitted_head"], atol=2e-4 * scale)
    np.testing.assert_allclose(fit.resid[:10], ref["resid_head"], atol=2e-4 * scale)


@pytest.mark.parametrize("name", ["sleepstudy_reml", "sleepstudy_ml", "sleepstudy_uncorr",
                                  "sleepstudy_intercept"])
def test_predict_with_new_levels(name):
    fit, ref = fit_case(name)
    nd = pd.DataFrame(ref["predict"]["newdata"])
    nd["Subject"] = nd["Subject"].astype(str)
    # random-effect predictions move with theta, which two optimizers find to ~1e-5
    np.testing.assert_allclose(fit.predict(nd, allow_new_levels=True), ref["predict"]["with_re"], rtol=1e-5)
    np.testing.assert_allclose(fit.predict(nd, re_form="~0"), ref["predict"]["fixed_only"], rtol=1e-6)
    np.testing.assert_allclose(fit.predict(nd, re_form="NA"), ref["predict"]["fixed_only"], rtol=1e-6)
    with pytest.raises(mp.DataError, match="new levels"):
        fit.predict(nd)


def test_predict_weights_offset_case():
    """lme4 does not re-apply an ``offset=`` argument to newdata; an offset() term is re-applied."""
    fit, ref = fit_case("sleepstudy_weights_offset")
    nd = pd.DataFrame(ref["predict"]["newdata"])
    np.testing.assert_allclose(fit.predict(nd, allow_new_levels=True), ref["predict"]["with_re"], rtol=1e-6)
    np.testing.assert_allclose(fit.predict(nd, re_form="~0"), ref["predict"]["fixed_only"], rtol=1e-6)
    data = ref_data(ref["data"])
    data["w"], data["off"] = 1 + data["Days"] % 3, 0.5 * data["Days"]
    fit2 = mp.lmer("Reaction ~ Days + offset(off) + (Days | Subject)", data, weights="w")
    np.testing.assert_allclose(fit2.beta, fit.beta, rtol=1e-6)
    nd["off"] = 0.5 * nd["Days"]
    np.testing.assert_allclose(fit2.predict(nd, allow_new_levels=True), ref["predict"]["with_re_with_offset"],
                               rtol=1e-6)


def test_rank_deficient_drops_column():
    from mixedpy.errors import RankDeficiencyWarning

    ref = load_ref("sleepstudy_rankdef")
    with pytest.warns(RankDeficiencyWarning, match=r"rank deficient so dropping 1 column / coefficient \(Days2\)"):
        fit = mp.lmer(ref["formula"], ref_data(ref["data"]))
    assert fit.design.dropped_columns == ["Days2"]
    assert list(mp.fixef(fit).index) == ["(Intercept)", "Days"]


def test_sleepstudy_devcomp_values():
    """ALGORITHMS.md section 6: the pieces of the profiled deviance at the REML optimum."""
    fit, _ = fit_case("sleepstudy_reml")
    s = fit.state
    assert s.ldL2 == pytest.approx(75.96133, abs=1e-4)
    assert s.ldRX2 == pytest.approx(8.276053, abs=1e-5)
    assert s.wrss == pytest.approx(98881.57, abs=0.05)
    assert s.ussq == pytest.approx(17697.75, abs=0.05)
    assert fit.deviance_ml == pytest.approx(1751.985866, abs=1e-4)
    pv = fit.postvar()[0][0]
    np.testing.assert_allclose(pv, [[145.7056, -21.4445], [-21.4445, 5.3123]], atol=2e-3)


def test_ml_refit_matches_ml_fit():
    fit, _ = fit_case("sleepstudy_reml")
    ml = fit.refit(reml=False)
    assert not ml.reml
    assert ml.deviance == pytest.approx(1751.939344, abs=1e-5)
    assert ml.refit(reml=False) is ml


def test_statsmodels_style_entry_gives_same_fit():
    fit, ref = fit_case("sleepstudy_reml")
    data = ref_data(ref["data"])
    other = mp.LMM.from_formula(ref["formula"], data).fit(reml=True)
    assert isinstance(other, mp.LmerFit)
    np.testing.assert_allclose(other.theta, fit.theta, rtol=1e-10)


def test_penicillin_start_values():
    """lme4's start for all-(1|f) models: theta_f = sqrt(v_f / v_e) (ALGORITHMS.md 1.3)."""
    fit, _ = fit_case("penicillin_crossed")
    np.testing.assert_allclose(fit.opt.x0, [1.744915, 3.594014], rtol=1e-6)


def test_summary_and_print_layout():
    fit, _ = fit_case("sleepstudy_reml")
    text = fit.summary(ddf="lme4")
    assert "Linear mixed model fit by REML ['lmerMod']" in text
    assert "REML criterion at convergence: 1743.6" in text
    assert " Subject  (Intercept) 612.10   24.741" in text
    assert "          Days         35.07    5.922   0.07" in text
    assert "Number of obs: 180, groups:  Subject, 18" in text
    assert "(Intercept)   251.41" in text or "(Intercept)  251.405" in text
    vc = str(mp.VarCorr(fit))
    assert vc.splitlines()[0].split() == ["Groups", "Name", "Std.Dev.", "Corr"]
    assert vc.splitlines()[2] == "          Days         5.9221  0.066"
    assert "24.7407" in vc and " 5.9221" in vc and "25.5918" in vc and "0.066" in vc
    frame = mp.VarCorr(fit).to_frame()
    assert list(frame.columns) == ["grp", "var1", "var2", "vcov", "sdcor"]
    assert frame["grp"].tolist() == ["Subject", "Subject", "Subject", "Residual"]
    assert frame["sdcor"].iloc[2] == pytest.approx(0.06555124, abs=1e-5)


def test_sigma_hat_and_se_ranef_structures():
    fit, _ = fit_case("sleepstudy_reml")
    sh = mp.sigma_hat(fit)
    assert sh["data"] == pytest.approx(25.5918, abs=1e-4)
    np.testing.assert_allclose(sh["Subject"].to_numpy(), [24.740658, 5.922138], rtol=1e-5)
    se = mp.se_ranef(fit)["Subject"]
    np.testing.assert_allclose(se.loc["308"].to_numpy(), [12.0709, 2.3048], atol=2e-4)
    fit2, _ = fit_case("sleepstudy_uncorr")  # two terms on one factor: arm fails here, we do not
    se2 = mp.se_ranef(fit2)["Subject"]
    assert list(se2.columns) == ["(Intercept)", "Days"]
    assert list(mp.sigma_hat(fit2)) == ["data", "Subject", "Subject.1"]


def test_re_form_selects_terms():
    fit, _ = fit_case("sleepstudy_uncorr")  # (1 | Subject) + (0 + Days | Subject)
    nd = pd.DataFrame({"Days": [0.0, 4.0], "Subject": ["308", "309"]})
    re = mp.ranef(fit)["Subject"]
    base = fit.predict(nd, re_form="~0")
    only_int = fit.predict(nd, re_form="~ (1 | Subject)")
    np.testing.assert_allclose(only_int - base, re.loc[["308", "309"], "(Intercept)"].to_numpy(), rtol=1e-10)
    both = fit.predict(nd)
    np.testing.assert_allclose(both - only_int, re.loc[["308", "309"], "Days"].to_numpy() * [0, 4], atol=1e-10)
    with pytest.raises(mp.DataError, match="not in the model"):
        fit.predict(nd, re_form="~ (1 | Other)")


@pytest.mark.slow
def test_insteval_crossed_matches_lme4():
    """73,421 rows, three crossed factors (the speed benchmark's model)."""
    ref = load_ref("insteval_crossed")
    fit = mp.lmer(ref["formula"], ref_data(ref["data"]))
    # the optimum is flat in theta: our criterion is 4e-8 lower than lme4's, and the small service1
    # coefficient moves by 3e-7 (6e-6 relative) between the two optimizers' stopping points
    assert fit.reml_crit == pytest.approx(ref["REMLcrit"], rel=1e-9)
    assert fit.reml_crit <= ref["REMLcrit"] + 1e-6
    assert rel(fit.beta, list(ref["fixef"].values())) < 2e-5
    np.testing.assert_allclose(fit.theta, ref["theta"], atol=1e-5)
    np.testing.assert_allclose(fit.vcov.to_numpy(), np.array(ref["vcov"]), rtol=1e-4)
    re = mp.ranef(fit, condvar=True)
    for g, rr in ref["ranef"].items():
        np.testing.assert_allclose(re[g].loc[rr["levels"]].to_numpy(), np.array(rr["values"]), atol=1e-4)
        np.testing.assert_allclose(re[g].attrs["condsd"].loc[rr["levels"]].to_numpy(), np.array(rr["condsd"]),
                                   rtol=1e-4)
