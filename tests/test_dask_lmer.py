"""lmer on Dask frames (mixedpy.scale): equal to the in-memory fit for any partitioning, lme4's
numbers on its reference fits, bad input named by partition and column, outputs as Dask Series."""
from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest

dd = pytest.importorskip("dask.dataframe")
dask = pytest.importorskip("dask")

import mixedpy as mp  # noqa: E402
from mixedpy.errors import DataError, FormulaError, MissingValuesWarning  # noqa: E402
from mixedpy.scale.lmer import DaskLmerFit  # noqa: E402
from mixedpy.scale.lmer import lmer as dask_lmer  # noqa: E402

from conftest import load_ref, ref_data  # noqa: E402


def make_data(n: int = 1200, seed: int = 1) -> pd.DataFrame:
    """Crossed a (120 levels) x b (9 levels), nested c in b, a factor f, weights, an offset, NaNs."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"a": rng.integers(0, 120, n).astype(str), "b": rng.choice(list("pqrstuvwx"), n),
                       "c": rng.integers(0, 4, n), "x": rng.normal(size=n), "f": rng.choice(["lo", "mid", "hi"], n),
                       "w": rng.uniform(0.5, 2.0, n), "o": rng.normal(size=n)})
    b_int, b_slope = dict(zip("pqrstuvwx", rng.normal(size=9))), dict(zip("pqrstuvwx", rng.normal(size=9)))
    df["y"] = (1000.0 + df.x + rng.normal(size=120)[df.a.astype(int)] + df.b.map(b_int) + df.b.map(b_slope) * df.x
               + rng.normal(size=n))
    df.loc[[5, 17, 700], "x"] = np.nan
    return df


DATA = make_data()


def partitioned(df: pd.DataFrame, sizes) -> "dd.DataFrame":
    """A Dask frame with partitions of exactly these row counts (uneven partitionings included)."""
    cuts = np.cumsum([0] + list(sizes))
    assert cuts[-1] == len(df)
    parts = [dask.delayed(df.iloc[lo:hi]) for lo, hi in zip(cuts[:-1], cuts[1:])]
    return dd.from_delayed(parts, meta=df.iloc[:0])


PARTITIONINGS = {"one": [1200], "three": [400, 400, 400], "uneven": [1, 650, 7, 2, 540]}

MODELS = [
    ("y ~ x + (1 | a) + (1 | b)", {}),
    ("y ~ x + f + (x | b) + (1 | a)", {}),
    ("y ~ x * f + (1 | b/c)", {}),
    ("y ~ x + factor(c) + (1 | a:b) + (1 | b)", {}),
    ("y ~ x + (1 | a) + (0 + x | b)", {"weights": "w", "offset": "o"}),
]


def fit_both(formula, sizes, REML=True, **kw):
    with warnings.catch_warnings(record=True) as w_mem:
        warnings.simplefilter("always")
        ref = mp.lmer(formula, DATA, REML=REML, **kw)
    with warnings.catch_warnings(record=True) as w_dask:
        warnings.simplefilter("always")
        fit = mp.lmer(formula, partitioned(DATA, sizes), REML=REML, **kw)
    assert [(w.category, str(w.message)) for w in w_dask] == [(w.category, str(w.message)) for w in w_mem]
    return ref, fit


def assert_same_fit(ref, fit):
    """The objective to 1e-10 relative; the estimates to the optimizer's tolerance (a rounding-level
    difference in the sums can move BOBYQA's path by that much, as a reordering of rows would)."""
    assert isinstance(fit, DaskLmerFit)
    assert fit.criterion == pytest.approx(ref.criterion, rel=1e-10)
    assert fit.nobs == ref.nobs and fit.ngrps == ref.ngrps
    assert fit.fixef_names == ref.fixef_names and fit.theta_names == ref.theta_names
    scale = max(1.0, np.abs(ref.beta).max())
    np.testing.assert_allclose(fit.beta, ref.beta, atol=1e-6 * scale)
    np.testing.assert_allclose(fit.theta, ref.theta, atol=2e-5)
    assert fit.sigma == pytest.approx(ref.sigma, rel=1e-6)
    np.testing.assert_allclose(fit.vcov_array, ref.vcov_array, rtol=1e-4)
    for g, want in mp.ranef(ref).items():
        got = mp.ranef(fit)[g]
        assert list(got.index) == list(want.index) and list(got.columns) == list(want.columns)
        np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), atol=2e-5)
    for t_ref, t_fit in zip(mp.VarCorr(ref).terms, mp.VarCorr(fit).terms):
        np.testing.assert_allclose(t_fit.cov, t_ref.cov, rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize("sizes", list(PARTITIONINGS.values()), ids=list(PARTITIONINGS))
@pytest.mark.parametrize("formula, kw", MODELS, ids=[m[0] for m in MODELS])
def test_equals_in_memory_fit(formula, kw, sizes):
    ref, fit = fit_both(formula, sizes, **kw)
    assert_same_fit(ref, fit)
    assert fit.passes == 2 and fit.pass_seconds > 0


def test_ml_fit_and_refit():
    ref, fit = fit_both("y ~ x + f + (1 | a) + (1 | b)", PARTITIONINGS["uneven"], REML=False)
    assert_same_fit(ref, fit)
    assert fit.aic == pytest.approx(ref.aic, rel=1e-10)
    ref_reml, fit_reml = ref.refit(reml=True), fit.refit(reml=True)
    assert isinstance(fit_reml, DaskLmerFit)
    assert fit_reml.criterion == pytest.approx(ref_reml.criterion, rel=1e-10)


@pytest.mark.parametrize("name", ["sleepstudy_reml", "penicillin_crossed", "pastes_nested"])
def test_lme4_reference_fits(name):
    """lme4's own numbers (tests/reference/lme4) from a three-partition Dask frame."""
    ref = load_ref(name)
    fit = mp.lmer(ref["formula"], dd.from_pandas(ref_data(ref["data"]), npartitions=3), REML=ref["REML"])
    assert fit.nobs == ref["nobs"] and fit.ngrps == ref["ngrps"]
    assert fit.reml_crit == pytest.approx(ref["REMLcrit"], rel=1e-8)
    np.testing.assert_allclose(fit.beta, list(ref["fixef"].values()), rtol=2e-6)
    np.testing.assert_allclose(fit.theta, ref["theta"], atol=1e-4 * max(1, np.max(ref["theta"])))
    assert fit.sigma == pytest.approx(ref["sigma"], rel=5e-6)
    np.testing.assert_allclose(fit.fitted.compute().to_numpy()[:len(ref["fitted_head"])], ref["fitted_head"],
                               rtol=1e-5)


def test_default_scheduler_and_local_cluster_agree(local_client):
    """The same graph on a dask.distributed LocalCluster (the active client) gives the same fit."""
    ref = mp.lmer("y ~ x + (1 | a) + (1 | b)", DATA.dropna())
    fit = mp.lmer("y ~ x + (1 | a) + (1 | b)", dd.from_pandas(DATA.dropna(), npartitions=4))
    assert_same_fit(ref, fit)
    assert isinstance(fit.fitted.compute(), pd.Series)


@pytest.fixture
def local_client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=":0") as cluster, distributed.Client(cluster) as client:
        yield client


# -- outputs --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fits():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingValuesWarning)
        ref = mp.lmer("y ~ x + f + (x | b) + (1 | a)", DATA)
        fit = mp.lmer("y ~ x + f + (x | b) + (1 | a)", partitioned(DATA, PARTITIONINGS["uneven"]))
    return ref, fit


def test_fitted_resid_are_dask_series_of_the_rows_used(fits):
    ref, fit = fits
    for got, want in ((fit.fitted, ref.fitted), (fit.resid, ref.resid)):
        assert isinstance(got, dd.Series)
        values = got.compute()
        assert list(values.index) == list(ref.design.row_index)   # NaN rows left out, as in the fit
        np.testing.assert_allclose(values.to_numpy(), want, atol=1e-6)


def test_predict_on_dask_and_pandas_newdata(fits):
    ref, fit = fits
    new = DATA.dropna().iloc[::7]
    got = fit.predict(dd.from_pandas(new, npartitions=3))
    assert isinstance(got, dd.Series)
    np.testing.assert_allclose(got.compute().to_numpy(), ref.predict(new), atol=1e-6)
    np.testing.assert_allclose(fit.predict(new, re_form="~0"), ref.predict(new, re_form="~0"), atol=1e-7)
    np.testing.assert_allclose(fit.predict(re_form="~0").compute().to_numpy(), ref.predict(re_form="~0"), atol=1e-6)
    unseen = new.assign(a="new level")
    with pytest.raises(DataError):
        fit.predict(dd.from_pandas(unseen, npartitions=2)).compute()
    np.testing.assert_allclose(fit.predict(dd.from_pandas(unseen, npartitions=2), allow_new_levels=True).compute(),
                               ref.predict(unseen, allow_new_levels=True), atol=1e-6)


def test_summary_matches_memory(fits):
    ref, fit = fits
    def text(f):
        return re.sub(r"   Data: .*\n", "", f.summary(ddf="lme4"))

    assert text(fit) == text(ref)


def test_progress_bar_over_passes(capsys):
    dask_lmer("y ~ x + (1 | a)", dd.from_pandas(DATA.dropna(), npartitions=2), progress=True)
    assert "lmer" in capsys.readouterr().err


# -- bad input ----------------------------------------------------------------------------------------
def _part(i: int, n: int = 40) -> pd.DataFrame:
    r = np.random.default_rng(i)
    return pd.DataFrame({"y": r.normal(size=n), "x": r.normal(size=n), "g": r.choice(list("abcd"), n)})


def test_missing_rows_counted_across_partitions():
    with pytest.warns(MissingValuesWarning, match=r"^3 rows with missing values dropped \(1197 of 1200 used\)$"):
        mp.lmer("y ~ x + (1 | a)", partitioned(DATA, PARTITIONINGS["uneven"]))


def test_dtype_differing_in_a_partition_is_named():
    parts = [_part(i) for i in range(3)]
    parts[2] = parts[2].assign(x=parts[2].x.round().astype(int))
    ddf = dd.from_delayed([dask.delayed(p) for p in parts], meta=parts[0].iloc[:0], verify_meta=False)
    with pytest.raises(DataError, match=r"^partition 2: column 'x' has dtype int64 here but float64"):
        mp.lmer("y ~ x + (1 | g)", ddf)


def test_non_numeric_response_is_named():
    ddf = dd.from_pandas(pd.concat([_part(i) for i in range(3)]).assign(y=lambda d: d.y.astype(str)), npartitions=3)
    with pytest.raises(DataError, match=r"^partition \d: response 'y' is not numeric"):
        mp.lmer("y ~ x + (1 | g)", ddf)


def test_level_not_found_by_the_level_pass_is_named():
    """A frame that gives other rows when computed again (here a new level in partition 2 on the
    second pass) cannot be fitted from two passes: the error names the partition and the column."""
    calls = {i: 0 for i in range(3)}

    def changing(i):
        calls[i] += 1
        p = _part(i)
        if i == 2 and calls[i] > 1:
            p.loc[0, "g"] = "zz"
        return p

    ddf = dd.from_map(changing, [0, 1, 2], meta=_part(0).iloc[:0], enforce_metadata=False)
    with pytest.raises(DataError, match=r"^partition 2: level 'zz' of grouping column 'g' was not found"):
        mp.lmer("y ~ x + (1 | g)", ddf)


def test_infinite_predictor_is_named():
    df = pd.concat([_part(i) for i in range(3)], ignore_index=True)
    df.loc[100, "x"] = np.inf
    with pytest.raises(DataError, match=r"^partition 2: fixed-effects column 'x' has non-finite values"):
        mp.lmer("y ~ x + (1 | g)", dd.from_pandas(df, npartitions=3))


def test_arguments_a_dask_fit_cannot_take():
    ddf = dd.from_pandas(DATA.dropna(), npartitions=2)
    with pytest.raises(DataError, match="weights on a Dask frame must be a column name"):
        mp.lmer("y ~ x + (1 | a)", ddf, weights=np.ones(len(DATA.dropna())))
    with pytest.raises(FormulaError, match="scale"):
        mp.lmer("y ~ scale(x) + (1 | a)", ddf)
    with pytest.raises(FormulaError, match="unknown column 'nope'"):
        mp.lmer("y ~ nope + (1 | a)", ddf)
    with pytest.raises(DataError, match="single response"):
        mp.lmer("cbind(y, x) ~ 1 + (1 | a)", ddf)


def test_constant_response_is_an_error_as_in_memory():
    df = DATA.dropna().assign(y=3.0)
    with pytest.raises(DataError) as in_memory:
        mp.lmer("y ~ x + (1 | a)", df)
    with pytest.raises(DataError) as on_dask:
        mp.lmer("y ~ x + (1 | a)", dd.from_pandas(df, npartitions=3))
    assert str(on_dask.value) == str(in_memory.value)


def test_rank_deficient_column_dropped_as_in_memory():
    df = DATA.dropna().assign(x2=lambda d: 2 * d.x)
    with warnings.catch_warnings(record=True) as w_mem:
        warnings.simplefilter("always")
        ref = mp.lmer("y ~ x + x2 + (1 | a)", df)
    with warnings.catch_warnings(record=True) as w_dask:
        warnings.simplefilter("always")
        fit = mp.lmer("y ~ x + x2 + (1 | a)", dd.from_pandas(df, npartitions=3))
    assert [str(w.message) for w in w_dask] == [str(w.message) for w in w_mem]
    assert fit.fixef_names == ref.fixef_names == ["(Intercept)", "x"]
    assert fit.criterion == pytest.approx(ref.criterion, rel=1e-10)
