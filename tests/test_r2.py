"""Nakagawa's R^2 and the ICC against R's performance 0.10.2 (issue 12 item 4).

Reference values: tests/reference/gen/lmertest.R.  Fits are mixedpy's own (end to end).
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import mixedpy as mp
from test_lmertest import load_case

CASES = ["sleepstudy_slope", "sleepstudy_slope_ml", "sleepstudy_intercept", "repeated", "crossed", "ordered",
         "cbpp", "binary", "grouseticks"]


def _fit(name):
    ref, d = load_case(name)
    if "family" in ref:
        return ref, mp.glmer(ref["formula"], d, family=ref["family"])
    return ref, mp.lmer(ref["formula"], d, REML=ref["REML"])


@pytest.mark.parametrize("name", CASES)
def test_r2_and_icc_match_performance(name):
    ref, fit = _fit(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mp.DiagnosticWarning)   # performance's mu < 6 note (Poisson)
        r2, icc = mp.r2(fit), mp.icc(fit)
    assert list(r2.index) == ["R2_marginal", "R2_conditional"]
    assert list(icc.index) == ["ICC_adjusted", "ICC_unadjusted"]
    want = pd.Series(ref["performance"])
    got = pd.concat([r2, icc])
    np.testing.assert_allclose(got.to_numpy(), want[got.index].to_numpy(), rtol=1e-4)


def test_poisson_warns_when_mu_is_small_as_performance():
    ref, fit = _fit("grouseticks")
    with pytest.warns(mp.DiagnosticWarning, match="too close to zero"):
        mp.r2(fit)

