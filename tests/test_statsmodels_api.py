"""statsmodels' MixedLMResults names on lmer and glmer fits (issue 12 item 5 / helper item 3).

Where statsmodels defines the quantity for the same model (an ML fit of a random-intercept model of
sleepstudy, ``smf.mixedlm(..., groups="Subject").fit(reml=False)``) the values are compared with
statsmodels' own; elsewhere with lme4's (tests/reference/lmertest, tests/reference/lme4) or
lmerTest's.  statsmodels reaches the same optimum to ~1e-5 in the variance parameters, so the
tolerances of its comparisons are 1e-4 there (1e-7 for the estimates and llf, which are flat in
them).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

import mixedpy as mp
from test_lmertest import case_fit, ref_frame

sm = pytest.importorskip("statsmodels.formula.api")


@pytest.fixture(scope="module")
def sleep():
    d = mp.datasets.load("sleepstudy").reset_index(drop=True)
    d.index = pd.Index([f"r{i}" for i in range(len(d))])   # a non-default index, to check the alignment
    d["Subject"] = d["Subject"].astype(str)
    return d


@pytest.fixture(scope="module")
def pair(sleep):
    fit = mp.lmer("Reaction ~ Days + (1 | Subject)", sleep, REML=False)
    ref = sm.mixedlm("Reaction ~ Days", sleep, groups="Subject").fit(reml=False)
    return fit, ref


def test_ml_random_intercept_matches_statsmodels(pair):
    fit, ref = pair
    np.testing.assert_allclose(fit.params.to_numpy(), ref.fe_params.to_numpy(), rtol=1e-7)
    np.testing.assert_allclose(fit.fe_params.to_numpy(), ref.fe_params.to_numpy(), rtol=1e-7)
    np.testing.assert_allclose(fit.bse.to_numpy(), ref.bse_fe.to_numpy(), rtol=1e-4)
    np.testing.assert_allclose(fit.tvalues.to_numpy(), ref.tvalues.to_numpy()[:2], rtol=1e-4)
    assert fit.llf == pytest.approx(ref.llf, rel=1e-9)
    assert fit.scale == pytest.approx(ref.scale, rel=1e-4)
    np.testing.assert_allclose(fit.cov_re.to_numpy(), ref.cov_re.to_numpy(), rtol=2e-4)
    assert fit.df_resid == ref.df_resid == 178
    assert fit.nobs == ref.nobs == 180
    ci, ref_ci = fit.conf_int(alpha=0.1), ref.conf_int(alpha=0.1).iloc[:2]
    assert list(ci.columns) == [0, 1] and list(ci.index) == ["(Intercept)", "Days"]
    np.testing.assert_allclose(ci.to_numpy(), ref_ci.to_numpy(), rtol=1e-5)


def test_rows_and_random_effects_match_statsmodels(pair, sleep):
    fit, ref = pair
    for ours, theirs in ((fit.fittedvalues, ref.fittedvalues), (fit.resid, ref.resid)):
        assert isinstance(ours, pd.Series) and ours.index.equals(sleep.index)
        np.testing.assert_allclose(ours.to_numpy(), theirs.to_numpy(), atol=1e-3)
    re = fit.random_effects
    assert set(re) == set(ref.random_effects)
    for level, s in ref.random_effects.items():
        assert isinstance(re[level], pd.Series)
        np.testing.assert_allclose(re[level].to_numpy(), s.to_numpy(), rtol=1e-4, atol=1e-6)


def test_lmer_pvalues_are_satterthwaites_and_aic_stays_lme4s():
    ref, fit = case_fit("repeated")
    want = ref_frame(ref["coef"]["Satterthwaite"])
    np.testing.assert_allclose(fit.pvalues.to_numpy(), want["Pr(>|t|)"].to_numpy(float), rtol=1e-3)
    assert list(fit.pvalues.index) == list(want.index)
    lme4 = ref_frame(ref["coef"]["lme4"])
    np.testing.assert_allclose(fit.bse.to_numpy(), lme4["Std. Error"].to_numpy(float), rtol=1e-6)
    np.testing.assert_allclose(fit.tvalues.to_numpy(), lme4["t value"].to_numpy(float), rtol=1e-6)
    # lme4: AIC of a REML fit from the REML criterion (statsmodels gives NaN); kept as API.md says
    assert fit.aic == pytest.approx(-2 * fit.llf + 2 * (6 + 3 + 1))
    assert fit.scale == pytest.approx(ref["sigma"] ** 2, rel=1e-6)


def test_glmer_has_z_pvalues_unit_scale_and_response_scale_fitted():
    cbpp = mp.datasets.load("cbpp")
    gm = mp.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial")
    z = gm.params / gm.bse
    np.testing.assert_allclose(gm.pvalues.to_numpy(), 2 * norm.sf(np.abs(z.to_numpy())))
    assert gm.scale == 1.0 and gm.df_resid == len(cbpp) - 4
    assert gm.fittedvalues.index.equals(cbpp.index)
    np.testing.assert_allclose(gm.fittedvalues.to_numpy(), gm.predict(type="response").to_numpy())
    np.testing.assert_allclose(gm.resid.to_numpy(), gm.residuals("deviance"))
    # lme4: VarCorr(cbpp fit) herd variance 0.4123 (tests/reference/lme4)
    assert gm.cov_re.loc["(Intercept)", "(Intercept)"] == pytest.approx(0.41227, rel=1e-3)
    assert gm.model.exog_names == gm.fixef_names and gm.model.family is gm.family


def test_lmm_from_formula_returns_the_same_result_object(sleep):
    a = mp.LMM.from_formula("Reaction ~ Days + (Days | Subject)", sleep).fit(reml=True)
    b = mp.lmer("Reaction ~ Days + (Days | Subject)", sleep)
    assert type(a) is type(b)
    pd.testing.assert_series_equal(a.params, b.params)
    assert a.model.formula == "Reaction ~ Days + (Days | Subject)"
    assert a.model.endog.shape == (180,) and a.model.exog.shape == (180, 2)


def test_several_grouping_factors_key_random_effects_by_factor_and_level():
    pen = mp.datasets.load("penicillin")
    fit = mp.lmer("diameter ~ 1 + (1 | plate) + (1 | sample)", pen)
    re = fit.random_effects
    ranef = mp.ranef(fit)
    assert len(re) == len(ranef["plate"]) + len(ranef["sample"])
    key = ("sample", ranef["sample"].index[0])
    assert re[key]["(Intercept)"] == ranef["sample"].iloc[0, 0]
    assert list(fit.cov_re.index) == [f"{t.label}:(Intercept)" for t in fit.varcorr().terms]
