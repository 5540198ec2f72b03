"""lme4's residuals(fit, type, scaled), fitted values and R's na.exclude padding (issue 12 part 6).

Reference: tests/reference/gen/residuals_predict.R (lme4 1.1-31).  The lmer fits are profiled at
lme4's theta (the REML criterion is flat to 1e-9 over theta differences of 1e-5, so two optimizers
stop 1e-6 apart in the residuals); the glmer fits use tight tolerances on both sides, which bring
them to the same optimum within 1e-7.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedpy as mp
from mixedpy.residuals import carry_na_action
from mixedpy.results import LmerFit

REF = json.loads((Path(__file__).parent / "reference" / "residuals" / "residuals_predict.json").read_text())
DATA = Path(__file__).parent / "reference" / "data"
TYPES = ["response", "pearson", "deviance", "working"]
TIGHT_G = mp.glmerControl(optCtrl={"ftol_abs": 1e-12, "xtol_abs": 1e-10, "maxeval": 100000}, tolPwrss=1e-10)


def read(name: str, factors: list[str]) -> pd.DataFrame:
    df = pd.read_csv(DATA / name)
    for c in factors:
        df[c] = df[c].astype(str)
    return df


def at_theta(fit, theta):
    """The lmer fit profiled at ``theta`` (lme4's), keeping its na_action."""
    state = fit.problem.profile(np.asarray(theta, dtype=float))
    return carry_na_action(fit, LmerFit(fit.design, fit.problem, fit.reml, fit.opt, state, [], fit.data_name))


def sleep_data(weighted: bool = False) -> pd.DataFrame:
    df = read("sleepstudy.csv", ["Subject"])
    if weighted:
        df["w"] = 1.0 + df["Days"] % 3
    return df


@pytest.fixture(scope="module")
def fits():
    sleep = sleep_data()
    cb = read("cbpp.csv", ["herd", "period"])
    cb["prop"] = cb["incidence"] / cb["size"]
    gt = read("grouseticks.csv", ["YEAR", "BROOD", "LOCATION"])
    m = mp.lmer("Reaction ~ Days + (Days | Subject)", sleep)
    mw = mp.lmer("Reaction ~ Days + (Days | Subject)", sleep_data(True), weights="w")
    return {
        "lmer": at_theta(m, REF["lmer"]["theta"]),
        "lmer_weighted": at_theta(mw, REF["lmer_weighted"]["theta"]),
        "glmer_binomial": mp.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cb,
                                   family="binomial", control=TIGHT_G),
        "glmer_poisson": mp.glmer("TICKS ~ YEAR + (1 | BROOD) + (1 | LOCATION)", gt, family="poisson",
                                  control=TIGHT_G),
        "glmer_prop": mp.glmer("prop ~ period + (1 | herd)", cb, family="binomial", weights="size", control=TIGHT_G),
    }


CASES = ["lmer", "lmer_weighted", "glmer_binomial", "glmer_poisson", "glmer_prop"]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("type", TYPES)
def test_residuals_of_each_type_are_lme4s(fits, case, type):
    ref = REF[case][type]
    got = mp.residuals(fits[case], type=type)
    assert isinstance(got, pd.Series)
    np.testing.assert_allclose(got.to_numpy(), ref, rtol=1e-6, atol=1e-6 * np.max(np.abs(ref)))
    pd.testing.assert_series_equal(fits[case].residuals(type=type), got)   # one implementation


@pytest.mark.parametrize("case", CASES)
def test_default_type_scaled_and_fitted_are_lme4s(fits, case):
    """Default type: response for lmer, deviance for glmer; scaled divides by sigma (1 for glmer)."""
    r, fit = REF[case], fits[case]
    scale = np.max(np.abs(r["default"]))
    np.testing.assert_allclose(mp.residuals(fit).to_numpy(), r["default"], rtol=1e-6, atol=1e-6 * scale)
    np.testing.assert_allclose(fit.resid.to_numpy(), r["default"], rtol=1e-6, atol=1e-6 * scale)
    np.testing.assert_allclose(mp.residuals(fit, scaled=True).to_numpy(), r["scaled"], rtol=1e-6,
                               atol=1e-6 * np.max(np.abs(r["scaled"])))
    np.testing.assert_allclose(fit.fitted.to_numpy(), r["fitted"], rtol=1e-6)
    assert fit.sigma == pytest.approx(r["sigma"], rel=1e-6)


def test_unknown_type_names_the_choices(fits):
    with pytest.raises(ValueError, match="'response', 'pearson', 'deviance', 'working'"):
        mp.residuals(fits["lmer"], type="raw")
    with pytest.raises(ValueError, match="'response', 'pearson'"):
        fits["glmer_binomial"].residuals("partial")


def test_fitted_and_resid_are_indexed_by_the_datas_rows():
    """fitted and resid are Series labelled by the data's index (the defect: fitted was an array)."""
    sleep = sleep_data()
    sleep.index = [f"row{i}" for i in range(len(sleep))]
    sleep = sleep.iloc[::-1]   # labels out of order: alignment is by label, not position
    m = mp.lmer("Reaction ~ Days + (Days | Subject)", sleep)
    assert isinstance(m.fitted, pd.Series) and m.fitted.index.equals(sleep.index)
    assert m.resid.index.equals(sleep.index)
    np.testing.assert_allclose((m.fitted + m.resid).to_numpy(), sleep["Reaction"].to_numpy(), rtol=1e-12)
    assert m.predict().index.equals(sleep.index)


# ---- na.exclude --------------------------------------------------------------------------------
def na_sleep() -> pd.DataFrame:
    df = sleep_data()
    df.loc[[2, 49], "Reaction"] = np.nan   # R's rows 3 and 50
    df.loc[99, "Days"] = np.nan
    df.index = [f"r{i + 1}" for i in range(len(df))]
    return df


def na_cbpp() -> pd.DataFrame:
    cb = read("cbpp.csv", ["herd", "period"])
    cb.loc[[4, 19], "incidence"] = np.nan
    return cb


@pytest.fixture(scope="module")
def na_fits():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mp.MissingValuesWarning)
        m = mp.lmer("Reaction ~ Days + (Days | Subject)", na_sleep(), na_action="exclude")
        g = mp.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", na_cbpp(), family="binomial",
                     control=TIGHT_G, na_action="exclude")
        m_omit = mp.lmer("Reaction ~ Days + (Days | Subject)", na_sleep())
    return {"na_lmer": m, "na_glmer": g, "omit": m_omit}


def _r_na(values) -> np.ndarray:
    return np.array([np.nan if v in (None, "NA") else v for v in values], dtype=float)


@pytest.mark.parametrize("case", ["na_lmer", "na_glmer"])
def test_na_exclude_pads_every_per_row_result_as_r(na_fits, case):
    """residuals, fitted and predict() of an na.exclude fit have the data's rows, NA where dropped."""
    ref, fit = REF[case], na_fits[case]
    if case == "na_lmer":
        fit = at_theta(fit, ref["theta"])
    n = 180 if case == "na_lmer" else 56
    got = {"residuals": fit.residuals(), "pearson": mp.residuals(fit, "pearson"), "fitted": fit.fitted,
           "predict": fit.predict(), "predict_response": fit.predict(type="response"),
           "predict_pop": fit.predict(re_form="NA")}
    for key, series in got.items():
        assert len(series) == n, key
        want = _r_na(ref[key])
        np.testing.assert_array_equal(np.isnan(series.to_numpy()), np.isnan(want), err_msg=key)
        ok = ~np.isnan(want)
        np.testing.assert_allclose(series.to_numpy()[ok], want[ok], rtol=1e-6, atol=1e-6 * np.nanmax(np.abs(want)),
                                   err_msg=key)
    if case == "na_lmer":
        assert list(fit.resid.index) == ref["names"]   # R's row names, all 180 of them
    assert np.isnan(fit.resid.to_numpy()).sum() == (3 if case == "na_lmer" else 2)


def test_na_omit_keeps_the_used_rows_only(na_fits):
    m = na_fits["omit"]
    assert m.na_action == "omit" and len(m.resid) == 177 and not np.isnan(m.resid.to_numpy()).any()
    assert "r3" not in m.fitted.index and "r4" in m.fitted.index
    ex = na_fits["na_lmer"]
    pd.testing.assert_series_equal(ex.resid.dropna(), m.resid, rtol=1e-8)


def test_na_exclude_summary_and_refit_keep_working(na_fits):
    ex = na_fits["na_lmer"]
    assert "Scaled residuals" in ex.summary(ddf="lme4")   # the quantiles skip the padded rows
    assert "nan" not in ex.summary(ddf="lme4").sections["residuals"][2]
    ml = ex.refit(reml=False)
    assert ml.na_action == "exclude" and len(ml.fitted) == 180


def test_na_action_is_checked():
    with pytest.raises(ValueError, match="na.omit / na.exclude"):
        mp.lmer("Reaction ~ Days + (1 | Subject)", sleep_data(), na_action="pass")
    dup = sleep_data()
    dup.index = [0] * len(dup)
    with pytest.raises(mp.DataError, match="duplicate labels"):
        mp.lmer("Reaction ~ Days + (1 | Subject)", dup, na_action="exclude")


def test_na_exclude_pads_the_zero_weight_rows_lmer_leaves_out():
    """lmer leaves zero-weight rows out (ZeroWeightsWarning); na_action="exclude" pads them too."""
    df = sleep_data()
    df["w"] = 1.0
    df.loc[5, "w"] = 0.0
    with pytest.warns(mp.ZeroWeightsWarning):
        fit = mp.lmer("Reaction ~ Days + (Days | Subject)", df, weights="w", na_action="exclude")
    assert len(fit.fitted) == 180 and np.isnan(fit.fitted.loc[5]) and fit.fitted.drop(5).notna().all()
