"""tidy() and glance() against broom.mixed 0.2.9.4 (tests/reference/lme4/tidy_cases.json, made by
tests/reference/gen/worked_cases.R), plus behaviour and error tests."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
import pytest

import mixedpy as mp
from conftest import load_ref, ref_data

CASES = ["sleepstudy_reml", "sleepstudy_ml", "sleepstudy_two_terms", "penicillin", "cbpp"]


@lru_cache(maxsize=None)
def _fit(case: str):
    ref = load_ref("tidy_cases")[case]
    data = ref_data(ref["data"] + ".csv")
    if ref.get("family"):
        if not hasattr(mp, "glmer"):
            pytest.skip("glmer is not available in this build")
        return mp.glmer(ref["formula"], data, family=ref["family"])
    return mp.lmer(ref["formula"], data, REML=ref["REML"])


def _ref_frame(case: str, key: str) -> pd.DataFrame:
    return pd.DataFrame(load_ref("tidy_cases")[case][key])


def _compare(ours: pd.DataFrame, theirs: pd.DataFrame, rtol: float):
    assert list(ours.columns) == list(theirs.columns)
    assert len(ours) == len(theirs)
    for col in ours.columns:
        a, b = ours[col].to_numpy(), theirs[col].to_numpy()
        if col in ("effect", "group", "level", "term"):
            a = np.where(pd.isna(a), "NA", a.astype(object)).astype(str)
            b = np.where(pd.isna(b), "NA", b.astype(object)).astype(str)
            assert list(a) == list(b), col
        else:
            a, b = a.astype(float), b.astype(float)
            assert np.array_equal(np.isnan(a), np.isnan(b)), col
            ok = ~np.isnan(a)
            np.testing.assert_allclose(a[ok], b[ok], rtol=rtol, atol=rtol * np.abs(b[ok]).max(initial=0.0),
                                       err_msg=col)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("key,kwargs", [
    ("fixed", dict(effects="fixed", conf_int=True)),
    ("fixed_90", dict(effects="fixed", conf_int=True, conf_level=0.9)),
    ("ran_pars", dict(effects="ran_pars", conf_int=False)),
    ("ran_pars_vcov", dict(effects="ran_pars", conf_int=False, scales="vcov")),
    ("ran_vals", dict(effects="ran_vals", conf_int=True)),
    ("default", dict(conf_int=False)),
])
def test_tidy_matches_broom_mixed(case, key, kwargs):
    # parameters agree with lme4 to the optimizers' tolerance (~1e-4 relative: the ML sleepstudy
    # optimum is flat, and both optimizers stop within it)
    rtol = 2e-4 if key != "ran_pars_vcov" else 4e-4   # variances double the relative error of SDs
    _compare(mp.tidy(_fit(case), **kwargs), _ref_frame(case, key), rtol)


@pytest.mark.parametrize("case", CASES)
def test_glance_matches_broom_mixed(case):
    ours, theirs = mp.glance(_fit(case)), _ref_frame(case, "glance")
    # the optimized criteria agree far more tightly than the parameters
    crit = [c for c in ("logLik", "AIC", "BIC", "REMLcrit", "deviance") if c in ours]
    _compare(ours[crit], theirs[crit], 2e-6 if case == "cbpp" else 1e-8)
    _compare(ours, theirs, 1e-4)


def test_sleepstudy_reference_numbers():
    """Spot values printed by broom.mixed for lmer(Reaction ~ Days + (Days | Subject))."""
    t = mp.tidy(_fit("sleepstudy_reml"), conf_int=True).set_index("term")
    assert t.loc["(Intercept)", "conf.low"] == pytest.approx(238.029141, abs=1e-5)
    assert t.loc["cor__(Intercept).Days", "estimate"] == pytest.approx(0.06555124, abs=1e-6)
    assert t.loc["sd__Observation", "group"] == "Residual"
    g = mp.glance(_fit("sleepstudy_reml")).iloc[0]
    assert g["REMLcrit"] == pytest.approx(1743.628272, abs=1e-5)
    assert g["df.residual"] == 174


def test_ran_vals_interval_is_wald_on_condsd():
    fit = _fit("sleepstudy_reml")
    rv = mp.tidy(fit, effects="ran_vals", conf_level=0.8)
    sd = mp.ranef(fit, condvar=True)["Subject"].attrs["condsd"]
    z = 1.2815515655446004
    first = rv[(rv["term"] == "Days")].iloc[0]
    assert first["std.error"] == pytest.approx(sd.loc[first["level"], "Days"])
    assert first["conf.high"] - first["conf.low"] == pytest.approx(2 * z * first["std.error"])


def test_ran_coefs_are_coef():
    fit = _fit("sleepstudy_reml")
    rc = mp.tidy(fit, effects="ran_coefs")
    co = mp.coef(fit)["Subject"]
    assert list(rc.columns) == ["effect", "group", "level", "term", "estimate"]
    got = rc.pivot(index="level", columns="term", values="estimate").loc[co.index, co.columns]
    np.testing.assert_allclose(got.to_numpy(), co.to_numpy())


def test_combined_effects_come_in_broom_order():
    t = mp.tidy(_fit("sleepstudy_reml"), effects=["ran_vals", "fixed", "ran_pars"], conf_int=False)
    order = list(dict.fromkeys(t["effect"]))
    assert order == ["fixed", "ran_pars", "ran_vals"]
    assert list(t.columns) == ["effect", "group", "level", "term", "estimate", "std.error", "statistic"]


def test_profile_intervals_fill_ran_pars():
    fit = _fit("sleepstudy_reml")
    t = mp.tidy(fit, conf_method="profile").set_index("term")
    ci = mp.confint(fit, method="profile")
    assert t.loc["sd__(Intercept)", "conf.low"] == pytest.approx(ci.iloc[0, 0])
    assert t.loc["cor__(Intercept).Days", "conf.high"] == pytest.approx(ci.iloc[1, 1])
    assert t.loc["sd__Observation", "conf.low"] == pytest.approx(ci.loc[".sigma"].iloc[0])
    assert t.loc["sd__Observation", "conf.low"] < t.loc["sd__Observation", "estimate"] \
        < t.loc["sd__Observation", "conf.high"]


def test_tidy_sim_draws():
    fit = _fit("sleepstudy_reml")
    s = mp.sim(fit, n_sims=4000, seed=3)
    t = mp.tidy(s, effects=["fixed", "ran_vals"])
    fx = t[t["effect"] == "fixed"].set_index("term")
    # fixef draws are t_{n-p} around beta-hat with scale = se (REML): sd = se sqrt(nu / (nu - 2))
    se = fit.se_fixef * np.sqrt(178 / 176)
    np.testing.assert_allclose(fx["estimate"], fit.beta, atol=3 * 4 * se.max() / np.sqrt(4000))
    np.testing.assert_allclose(fx["std.error"], se, rtol=0.06)
    rv = t[t["effect"] == "ran_vals"]
    assert len(rv) == 36 and set(rv["term"]) == {"(Intercept)", "Days"}
    with pytest.raises(ValueError, match="ran_pars"):
        mp.tidy(s, effects="ran_pars")


def test_bad_arguments():
    fit = _fit("sleepstudy_reml")
    with pytest.raises(ValueError, match="effects must be"):
        mp.tidy(fit, effects="random")
    with pytest.raises(ValueError, match="conf_level"):
        mp.tidy(fit, conf_level=95)
    with pytest.raises(ValueError, match="scales"):
        mp.tidy(fit, scales="sd")
    with pytest.raises(ValueError, match="conf_method"):
        mp.tidy(fit, conf_method="boot")
    with pytest.raises(TypeError, match="tidy"):
        mp.tidy("not a model")
    with pytest.raises(TypeError, match="glance"):
        mp.glance(42)
