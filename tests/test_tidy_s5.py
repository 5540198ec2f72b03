"""Tidy-ups (s5): one constant for the structures with a shared correlation, compare()'s row for
the auxiliary parameter, R's level order for the bundled datasets' factors, and the API reference
covering every public name of mixedpy/__init__.py.

References: tests/reference/gen/compare_aux.R (lme4's theta and sigma on the rstanarm test data)
and tests/reference/gen/dataset_levels.R (R's levels() of the bundled R datasets, and lme4's cbpp fit).
"""
from __future__ import annotations

import ast
import json
import re
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedpy as mp
from mixedpy.covstruct import CORRELATED_STRUCTURES, STRUCTURES, make_structure
from mixedpy.formula.design import build_design
from mixedpy.formula.reval import sorted_levels
from mixedpy.varcorr import VarCorrTerm

from conftest import ref_data

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "tests" / "reference" / "tidy_s5"


def _ref(name: str) -> dict:
    return json.loads((REF / f"{name}.json").read_text())


# ---- 1. the structures with a shared correlation ---------------------------------------------------
def test_correlated_structures_named_once():
    assert CORRELATED_STRUCTURES == ("cs", "homcs", "ar1")
    assert STRUCTURES == ("us", "diag", "cs", "homcs", "ar1")
    literal = re.compile(r"\(\s*\"cs\",\s*\"homcs\",\s*\"ar1\"\s*\)")
    holders = [p.relative_to(ROOT).as_posix() for p in (ROOT / "mixedpy").rglob("*.py") if literal.search(p.read_text())]
    assert holders == ["mixedpy/covstruct.py"]
    assert len(literal.findall((ROOT / "mixedpy" / "covstruct.py").read_text())) == 1


@pytest.mark.parametrize("name", STRUCTURES)
def test_correlated_structures_behave_as_one_group(name):
    """The constant drives all three uses: the two-column minimum, rho, and the printed note."""
    correlated = name in CORRELATED_STRUCTURES
    if correlated:
        with pytest.raises(mp.FormulaError, match="at least two columns"):
            make_structure(name, 1)
    else:
        make_structure(name, 1)
    cov = np.array([[4.0, 1.2], [1.2, 4.0]])
    term = VarCorrTerm("g", "g", ["fa", "fb"], cov, structure=name)
    assert (term.rho == pytest.approx(0.3)) if correlated else term.rho is None
    rows = term.table_rows(3)
    if correlated:
        assert rows[0][3] == [f"0.300 ({name})"]
    else:
        assert all(f"({name})" not in " ".join(r[3]) for r in rows)


# ---- 2. compare(): the auxiliary parameter ---------------------------------------------------------
AUX_CASES = {"nb": ("neg_binomial_2", "reciprocal_dispersion"), "gamma": ("Gamma", "shape"),
             "invgauss": ("inverse.gaussian", "lambda"), "gausslog": ("gaussian", "sigma")}


@lru_cache(maxsize=None)
def _posterior(case: str):
    family, _ = AUX_CASES[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mp.bayes_glmer("y ~ x + (1 | g)", ref_data(f"bayes_{case}.csv"), family=family, link="log",
                              chains=2, iter=100, seed=3, progress=False)


def _frequentist(case: str):
    data = ref_data(f"bayes_{case}.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if case == "nb":
            return mp.glmer_nb("y ~ x + (1 | g)", data)
        return mp.glmer("y ~ x + (1 | g)", data, family=AUX_CASES[case][0], link="log")


@pytest.mark.parametrize("case", sorted(AUX_CASES))
def test_compare_has_the_auxiliary_parameter(case):
    """rstanarm's name after the fixed effects (its print's "Auxiliary parameter(s)"), lme4's estimate
    beside it: glmer.nb's theta, sigma(m) for gaussian, 1 / sigma(m)^2 for the Gamma shape and the
    inverse-Gaussian lambda (lme4's dispersion phi = sigma^2)."""
    ref = _ref("compare_aux")[case]
    post = _posterior(case)
    tab = mp.compare(_frequentist(case), post)
    _, aux = AUX_CASES[case]
    assert list(tab.index[:3]) == ["(Intercept)", "x", aux]
    row = tab.loc[aux]
    if case == "nb":
        lme4 = ref["nb_theta"]
    elif case == "gausslog":
        lme4 = ref["sigma"]
    else:
        lme4 = 1.0 / ref["sigma"] ** 2
    # lme4's Gamma fit stops with max|grad| 0.009 (a convergence warning): its sigma is that close;
    # glmer.nb's theta is optimize()'s, to its tolerance (as tests/test_glmer_nb.py)
    rel = {"gamma": 1e-3, "nb": 1e-4}.get(case, 1e-5)
    assert row["lmer"] == pytest.approx(lme4, rel=rel)
    draws = post.draws[aux].to_numpy()
    assert row["median"] == pytest.approx(np.median(draws))
    assert row["q2.5"] == pytest.approx(np.quantile(draws, 0.025))
    assert np.isnan(row["lmer_se"])


def test_compare_aux_is_nan_for_a_fit_of_another_family():
    """A Poisson glmer has no negative binomial size: no number rather than a wrong one."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mp.glmer("y ~ x + (1 | g)", ref_data("bayes_nb.csv"), family="poisson")
    tab = mp.compare(fit, _posterior("nb"))
    assert np.isnan(tab.loc["reciprocal_dispersion", "lmer"])
    assert np.isfinite(tab.loc["reciprocal_dispersion", "median"])


def test_compare_lmer_sigma_row_unchanged():
    """Gaussian identity: one ``sigma`` row, lme4's sigma (sleepstudy, 25.591796), no other aux row."""
    sleep = mp.datasets.load("sleepstudy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = mp.bayes_lmer("Reaction ~ Days + (1 | Subject)", sleep, chains=2, iter=100, seed=1, progress=False)
    fit = mp.lmer("Reaction ~ Days + (Days | Subject)", sleep)
    tab = mp.compare(fit, post)
    assert list(tab.index[:3]) == ["(Intercept)", "Days", "sigma"]
    assert tab.loc["sigma", "lmer"] == pytest.approx(25.591796, rel=1e-6)
    assert tab.loc["sigma", "median"] == pytest.approx(np.median(post.draws["sigma"]))


# ---- 3. R's level order for the bundled datasets ---------------------------------------------------
def test_cbpp_herd_levels_are_r_order():
    """R: levels(lme4::cbpp$herd) is "1", "2", ..., "15" (not the strings' sorted "1", "10", "11", ...)."""
    herd = mp.datasets.load("cbpp")["herd"]
    assert sorted_levels(herd) == [str(i) for i in range(1, 16)]
    assert list(herd.astype(str)[:5]) == ["1", "1", "1", "1", "2"]   # the values are the labels, as before


@pytest.mark.parametrize("name", sorted(_ref("dataset_levels")["datasets"]))
def test_bundled_factors_have_r_levels(name):
    """Every factor column of the R datasets that the CSV keeps has R's levels in R's order
    (a column R keeps as a factor and the CSV as numbers, VerbAgg's 0/1 r2, is left out)."""
    df = mp.datasets.load(name)
    checked = 0
    for col, info in _ref("dataset_levels")["datasets"][name].items():
        if col not in df or pd.api.types.is_numeric_dtype(df[col]):
            continue
        assert [str(v) for v in sorted_levels(df[col])] == info["levels"], (name, col)
        checked += 1
    assert checked


def test_cbpp_glmer_ranef_in_r_order():
    """glmer on load("cbpp") lists herds as lme4 does on its cbpp, with lme4's values."""
    ref = _ref("dataset_levels")["cbpp_glmer"]
    gm = mp.glmer(ref["formula"], mp.datasets.load("cbpp"), family="binomial")
    re_ = mp.ranef(gm)["herd"]
    assert [str(v) for v in re_.index] == ref["ranef_levels"]
    np.testing.assert_allclose(re_["(Intercept)"].to_numpy(), ref["ranef"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(mp.fixef(gm).to_numpy(), list(ref["fixef"].values()), rtol=1e-5)


def test_verbagg_mode_baseline_is_r_s():
    """R's VerbAgg$mode has levels want, do, so the treatment contrast is lme4's ``modedo``."""
    d = build_design("r2 ~ mode + (1 | item)", mp.datasets.load("verbagg"))
    assert list(d.fixef_names) == ["(Intercept)", "modedo"]


# ---- 4. the API reference ----------------------------------------------------------------------------
def _init_names() -> set[str]:
    """Public names bound in mixedpy/__init__.py: imported or assigned, ``__version__`` included."""
    tree = ast.parse((ROOT / "mixedpy" / "__init__.py").read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            names |= {a.asname or a.name for a in node.names}
        elif isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return {n for n in names if not n.startswith("_") or n == "__version__"}


def test_every_public_name_of_the_package_has_a_reference_entry():
    from test_docs import documented

    errors_module = {n for n in _init_names() if getattr(getattr(mp, n), "__module__", "") == "mixedpy.errors"}
    assert "__version__" in _init_names() and "set_num_threads" in _init_names()
    missing = _init_names() - documented() - errors_module
    assert not missing, f"public names without a docs/api entry: {sorted(missing)}"


def test_no_doc_names_the_split_inference_module():
    """mixedpy/inference.py was split (sdcor, profile, bootstrap, intervals, likelihood_ratio)."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    stale = re.compile(r"\binference\.py\b|mixedpy[./]inference\b(?!\.md)")
    hits = [p.relative_to(ROOT).as_posix() for p in pages if stale.search(p.read_text())]
    assert not hits
