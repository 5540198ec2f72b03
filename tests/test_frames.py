"""polars DataFrames and pyarrow Tables wherever a pandas DataFrame is accepted (mixedpy.frames):
fits, predictions, simulations and posteriors give the numbers of the same data as pandas, and
results come back as pandas."""
from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np
import pandas as pd
import pytest

import mixedpy as mp
from mixedpy.frames import to_pandas

pa = pytest.importorskip("pyarrow")


def _polars():
    """polars is optional for the tests (pip install polars): its tests skip without it."""
    return pytest.importorskip("polars")


@lru_cache(maxsize=None)
def _sleep():
    return mp.datasets.load("sleepstudy")


@lru_cache(maxsize=None)
def _sleep_fit():
    return mp.lmer("Reaction ~ Days + (Days | Subject)", _sleep())


def _foreign(df: pd.DataFrame):
    """The same rows as a polars DataFrame and as a pyarrow Table (no index: rows by position)."""
    plain = df.reset_index(drop=True)
    return {"polars": lambda: _polars().from_pandas(plain),
            "pyarrow": lambda: pa.Table.from_pandas(plain, preserve_index=False)}


@pytest.mark.parametrize("kind", ["polars", "pyarrow"])
def test_lmer_on_foreign_frames_matches_pandas(kind):
    ref = _sleep_fit()
    fit = mp.lmer("Reaction ~ Days + (Days | Subject)", _foreign(_sleep())[kind]())
    np.testing.assert_allclose(fit.beta, ref.beta, rtol=1e-10)
    np.testing.assert_allclose(fit.theta, ref.theta, rtol=1e-8)
    re = mp.ranef(fit)["Subject"]
    assert isinstance(re, pd.DataFrame)
    np.testing.assert_allclose(re.to_numpy(), mp.ranef(ref)["Subject"].to_numpy(), rtol=1e-6, atol=1e-8)
    assert list(re.index) == list(mp.ranef(ref)["Subject"].index)


@pytest.mark.parametrize("kind", ["polars", "pyarrow"])
def test_predict_and_simulate_with_foreign_newdata(kind):
    ref = _sleep_fit()
    new = pd.DataFrame({"Days": [0.0, 4.5, 9.0], "Subject": ["308", "335", "999"]})
    for frame in (_foreign(new)[kind](),):
        got = ref.predict(frame, allow_new_levels=True)
        want = ref.predict(new, allow_new_levels=True)
        assert isinstance(got, pd.Series)
        assert list(got.index) == [0, 1, 2]            # a frame without an index: rows by position
        np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-12)
        sims = ref.simulate(nsim=2, seed=4, newdata=frame, re_form="~0")
        np.testing.assert_allclose(np.asarray(sims), np.asarray(ref.simulate(nsim=2, seed=4, newdata=new,
                                                                              re_form="~0")))


def test_glmer_binomial_on_polars_with_categoricals():
    """A polars Categorical becomes an (unordered) pandas categorical, so a factor with treatment
    contrasts; an Enum has a fixed order and becomes an ordered categorical, which gets R's
    contr.poly as an ordered factor does (period.L, period.Q, period.C)."""
    pl = _polars()
    cbpp = mp.datasets.load("cbpp")
    ref = mp.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial")
    frame = pl.from_pandas(cbpp.astype({"herd": str, "period": str})).with_columns(
        pl.col("herd").cast(pl.Categorical), pl.col("period").cast(pl.Categorical))
    fit = mp.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", frame, family="binomial")
    assert list(fit.fixef_names) == list(ref.fixef_names) == ["(Intercept)", "period2", "period3", "period4"]
    np.testing.assert_allclose(fit.beta, ref.beta, rtol=1e-6)
    got = fit.predict(frame.head(4), type="response")
    np.testing.assert_allclose(got.to_numpy(), ref.predict(cbpp.head(4), type="response").to_numpy(), rtol=1e-6)
    enum = frame.with_columns(pl.col("period").cast(pl.String).cast(pl.Enum(["1", "2", "3", "4"])))
    ordered = mp.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", enum, family="binomial")
    assert list(ordered.fixef_names) == ["(Intercept)", "period.L", "period.Q", "period.C"]
    # the same model in another basis: the same fitted probabilities
    np.testing.assert_allclose(ordered.predict(type="response").to_numpy(), fit.predict(type="response").to_numpy(),
                               rtol=1e-5)


def test_weights_as_polars_series_and_pyarrow_column():
    pl = _polars()
    d = _sleep()
    w = np.linspace(0.5, 2.0, len(d))
    ref = mp.lmer("Reaction ~ Days + (1 | Subject)", d, weights=w)
    frame = pl.from_pandas(d.reset_index(drop=True))
    for weights in (pl.Series("w", w), pa.array(w)):
        fit = mp.lmer("Reaction ~ Days + (1 | Subject)", frame, weights=weights)
        np.testing.assert_allclose(fit.beta, ref.beta, rtol=1e-10)


def test_bayes_lmer_and_posterior_predict_on_pyarrow():
    pl = _polars()
    d = _sleep()
    kw = dict(chains=2, iter=200, seed=2, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # short chains: R-hat warnings are expected
        ref = mp.bayes_lmer("Reaction ~ Days + (1 | Subject)", d, **kw)
        post = mp.bayes_lmer("Reaction ~ Days + (1 | Subject)", pa.Table.from_pandas(d, preserve_index=False), **kw)
    # same data, same seed: the same draws
    np.testing.assert_allclose(post.draws.to_numpy(), ref.draws.to_numpy())
    new = d.iloc[:3].reset_index(drop=True)
    np.testing.assert_allclose(post.posterior_predict(pl.from_pandas(new), draws=5, seed=1),
                               ref.posterior_predict(new, draws=5, seed=1))


def test_interchange_protocol_route():
    """An object offering only __dataframe__ goes through pandas.api.interchange."""
    table = pa.table({"y": [1.0, 2.0, 3.0], "g": ["a", "b", "a"]})

    class OnlyProtocol:
        def __dataframe__(self, nan_as_null=False, allow_copy=True):
            return table.__dataframe__(nan_as_null=nan_as_null, allow_copy=allow_copy)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)   # pandas may flag the protocol itself
        out = to_pandas(OnlyProtocol())
    assert isinstance(out, pd.DataFrame)
    assert out["y"].tolist() == [1.0, 2.0, 3.0] and out["g"].tolist() == ["a", "b", "a"]


def test_arrow_stream_route():
    table = pa.table({"y": [1.0, 2.0]})

    class OnlyStream:
        def __arrow_c_stream__(self, requested_schema=None):
            return table.__arrow_c_stream__(requested_schema)

    assert to_pandas(OnlyStream())["y"].tolist() == [1.0, 2.0]


def test_what_is_left_alone_and_clear_errors():
    pl = _polars()
    d = _sleep()
    assert to_pandas(d) is d
    raw = {"y": [1.0]}
    assert to_pandas(raw) is raw                       # dicts: pandas' own constructor decides
    with pytest.raises(mp.DataError, match="collect"):
        mp.lmer("Reaction ~ Days + (1 | Subject)", pl.from_pandas(d).lazy())

    class Broken:
        def to_pandas(self):
            raise RuntimeError("no")

    with pytest.raises(mp.DataError, match="could not be converted"):
        to_pandas(Broken())

    class NotAFrame:
        def to_pandas(self):
            return [1, 2]

    with pytest.raises(mp.DataError, match="not a pandas DataFrame"):
        to_pandas(NotAFrame())


def test_dask_frames_are_not_converted():
    dd = pytest.importorskip("dask.dataframe")
    ddf = dd.from_pandas(_sleep(), npartitions=2)
    assert to_pandas(ddf) is ddf            # has __dataframe__, but belongs to mixedpy.scale
