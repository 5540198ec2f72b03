"""hatvalues, one-step cooks.distance and prediction standard errors from the blocked factor
(mixedpy.row_quadratic): InstEval-size checks against lme4 and checks of each path against the
dense formula r_i A^{-1} r_i'.

Reference: tests/reference/gen/hatvalues_insteval.R (lme4 1.1-31's hatvalues.merMod and
cooks.distance.merMod on InstEval and on its even-numbered students' rows).  The fits are profiled
at lme4's theta, as in test_residuals.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import mixedpy as mp
from mixedpy import row_quadratic
from mixedpy.linalg.blocked import BlockedFactor
from mixedpy.newdata import model_rows, selected_terms
from test_residuals import at_theta

REF = json.loads((Path(__file__).parent / "reference" / "residuals" / "hatvalues_insteval.json").read_text())
FORMULA = "y ~ service + (1 | s) + (1 | d) + (1 | dept)"


def insteval_at_lme4s_theta(case: str):
    d = mp.datasets.load("insteval")
    if case == "even_students":
        d = d[d["s"].astype(int) % 2 == 0]
    R = REF[case]
    fit = at_theta(mp.lmer(FORMULA, d), R["theta"])
    assert fit.nobs == R["nobs"]
    return fit, R


def no_row_solves(monkeypatch):
    """Make the forward solve with the whole factor (the per-row path) fail."""
    def fail(*args, **kwargs):
        raise AssertionError("hat values went through forward solves on blocks of rows")
    monkeypatch.setattr(BlockedFactor, "solve_lower", fail)


def check_insteval(fit, R):
    h = mp.hatvalues(fit)
    step = R["step"]
    np.testing.assert_allclose(h.to_numpy()[::step], R["hat"], rtol=1e-6)
    np.testing.assert_allclose(h.sum(), R["hat_sum"], rtol=1e-7)
    cd = mp.cooks_distance(fit).to_numpy()
    np.testing.assert_allclose(cd[::step], R["cooks"], rtol=1e-5)
    np.testing.assert_allclose(cd.sum(), R["cooks_sum"], rtol=1e-6)


def test_hatvalues_of_insteval_even_students_are_lme4s_without_row_solves(monkeypatch):
    fit, R = insteval_at_lme4s_theta("even_students")
    # the same structure as all of InstEval: s (1,486 students) first, d's block after it
    assert fit.terms[0].group_name == "s" and fit.state.factor.cp.types[1, 1] in ("Cholmod", "Dense")
    no_row_solves(monkeypatch)
    check_insteval(fit, R)


@pytest.mark.slow
def test_hatvalues_of_insteval_are_lme4s_without_row_solves(monkeypatch):
    fit, R = insteval_at_lme4s_theta("full")
    no_row_solves(monkeypatch)
    check_insteval(fit, R)


# ---- each path against the dense formula -----------------------------------------------------
def crossed_data(seed: int = 3) -> pd.DataFrame:
    """Random slopes on g (k = 2, the first term) crossed with random slopes on h and intercepts on f."""
    rng = np.random.default_rng(seed)
    n = 400
    g, h, f = rng.integers(0, 40, n), rng.integers(0, 12, n), rng.integers(0, 6, n)
    x = rng.normal(size=n)
    y = (1 + 0.5 * x + rng.normal(size=40)[g] + 0.4 * x * rng.normal(size=40)[g] + rng.normal(size=12)[h]
         + 0.5 * x * rng.normal(size=12)[h] + rng.normal(size=6)[f] + rng.normal(size=n))
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g], "h": [f"h{i}" for i in h],
                         "f": [f"f{i}" for i in f]})


FORMULA_2 = "y ~ x + (x | g) + (x | h) + (1 | f)"


@pytest.fixture(scope="module")
def crossed():
    return mp.lmer(FORMULA_2, crossed_data())


def dense_quadratic(fit, rows):
    """r_i A^{-1} r_i' with A = [[Lambda'Z'Z Lambda + I, Lambda'Z'X], [X'Z Lambda, X'X]] formed
    densely from getME's Z, Lambda and X (no factor)."""
    Z = mp.getME(fit, "Z")
    Lam = mp.getME(fit, "Lambda")
    X = np.asarray(mp.getME(fit, "X"), dtype=float)
    ZL = (Z @ Lam).toarray()
    B = np.hstack([ZL, X])
    A = B.T @ B
    A[:ZL.shape[1], :ZL.shape[1]] += np.eye(ZL.shape[1])
    R = np.hstack([row_quadratic.u_rows(fit, rows).toarray(), rows.X])
    return np.einsum("ia,ia->i", R, np.linalg.solve(A, R.T).T)


def new_rows(fit):
    """Rows on fitted levels, new levels of g, of h and of both."""
    d = crossed_data(7).iloc[:30].copy()
    d.loc[d.index[:5], "g"] = "g_new"
    d.loc[d.index[5:10], "h"] = "h_new"
    d.loc[d.index[10:12], ["g", "h"]] = ["g_new2", "h_new2"]
    return d


@pytest.mark.parametrize("re_form", [None, "~ (x | h) + (1 | f)", "~ (x | g)", "~0"])
@pytest.mark.parametrize("path", ["schur", "schur_in_small_blocks", "row_solves"])
def test_quadratic_paths_agree_with_the_dense_formula(crossed, monkeypatch, re_form, path):
    if path == "schur_in_small_blocks":   # several ranges of g's levels and several row blocks
        monkeypatch.setattr(row_quadratic, "BLOCK_ELEMENTS", 60)
    if path == "row_solves":
        monkeypatch.setattr(row_quadratic, "SCHUR_INVERSE_ELEMENTS", 0)
    fit = crossed
    nd = new_rows(fit)
    for data in (None, nd):
        rows = model_rows(fit.design, selected_terms(fit.terms, re_form), data, allow_new_levels=True)
        got = row_quadratic.unscaled_quadratic(fit, rows)
        np.testing.assert_allclose(got, dense_quadratic(fit, rows), rtol=1e-10, atol=1e-14)
    se = fit.predict(nd, re_form=re_form, allow_new_levels=True, se_fit=True)["se_fit"].to_numpy()
    rows = model_rows(fit.design, selected_terms(fit.terms, re_form), nd, allow_new_levels=True)
    np.testing.assert_allclose(se, fit.sigma * np.sqrt(dense_quadratic(fit, rows)), rtol=1e-10)


def test_hat_values_sum_to_the_trace_of_the_hat_matrix(crossed):
    """sum h_i = tr(R A^{-1} R') for the fit's own rows (every path gives the same trace)."""
    rows = model_rows(crossed.design, list(range(len(crossed.terms))))
    h = mp.hatvalues(crossed).to_numpy()
    np.testing.assert_allclose(h, dense_quadratic(crossed, rows), rtol=1e-10)
    assert 2 < h.sum() < 2 + crossed.state.factor.cp.q


def test_u_rows_leave_new_levels_out(crossed):
    rows = model_rows(crossed.design, [0], new_rows(crossed), allow_new_levels=True)
    Zu = row_quadratic.u_rows(crossed, rows)
    new_g = np.r_[0:5, 10:12]
    fitted_g = np.setdiff1d(np.arange(Zu.shape[0]), new_g)
    assert sp.issparse(Zu) and Zu[new_g].nnz == 0 and (Zu[fitted_g].getnnz(axis=1) == 2).all()
