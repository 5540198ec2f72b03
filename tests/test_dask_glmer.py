"""glmer on Dask frames (mixedpy.scale.glmer): one map-reduce pass per PIRLS iteration, the same
Laplace fit as in memory (and lme4's numbers on its cbpp reference)."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

dd = pytest.importorskip("dask.dataframe")

import mixedpy as mp  # noqa: E402
from mixedpy.errors import DataError  # noqa: E402
from mixedpy.scale.glmer import DaskGlmerFit  # noqa: E402
from mixedpy.scale.glmer import glmer as dask_glmer  # noqa: E402

from conftest import load_ref, ref_data  # noqa: E402

CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"


@pytest.fixture(scope="module")
def cbpp():
    df = ref_data("cbpp.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = mp.glmer(CBPP, df, family="binomial")
        fit = mp.glmer(CBPP, dd.from_pandas(df, npartitions=3), family="binomial")
    return df, ref, fit


def test_laplace_fit_equals_in_memory(cbpp):
    _, ref, fit = cbpp
    assert isinstance(fit, DaskGlmerFit)
    assert fit.criterion == pytest.approx(ref.criterion, rel=1e-10)
    np.testing.assert_allclose(fit.theta, ref.theta, atol=1e-7)
    np.testing.assert_allclose(fit.beta, ref.beta, atol=1e-7)
    np.testing.assert_allclose(fit.vcov_array, ref.vcov_array, rtol=1e-5)
    np.testing.assert_allclose(mp.ranef(fit)["herd"].to_numpy(), mp.ranef(ref)["herd"].to_numpy(), atol=1e-7)
    assert fit.deviance == pytest.approx(ref.deviance, rel=1e-10)
    # the level pass, the design pass and one pass per PIRLS iteration: at least one per evaluation
    assert fit.passes >= fit.problem.n_evals + 2 and fit.pass_seconds > 0


def test_lme4_reference(cbpp):
    _, _, fit = cbpp
    ref = load_ref("cbpp_laplace")
    assert fit.loglik == pytest.approx(ref["logLik"], rel=1e-6)
    np.testing.assert_allclose(fit.beta, list(ref["fixef"].values()), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fit.theta, ref["theta"], rtol=1e-4)


def test_fitted_and_resid_are_dask_series(cbpp):
    df, ref, fit = cbpp
    for got, want in ((fit.fitted, ref.fitted), (fit.resid, ref.resid)):
        assert isinstance(got, dd.Series)
        np.testing.assert_allclose(got.compute().to_numpy(), want, atol=1e-7)
    np.testing.assert_allclose(fit.residuals("pearson").compute().to_numpy(), ref.residuals("pearson"), atol=1e-7)
    np.testing.assert_allclose(fit.predict(df.head(10), type="response"), ref.predict(df.head(10), type="response"),
                               atol=1e-8)
    # the summary up to the coefficient table (whose SEs come from a finite-difference Hessian)
    assert fit.summary().split("Fixed effects")[0] == ref.summary().replace("   Data: df\n", "").split("Fixed effects")[0]


def test_nagq0_and_poisson_equal_in_memory():
    rng = np.random.default_rng(3)
    n = 400
    df = pd.DataFrame({"g": rng.integers(0, 25, n).astype(str), "x": rng.normal(size=n)})
    df["y"] = rng.poisson(np.exp(0.3 + 0.4 * df.x + rng.normal(0, 0.5, 25)[df.g.astype(int)]))
    ddf = dd.from_pandas(df, npartitions=2)
    for nAGQ in (0, 1):
        ref = mp.glmer("y ~ x + (1 | g)", df, family="poisson", nAGQ=nAGQ)
        fit = mp.glmer("y ~ x + (1 | g)", ddf, family="poisson", nAGQ=nAGQ)
        assert fit.criterion == pytest.approx(ref.criterion, rel=1e-10)
        np.testing.assert_allclose(fit.beta, ref.beta, atol=1e-7)


def test_warm_start_fewer_passes_same_optimum(cbpp):
    df, ref, fit = cbpp
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warm = dask_glmer(CBPP, dd.from_pandas(df, npartitions=3), family="binomial", warm_start=True,
                          calc_derivs=False)
    assert warm.passes < fit.passes
    # warm starts change only the PIRLS path, so the optimum agrees to that noise (~1e-5)
    assert warm.criterion == pytest.approx(ref.criterion, rel=1e-5)
    np.testing.assert_allclose(warm.beta, ref.beta, atol=2e-3)


def test_bad_binomial_response_names_the_partition():
    df = pd.DataFrame({"y": [0, 1, 2, 0, 1, 0] * 5, "g": list("abc") * 10})
    with pytest.raises(DataError, match=r"^partition \d: "):
        mp.glmer("y ~ 1 + (1 | g)", dd.from_pandas(df, npartitions=2), family="binomial")
    with pytest.raises(DataError, match="nAGQ > 1"):
        mp.glmer("y ~ 1 + (1 | g)", dd.from_pandas(df, npartitions=2), family="binomial", nAGQ=5)


def _crossed(seed: int, n: int, slope: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"a": rng.integers(0, 40, n).astype(str), "b": rng.integers(0, 9, n).astype(str),
                       "c": rng.integers(0, 6, n).astype(str), "x": rng.normal(size=n)})
    eta = (-0.3 + 0.6 * df.x + rng.normal(0, 0.8, 40)[df.a.astype(int)] + rng.normal(0, 0.5, 9)[df.b.astype(int)])
    if slope:
        eta = eta + rng.normal(0, 0.4, 6)[df.c.astype(int)] * df.x
    df["y"] = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int)
    return df


@pytest.mark.parametrize("formula, npartitions", [("y ~ x + (1 | a) + (1 | b)", 1),
                                                  ("y ~ x + (1 | a) + (1 | b)", 4),
                                                  ("y ~ x + (1 | a) + (1 | b) + (0 + x | c)", 3)])
def test_crossed_laplace_fit_equals_in_memory_for_any_partitioning(formula, npartitions):
    """Crossed terms: the passes sum w M_i' M_j by the fit's global tuple set (each partition's
    rows mapped to it once), and the reduced system is the in-memory one."""
    df = _crossed(5, 700, slope="| c" in formula)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = mp.glmer(formula, df, family="binomial")
        fit = mp.glmer(formula, dd.from_pandas(df, npartitions=npartitions), family="binomial")
    assert fit.criterion == pytest.approx(ref.criterion, rel=1e-10)
    np.testing.assert_allclose(fit.theta, ref.theta, atol=1e-6)
    np.testing.assert_allclose(fit.beta, ref.beta, atol=1e-6)
    np.testing.assert_allclose(fit.vcov_array, ref.vcov_array, rtol=1e-4)
    # no pass brings level tuples to the client: the pair sums come keyed by the global set
    sums = fit.problem._last[1].sums
    assert sums.tuples is None and sums.n_tuples == fit.problem.structure.a_pos[1, 0].size


def test_crossed_fit_on_a_local_cluster_equals_in_memory():
    """With a dask.distributed Client the tuple index is scattered to the workers (no large graph)."""
    distributed = pytest.importorskip("distributed")
    df = _crossed(6, 500)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster, distributed.Client(cluster):
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)      # e.g. distributed's "large graph"
            warnings.simplefilter("ignore", mp.errors.ConvergenceWarning)
            fit = mp.glmer("y ~ x + (1 | a) + (1 | b)", dd.from_pandas(df, npartitions=3), family="binomial",
                           calc_derivs=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = mp.glmer("y ~ x + (1 | a) + (1 | b)", df, family="binomial", calc_derivs=False)
    assert fit.criterion == pytest.approx(ref.criterion, rel=1e-10)
    np.testing.assert_allclose(fit.theta, ref.theta, atol=1e-6)
