"""update (R's update.formula), drop1 and ranova against R (issue 12, parts 2 and 6).

Reference values: tests/reference/gen/model_building.R (R 4.2.2, lme4 1.1-31, lmerTest 3.1-3).
Tolerances of issue 12: df and p-values 1e-3 relative, F 1e-4; log-likelihoods, AIC and LRT are
compared at the fits' own optima (which differ from lme4's by ~1e-5 in theta).
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedpy as mp
from mixedpy.errors import DataError, FormulaError, MixedpyError
from mixedpy.glmer import GlmerFit
from mixedpy.model_building import findbars, lm_loglik, nobars
from mixedpy.results import LmerFit

from test_lmertest import ref_frame

REF = Path(__file__).parent / "reference" / "model_building"
ROOT = Path(__file__).parent.parent
#: columns that are factors in R (numbers in the csv files)
FACTORS = ("Subject", "period", "Consumer", "Product", "Information", "Gender")
RTOL = {"DenDF": 1e-3, "Pr(>F)": 1e-3, "F value": 1e-4, "Pr(Chi)": 1e-3, "Pr(>Chisq)": 1e-3, "LRT": 1e-4,
        "Sum Sq": 1e-4, "Mean Sq": 1e-4}
LMER_CASES = {c["name"]: c for c in json.loads((REF / "lmer_cases.json").read_text())}
GLMER_CASES = {c["name"]: c for c in json.loads((REF / "glmer_cases.json").read_text())}
#: ham_missing_cell's X is rank deficient by design (lme4 drops a column with a message too)
pytestmark = pytest.mark.filterwarnings("ignore::mixedpy.errors.RankDeficiencyWarning")


def load_data(path: str) -> pd.DataFrame:
    d = pd.read_csv(ROOT / path if path.startswith(("mixedpy", "tests")) else REF / path)
    for c in d.columns:
        if d[c].dtype == object or c in FACTORS:
            d[c] = d[c].astype(str)
    return d


def assert_table(mine: pd.DataFrame, ref: pd.DataFrame, rtol: float = 1e-6):
    assert list(mine.index) == list(ref.index)
    assert list(mine.columns) == list(ref.columns)
    for col in ref.columns:
        np.testing.assert_allclose(mine[col].to_numpy(float), ref[col].to_numpy(float), rtol=RTOL.get(col, rtol),
                                   err_msg=col)


_fits: dict = {}


def lmer_case(name: str):
    if name not in _fits:
        ref = LMER_CASES[name]
        d = load_data(ref["data"])
        weights = "w" if "w" in d.columns else None       # R: weights = w, a column of the data
        _fits[name] = (ref, mp.lmer(ref["formula"], d, REML=ref["REML"], weights=weights), d)
    return _fits[name]


# -- update.formula ------------------------------------------------------------------------
UPDATE_CASES = json.loads((REF / "update_formula.json").read_text())


@pytest.mark.parametrize("case", UPDATE_CASES, ids=[f"{c['old']} | {c['new']}" for c in UPDATE_CASES])
def test_update_formula_is_rs(case):
    assert mp.update_formula(case["old"], case["new"]) == case["result"]


def test_update_formula_errors():
    with pytest.raises(FormulaError, match="'.'"):
        mp.update_formula("y ~ .", ". ~ . + z")     # R: "'.' in formula and no 'data' argument"
    with pytest.raises(FormulaError, match="no '~'"):
        mp.update_formula("y ~ x", ". + z")
    with pytest.raises(FormulaError, match="more than one"):
        mp.update_formula("y ~ x", ". ~ . ~ z")


def test_findbars_and_nobars_are_lme4s():
    """lme4 1.1-31: findbars(y ~ x + (1|a/b) + (x||g)) is 1 | b:a, 1 | a, 1 | g, 0 + x | g."""
    assert findbars("x + (1 | a/b) + (x || g)") == ["1 | b:a", "1 | a", "1 | g", "0 + x | g"]
    assert findbars("Days + (0+Days|Subject)") == ["0 + Days | Subject"]
    assert nobars("x + (1 | g) + z") == "x + z"
    assert nobars("(1 | g)") == "1"
    assert nobars("0 + (1 | g)") == "0"


# -- update: refits --------------------------------------------------------------------------
def test_update_refits_lmer_with_r_formula():
    ref = LMER_CASES["sleepstudy"]
    sleep = load_data(ref["data"])
    fit = mp.lmer(ref["formula"], sleep)
    reduced = mp.update(fit, ". ~ . - (Days | Subject) + (1 | Subject)")
    assert isinstance(reduced, LmerFit) and reduced.reml
    assert reduced.formula == "Reaction ~ Days + (1 | Subject)"
    assert reduced.data_name == "sleep"
    # lmerTest's ranova row of the same model
    np.testing.assert_allclose(reduced.loglik, ref_frame(ref["ranova"])["logLik"].iloc[1], rtol=1e-7)
    ml = mp.update(fit, REML=False)
    assert not ml.reml and ml.formula == fit.formula
    np.testing.assert_allclose(ml.loglik, ref_frame(LMER_CASES["sleepstudy_ml"]["ranova"])["logLik"].iloc[0],
                               rtol=1e-7)
    logged = mp.update(fit, "log(.) ~ .")
    assert logged.formula == "log(Reaction) ~ Days + (Days | Subject)"
    np.testing.assert_allclose(logged.fitted, mp.lmer("log(Reaction) ~ Days + (Days | Subject)", sleep).fitted,
                               rtol=1e-6)


def test_update_data_argument_and_missing_data():
    sleep = load_data("mixedpy/datasets/data/sleepstudy.csv")

    def fitted_elsewhere():
        local_frame = sleep.copy()
        return mp.lmer("Reaction ~ Days + (1 | Subject)", local_frame)

    fit = fitted_elsewhere()
    with pytest.raises(MixedpyError, match="local_frame.*pass data="):
        mp.update(fit, ". ~ . + I(Days^2)")
    quad = mp.update(fit, ". ~ . + I(Days^2)", data=sleep)
    assert quad.fixef_names == ["(Intercept)", "Days", "I(Days^2)"]
    # a variable of the caller's is seen by the new formula, as R's update evaluates there
    late = (sleep["Days"].to_numpy() > 4).astype(float)   # noqa: F841 - the formula reads it
    with_late = mp.update(fit, "~ . + late", data=sleep)
    assert with_late.fixef_names == ["(Intercept)", "Days", "late"]
    np.testing.assert_allclose(with_late.loglik, mp.lmer("Reaction ~ Days + late + (1 | Subject)", sleep).loglik)


def test_update_keeps_weights_and_formula_offsets():
    """Weights and an offset argument are carried over; an offset in the formula is not counted twice."""
    sleep = load_data("mixedpy/datasets/data/sleepstudy.csv")
    w = 1.0 + (sleep["Days"].to_numpy() % 3)
    fit = mp.lmer("Reaction ~ Days + (1 | Subject)", sleep, weights=w)
    again = mp.update(fit, ". ~ . + I(Days^2)")
    direct = mp.lmer("Reaction ~ Days + I(Days^2) + (1 | Subject)", sleep, weights=w)
    np.testing.assert_allclose(again.loglik, direct.loglik, rtol=1e-9)
    cbpp = load_data("mixedpy/datasets/data/cbpp.csv")
    off = np.linspace(-0.2, 0.2, len(cbpp))
    g = mp.glmer("incidence ~ period + offset(log(size)) + (1 | herd)", cbpp, family="poisson", offset=off)
    g2 = mp.update(g, ". ~ . - period")
    assert isinstance(g2, GlmerFit) and g2.family.name == "poisson"
    direct = mp.glmer("incidence ~ offset(log(size)) + (1 | herd)", cbpp, family="poisson", offset=off)
    np.testing.assert_allclose(g2.loglik, direct.loglik, rtol=1e-7)


# -- drop1 -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(LMER_CASES))
@pytest.mark.parametrize("ddf", ["Satterthwaite", "Kenward-Roger"])
def test_drop1_lmer_is_lmertests(name, ddf):
    ref, fit, d = lmer_case(name)
    if ddf not in ref["drop1"]:
        pytest.skip("lmerTest has Kenward-Roger only for REML fits")
    if ddf == "Kenward-Roger" and fit.design.weights is not None:
        # pbkrtest ignores prior weights (its number is not a weighted fit's); mixedpy's KR refuses
        with pytest.raises(MixedpyError, match="weighted"):
            mp.drop1(fit, ddf=ddf)
        return
    mine = mp.drop1(fit, ddf=ddf)
    assert_table(mine, ref_frame(ref["drop1"][ddf]))
    assert mine.attrs["heading"].startswith(f"Single term deletions using {ddf}'s method:")


@pytest.mark.parametrize("name", list(LMER_CASES))
def test_drop1_lmer_lme4_lrt(name):
    """lmerTest's drop1(m, ddf = "lme4", test = "Chisq"): lme4's refits, compared by ML."""
    ref, fit, d = lmer_case(name)
    mine = mp.drop1(fit, test="Chisq", data=d)
    theirs = ref_frame(ref["drop1"]["lme4_Chisq"])
    if len(theirs) == 1:      # no term to drop: R's one-row data.frame loses the row name "<none>"
        theirs.index = ["<none>"]
    assert_table(mine, theirs, rtol=1e-6)
    none = mp.drop1(fit, ddf="lme4", data=d)       # lme4's default test = "none"
    assert list(none.columns) == ["npar", "AIC"]


@pytest.mark.parametrize("name", list(GLMER_CASES))
def test_drop1_glmer_is_lme4s(name):
    ref = GLMER_CASES[name]
    cbpp = load_data(ref["data"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mp.ScaleWarning)
        fit = mp.glmer(ref["formula"], cbpp, family="binomial")
        chisq = mp.drop1(fit)
        none = mp.drop1(fit, test="none")
    assert_table(chisq, ref_frame(ref["drop1_Chisq"]), rtol=1e-5)
    assert_table(none, ref_frame(ref["drop1_none"]), rtol=1e-5)


@pytest.mark.parametrize("name", ["ham", "repeated", "sleepstudy"])
def test_drop1_difference_contrasts_of_a_full_rank_model(name):
    """lmerTest's force_get_contrasts = TRUE: the same tests from the model-matrix difference."""
    ref, fit, d = lmer_case(name)
    assert_table(mp.drop1(fit, force_get_contrasts=True, data=d), ref_frame(ref["drop1"]["Satterthwaite"]))


def test_drop1_scope_and_errors():
    ref, fit, d = lmer_case("repeated")
    assert list(mp.drop1(fit, scope=["week:group"]).index) == ["week:group"]
    with pytest.raises(ValueError, match="marginal"):
        mp.drop1(fit, scope=["week"])          # lmerTest: only marginal terms can be dropped
    with pytest.raises(ValueError, match="test"):
        mp.drop1(fit, test="Wald")
    cbpp = load_data("mixedpy/datasets/data/cbpp.csv")
    g = mp.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial")
    with pytest.raises(MixedpyError, match="lmer"):
        mp.drop1(g, test="F")
    with pytest.raises(MixedpyError, match="lmer"):
        mp.ranova(g)


def test_drop1_rows_changed_is_an_error():
    sleep = load_data("mixedpy/datasets/data/sleepstudy.csv")
    sleep["z"] = np.where(np.arange(len(sleep)) % 7 == 0, np.nan, 1.0 * np.arange(len(sleep)))
    sleep["Days2"] = sleep["Days"] ** 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mp.MissingValuesWarning)
        fit = mp.lmer("Reaction ~ Days + z + (1 | Subject)", sleep)
        with pytest.raises(DataError, match="number of rows"):
            mp.drop1(fit, test="Chisq")


# -- ranova -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(LMER_CASES))
def test_ranova_is_lmertests(name):
    ref, fit, d = lmer_case(name)
    mine = mp.ranova(fit, data=d)
    assert_table(mine, ref_frame(ref["ranova"]), rtol=1e-6)
    assert mine.attrs["formulae"] == ref["ranova_formulae"]
    assert mine.attrs["heading"].endswith("\n" + ref["ranova_heading"])
    complete = mp.ranova(fit, reduce_terms=False, data=d)
    assert_table(complete, ref_frame(ref["ranova_complete"]), rtol=1e-6)


def test_ranova_finds_the_data_by_name():
    sleep = load_data("mixedpy/datasets/data/sleepstudy.csv")
    fit = mp.lmer("Reaction ~ Days + (1 | Subject)", sleep)
    out = mp.ranova(fit)       # the model left has no random effects: R's logLik.lm (REML)
    np.testing.assert_allclose(out["logLik"].to_numpy(), [-893.232542697461, -946.831831736054], rtol=1e-8)
    assert list(out.index) == ["<none>", "(1 | Subject)"]


def test_lm_loglik_is_rs():
    """R: logLik(lm(Reaction ~ Days, sleepstudy)) = -950.146528178182 (ML), REML = TRUE: -946.831831736054."""
    sleep = load_data("mixedpy/datasets/data/sleepstudy.csv")
    X = np.column_stack([np.ones(len(sleep)), sleep["Days"]])
    y = sleep["Reaction"].to_numpy(float)
    assert lm_loglik(y, X, None, reml=False) == (3, pytest.approx(-950.146528178182, rel=1e-12))
    assert lm_loglik(y, X, None, reml=True)[1] == pytest.approx(-946.831831736054, rel=1e-12)


def test_update_of_a_glmer_nb_fit_reestimates_theta():
    """R: update() of a glmer.nb fit calls glmer.nb again (theta is estimated for the new model)."""
    glmer_nb = pytest.importorskip("mixedpy.glmer_nb").glmer_nb
    ticks = load_data("mixedpy/datasets/data/grouseticks.csv").astype({"YEAR": str, "LOCATION": str})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nb = glmer_nb("TICKS ~ YEAR + (1 | LOCATION)", ticks)
        smaller = mp.update(nb, ". ~ . - YEAR")
        direct = glmer_nb("TICKS ~ (1 | LOCATION)", ticks)
    assert type(smaller) is type(nb)
    np.testing.assert_allclose(smaller.nb_theta, direct.nb_theta, rtol=1e-6)
    np.testing.assert_allclose(smaller.loglik, direct.loglik, rtol=1e-8)
