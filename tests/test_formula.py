"""lme4 formula syntax: bars, nesting, interactions, double bars, offsets; R column names."""
import numpy as np
import pandas as pd
import pytest

import mixedpy as mp
from mixedpy.formula.bars import BarTerm, parse_formula
from mixedpy.formula.design import build_design

# the small random data sets here carry no group effect, so singular fits are expected
pytestmark = pytest.mark.filterwarnings("ignore::mixedpy.SingularFitWarning")


@pytest.mark.parametrize("formula, fixed, bars", [
    ("y ~ x + (x | g)", "x", [BarTerm("x", ("g",))]),
    ("y ~ x + (0 + x | g)", "x", [BarTerm("0 + x", ("g",))]),
    ("y ~ x + (x || g)", "x", [BarTerm("1", ("g",)), BarTerm("0 + x", ("g",))]),
    ("y ~ 1 + (1 | a/b)", "1", [BarTerm("1", ("a",)), BarTerm("1", ("b", "a"))]),
    ("y ~ (1 | a:b)", "1", [BarTerm("1", ("a", "b"))]),
    ("y ~ x + (1 | a) + (1 | b)", "x", [BarTerm("1", ("a",)), BarTerm("1", ("b",))]),
    ("y ~ 0 + x + (1 | g)", "0 + x", [BarTerm("1", ("g",))]),
    ("y ~ x - 1 + (1 | g)", "x - 1", [BarTerm("1", ("g",))]),
    ("y ~ x + (1 | g) + (0 + x | g)", "x", [BarTerm("1", ("g",)), BarTerm("0 + x", ("g",))]),
    ("y ~ I(x - 1) + (1|g)", "I(x - 1)", [BarTerm("1", ("g",))]),
])
def test_parse(formula, fixed, bars):
    p = parse_formula(formula)
    assert p.fixed_rhs == fixed
    assert list(p.bars) == bars


def test_offset_term_is_collected():
    p = parse_formula("y ~ x + offset(log(n)) + (1 | g)")
    assert p.offsets == ("log(n)",) and p.fixed_rhs == "x"


@pytest.mark.parametrize("bad, msg", [
    ("y ~ x + x | g", "malformed random-effects term"),
    ("y ~ x + ( | g)", "nothing before"),
    ("y ~ x + (1 | )", "no grouping factor"),
    ("y ~ x + (1 | g", "unbalanced"),
    ("y x + (1 | g)", "exactly one '~'"),
    ("~ x + (1 | g)", "no response"),
    ("y ~ x + (1 | g + h)", "not a column name"),
])
def test_malformed_formulas(bad, msg):
    with pytest.raises(mp.FormulaError, match=msg):
        parse_formula(bad)


@pytest.fixture
def small():
    rng = np.random.default_rng(1)
    n = 120
    return pd.DataFrame({"y": rng.normal(size=n), "x": rng.normal(size=n),
                         "g_int": rng.integers(0, 6, n), "g_str": rng.choice(list("abcde"), n),
                         "g_cat": pd.Categorical(rng.choice(["u", "v", "w"], n)),
                         "sex": rng.choice(["F", "M"], n)})


@pytest.mark.parametrize("col", ["g_int", "g_str", "g_cat"])
def test_grouping_columns_of_any_dtype_are_factors(small, col):
    d = build_design(f"y ~ x + (1 | {col})", small)
    t = d.terms[0]
    assert t.n_levels == small[col].nunique()
    assert all(isinstance(level, str) for level in t.levels)


def test_interaction_and_nested_groups(small):
    d = build_design("y ~ 1 + (1 | g_str/g_int)", small)
    names = [t.group_name for t in d.terms]
    assert names == ["g_int:g_str", "g_str"]  # lme4 names the nested factor inner:outer, more levels first
    combos = small.groupby(["g_int", "g_str"]).ngroups
    assert d.terms[0].n_levels == combos
    d2 = build_design("y ~ 1 + (1 | g_str:sex)", small)
    assert d2.terms[0].levels[0] == "a:F"


def test_treatment_contrasts_and_names(small):
    fit = mp.lmer("y ~ x + sex + (1 | g_str)", small)
    assert list(mp.fixef(fit).index) == ["(Intercept)", "x", "sexM"]


def test_term_order_rule():
    """Terms are sorted by decreasing level count only when a later one has more levels."""
    rng = np.random.default_rng(2)
    df = pd.DataFrame({"y": rng.normal(size=200), "few": rng.integers(0, 4, 200), "many": rng.integers(0, 20, 200)})
    d = build_design("y ~ (1 | few) + (1 | many)", df)
    assert [t.group_name for t in d.terms] == ["many", "few"]
    d = build_design("y ~ (1 | many) + (1 | few)", df)
    assert [t.group_name for t in d.terms] == ["many", "few"]


def test_missing_values_dropped_and_counted(small):
    df = small.copy()
    df.loc[[0, 5], "x"] = np.nan
    df.loc[7, "g_str"] = None
    df["unused"] = np.nan
    with pytest.warns(UserWarning, match="3 rows with missing values dropped"):
        fit = mp.lmer("y ~ x + (1 | g_str)", df)
    assert fit.nobs == len(df) - 3
    assert fit.design.n_dropped == 3


def test_scale_uses_r_definition(small):
    d = build_design("y ~ scale(x) + (1 | g_str)", small)
    col = d.X[:, 1]
    assert np.std(col, ddof=1) == pytest.approx(1.0)
    assert d.fixef_names == ["(Intercept)", "scale(x)"]


def test_formula_can_use_numpy_and_caller_variables(small):
    df = small.assign(pos=np.exp(small["x"]))
    fit = mp.lmer("y ~ np.log(pos) + (1 | g_str)", df)
    assert "np.log(pos)" in mp.fixef(fit).index


def test_string_levels_sort_like_r():
    """R's factor() collates strings case-insensitively (VerbAgg's item levels, as lme4 lists them)."""
    from conftest import load_ref

    ref = load_ref("verbagg_crossed")["ranef"]["item"]["levels"]
    # item as strings (load() gives lme4's VerbAgg order): the reference fit read the CSV's strings
    d = build_design("r2 ~ 1 + (1 | item)", mp.datasets.load("verbagg").astype({"item": str}).iloc[::-1])
    assert d.terms[0].levels == ref


def test_categorical_levels_keep_their_order_and_drop_unused_ones():
    """As R's droplevels: the categories that occur, in the categorical's own order."""
    from mixedpy.formula.reval import sorted_levels

    s = pd.Series(pd.Categorical(["b", "c", "b", None], categories=["c", "a", "b"]))
    assert sorted_levels(s) == ["c", "b"]


def test_interaction_group_labels_join_each_factors_level():
    from mixedpy.formula.design import grouping_codes

    d = pd.DataFrame({"a": ["x", "y", "x", "y", "x"], "b": [2, 1, 1, 1, 2]})
    codes, labels = grouping_codes(d, ("a", "b"))
    assert labels == ["x:1", "x:2", "y:1"]
    assert [labels[c] for c in codes] == [f"{a}:{b}" for a, b in zip(d.a, d.b)]
