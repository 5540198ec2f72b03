"""bayes_lmer on Dask frames (mixedpy.scale.bayes): the collapsed sampler on the partitions' sums
gives the in-memory posterior draw for draw; predictions on Dask rows are Dask arrays."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

dd = pytest.importorskip("dask.dataframe")
da = pytest.importorskip("dask.array")

import mixedpy as mp  # noqa: E402
from mixedpy.bayes.mode import gradient_hessian, polish_mode  # noqa: E402
from mixedpy.errors import DataError  # noqa: E402
from mixedpy.scale.bayes import DaskPosterior  # noqa: E402

from test_dask_lmer import DATA, PARTITIONINGS, partitioned  # noqa: E402

RUN = {"chains": 2, "iter": 200, "seed": 11}


def both(formula, sizes=PARTITIONINGS["uneven"], data=DATA, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = mp.bayes_lmer(formula, data, **RUN, **kw)
        post = mp.bayes_lmer(formula, partitioned(data, sizes), **RUN, **kw)
    return ref, post


@pytest.fixture(scope="module")
def crossed():
    return both("y ~ x + f + (1 | b) + (1 | a)")


@pytest.mark.parametrize("formula, kw", [("y ~ x + (1 | a) + (1 | b)", {}),
                                         ("y ~ x + (1 | a) + (0 + x | b)", {"weights": "w", "offset": "o"})],
                         ids=["crossed", "weights-offset"])
def test_draws_equal_the_in_memory_draws(formula, kw):
    """Same seed, same draws: the sums differ from the rows' only by rounding, and the sampler's start
    is made insensitive to rounding (mixedpy.bayes.mode)."""
    ref, post = both(formula, **kw)
    assert isinstance(post, DaskPosterior) and post.passes == 2
    assert list(post.draws.columns) == list(ref.draws.columns)
    np.testing.assert_allclose(post.draws.to_numpy(), ref.draws.to_numpy(), rtol=1e-9, atol=1e-9)
    assert post.sampler_info["thin"] == ref.sampler_info["thin"]


def test_summaries_fixef_ranef_print_and_priors(crossed):
    ref, post = crossed
    pd.testing.assert_series_equal(post.fixef(), ref.fixef(), rtol=1e-9)
    for g, want in ref.ranef().items():
        pd.testing.assert_frame_equal(post.ranef()[g], want, rtol=1e-9, atol=1e-9)
    # (rhat's folded draws |x - median| may swap the ranks of the two middle draws, equally far
    # from their mean up to rounding: a step of ~1e-4 in rhat)
    got, want = post.summary(), ref.summary()
    pd.testing.assert_frame_equal(got.drop(columns="rhat"), want.drop(columns="rhat"), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(got["rhat"], want["rhat"], atol=1e-3)
    assert str(post) == str(ref)
    assert str(post.prior_summary()) == str(ref.prior_summary())
    # the autoscaled prior scales come from the partitions' moments of y and x
    np.testing.assert_allclose(post.priors.coef.scale, ref.priors.coef.scale, rtol=1e-12)
    assert post.priors.aux.rate == pytest.approx(ref.priors.aux.rate, rel=1e-12)
    assert post.priors.intercept.location == pytest.approx(ref.priors.intercept.location, rel=1e-14)


def test_posterior_predict_on_pandas_newdata(crossed):
    ref, post = crossed
    new = DATA.dropna().iloc[:40]
    np.testing.assert_allclose(post.posterior_predict(new, seed=3), ref.posterior_predict(new, seed=3), atol=1e-8)
    np.testing.assert_allclose(post.posterior_linpred(new, re_form="~0", draws=50, seed=2),
                               ref.posterior_linpred(new, re_form="~0", draws=50, seed=2), atol=1e-8)


def test_predictions_on_dask_rows_are_dask_arrays(crossed):
    ref, post = crossed
    new = DATA.dropna().iloc[::5]
    lin = post.posterior_linpred(dd.from_pandas(new, npartitions=3), draws=40, seed=1)
    assert isinstance(lin, da.Array)
    np.testing.assert_allclose(lin.compute(), ref.posterior_linpred(new, draws=40, seed=1), atol=1e-8)
    # the fitted rows (those with missing values left out, as in the fit)
    fitted = post.posterior_epred(draws=30, seed=4, re_form="~0")
    assert isinstance(fitted, da.Array)
    np.testing.assert_allclose(fitted.compute(), ref.posterior_epred(draws=30, seed=4, re_form="~0"), atol=1e-8)
    # posterior_predict: the same draws, Gaussian noise of SD sigma per draw, reproducible by seed
    pred = post.posterior_predict(dd.from_pandas(new, npartitions=3), draws=40, seed=5)
    got = pred.compute()
    assert got.shape == (40, len(new))
    np.testing.assert_array_equal(got, post.posterior_predict(dd.from_pandas(new, npartitions=3), draws=40,
                                                              seed=5).compute())
    sub = int(np.random.default_rng(5).integers(2 ** 31))    # the draws' seed, as in memory
    mu = post.posterior_linpred(dd.from_pandas(new, npartitions=3), draws=40, seed=sub).compute()
    z = (got - mu) / post._d["sigma"][post._draw_index(40, np.random.default_rng(sub))][:, None]
    assert abs(z.mean()) < 0.05 and z.std() == pytest.approx(1.0, abs=0.05)


def test_new_levels_on_dask_newdata(crossed):
    ref, post = crossed
    unseen = DATA.dropna().iloc[:30].assign(a="new level")
    ddf = dd.from_pandas(unseen, npartitions=2)
    got = post.posterior_linpred(ddf, allow_new_levels=True, sample_new_levels="rstanarm", draws=20, seed=1)
    np.testing.assert_allclose(got.compute(), ref.posterior_linpred(unseen, allow_new_levels=True,
                                                                    sample_new_levels="rstanarm", draws=20, seed=1),
                               atol=1e-8)
    with pytest.raises(NotImplementedError, match="sample_new_levels='rstanarm'"):
        post.posterior_predict(ddf, allow_new_levels=True)
    with pytest.raises(DataError, match="new level"):
        post.posterior_linpred(ddf).compute()


def test_what_needs_every_row_says_so(crossed):
    _, post = crossed
    with pytest.raises(NotImplementedError, match="every row"):
        post.loo()
    with pytest.raises(DataError, match="offset="):
        post.posterior_linpred(offset=np.zeros(3))


def test_bad_input_as_in_memory():
    ddf = dd.from_pandas(DATA.dropna().assign(y=2.0), npartitions=2)
    with pytest.raises(DataError, match="constant"):
        mp.bayes_lmer("y ~ x + (1 | a)", ddf, **RUN)
    with pytest.raises(DataError, match="single response"):
        mp.bayes_lmer("cbind(y, x) ~ 1 + (1 | a)", dd.from_pandas(DATA.dropna(), npartitions=2), **RUN)


def test_on_a_local_cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=":0") as cluster, distributed.Client(cluster):
        ref, post = both("y ~ x + (1 | b)", sizes=[600, 600])
        np.testing.assert_allclose(post.draws.to_numpy(), ref.draws.to_numpy(), rtol=1e-9, atol=1e-9)
        assert post.posterior_predict(draws=10, seed=1).compute().shape == (10, ref.nobs)


# -- the rounding-insensitive start (mixedpy.bayes.mode) --------------------------------------------------
def _gaussian(mean, cov, noise=0.0):
    P = np.linalg.inv(cov)

    def log_prob(x):
        d = np.atleast_2d(x) - mean
        out = -0.5 * np.einsum("wi,ij,wj->w", d, P, d) - 2000.0
        return out + noise * np.cos(1e3 * d.sum(axis=1))   # a deterministic "rounding" perturbation
    return log_prob


def test_polish_finds_the_mode_and_covariance_of_a_gaussian():
    mean, cov = np.array([0.3, -1.2, 5.0]), np.array([[0.04, 0.01, 0.0], [0.01, 0.09, -0.02], [0.0, -0.02, 1.0]])
    x, c = polish_mode(_gaussian(mean, cov), mean + [0.01, -0.02, 0.3], np.eye(3) * 0.5)
    np.testing.assert_allclose(x, mean, atol=1e-6)
    np.testing.assert_allclose(c, cov, rtol=1e-5, atol=1e-7)
    _, g, H = gradient_hessian(_gaussian(mean, cov), mean, np.full(3, 1e-3))
    np.testing.assert_allclose(H, -np.linalg.inv(cov), rtol=1e-6)
    assert np.abs(g).max() < 1e-8


def test_polish_is_bitwise_insensitive_to_last_bit_noise():
    """A log density changed at the level of its last bits, from another BFGS result, gives the same
    start bit for bit (emcee would otherwise amplify the difference step by step)."""
    mean, cov = np.array([0.3, -1.2]), np.array([[0.04, 0.01], [0.01, 0.09]])
    a = polish_mode(_gaussian(mean, cov), mean + 0.01, np.eye(2) * 0.3)
    b = polish_mode(_gaussian(mean, cov, noise=4e-13), mean - 1e-4, np.eye(2) * 0.2)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_in_memory_draws_do_not_depend_on_the_row_order():
    df = DATA.dropna()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = mp.bayes_lmer("y ~ x + (1 | b)", df, **RUN)
        b = mp.bayes_lmer("y ~ x + (1 | b)", df.iloc[::-1], **RUN)
    np.testing.assert_allclose(a.draws.to_numpy(), b.draws.to_numpy(), rtol=1e-9, atol=1e-9)
