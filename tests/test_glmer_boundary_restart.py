"""glmer's restart of stage 1 off the boundary (glmerControl.boundary_restart) against lme4 1.1-31.

The Gamma(inverse) fit y ~ x + (x | g) of tests/reference/glmer_dispersion has a multimodal nAGQ = 0
criterion: a singular local optimum (theta_1 = 0, deviance 1417.98) and the interior one (1385.89).
lme4's stage 1 is minqa's BOBYQA with n + 2 interpolation points; mixedpy's is NLopt's BOBYQA, whose
number of points is fixed at 2n + 1.  tests/reference/gen/glmer_boundary.R records lme4's fit with
each stage-1 optimizer: with minqa at npt = 2n + 1 lme4 stops at the same boundary optimum as
mixedpy's single BOBYQA run, so the number of interpolation points (the path), not the objective,
decides the optimum; the restart reaches the interior one from mixedpy's path.
"""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import mixedpy as mp
from conftest import REF, load_ref, ref_data
from mixedpy.control import ControlError
from mixedpy.datasets import read_r_csv
from mixedpy.optimize import minimize, restart_off_boundary

OPTS = load_ref("gamma_inverse_slope_optimizers", "glmer_boundary")
CORPUS = REF / "corpus"


def lme4_fit(label: str, nAGQ: int) -> dict:
    (hit,) = [f for f in OPTS["fits"] if f["label"] == label and f["nAGQ"] == nAGQ]
    return hit


def fit(nAGQ: int, **control):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mp.glmer(OPTS["formula"], ref_data(OPTS["data"]), family="Gamma", nAGQ=nAGQ,
                        control=mp.glmerControl(**control))


def test_lme4s_default_stage1_is_minqa_bobyqa_and_reaches_the_interior_optimum():
    assert OPTS["default_optimizer"] == ["bobyqa", "Nelder_Mead"]
    for nAGQ in (0, 1):
        default, npt7, nlopt = (lme4_fit(k, nAGQ) for k in ("default", "minqa_npt_2n1", "nloptwrap_stage1"))
        assert not default["singular"] and npt7["singular"] and npt7["theta"][0] == 0
        assert npt7["logLik"] < default["logLik"] - 8   # ~16 deviance units (32 in stage 1) worse
        assert nlopt["logLik"] == pytest.approx(default["logLik"], rel=1e-8)


@pytest.mark.parametrize("nAGQ", [0, 1])
def test_without_the_restart_stage1_stops_where_lme4_does_with_2n_plus_1_points(nAGQ):
    want = lme4_fit("minqa_npt_2n1", nAGQ)
    f = fit(nAGQ, boundary_restart=False)
    assert f.result.boundary_restart is None
    assert f.is_singular and f.theta[0] == 0
    assert f.loglik == pytest.approx(want["logLik"], rel=1e-8)


@pytest.mark.parametrize("nAGQ", [0, 1])
def test_the_default_fit_reaches_lme4s_optimum(nAGQ):
    want = lme4_fit("default", nAGQ)
    f = fit(nAGQ)
    assert f.result.boundary_restart.accepted
    assert f.loglik == pytest.approx(want["logLik"], rel=1e-8)
    np.testing.assert_allclose(f.theta, want["theta"], rtol=1e-4)
    np.testing.assert_allclose(f.beta, want["fixef"], rtol=1e-4)
    assert not f.is_singular


def test_boundary_restart_must_be_a_bool():
    with pytest.raises(ControlError, match="boundary_restart must be True or False"):
        mp.glmerControl(boundary_restart="yes")


def corpus_fit(design_id: str, **control):
    meta = json.loads((CORPUS / "designs.json").read_text())
    (d,) = [d for d in meta["designs"] if d["id"] == design_id]
    data = read_r_csv(CORPUS / "data" / d["data"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = mp.glmer(d["formula"], data, family=d["family"], link=d["link"], nAGQ=d["nAGQ"],
                     control=mp.glmerControl(**control))
    return d, f


@pytest.mark.parametrize("design_id", ["glmm_agq0_005", "glmm_gsing_001"])
def test_a_truly_singular_fit_keeps_lme4s_boundary_estimates(design_id):
    """lme4's optimum is on the boundary (a (x | g) binomial fit with nAGQ = 0; a (1 | g) one with
    nAGQ = 1): the restart runs, returns to it and is rejected, and the estimates are lme4's."""
    d, f = corpus_fit(design_id)
    assert d["is_singular"] and f.is_singular
    restart = f.result.boundary_restart
    assert restart is not None and not restart.accepted
    assert "estimates kept" in f.convergence.optimizer_message
    assert -2 * f.loglik == pytest.approx(d["objective"], rel=1e-8)
    np.testing.assert_allclose(f.theta, d["theta"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(f.beta, list(d["fixef"].values()), rtol=1e-5)


# -- restart_off_boundary on functions whose optima are known ------------------------------------
def two_optima(x):
    """x (x - 2)^2 - x / 10 on x >= 0: a local minimum at the bound (f = 0, f'(0) = 3.9) and the
    global one near x = 2.02 (f ~ -0.2)."""
    return float(x[0] * (x[0] - 2.0) ** 2 - 0.1 * x[0])


def test_restart_leaves_a_boundary_local_optimum_for_a_lower_interior_one():
    opt = minimize(two_optima, np.array([0.0]), np.array([0.0]), initial_step=0.1)
    assert opt.x[0] == 0 and opt.fmin == 0
    n_first = opt.n_evals
    new, rec = restart_off_boundary(two_optima, opt, np.array([1.0]), gain_tol=1e-6)
    assert rec.accepted and rec.on_boundary == (0,) and rec.f_boundary == 0
    xstar = (8 + np.sqrt(64 - 12 * 3.9)) / 6   # the root of f'(x) = 3x^2 - 8x + 3.9 near 2
    assert new.x[0] == pytest.approx(xstar, rel=1e-5) and new.fmin == pytest.approx(two_optima([xstar]), abs=1e-9)
    assert new.n_evals == n_first + rec.n_evals
    assert "reached a lower objective" in rec.describe()


def test_restart_keeps_a_boundary_optimum_that_is_the_only_one():
    def f(x):
        return float((x[0] + 1.0) ** 2 + (x[1] - 0.5) ** 2)

    opt = minimize(f, np.array([0.5, 0.0]), np.array([0.0, -np.inf]), initial_step=0.1)
    x_before = opt.x.copy()
    assert x_before[0] == 0
    same, rec = restart_off_boundary(f, opt, np.array([1.0, 0.0]), gain_tol=1e-6)
    assert same is opt and not rec.accepted and rec.on_boundary == (0,)
    np.testing.assert_array_equal(same.x, x_before)
    assert rec.x[0] == pytest.approx(0, abs=1e-6) and "estimates kept" in rec.describe()


def test_no_restart_off_the_boundary_or_for_an_unbounded_parameter():
    def f(x):
        return float((x[0] - 1.0) ** 2 + (x[1] + 3.0) ** 2)

    opt = minimize(f, np.array([0.5, 0.0]), np.array([0.0, -np.inf]), initial_step=0.1)
    same, rec = restart_off_boundary(f, opt, np.array([1.0, 1.0]), gain_tol=1e-6)
    assert rec is None and same is opt
