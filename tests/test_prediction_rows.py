"""One layout for every prediction (mixedpy.predict_se.prediction_rows) and ``na_action`` derived
from ``data_index``.

Reference: tests/reference/gen/residuals_predict.R (lme4 1.1-31): ``predict(m)`` of an na.exclude
fit has the data's rows with NA where the fit dropped one (R's napredict), for the se_fit frame's
columns as for the plain prediction.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import mixedpy as mp
from mixedpy.predict_se import prediction_rows
from test_residuals import REF, at_theta, na_sleep, sleep_data

FORMULA = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def fits():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mp.MissingValuesWarning)
        exclude = mp.lmer(FORMULA, na_sleep(), na_action="exclude")
        omit = mp.lmer(FORMULA, na_sleep())
    return {"exclude": at_theta(exclude, REF["na_lmer"]["theta"]), "omit": omit}


def _r_na(values) -> np.ndarray:
    return np.array([np.nan if v in (None, "NA") else v for v in values], dtype=float)


def test_se_fit_frame_of_an_na_exclude_fit_is_rs_padded_prediction(fits):
    fit = fits["exclude"]
    want = _r_na(REF["na_lmer"]["predict"])
    frame = fit.predict(se_fit=True, interval="prediction")
    plain = fit.predict()
    assert list(frame.index) == REF["na_lmer"]["names"] and frame.index.equals(plain.index)
    for col in frame.columns:
        np.testing.assert_array_equal(np.isnan(frame[col].to_numpy()), np.isnan(want), err_msg=col)
    ok = ~np.isnan(want)
    np.testing.assert_allclose(frame["fit"].to_numpy()[ok], want[ok], rtol=1e-6)
    np.testing.assert_allclose(plain.to_numpy()[ok], want[ok], rtol=1e-6)


def test_omit_fit_predictions_cover_the_rows_used(fits):
    fit = fits["omit"]
    frame, plain = fit.predict(se_fit=True), fit.predict()
    assert len(plain) == 177 and frame.index.equals(plain.index) and frame.index.equals(fit.design.row_index)
    assert frame.notna().all().all()


def test_newdata_predictions_are_indexed_like_newdata():
    fit = mp.lmer(FORMULA, sleep_data())
    nd = sleep_data().iloc[[5, 3, 3, 100]]
    nd.index = ["b", "a", "a", "z"]   # labels kept, duplicates included
    for out in (fit.predict(nd), fit.predict(nd, se_fit=True), fit.predict(nd, interval="confidence")):
        assert list(out.index) == ["b", "a", "a", "z"]
    np.testing.assert_allclose(fit.predict(nd, se_fit=True)["fit"].to_numpy(), fit.predict(nd).to_numpy())
    as_dict = {c: nd[c].tolist() for c in nd.columns}   # not a pandas object: rows 0..n-1
    for out in (fit.predict(as_dict), fit.predict(as_dict, se_fit=True)):
        assert out.index.equals(pd.RangeIndex(4))


def test_prediction_rows_lays_out_values_as_the_fit_says(fits):
    ex = fits["exclude"]
    v = np.arange(ex.nobs, dtype=float)
    out = prediction_rows(ex, v)
    assert len(out) == 180 and out.isna().sum() == 3 and out.dropna().to_numpy().tolist() == v.tolist()
    nd = pd.DataFrame({"Days": [1, 2]}, index=[10, 20])
    assert prediction_rows(ex, np.array([1.0, 2.0]), nd).index.tolist() == [10, 20]


def test_na_action_is_derived_from_data_index(fits):
    ex, om = fits["exclude"], fits["omit"]
    assert ex.na_action == "exclude" and ex.data_index.equals(na_sleep().index)
    assert om.na_action == "omit" and om.data_index is None
    for fit in (ex, om):
        assert "na_action" not in vars(fit)   # one record of the layout: data_index
    ml = ex.refit(reml=False)
    assert ml.na_action == "exclude" and ml.data_index is ex.data_index and len(ml.fitted) == 180
    assert om.refit(reml=False).na_action == "omit"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mp.MissingValuesWarning)
        up = mp.update(ex, ". ~ . - Days", data=na_sleep())   # the call keeps na_action="exclude"
    assert up.na_action == "exclude" and len(up.fitted) == 180
