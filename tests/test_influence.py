"""hatvalues, cooks.distance and lme4's case-deletion influence (issue 12 part 6).

Reference: tests/reference/gen/residuals_predict.R, lme4 1.1-31's hatvalues.merMod,
cooks.distance.merMod and influence.merMod (groups = "Subject"; case deletion on six subjects;
cbpp by herd with each refit made with tight tolerances and lme4's dfbeta/dfbetas/cooks.distance
methods applied to the result).
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import mixedpy as mp
from mixedpy.influence import subset_design
from test_residuals import REF, TIGHT_G, at_theta, read, sleep_data


@pytest.fixture(scope="module")
def m():
    return at_theta(mp.lmer("Reaction ~ Days + (Days | Subject)", sleep_data()), REF["lmer"]["theta"])


def test_hatvalues_and_one_step_cooks_distance_are_lme4s(m):
    np.testing.assert_allclose(mp.hatvalues(m).to_numpy(), REF["hat_lmer"], rtol=1e-6)
    np.testing.assert_allclose(mp.cooks_distance(m).to_numpy(), REF["cooks_lmer"], rtol=1e-6)
    mw = at_theta(mp.lmer("Reaction ~ Days + (Days | Subject)", sleep_data(True), weights="w"),
                  REF["lmer_weighted"]["theta"])
    np.testing.assert_allclose(mp.hatvalues(mw).to_numpy(), REF["hat_lmer_weighted"], rtol=1e-6)
    np.testing.assert_allclose(mp.cooks_distance(mw).to_numpy(), REF["cooks_lmer_weighted"], rtol=1e-6)
    # the hat values sum to the effective number of parameters, between p and p + q
    assert 2 < mp.hatvalues(m).sum() < 2 + 36


def test_glmer_hatvalues_warn_as_lme4():
    g = mp.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", read("cbpp.csv", ["herd", "period"]),
                 family="binomial", control=TIGHT_G)
    with pytest.warns(mp.DiagnosticWarning, match="may not make sense for GLMMs"):
        h = mp.hatvalues(g)
    np.testing.assert_allclose(h.to_numpy(), REF["hat_glmer"], rtol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mp.DiagnosticWarning)
        np.testing.assert_allclose(mp.cooks_distance(g).to_numpy(), REF["cooks_glmer"], rtol=1e-4)


def within(got, want, rtol, col_scale):
    """|got - want| <= rtol (|want| + the column's scale), elementwise."""
    err = np.abs(got - want) / (np.abs(want) + col_scale)
    assert err.max() <= rtol, f"largest scaled difference {err.max():.2e} at {np.unravel_index(err.argmax(), err.shape)}"


def check_influence(inf, R, fixed_rtol=1e-6, vc_rtol=1e-3, d_rtol=1e-3):
    assert [str(d) for d in inf.deleted] == R["deleted"]
    assert list(inf.var_cov.index) == R["var_cov_names"]
    scale = np.abs(np.asarray(R["fixed"])).max()
    np.testing.assert_allclose(inf.fixed_deleted.to_numpy(), R["fixed"], rtol=fixed_rtol, atol=fixed_rtol * scale)
    vc = np.asarray(R["var_cov"])
    col_scale = np.abs(vc).max(axis=0)   # a covariance near 0 is compared on its column's scale
    within(inf.var_cov_deleted.to_numpy(), vc, vc_rtol, col_scale)
    db = np.asarray(R["dfbeta"])
    np.testing.assert_allclose(inf.dfbeta().to_numpy(), db, rtol=d_rtol, atol=d_rtol * np.abs(db).max())
    dv = np.asarray(R["dfbeta_var_cov"])
    within(inf.dfbeta("var.cov").to_numpy(), dv, vc_rtol, col_scale)
    dbs = np.asarray(R["dfbetas"])
    np.testing.assert_allclose(inf.dfbetas().to_numpy(), dbs, rtol=d_rtol, atol=d_rtol * np.abs(dbs).max())
    np.testing.assert_allclose(inf.cooks_distance().to_numpy(), R["cooks"], rtol=d_rtol)
    assert inf.converged.tolist() == [bool(c) for c in R["converged"]]


def test_influence_of_each_subject_is_lme4s():
    fit = mp.lmer("Reaction ~ Days + (Days | Subject)", sleep_data())
    inf = mp.influence(fit, groups="Subject")
    assert inf.groups == "Subject" and inf.vcov_deleted.shape == (18, 2, 2)
    # lme4's refits stop within its optimizer's tolerance: the variance components to ~1e-4
    check_influence(inf, REF["influence_subject"], vc_rtol=1e-3)


def test_case_deletion_influence_is_lme4s():
    sleep = sleep_data()
    six = sleep[sleep["Subject"].isin(sorted(sleep["Subject"].unique())[:6])].reset_index(drop=True)
    six.index = six.index + 1   # R's row names 1..60
    fit = mp.lmer("Reaction ~ Days + (1 | Subject)", six)
    inf = mp.influence(fit, progress=False)
    assert inf.groups == "case" and len(inf.deleted) == 60
    check_influence(inf, REF["influence_case"], vc_rtol=1e-5, d_rtol=1e-4)


def test_glmer_influence_of_each_herd_is_lme4s():
    g = mp.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", read("cbpp.csv", ["herd", "period"]),
                 family="binomial", control=TIGHT_G)
    inf = mp.influence(g, groups="herd")
    check_influence(inf, REF["influence_herd_tight"], fixed_rtol=1e-5, vc_rtol=1e-5, d_rtol=1e-4)
    assert [str(d) for d in inf.deleted] == REF["influence_herd"]["deleted"]   # lme4's own influence()'s order


def test_groups_from_a_data_column_and_errors():
    sleep = sleep_data()
    fit = mp.lmer("Reaction ~ Days + (1 | Subject)", sleep)
    with pytest.raises(mp.DataError, match="pass data="):
        mp.influence(fit, groups="Days")
    inf = mp.influence(fit, groups="Days", data=sleep)
    assert list(inf.deleted) == [str(d) for d in range(10)]
    # leaving out Days == 0 is the same refit as fitting the other rows
    ref = mp.lmer("Reaction ~ Days + (1 | Subject)", sleep[sleep["Days"] != 0])
    np.testing.assert_allclose(inf.fixed_deleted.loc["0"].to_numpy(), ref.beta, rtol=1e-6)
    with pytest.raises(ValueError, match="'fixed' or 'var.cov'"):
        inf.dfbeta("theta")


def test_subset_design_drops_the_deleted_level():
    fit = mp.lmer("Reaction ~ Days + (Days | Subject)", sleep_data())
    keep = np.asarray(fit.terms[0].codes) != 0
    d = subset_design(fit.design, keep)
    assert d.terms[0].n_levels == 17 and d.terms[0].levels == fit.terms[0].levels[1:]
    assert d.nobs == 170 and d.terms[0].codes.max() == 16
    cb = read("cbpp.csv", ["herd", "period"])
    g = mp.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cb[cb["herd"] == "1"].pipe(
        lambda one: pd.concat([one, cb[cb["herd"] != "1"]])), family="binomial")
    with pytest.raises(mp.DataError, match="rank deficient"):
        subset_design(g.design, np.asarray(g.design.X[:, 3] == 0))   # no period4 row left


def test_refits_show_a_progress_bar(capsys):
    sleep = sleep_data()
    six = sleep[sleep["Subject"].isin(sorted(sleep["Subject"].unique())[:3])]
    fit = mp.lmer("Reaction ~ Days + (1 | Subject)", six)
    mp.influence(fit, groups="Subject", progress=True)
    err = capsys.readouterr().err
    assert "influence: refits without each Subject" in err and "3/3" in err
    mp.influence(fit, groups="Subject", progress=False)
    assert capsys.readouterr().err == ""
