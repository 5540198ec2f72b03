"""Fixed-effects formulas mean what R means (issue 9, part A): ``^``, crossing, ``%in%``, ``/``,
removal, ``poly``, R's interaction naming/ordering/contrast rules, odd column names and ``.``.

Every expected value comes from R 4.2 / lme4 1.1-31 via tests/reference/gen/rformula.R.
"""
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedpy as mp
from mixedpy.errors import FormulaWarning
from mixedpy.datasets import read_r_csv
from mixedpy.formula.bars import parse_formula
from mixedpy.formula.design import _expand_dot, build_design
from mixedpy.formula.modelmatrix import contr_poly, fixed_matrix
from mixedpy.formula.poly import poly_coefs, poly_predict
from mixedpy.formula.rsyntax import deparse, parse
from mixedpy.formula.rterms import expand_terms

REF = Path(__file__).parent / "reference" / "rformula"


@lru_cache(maxsize=None)
def ref(name: str):
    return json.loads((REF / f"{name}.json").read_text(encoding="utf-8"))


@lru_cache(maxsize=None)
def _sim() -> pd.DataFrame:
    d = read_r_csv(REF / "sim.csv")
    d["o"] = pd.Categorical(d["ostr"], categories=["low", "medium", "high"], ordered=True)
    return d


def sim() -> pd.DataFrame:
    return _sim().copy()


def data_for(name: str) -> pd.DataFrame:
    return mp.datasets.load("sleepstudy") if name == "sleepstudy" else sim()


MM_CASES = ref("model_matrix")["cases"]


@pytest.mark.parametrize("case", MM_CASES, ids=[c["formula"] for c in MM_CASES])
def test_model_matrix_matches_r(case):
    """Column names, order and values of R's model.matrix (defects 1-4)."""
    formula = case["formula"]
    data = sim()
    if "data_columns" in case:
        data = data[case["data_columns"]]
        parsed = _expand_dot(parse_formula(formula + " + (1 | x)"), data)
        rhs = parsed.fixed_rhs
    else:
        rhs = formula.split("~", 1)[1]
    _, X, names = fixed_matrix(rhs, data, {"np": np})
    assert names == case["names"]
    np.testing.assert_allclose(X, np.array(case["X"], dtype=float), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", ref("model_matrix")["term_labels"], ids=lambda c: c["formula"])
def test_term_labels_follow_first_appearance(case):
    """R orders the variables of an interaction by first appearance in the formula."""
    s = expand_terms(case["formula"].split("~", 1)[1])
    assert s.term_labels() == case["term_labels"]
    assert s.intercept == bool(case["intercept"])


def test_caret_is_power_inside_calls_and_crossing_outside():
    """Defect 1: ``I(Days^2)`` was Python's XOR; ``(a + b)^2`` was a syntax error."""
    d = sim()
    _, X, names = fixed_matrix("I(x^2) + log(x^2) + (z + t)^2", d, {})
    assert names == ["(Intercept)", "I(x^2)", "log(x^2)", "z", "t", "z:t"]
    np.testing.assert_allclose(X[:, 1], d["x"] ** 2)
    np.testing.assert_allclose(X[:, 2], np.log(d["x"] ** 2))
    np.testing.assert_allclose(X[:, 5], d["z"] * d["t"])
    # ** is R's alias of ^
    assert fixed_matrix("I(x**2)", d, {})[2] == ["(Intercept)", "I(x^2)"]


def test_invalid_power_names_the_fix():
    with pytest.raises(mp.FormulaError, match=r"I\(x\^2\)"):
        fixed_matrix("(x + z)^t", sim(), {})


@pytest.mark.parametrize("text, r", [  # R 4.2: deparse(str2lang(text))
    ("a%in%b", "a %in% b"), ("x/1e3", "x/1000"), ("2.0*x", "2 * x"), ("x%%2", "x%%2"), ("a%/%b", "a%/%b"),
    ("f(x,y=2)", "f(x, y = 2)"), ("1e5", "1e+05"), ("123456", "123456"), ("1e-5", "1e-05"), ("-x^2", "-x^2"),
    ("`a b`+1", "`a b` + 1"), ("a<=b", "a <= b"), ("!a", "!a"), ("(a+1)", "(a + 1)"), ("a*b/c", "a * b/c"),
    ("x^-1", "x^-1"), ("2L", "2L"), ("'s'", '"s"'), ("a - -1", "a - -1"),
])
def test_deparse_spacing_as_r(text, r):
    """Column names are R's deparsed variables, so the spacing must be R's."""
    assert deparse(parse(text)) == r


def test_power_of_one_variable_outside_I_warns():
    """``x^2`` outside I() is R's crossing (just x): valid, so not an error, but said out loud."""
    with pytest.warns(FormulaWarning, match=r"write I\(x\^2\)"):
        names = fixed_matrix("x^2", sim(), {})[2]
    assert names == ["(Intercept)", "x"]


def _as_list(v) -> list:
    """jsonlite's auto_unbox writes a length-one vector as a scalar."""
    return v if isinstance(v, list) else [v]


def _fit_and_check(case, **kw):
    data = data_for(case["data"])
    if case["name"] == "sim_dot":
        data = data[["y", "x", "z", "f", "g"]]
    fit = mp.lmer(case["formula"], data, **kw)
    assert list(mp.fixef(fit).index) == list(case["fixef"])
    got, want = mp.fixef(fit).to_numpy(), np.array(list(case["fixef"].values()))
    assert np.all(np.abs(got - want) <= 1e-4 * np.abs(want) + 1e-3 * np.asarray(case["se_fixef"])), (got, want)
    assert list(fit.theta_names) == _as_list(case["theta_names"])
    assert list(mp.ranef(fit)) == _as_list(case["ranef_names"])
    if "newdata" in case:
        newdata = pd.DataFrame(case["newdata"])
        np.testing.assert_allclose(fit.predict(newdata, re_form="NA"), case["predict_fixed"], rtol=1e-4)
        np.testing.assert_allclose(fit.predict(newdata, allow_new_levels=True), case["predict_full"], rtol=1e-4)
    return fit


FITS = {c["name"]: c for c in ref("lmer_fits")}


@pytest.mark.filterwarnings("ignore::mixedpy.SingularFitWarning")
@pytest.mark.parametrize("name", list(FITS))
def test_lmer_fixef_match_lme4(name):
    """lme4's fixef (names and values) and predict for formulas with ^, poly, crossing, odd names, '.'."""
    _fit_and_check(FITS[name])


def test_sleepstudy_square_is_the_square():
    """Defect 1 as the team reproduced it: the I(Days^2) coefficient is lme4's 0.337, not 1.536."""
    fit = mp.lmer("Reaction ~ Days + I(Days^2) + (Days | Subject)", mp.datasets.load("sleepstudy"))
    assert mp.fixef(fit)["I(Days^2)"] == pytest.approx(FITS["sleep_I_square"]["fixef"]["I(Days^2)"], rel=1e-4)


def test_poly_matches_r_and_predicts_with_stored_coefficients():
    """Defect 2: R's orthogonal poly(), its coefs (alpha, norm2) and predict.poly on new values."""
    p = ref("poly")
    x = np.asarray(p["x"])
    coefs = poly_coefs(x, p["degree"])
    np.testing.assert_allclose(coefs["alpha"], p["alpha"], rtol=1e-12)
    np.testing.assert_allclose(coefs["norm2"], p["norm2"], rtol=1e-12)
    np.testing.assert_allclose(poly_predict(x, 3, coefs), p["values"], atol=1e-12)
    np.testing.assert_allclose(poly_predict(np.asarray(p["newx"]), 3, coefs), p["predict"], atol=1e-12)
    np.testing.assert_allclose(contr_poly(4), p["contr_poly_4"], atol=1e-14)
    np.testing.assert_allclose(contr_poly(5), p["contr_poly_5"], atol=1e-14)


def test_poly_is_stateful_on_newdata():
    """newdata rows get the training polynomial, not one refitted to the new rows."""
    d = sim()
    spec, X, _ = fixed_matrix("poly(x, 2) + scale(z)", d, {})
    np.testing.assert_allclose(spec.matrix(d.iloc[[5, 9]].reset_index(drop=True)), X[[5, 9]], atol=1e-12)


def test_raw_true_and_python_true_agree():
    d = sim()
    _, X_r, names_r = fixed_matrix("poly(x, 2, raw = TRUE)", d, {})
    _, X_py, names_py = fixed_matrix("poly(x, 2, raw=True)", d, {})
    np.testing.assert_allclose(X_r, X_py)
    assert names_r == ["(Intercept)", "poly(x, 2, raw = TRUE)1", "poly(x, 2, raw = TRUE)2"]


def test_interaction_named_by_first_appearance():
    """Defect 3: ``y ~ f + t + t:f`` names the column ``flo:t`` as R does, not ``t:flo``."""
    names = fixed_matrix("f + t + t:f", sim(), {})[2]
    assert names == list(FITS["sim_first_appearance"]["fixef"]) and "flo:t" in names


@pytest.mark.parametrize("formula, column", [
    ("y ~ test.score + (1 | g)", "test.score"), ("y ~ `school id` + (1 | g)", "`school id`s2"),
    ("y ~ x + (1 | `school id`)", None), ("y ~ x + (1 | école)", None), ("y ~ x + (test.score | g)", None),
    ("y ~ lambda + class + (1 | g)", "class"),
])
def test_odd_column_names(formula, column):
    """Defect 4: dotted, backticked, unicode and Python-keyword names, in fixed and random parts."""
    d = build_design(formula, sim())
    if column is not None:
        assert column in d.fixef_names
    assert {t.group_name for t in d.terms} <= {"g", "school id", "école"}


@pytest.mark.parametrize("name", ["id", "type", "sum", "lambda", "class", "len"])
def test_missing_column_named_like_a_builtin_is_a_formula_error(name):
    """A column named like a Python builtin or keyword that the data lacks: R's 'object not found',
    not a raw KeyError nor a silently used Python function."""
    d = sim().drop(columns=[c for c in [name] if c in sim().columns])
    with pytest.raises(mp.FormulaError, match=f"unknown column '{name}'"):
        build_design(f"y ~ x + {name} + (1 | g)", d)


def test_dot_excludes_the_response_variables_and_keeps_grouping_columns():
    """``y ~ . + (1 | g)``: lme4 expands '.' over every column but the response, g included."""
    d = sim()[["y", "x", "z", "f", "g"]]
    design = build_design("y ~ . + (1 | g)", d)
    assert design.fixef_names == list(FITS["sim_dot"]["fixef"])
    design = build_design("log(z) ~ . + (1 | g)", d)
    assert "z" not in design.fixef_names and "x" in design.fixef_names


def test_caller_variables_and_functions():
    d = sim()
    weights_vec = np.linspace(1, 2, len(d))

    def double(v):
        return 2 * v

    design = build_design("y ~ double(x) + weights_vec + (1 | g)", d,
                          env={"weights_vec": weights_vec, "double": double, "unused": object()})
    assert design.fixef_names == ["(Intercept)", "double(x)", "weights_vec"]
    np.testing.assert_allclose(design.X[:, 2], weights_vec)
    assert "unused" not in design.env and "double" in design.env


def test_new_factor_level_in_newdata_is_an_error():
    d = sim()
    fit = mp.lmer("y ~ f + (1 | g)", d)
    new = d.iloc[:2].assign(f=["lo", "zzz"])
    with pytest.raises(mp.DataError, match="new level zzz"):
        fit.predict(new)


def test_logical_and_ordered_factors_code_as_r():
    names = fixed_matrix("b + o", sim(), {})[2]
    assert names == ["(Intercept)", "bTRUE", "o.L", "o.Q"]


@pytest.mark.parametrize("case", ref("model_matrix")["double_verts"], ids=lambda c: c["formula"])
def test_double_bar_expands_like_lme4(case):
    """``(x*z || g)``: one uncorrelated term per model term of ``~ x*z`` (lme4 expandDoubleVerts)."""
    expanded = case["expanded"].replace("((", "(").replace("))", ")")
    assert parse_formula(case["formula"]).bars == parse_formula(expanded).bars


def test_r_functions_keep_their_meaning_over_caller_imports():
    """A caller's ``scale`` (e.g. sklearn's, n-denominator and stateless) must not replace R's."""
    d = sim()
    design = build_design("y ~ scale(x) + (1 | g)", d, env={"scale": lambda v: v * 0})
    assert np.std(design.X[:, 1], ddof=1) == pytest.approx(1.0)


def test_newdata_type_change_is_an_error():
    d = sim()
    fit = mp.lmer("y ~ x + f + (1 | g)", d)
    with pytest.raises(mp.DataError, match="'x' was numeric in the fit but is a factor"):
        fit.predict(d.iloc[:3].assign(x=["a", "b", "c"]))
    with pytest.raises(mp.DataError, match="'f' was a factor in the fit but is numeric"):
        fit.predict(d.iloc[:3].assign(f=[1.0, 2.0, 3.0]))
