"""getME and model_matrix against lme4 (issue 12, part 6).

Reference values: tests/reference/gen/model_building.R (lme4 1.1-31): getME entries of sleepstudy
(Days | Subject) by REML and ML, a two-term model, crossed penicillin and the cbpp glmer.  The
structure (names, dims, Z) must be equal; quantities at the optimum (u, b, devcomp) agree within
the optimizers' difference (~1e-5 relative in theta).
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import mixedpy as mp
from mixedpy.errors import MixedpyError

from test_lmertest import _as_list

REF = Path(__file__).parent / "reference" / "model_building"
ROOT = Path(__file__).parent.parent
CASES = {c["name"]: c for c in json.loads((REF / "getme_cases.json").read_text())}


def _sparse(t: dict) -> sp.csc_matrix:
    return sp.csc_matrix((t["x"], (t["i"], t["j"])), shape=tuple(t["dim"]))


_fits: dict = {}


def case(name: str):
    if name not in _fits:
        ref = CASES[name]
        d = pd.read_csv(ROOT / ref["data"])
        for c in ("Subject", "period"):
            if c in d:
                d[c] = d[c].astype(str)      # herd stays numeric: R's factor levels 1, 2, ..., 15
        if ref["glmm"]:
            fit = mp.glmer(ref["formula"], d, family="binomial")
        else:
            fit = mp.lmer(ref["formula"], d, REML=ref["REML"])
        _fits[name] = (ref, fit)
    return _fits[name]


@pytest.mark.parametrize("name", list(CASES))
def test_structure_is_lme4s(name):
    ref, fit = case(name)
    Z = mp.getME(fit, "Z")
    assert sp.issparse(Z) and Z.format == "csc"
    assert (abs(Z - _sparse(ref["Z"]))).max() == 0
    assert (abs(mp.getME(fit, "Zt") - _sparse(ref["Z"]).T)).max() == 0
    assert list(mp.getME(fit, "theta").index) == list(ref["theta"])
    np.testing.assert_array_equal(mp.getME(fit, "lower").to_numpy(),
                                  [-np.inf if v is None or v == "-Inf" else v for v in ref["lower"].values()])
    assert {k: list(v) for k, v in mp.getME(fit, "cnms").items()} == {k: _as_list(v) for k, v in ref["cnms"].items()}
    flist = mp.getME(fit, "flist")
    assert list(flist.columns) == list(ref["flist"])
    for g, levels in ref["flist"].items():
        assert list(flist[g].cat.categories) == [str(v) for v in levels]
    assert list(mp.getME(fit, "Gp")) == ref["Gp"]
    X = mp.getME(fit, "X")
    assert list(X.columns) == _as_list(ref["X_colnames"]) and list(X.shape) == ref["X_dim"]
    dc = mp.getME(fit, "devcomp")
    assert dc["dims"] == ref["devcomp"]["dims"]
    assert list(dc["cmp"]) == list(ref["devcomp"]["cmp"])


@pytest.mark.parametrize("name", list(CASES))
def test_values_at_the_optimum_are_lme4s(name):
    ref, fit = case(name)
    rtol = 1e-3 if name == "sleepstudy_ml" or ref["glmm"] else 1e-4   # ML / Laplace optima are flatter
    np.testing.assert_allclose(mp.getME(fit, "theta").to_numpy(), list(ref["theta"].values()), rtol=rtol)
    np.testing.assert_allclose(mp.getME(fit, "beta"), _as_list(ref["beta"]), rtol=rtol)
    u, b = mp.getME(fit, "u"), mp.getME(fit, "b")
    np.testing.assert_allclose(u, ref["u"], atol=rtol * np.abs(ref["u"]).max())
    np.testing.assert_allclose(b, ref["b"], atol=rtol * np.abs(ref["b"]).max())
    Lt = mp.getME(fit, "Lambdat")
    np.testing.assert_allclose(Lt.toarray(), _sparse(ref["Lambdat"]).toarray(), atol=rtol)
    np.testing.assert_allclose((mp.getME(fit, "Lambda") @ u), b, rtol=1e-12, atol=1e-12)
    cmp = mp.getME(fit, "devcomp")["cmp"]
    for k, v in ref["devcomp"]["cmp"].items():
        if v is None:
            assert np.isnan(cmp[k]), k
        else:
            np.testing.assert_allclose(cmp[k], v, rtol=rtol, err_msg=k)


def test_model_matrix():
    ref, fit = case("sleepstudy")
    X = mp.model_matrix(fit)
    assert isinstance(X, pd.DataFrame) and list(X.columns) == ["(Intercept)", "Days"]
    np.testing.assert_array_equal(X["Days"].to_numpy(), fit.design.X[:, 1])
    Z = mp.model_matrix(fit, type="random")
    assert (abs(Z - _sparse(ref["Z"]))).max() == 0
    with pytest.raises(ValueError, match="fixed"):
        mp.model_matrix(fit, type="both")


def test_names_errors_and_nb_theta():
    ref, fit = case("sleepstudy")
    with pytest.raises(MixedpyError, match="valid names are .*Lambdat"):
        mp.getME(fit, "Lambda_t")
    both = mp.getME(fit, ["theta", "sigma"])
    assert set(both) == {"theta", "sigma"} and both["sigma"] == pytest.approx(fit.sigma)
    # lme4 1.1-31: getME(m, "glmer.nb.theta") is NA for a fit that is not glmer.nb
    ref, g = case("cbpp")
    assert ref["nb_theta"] is None and np.isnan(mp.getME(g, "glmer.nb.theta"))
    assert np.isnan(mp.getME(fit, "glmer.nb.theta"))


def test_nb_theta_of_a_glmer_nb_fit():
    glmer_nb = pytest.importorskip("mixedpy.glmer_nb").glmer_nb
    d = pd.read_csv(ROOT / "mixedpy/datasets/data/grouseticks.csv")
    for c in ("YEAR", "BROOD", "LOCATION"):
        d[c] = d[c].astype(str)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nb = glmer_nb("TICKS ~ YEAR + (1 | LOCATION)", d)
    assert mp.getME(nb, "glmer.nb.theta") == pytest.approx(nb.nb_theta)
    assert mp.getME(nb, "glmer.nb.theta") > 0
