"""bayes_glmer's Laplace and importance steps on the blocked kernel (issue 10, item 4a).

Each algebra result is checked against dense NumPy written out here: A = [Z Lambda | X_c] per
walker, H = A'WA + diag(P0), the Newton mode of the penalized log-joint, log|H|, and the importance
log-weights log p(y, v) - log q(v) with scipy's binomial/Poisson pmfs and multivariate t.  The
families' per-observation log-likelihoods are checked against glmer's ``aic`` and scipy.
"""
from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.linalg as sla
from scipy import stats

import mixedpy as mp
from mixedpy.bayes.glmm_posterior import GLMMPosterior, KernelAlgebra
from mixedpy.bayes.priors import resolve_priors
from mixedpy.bayes.model import coefficient_logprior
from mixedpy.families import Binomial, Poisson, softplus
from mixedpy.formula.design import build_design


def _data(seed: int, n: int = 150) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g1, g2 = rng.integers(0, 9, n), rng.integers(0, 6, n)
    a = rng.integers(0, 5, n)
    b = rng.integers(0, 3, n)          # b within a: (1 | a/b) has 15 nested levels
    x = rng.normal(size=n)
    eta = 0.3 + 0.5 * x + rng.normal(0, 0.8, 9)[g1] + rng.normal(0, 0.5, 6)[g2]
    size = rng.integers(1, 6, n)
    k = rng.binomial(size, 1 / (1 + np.exp(-eta)))
    return pd.DataFrame({"k": k, "f": size - k, "y01": (k > 0).astype(int), "cnt": rng.poisson(np.exp(0.3 * eta)),
                         "x": x, "g1": [f"p{v}" for v in g1], "g2": [f"i{v}" for v in g2],
                         "a": [f"a{v}" for v in a], "b": [f"b{v}" for v in b]})


CASES = [
    ("cbind(k, f) ~ x + (1 | g1) + (1 | g2)", "binomial", "logit"),       # crossed
    ("cbind(k, f) ~ x + (1 | a/b)", "binomial", "logit"),                 # nested
    ("y01 ~ x + (x | g1) + (1 | g2)", "binomial", "probit"),              # slopes, crossed
    ("cnt ~ x + (1 | g1) + (1 | g2)", "poisson", "log"),                  # crossed counts
    ("cnt ~ x + (x || g1) + (1 | a/b)", "poisson", "log"),                # uncorrelated slopes + nested
]


def _model(formula, family, link, seed=0):
    design = build_design(formula, _data(seed), allow_n_levels=True)
    model = GLMMPosterior(design, family, link, None)
    priors = resolve_priors(family, link, model.y_for_priors, design.X, design.fixef_names,
                            "default", "default", None, None)
    model.set_priors(priors)
    return model


def _dense_A(model, chols):
    """[Z Lambda | X_c] per walker, (W, n, d), from the codes and model matrices."""
    W = chols[0].shape[0]
    A = np.zeros((W, model.n, model.d))
    off, rows = 0, np.arange(model.n)
    for (codes, M, J), L in zip(model._term_rows, chols):
        k = M.shape[1]
        cols = off + codes[:, None] * k + np.arange(k)[None, :]
        A[:, rows[:, None], cols] = np.einsum("nk,wkl->wnl", M, L)
        off += J * k
    A[:, :, model.q:] = model.Xc
    return A


def _dense_loglik(model, eta):
    """log p(y | eta) summed over observations, with scipy's pmfs (collapsed rows keep their constants)."""
    if model.family == "binomial":
        mu = stats.norm.cdf(eta) if model.link == "probit" else 1 / (1 + np.exp(-eta))
        return stats.binom.logpmf(model.k_obs, model.trials, mu).sum(axis=-1)
    return stats.poisson.logpmf(model.k_obs, np.exp(eta)).sum(axis=-1)


def _dense_penalized(model, A, v):
    eta = np.einsum("nd,d->n", A, v) + model.offset
    return _dense_loglik(model, eta) - 0.5 * np.sum(model.P0 * (v - model.m0) ** 2)


def _dense_mode(model, A, iters=60):
    """Newton on the dense penalized log-joint, to convergence."""
    v = model._v_start.copy()
    for _ in range(iters):
        eta = A @ v + model.offset
        score, info = model.fam.score_info(eta, model.resp)
        H = A.T @ (A * info[:, None]) + np.diag(model.P0)
        g = A.T @ score - model.P0 * (v - model.m0)
        step = np.linalg.solve(H, g)
        t = 1.0
        while _dense_penalized(model, A, v + t * step) < _dense_penalized(model, A, v) - 1e-10 and t > 1e-8:
            t /= 2
        v = v + t * step
        if np.max(np.abs(t * step)) < 1e-12:
            break
    return v


@pytest.mark.parametrize("formula, family, link", CASES)
def test_kernel_algebra_matches_dense(formula, family, link):
    """Products, gradient, log|H|, H^{-1} g and L^{-T} z of the kernel against dense H = A'WA + diag(P0)."""
    model = _model(formula, family, link)
    assert not model._scalar_term
    rng = np.random.default_rng(1)
    x = model.start()[None] + rng.normal(0, 0.4, (3, model.start().size))
    chols, _ = model._unpack(x)
    alg = model._design(chols)
    assert isinstance(alg, KernelAlgebra)
    A = _dense_A(model, chols)
    V = rng.normal(size=(3, 4, model.d))
    np.testing.assert_allclose(alg.linpred(V), np.einsum("wnd,wkd->wkn", A, V), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(alg.linpred(V[:, 0]), np.einsum("wnd,wd->wn", A, V[:, 0]), rtol=1e-10, atol=1e-10)
    score = rng.normal(size=(3, model.n))
    np.testing.assert_allclose(alg.gradient(score), np.einsum("wnd,wn->wd", A, score), rtol=1e-10, atol=1e-10)
    info = rng.uniform(0.05, 3.0, size=(3, model.n))
    fac = alg.factor(info, model.P0)
    H = np.einsum("wnd,wn,wne->wde", A, info, A) + np.diag(model.P0)[None]
    np.testing.assert_allclose(2 * fac.half_logdet, np.linalg.slogdet(H)[1], rtol=1e-10)
    g = rng.normal(size=(3, model.d))
    np.testing.assert_allclose(fac.solve(g), np.linalg.solve(H, g[..., None])[..., 0], rtol=1e-8, atol=1e-10)
    z = rng.normal(size=(3, 5, model.d))
    for w in range(3):
        Lw = np.linalg.cholesky(H[w])
        np.testing.assert_allclose(fac.solve_upper(z)[w], sla.solve_triangular(Lw.T, z[w].T, lower=False).T,
                                   rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("formula, family, link", CASES)
def test_kernel_mode_logdet_and_importance_weights_match_dense(formula, family, link):
    """The Laplace mode, log|H| there, the Laplace target and the importance log-weights
    (scipy pmfs, exact prior, scipy's multivariate t) agree with dense NumPy."""
    model = _model(formula, family, link, seed=2)
    rng = np.random.default_rng(3)
    x = model.start()[None] + rng.normal(0, 0.3, (2, model.start().size))
    chols, lp = model._unpack(x)
    alg = model._design(chols)
    v, fac = model._mode(alg, 2)
    A = _dense_A(model, chols)
    nu, N, d = model.df, 6, model.d
    t = rng.standard_normal((2, N, d)) * np.sqrt(nu / rng.chisquare(nu, (2, N, 1)))
    V, logw = model._importance(alg, v, fac, t)
    laplace = model.laplace_log_prob(x)
    for w in range(2):
        v_dense = _dense_mode(model, A[w])
        # probit's Fisher scoring converges linearly: the searches stop at different ~1e-8 points
        np.testing.assert_allclose(v[w], v_dense, rtol=1e-6, atol=1e-6)
        eta = A[w] @ v_dense + model.offset
        _, info = model.fam.score_info(eta, model.resp)
        H = A[w].T @ (A[w] * info[:, None]) + np.diag(model.P0)
        np.testing.assert_allclose(2 * fac.half_logdet[w], np.linalg.slogdet(H)[1], rtol=1e-9)
        Lw = np.linalg.cholesky(H)
        np.testing.assert_allclose(V[w], v_dense + sla.solve_triangular(Lw.T, t[w].T, lower=False).T,
                                   rtol=1e-7, atol=1e-8)
        u, beta = V[w][:, :model.q], V[w][:, model.q:]
        logjoint = (_dense_loglik(model, V[w] @ A[w].T + model.offset)
                    + stats.norm.logpdf(u).sum(axis=1)
                    + coefficient_logprior(model.priors, model.names, beta))
        logq = stats.multivariate_t(loc=v_dense, shape=np.linalg.inv(H), df=nu).logpdf(V[w])
        np.testing.assert_allclose(logw[w], logjoint - logq, rtol=1e-8)
        # Laplace: log p(theta) + log p(y, v-hat) - log|H|/2 + d/2 log(2 pi)
        lj = (_dense_loglik(model, eta) + stats.norm.logpdf(v_dense[:model.q]).sum()
              + coefficient_logprior(model.priors, model.names, v_dense[None, model.q:])[0])
        expect = lp[w] + lj - 0.5 * np.linalg.slogdet(H)[1] + 0.5 * d * np.log(2 * np.pi)
        np.testing.assert_allclose(laplace[w], expect, rtol=1e-9)


def test_proposal_search_is_an_exact_importance_sampler():
    """log_prob's early-stopped Newton search centres q within a small distance of the mode, and the
    mean importance weight still estimates p(y | theta) (the Laplace-sum estimate is its limit)."""
    model = _model(*CASES[0], seed=4)
    x = model.start()[None]
    chols, _ = model._unpack(x)
    alg = model._design(chols)
    v_tight, fac_tight = model._mode(alg, 1)
    v_fast, fac_fast = model._mode(alg, 1, tol=0.05, final_factor=False)
    A = _dense_A(model, chols)[0]
    _, info = model.fam.score_info(A @ v_tight[0] + model.offset, model.resp)
    H = A.T @ (A * info[:, None]) + np.diag(model.P0)
    dv = (v_fast - v_tight)[0]
    assert dv @ H @ dv < 1e-3
    rng = np.random.default_rng(5)
    nu = model.df
    t = rng.standard_normal((1, 4000, model.d)) * np.sqrt(nu / rng.chisquare(nu, (1, 4000, 1)))
    _, lw_fast = model._importance(alg, v_fast, fac_fast, t)
    _, lw_tight = model._importance(alg, v_tight, fac_tight, t)
    est = [np.logaddexp.reduce(lw[0]) - np.log(lw.shape[1]) for lw in (lw_fast, lw_tight)]
    assert est[0] == pytest.approx(est[1], abs=0.02)
    assert np.var(lw_fast) < 1.5 * np.var(lw_tight) + 1e-3


def _crossed(seed=0, n=4000, J1=200, J2=100):
    rng = np.random.default_rng(seed)
    g1, g2 = rng.integers(0, J1, n), rng.integers(0, J2, n)
    x = rng.normal(size=n)
    eta = -0.2 + 0.4 * x + rng.normal(0, 0.7, J1)[g1] + rng.normal(0, 0.5, J2)[g2]
    return pd.DataFrame({"y": rng.binomial(1, 1 / (1 + np.exp(-eta))), "x": x,
                         "g1": [f"s{v}" for v in g1], "g2": [f"i{v}" for v in g2]})


def test_crossed_log_density_memory_is_o_nnz():
    """(1 | g1) + (1 | g2) with 200 x 100 levels and 4,000 rows, 8 walkers: the dense (walkers, n, q + p)
    array of the old algebra alone would be 8 x 4,000 x 302 doubles (77 MB); one log-density
    evaluation of the kernel path allocates a fraction of that at its peak."""
    df = _crossed()
    design = build_design("y ~ x + (1 | g1) + (1 | g2)", df, allow_n_levels=True)
    model = GLMMPosterior(design, "binomial", "logit", None, n_importance=4)
    model.set_priors(resolve_priors("binomial", "logit", model.y_for_priors, design.X, design.fixef_names,
                                    "default", "default", None, None))
    x = np.tile(model.start(), (8, 1))
    model.log_prob(x[:1])
    tracemalloc.start()
    lp, blobs = model.log_prob(x)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert np.all(np.isfinite(lp)) and blobs.shape == (8, model.d)
    assert peak < 20e6, peak / 1e6


def test_crossed_bayes_glmer_runs():
    df = _crossed(n=1500, J1=60, J2=30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = mp.bayes_glmer("y ~ x + (1 | g1) + (1 | g2)", df, family="binomial", chains=1, iter=40,
                              warmup=20, nwalkers=8, thin=1, seed=2, progress=False, n_importance=4)
    assert post.n_draws == 24
    sd = np.sqrt(post.draws["Sigma[g1:(Intercept),(Intercept)]"].to_numpy())
    assert 0.3 < np.median(sd) < 1.3
    assert 0.15 < post.draws["x"].mean() < 0.65
    b = post.draws[[c for c in post.draws.columns if c.startswith("b[") and "g2:" in c]]
    assert b.shape[1] == 30 and np.isfinite(b.to_numpy()).all()


# ---- families: one set of log-likelihoods --------------------------------------------------------
@pytest.mark.parametrize("link", ["logit", "probit", "cloglog"])
def test_binomial_loglik_eta_is_glmer_aic_and_scipy(link):
    rng = np.random.default_rng(6)
    fam = Binomial(link)
    m = rng.integers(1, 8, 40).astype(float)
    k = rng.binomial(m.astype(int), 0.4).astype(float)
    resp = fam.prepare(np.column_stack([k, m - k]), None)
    eta = np.clip(rng.normal(0, 1.0, (3, 40)), -2.5, 2.5)   # where R's linkinv does not clamp mu
    ll = fam.loglik_eta(eta, resp)
    for w in range(3):
        assert ll[w].sum() == pytest.approx(-0.5 * fam.aic(resp, fam.linkinv(eta[w])), rel=1e-12)
        np.testing.assert_allclose(ll[w], stats.binom.logpmf(k, m, fam.linkinv(eta[w])), rtol=1e-10)
    # finite and exact where linkinv clamps
    far = np.array([-60.0, 60.0])
    r2 = fam.prepare(np.array([[1.0, 0.0], [0.0, 1.0]]), None)
    assert np.all(np.isfinite(fam.loglik_eta(far, r2)))
    # the score is the derivative, the information is w mu_eta^2 / V(mu)
    h = 1e-6
    score, info = fam.score_info(eta, resp)
    num = (fam.loglik_eta(eta + h, resp) - fam.loglik_eta(eta - h, resp)) / (2 * h)
    np.testing.assert_allclose(score, num, rtol=1e-5, atol=1e-7)
    mu = fam.linkinv(eta)
    np.testing.assert_allclose(info, m * fam.mu_eta(eta) ** 2 / fam.variance(mu), rtol=1e-8)


@pytest.mark.parametrize("link", ["log", "sqrt"])
def test_poisson_loglik_eta_is_glmer_aic_and_scipy(link):
    rng = np.random.default_rng(7)
    fam = Poisson(link)
    y = rng.poisson(3.0, 30).astype(float)
    resp = fam.prepare(y, rng.uniform(0.5, 2.0, 30))
    eta = rng.uniform(0.5, 2.0, (2, 30))
    ll = fam.loglik_eta(eta, resp)
    for w in range(2):
        mu = fam.linkinv(eta[w])
        assert ll[w].sum() == pytest.approx(-0.5 * fam.aic(resp, mu), rel=1e-12)
        np.testing.assert_allclose(ll[w], resp.weights * stats.poisson.logpmf(y, mu), rtol=1e-10)
    score, info = fam.score_info(eta, resp)
    h = 1e-6
    num = (fam.loglik_eta(eta + h, resp) - fam.loglik_eta(eta - h, resp)) / (2 * h)
    np.testing.assert_allclose(score, num, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(info, resp.weights * fam.mu_eta(eta) ** 2 / fam.linkinv(eta), rtol=1e-8)


def test_softplus_matches_logaddexp_everywhere():
    x = np.concatenate([np.linspace(-800, 800, 2001), [0.0, -1e-300, 1e-300]])
    np.testing.assert_allclose(softplus(x), np.logaddexp(0.0, x), rtol=1e-15, atol=0)
    assert softplus(2.0) == pytest.approx(np.logaddexp(0.0, 2.0), rel=1e-15)


def test_importance_log_joint_in_walker_chunks_is_unchanged(monkeypatch):
    import mixedpy.bayes.glmm_posterior as gp

    model = _model(*CASES[2], seed=8)
    x = model.start()[None] + np.random.default_rng(9).normal(0, 0.3, (3, model.start().size))
    chols, _ = model._unpack(x)
    alg = model._design(chols)
    V = np.random.default_rng(10).normal(0, 0.2, (3, 5, model.d))
    whole = model._logjoint(alg, V)
    monkeypatch.setattr(gp, "_CHUNK", 1)                  # one walker at a time
    np.testing.assert_allclose(model._logjoint(alg, V), whole, rtol=1e-13)


@pytest.mark.parametrize("case", [CASES[0], CASES[2]])
def test_rescaled_newton_start_is_closer_and_mode_unchanged(case):
    """After warm_start, each walker's Newton search starts from u rescaled to its covariance: a smaller
    Newton decrement than the warm-start point itself, and the same mode."""
    model = _model(*case, seed=11)
    x0 = model.start()
    model.warm_start(x0[None])
    x = x0[None] + np.array([[-0.8], [0.9]]) * np.ones(x0.size)[None]
    chols, _ = model._unpack(x)
    alg = model._design(chols)

    def decrement(v):
        _, score, info = model._penalized(alg, v)
        g = alg.gradient(score) - model.P0 * (v - model.m0)
        return np.sum(g * alg.factor(info, model.P0).solve(g), axis=1)

    tiled = np.tile(model._v_start, (2, 1))
    assert np.all(decrement(model._start(chols)) < decrement(tiled))
    v, _ = model._mode(alg, 2)
    A = _dense_A(model, chols)
    for w in range(2):
        np.testing.assert_allclose(v[w], _dense_mode(model, A[w]), rtol=1e-6, atol=1e-6)


def test_prior_pseudo_rows_keep_the_data_block_structure():
    """The kernel's rows carry p prior pseudo-observations; the block types are those of the data alone
    (nested (1 | a/b) keeps its Diagonal second block, crossed factors fill theirs in)."""
    from mixedpy.linalg.blocked import CrossProducts, TermBlock

    for formula, family, link, second in [("cnt ~ x + (1 | a/b)", "poisson", "log", "Diagonal"),
                                          ("cbind(k, f) ~ x + (1 | g1) + (1 | g2)", "binomial", "logit", "Dense")]:
        model = _model(formula, family, link)
        data_only = CrossProducts.analyse([TermBlock(c, M, J) for c, M, J in model._term_rows])
        assert model._structure.types == data_only.types
        assert model._structure.types[1, 1] == second


def test_a_walker_whose_factor_fails_gets_minus_inf_alone(monkeypatch):
    import mixedpy.bayes.glmm_posterior as gp

    model = _model(*CASES[0], seed=12)
    x = np.tile(model.start(), (3, 1))
    good, _ = model.log_prob(x)
    calls = {"n": 0}
    original = gp.CrossProducts.factor

    def flaky(self, T_list):
        calls["n"] += 1
        if calls["n"] % 3 == 2:                 # the second walker of every batch
            raise gp.NotPositiveDefinite("test")
        return original(self, T_list)

    monkeypatch.setattr(gp.CrossProducts, "factor", flaky)
    lp, blobs = model.log_prob(x)
    assert lp[1] == -np.inf and np.all(np.isfinite(lp[[0, 2]]))
    assert calls["n"] <= 3 * 3                   # the lost walker does not keep the search going
    assert blobs.shape == (3, model.d) and np.all(np.isfinite(good))
