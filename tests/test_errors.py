"""Bad input gets an error that names the problem."""
import numpy as np
import pandas as pd
import pytest

import mixedpy as mp


@pytest.fixture
def df():
    rng = np.random.default_rng(3)
    n = 60
    return pd.DataFrame({"y": rng.normal(size=n), "x": rng.normal(size=n), "g": rng.choice(list("abcdef"), n),
                         "one": "only", "word": rng.choice(["p", "q"], n), "each": np.arange(n).astype(str)})


def test_unknown_column(df):
    with pytest.raises(mp.FormulaError, match="unknown column 'z'"):
        mp.lmer("y ~ z + (1 | g)", df)
    with pytest.raises(mp.FormulaError, match="unknown column 'h'"):
        mp.lmer("y ~ x + (1 | h)", df)


def test_malformed_bar(df):
    with pytest.raises(mp.FormulaError, match="malformed random-effects term"):
        mp.lmer("y ~ x + x | g", df)


def test_no_random_effects(df):
    with pytest.raises(mp.FormulaError, match="no random-effects terms"):
        mp.lmer("y ~ x", df)


def test_single_level_grouping_factor(df):
    with pytest.raises(mp.DataError, match="'one' has 1 level"):
        mp.lmer("y ~ x + (1 | one)", df)


def test_as_many_levels_as_observations(df):
    with pytest.raises(mp.DataError, match="levels for 60 observations"):
        mp.lmer("y ~ x + (1 | each)", df)


def test_more_random_effects_than_observations(df):
    small = df.iloc[:10].copy()
    small["g5"] = list("abcde") * 2
    with pytest.raises(mp.DataError, match=r"number of observations \(=10\) <= number of random effects "
                                           r"\(=15\) for term \(x \+ I\(x\*\*2\) \| g5\)"):
        mp.lmer("y ~ 1 + (x + I(x**2) | g5)", small)


def test_non_numeric_response(df):
    with pytest.raises(mp.DataError, match="not numeric"):
        mp.lmer("word ~ x + (1 | g)", df)


def test_empty_after_dropping_missing(df):
    df = df.assign(x=np.nan)
    with pytest.raises(mp.DataError, match="no complete rows"):
        with pytest.warns(UserWarning):
            mp.lmer("y ~ x + (1 | g)", df)


def test_bad_weights(df):
    with pytest.raises(mp.DataError, match="weights must be non-negative"):
        mp.lmer("y ~ x + (1 | g)", df, weights=-np.ones(len(df)))
    with pytest.raises(mp.DataError, match="not a column"):
        mp.lmer("y ~ x + (1 | g)", df, weights="nope")
    with pytest.raises(mp.DataError, match="length"):
        mp.lmer("y ~ x + (1 | g)", df, weights=np.ones(3))


def test_new_levels_error_names_levels(df):
    fit = mp.lmer("y ~ x + (1 | g)", df)
    new = pd.DataFrame({"x": [0.0], "g": ["zzz"]})
    with pytest.raises(mp.DataError, match="new levels detected.*zzz"):
        fit.predict(new)
    assert fit.predict(new, allow_new_levels=True)[0] == pytest.approx(fit.beta[0])


def test_singular_fit_warns_with_advice():
    from conftest import ref_data

    with pytest.warns(mp.SingularFitWarning, match="singular"):
        fit = mp.lmer("Yield ~ 1 + (1 | Batch)", ref_data("dyestuff2.csv"))
    assert fit.is_singular


def test_predictors_on_very_different_scales_warn(df):
    df = df.assign(big=np.random.default_rng(0).normal(size=len(df)) * 1e5)
    with pytest.warns(UserWarning, match="very different scales"):
        mp.lmer("y ~ x + big + (1 | g)", df)


def test_predict_newdata_missing_column(df):
    fit = mp.lmer("y ~ x + (1 | g)", df)
    with pytest.raises(mp.DataError, match="newdata has no column 'x' \\(used by the fixed effects\\)"):
        fit.predict(pd.DataFrame({"g": ["a"]}))
    with pytest.raises(mp.DataError, match="no column 'g'"):
        fit.predict(pd.DataFrame({"x": [0.0]}))
