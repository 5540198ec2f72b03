"""The validation layer (mixedpy.validation): lme4 1.1's identifiability checks per term, and the
data problems that used to give silent wrong answers.  R's values and messages come from
tests/reference/gen/validation.R (tests/reference/validation/*.json)."""
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedpy as mp
from mixedpy.errors import (DataError, MissingValuesWarning, RankDeficiencyWarning, ScaleWarning,
                            ZeroWeightsWarning)

REF = Path(__file__).parent / "reference" / "validation"


def ref(name: str) -> dict:
    return json.loads((REF / f"{name}.json").read_text())


def quiet(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kw)


@pytest.fixture(scope="module")
def sleep():
    return mp.datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def msgs():
    return ref("lme4_messages")


def assert_matches_lme4(fit, r, rtol=1e-4, ll_tol=1e-3):
    assert list(mp.fixef(fit).index) == list(r["fixef"])
    np.testing.assert_allclose(fit.beta, list(r["fixef"].values()), rtol=rtol, atol=1e-6)
    np.testing.assert_allclose(fit.theta, np.atleast_1d(r["theta"]), rtol=rtol, atol=1e-5)
    assert fit.loglik == pytest.approx(r["logLik"], abs=ll_tol)
    assert fit.nobs == r["nobs"]
    assert fit.design.ngrps() == r["ngrps"]


# -- lme4's checkZdims is per term; glmer has allow.n = TRUE -------------------------------------
def test_grouseticks_observation_level_design_passes_the_checks():
    """The design of lme4's ?grouseticks example: 584 random effects for 403 rows in total, but
    per term 403 (INDEX, = n: allowed with glmer's allow.n), 118 and 63; lmer refuses INDEX."""
    from mixedpy.formula.design import build_design

    r = ref("grouseticks_obs_level")
    gt = mp.datasets.load("grouseticks")
    d = build_design(r["formula"], gt, allow_n_levels=True)
    assert [(t.group_name, t.n_coefs) for t in d.terms] == [("INDEX", 403), ("BROOD", 118), ("LOCATION", 63)]
    assert d.ngrps() == r["ngrps"]
    with pytest.raises(DataError, match="must be < number of observations \\(problems: 'INDEX' has 403"):
        build_design(r["formula"], gt)


def test_grouseticks_observation_level_term_fits_as_lme4():
    """lme4's own ?grouseticks example: INDEX has one level per row (403 = n) beside two terms;
    584 random effects in total, but the check is per term, and glmer allows q_i = n."""
    r = ref("grouseticks_obs_level")
    fit = quiet(mp.glmer, r["formula"], mp.datasets.load("grouseticks"), family="poisson")
    assert_matches_lme4(fit, r)
    assert [t.group_name for t in fit.terms] == ["INDEX", "BROOD", "LOCATION"]  # lme4's theta order


def test_binomial_observation_level_term_beside_herd():
    r = ref("cbpp_obs_level")
    cb = mp.datasets.load("cbpp").assign(obs=lambda d: np.arange(1, len(d) + 1).astype(str))
    fit = quiet(mp.glmer, r["formula"], cb, family="binomial")
    assert_matches_lme4(fit, r)


def test_lmer_more_random_effects_in_total_than_observations_fits():
    """66 random effects for 60 rows: lme4 fits it, since each term has fewer than n."""
    r = ref("lmer_total_q_above_n")
    d = mp.datasets.load("sleepstudy").iloc[:60].copy()
    d["half"] = d["Subject"].astype(str) + "_" + (d["Days"] // 2).astype(str)
    d["fifth"] = d["Subject"].astype(str) + "_" + (d["Days"] % 5).astype(str)
    fit = quiet(mp.lmer, r["formula"], d)
    assert sum(t.n_coefs for t in fit.terms) == 66
    assert_matches_lme4(fit, r)
    assert fit.sigma == pytest.approx(r["sigma"], rel=1e-4)


def test_lmer_levels_equal_to_observations_is_an_error(sleep, msgs):
    d = sleep.assign(each=np.arange(len(sleep)).astype(str))
    lme4 = msgs["lmer_levels_eq_n"].split(" (problems")[0]
    for formula in ["Reaction ~ Days + (1 | each)", "Reaction ~ Days + (1 | Subject) + (1 | each)"]:
        with pytest.raises(DataError, match=lme4.replace("(", r"\(").replace(")", r"\)")) as e:
            mp.lmer(formula, d)
        assert "'each' has 180 levels for 180 observations" in str(e.value)


def test_lmer_term_with_as_many_random_effects_as_observations(sleep, msgs):
    d = sleep.iloc[:20].assign(g10=list("abcdefghij") * 2)
    with pytest.raises(DataError) as e:
        mp.lmer("Reaction ~ 1 + (Days | g10)", d)
    assert str(e.value).startswith(msgs["lmer_term_q_eq_n"])


def test_glmer_allows_levels_equal_to_n_but_not_more_random_effects(msgs):
    gt = mp.datasets.load("grouseticks")
    assert msgs["glmer_levels_eq_n"] == "fits (allow.n = TRUE)"
    fit = quiet(mp.glmer, "TICKS ~ 1 + (1 | INDEX)", gt, family="poisson")
    assert fit.design.ngrps() == {"INDEX": 403}
    gt2 = gt.assign(BIG=np.r_[np.arange(1, len(gt)), 1].astype(str))
    with pytest.raises(DataError) as e:
        mp.glmer("TICKS ~ 1 + (cHEIGHT | BIG)", gt2, family="poisson")
    assert str(e.value).startswith(msgs["glmer_slope_q_gt_n"])


def test_one_level_grouping_factor(sleep, msgs):
    assert msgs["one_level_group"] == "grouping factors must have > 1 sampled level"
    with pytest.raises(DataError, match="grouping factors must have > 1 sampled level"):
        mp.lmer("Reaction ~ Days + (1 | f)", sleep.assign(f="a"))


# -- one-level factors: R's model.matrix refuses them --------------------------------------------
@pytest.mark.parametrize("formula,name", [("Reaction ~ Days + f + (1 | Subject)", "'f' has 1 level ('a')"),
                                          ("Reaction ~ Days + (f | Subject)", "'f' has 1 level ('a')"),
                                          ("Reaction ~ Days + C(k) + (1 | Subject)", "has 1 level"),
                                          ("Reaction ~ Days + f:Days + (1 | Subject)", "'f' has 1 level")])
def test_one_level_factor_is_an_error(sleep, msgs, formula, name):
    assert msgs["one_level_fixed"] == msgs["one_level_in_term"]
    d = sleep.assign(f="a", k=3)
    with pytest.raises(DataError, match=msgs["one_level_fixed"]) as e:
        mp.lmer(formula, d)
    assert name in str(e.value)


def test_factor_with_one_level_in_the_rows_used(sleep, msgs):
    d = sleep.assign(f="a")
    d.loc[0, "f"] = "b"
    d.loc[0, "Reaction"] = np.nan  # the only "b" row is dropped: one level left
    with pytest.warns(MissingValuesWarning, match="1 row with missing values dropped"):
        with pytest.raises(DataError, match=msgs["one_level_fixed"]):
            mp.lmer("Reaction ~ Days + f + (1 | Subject)", d)


# -- responses -----------------------------------------------------------------------------------
def test_string_response_is_not_parsed(sleep, msgs):
    assert msgs["string_response"] == "response must be numeric"
    d = sleep.assign(r=sleep["Reaction"].astype(str))
    with pytest.raises(DataError, match="response 'r' is not numeric"):
        mp.lmer("r ~ Days + (1 | Subject)", d)
    # numbers held in an object column are numbers
    d2 = sleep.assign(r=sleep["Reaction"].astype(object))
    fit = quiet(mp.lmer, "r ~ Days + (1 | Subject)", d2)
    np.testing.assert_allclose(fit.beta, quiet(mp.lmer, "Reaction ~ Days + (1 | Subject)", sleep).beta)


def test_constant_response_lmer_glmer_bayes(sleep):
    with pytest.raises(DataError, match="response 'Reaction' is constant \\(every value is 5\\)"):
        mp.lmer("Reaction ~ Days + (1 | Subject)", sleep.assign(Reaction=5.0))
    with pytest.raises(DataError, match="is constant"):
        mp.glmer("TICKS ~ 1 + (1 | BROOD)", mp.datasets.load("grouseticks").assign(TICKS=2), family="poisson")
    with pytest.raises(DataError, match="is constant"):
        mp.bayes_lmer("Reaction ~ Days + (1 | Subject)", sleep.assign(Reaction=5.0), iter=10, progress=False)


def test_nan_in_response_is_dropped_inf_is_an_error(sleep):
    d = sleep.copy()
    d.loc[3, "Reaction"] = np.nan
    with pytest.warns(MissingValuesWarning, match="1 row with missing values dropped \\(179 of 180 used\\)"):
        fit = mp.lmer("Reaction ~ Days + (1 | Subject)", d)
    assert fit.nobs == 179
    d.loc[3, "Reaction"] = np.inf
    with pytest.raises(DataError, match="response 'Reaction' has non-finite values \\(inf\\).*first at row 3"):
        mp.lmer("Reaction ~ Days + (1 | Subject)", d)
    with pytest.raises(DataError, match="response 'np.log\\(Reaction - 300\\)' has non-finite values"):
        quiet(mp.lmer, "np.log(Reaction - 300) ~ Days + (1 | Subject)", sleep)


def test_family_response_checks():
    cb = mp.datasets.load("cbpp")
    with pytest.raises(DataError, match="negative successes"):
        mp.glmer("cbind(incidence - 3, size) ~ period + (1 | herd)", cb, family="binomial")
    with pytest.raises(DataError, match="must be 0/1 or a proportion"):
        mp.glmer("incidence ~ period + (1 | herd)", cb, family="binomial")
    with pytest.raises(DataError, match="poisson response 'I\\(incidence / 2\\)' has .* non-integer"):
        mp.glmer("I(incidence / 2) ~ period + (1 | herd)", cb, family="poisson")
    with pytest.raises(DataError, match="negative value"):
        mp.glmer("I(incidence - 1) ~ period + (1 | herd)", cb, family="poisson")
    with pytest.raises(DataError, match="binomial response .* must be 0/1"):
        mp.bayes_glmer("incidence ~ period + (1 | herd)", cb, family="binomial", iter=10, progress=False)


# -- predictors, offsets, weights ------------------------------------------------------------------
def test_inf_in_a_predictor_is_an_error_naming_it(sleep, msgs):
    assert "Inf" in msgs["inf_predictor"]  # R fails too (in qr)
    d = sleep.assign(x=sleep["Days"] ** 2.0)
    d.loc[2, "x"] = np.inf
    with pytest.raises(DataError, match="fixed-effects column 'x' has non-finite values.*first at row 2"):
        mp.lmer("Reaction ~ Days + x + (1 | Subject)", d)
    with pytest.raises(DataError, match="random-effects term \\(x \\| Subject\\) column 'x'"):
        mp.lmer("Reaction ~ Days + (x | Subject)", d)
    with pytest.raises(DataError, match="fixed-effects column 'np.log\\(Days\\)'"):
        quiet(mp.lmer, "Reaction ~ np.log(Days) + (1 | Subject)", sleep)
    with pytest.raises(DataError, match="offset has non-finite values"):
        mp.lmer("Reaction ~ Days + (1 | Subject)", d, offset="x")
    with pytest.raises(DataError, match="weights must be finite"):
        mp.lmer("Reaction ~ Days + (1 | Subject)", d, weights="x")


def test_zero_weights_lmer_equals_fit_without_those_rows(sleep):
    """lme4's lmer has logLik = -Inf with zero weights (no defined answer); R's lm leaves those rows
    out of the residual df.  sigma, logLik, nobs and fixef equal lme4's fit on the other rows."""
    r = ref("lmer_zero_weights")
    assert r["lme4_with_zero_weights"]["logLik"] == "-Inf"
    assert r["lm_sigma_with_zero_weights"] == pytest.approx(r["lm_sigma_dropped"])
    w = np.ones(len(sleep))
    w[np.asarray(r["zero_rows_1based"]) - 1] = 0
    for reml, key in [(True, "dropped_fit"), (False, "dropped_fit_ml")]:
        with pytest.warns(ZeroWeightsWarning, match="4 rows with weight 0 left out"):
            fit = mp.lmer(r["formula"], sleep, weights=w, REML=reml)
        d = r[key]
        assert_matches_lme4(fit, d, rtol=1e-5)
        assert fit.sigma == pytest.approx(d["sigma"], rel=1e-6)
        assert len(fit.design.row_index) == 176


def test_zero_weights_glmer_kept_as_lme4():
    r = ref("glmer_zero_weights")
    cb = mp.datasets.load("cbpp")
    w = np.ones(len(cb))
    w[np.asarray(r["zero_rows_1based"]) - 1] = 0
    fit = quiet(mp.glmer, r["formula"], cb, family="binomial", weights=w)
    assert_matches_lme4(fit, r["with_zero_weights"])
    assert fit.loglik == pytest.approx(r["dropped_fit"]["logLik"], abs=1e-3)
    assert r["with_zero_weights"]["nobs"] == 56
    assert fit.bic == pytest.approx(r["with_zero_weights"]["BIC"], abs=1e-2)


def test_weights_series_aligned_by_index(sleep):
    w = pd.Series(1.0 + sleep["Days"] % 3, index=sleep.index)
    ref_fit = quiet(mp.lmer, "Reaction ~ Days + (1 | Subject)", sleep, weights=w.to_numpy())
    shuffled = w.sample(frac=1.0, random_state=1)
    assert not shuffled.index.equals(sleep.index)
    fit = quiet(mp.lmer, "Reaction ~ Days + (1 | Subject)", sleep, weights=shuffled)
    np.testing.assert_allclose(fit.beta, ref_fit.beta, rtol=1e-10)
    assert fit.sigma == pytest.approx(ref_fit.sigma, rel=1e-10)
    with pytest.raises(DataError, match="weights is a Series whose index does not match the data's index"):
        mp.lmer("Reaction ~ Days + (1 | Subject)", sleep, weights=w.set_axis(np.arange(1000, 1000 + len(w))))
    with pytest.raises(DataError, match="index does not match"):  # a subset of the rows
        mp.lmer("Reaction ~ Days + (1 | Subject)", sleep, weights=w.iloc[:-1])
    # an offset Series is aligned the same way (lme4's offset = argument)
    off = pd.Series(0.5 * sleep["Days"], index=sleep.index)
    a = quiet(mp.lmer, "Reaction ~ Days + (1 | Subject)", sleep, offset=off.to_numpy())
    b = quiet(mp.lmer, "Reaction ~ Days + (1 | Subject)", sleep, offset=off.iloc[::-1])
    np.testing.assert_allclose(a.beta, b.beta, rtol=1e-10)


# -- the data frame and arguments --------------------------------------------------------------------
def test_duplicate_column_names(sleep):
    d = pd.concat([sleep, sleep[["Days"]]], axis=1)
    with pytest.raises(DataError, match="duplicate column names: 'Days'"):
        mp.lmer("Reaction ~ Days + (1 | Subject)", d)


def test_reml_must_be_a_bool(sleep):
    with pytest.raises(TypeError, match="REML must be True or False, got 'no'"):
        mp.lmer("Reaction ~ Days + (1 | Subject)", sleep, REML="no")
    with pytest.raises(TypeError, match="REML must be True or False"):
        mp.lmer("Reaction ~ Days + (1 | Subject)", sleep, REML=0)
    ml = quiet(mp.lmer, "Reaction ~ Days + (1 | Subject)", sleep, REML=np.bool_(False))
    assert not ml.reml
    with pytest.raises(TypeError, match="reml must be True or False"):
        mp.LMM.from_formula("Reaction ~ Days + (1 | Subject)", sleep).fit(reml="yes")
    with pytest.raises(TypeError, match="reml must be True or False"):
        ml.refit(reml="FALSE")


def test_warning_categories(sleep):
    d = sleep.assign(Days2=2 * sleep["Days"], big=sleep["Days"] * 1e5)
    with pytest.warns(RankDeficiencyWarning,
                      match="^fixed-effect model matrix is rank deficient so dropping 1 column / coefficient"):
        mp.lmer("Reaction ~ Days + Days2 + (1 | Subject)", d)
    with pytest.warns(ScaleWarning, match="Some predictor variables are on very different scales"):
        mp.lmer("Reaction ~ big + (1 | Subject)", d)
    assert issubclass(MissingValuesWarning, UserWarning)


# -- predict: newdata grouping values ------------------------------------------------------------------
@pytest.fixture(scope="module")
def int_fit():
    d = mp.datasets.load("sleepstudy")
    d["Sub"] = d["Subject"].astype(int)
    return quiet(mp.lmer, "Reaction ~ Days + (1 | Sub)", d)


def test_predict_matches_integer_levels_by_value(int_fit):
    r = ref("predict_group_keys")
    nd = pd.DataFrame({"Days": [2.0, 3.0], "Sub": [308.0, 309.0]})  # floats for an integer column
    np.testing.assert_allclose(int_fit.predict(nd), r["predict_known"], rtol=1e-6)
    with pytest.raises(DataError, match="new levels detected in newdata for 'Sub': 308.5"):
        int_fit.predict(pd.DataFrame({"Days": [1.0], "Sub": [308.5]}))
    assert r["new_level_error"] == "new levels detected in newdata: 308.5"


def test_predict_numbers_for_string_levels(sleep):
    fit = quiet(mp.lmer, "Reaction ~ Days + (1 | Subject)", sleep)
    a = fit.predict(pd.DataFrame({"Days": [2.0], "Subject": ["308"]}))
    b = fit.predict(pd.DataFrame({"Days": [2.0], "Subject": [308.0]}))  # R compares as.character(308)
    np.testing.assert_allclose(a, b)


def test_predict_missing_grouping_value(int_fit, sleep):
    r = ref("predict_group_keys")
    nd = pd.DataFrame({"Days": [1.0, 2.0, 3.0], "Sub": [np.nan, 308.0, 309.0]})
    np.testing.assert_allclose(int_fit.predict(nd, allow_new_levels=True), r["predict_allow_new"], rtol=1e-6)
    with pytest.raises(DataError, match="NAs are not allowed in prediction data for grouping variables unless "
                                        "allow_new_levels=True"):
        int_fit.predict(nd)
    # a string grouping column with a missing value: no TypeError in predict or simulate
    fit = quiet(mp.lmer, "Reaction ~ Days + (1 | Subject)", sleep)
    nd2 = pd.DataFrame({"Days": [1.0, 2.0], "Subject": [np.nan, "308"]})
    p = fit.predict(nd2, allow_new_levels=True)
    assert p[0] == pytest.approx(fit.beta[0] + fit.beta[1])
    sims = fit.simulate(3, seed=1, newdata=nd2, allow_new_levels=True)
    assert sims.shape == (2, 3)
    draws = mp.predictive_draws(fit, nd2, n_sims=5)
    assert np.all(np.isfinite(np.asarray(draws, dtype=float)))
