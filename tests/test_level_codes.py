"""Grouping-factor codes of a Categorical column whose categories include levels the rows do not
use (a subset of a bundled dataset, whose factors carry R's levels): R's droplevels semantics,
with no pandas deprecation on the way (pandas will raise there)."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

import mixedpy as mp
from mixedpy.formula.design import grouping_codes, level_codes


def test_level_codes_of_categoricals_strings_and_numbers():
    cat = pd.Series(pd.Categorical(["1", "2", None, "3"], categories=["3", "1", "2", "4"]))
    np.testing.assert_array_equal(level_codes(cat, ["1", "2", "3"]), [0, 1, -1, 2])
    np.testing.assert_array_equal(level_codes(pd.Series([3.0, np.nan, 1.0]), [1.0, 3.0]), [1, -1, 0])
    np.testing.assert_array_equal(level_codes(pd.Series(["b", "a"]), ["a", "b"]), [1, 0])


def test_subset_of_a_categorical_factor_codes_its_used_levels_without_a_deprecation():
    cbpp = mp.datasets.load("cbpp")
    assert isinstance(cbpp["herd"].dtype, pd.CategoricalDtype)
    sub = cbpp[cbpp["herd"].isin(["1", "3", "10"])]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        codes, labels = grouping_codes(sub, ("herd",))
        fit = mp.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", sub, family="binomial")
    assert labels == ["1", "3", "10"]                       # R's order, unused levels dropped
    np.testing.assert_array_equal(np.asarray(labels)[codes], sub["herd"].astype(str).to_numpy())
    assert list(mp.ranef(fit)["herd"].index) == ["1", "3", "10"]
