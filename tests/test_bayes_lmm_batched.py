"""The Bayesian LMM's log-density batched over walkers (mixedpy.linalg.batched) for every term
structure: crossed, nested, vector-valued terms and mixes, under every block type of the kernel
(Diagonal, BlkDiag, Sparse with a fixed pattern, Dense; small and large dense factors; Gram and
scatter plans and the per-walker fallback), against the per-walker kernel and against the dense
Gaussian algebra computed here with numpy."""
from __future__ import annotations

from unittest import mock

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mixedpy as mp
from mixedpy.bayes.lmm_posterior import LMMPosterior
from mixedpy.bayes.priors import resolve_priors
from mixedpy.formula.design import build_design
from mixedpy.linalg import batched
from mixedpy.linalg.batched import BatchedKernel
from mixedpy.linalg.blocked import CrossProducts, TermBlock
from mixedpy.linalg.structure import DENSE, SPARSE, BlockStructure

#: (dense_limit, sparse_density) of the block-type decision: the default (small designs are all
#: dense off the diagonal), everything sparse that can be, and a mix of sparse and dense blocks
THRESHOLDS = [(40_000, 0.1), (0, 1.01), (0, 0.3)]


# ---- random designs ------------------------------------------------------------------------------
def _codes(rng, n, J):
    """n level codes using every one of J levels."""
    c = rng.integers(0, J, n)
    c[rng.permutation(n)[:J]] = np.arange(J)
    return c


def _blocks(rng, n, spec):
    """TermBlocks for spec = [(J, k, nested_in_previous)]: a nested term's levels each lie in one
    level of the term before it (its codes are a function of the previous term's codes)."""
    blocks = []
    for J, k, nested in spec:
        if nested and blocks:
            prev = blocks[-1]
            J = min(J, prev.n_levels)
            outer_of = _codes(rng, prev.n_levels, J)    # each inner level in one outer level
            codes = outer_of[prev.codes]
        else:
            codes = _codes(rng, n, J)
        M = np.column_stack([np.ones(n)] + [rng.normal(size=n) for _ in range(k - 1)])
        blocks.append(TermBlock(codes, M, J))
    return blocks


def _z(block):
    n, k = block.model_matrix.shape
    Z = np.zeros((n, block.n_levels * k))
    for a in range(k):
        Z[np.arange(n), block.codes * k + a] = block.model_matrix[:, a]
    return Z


def _dense_schur(blocks, X, y, sqrt_w, T):
    """ldL2 = log|Lambda'Z'WZ Lambda + I| and G = [X y]'W[X y] - [X y]'WZ Lambda M^{-1} Lambda'Z'W[X y]
    of one walker, directly from dense matrices."""
    Z = np.hstack([_z(b) for b in blocks]) * sqrt_w[:, None]
    Lam = np.zeros((Z.shape[1],) * 2)
    off = 0
    for b, Tb in zip(blocks, T):
        q = b.n_levels * b.k
        Lam[off:off + q, off:off + q] = np.kron(np.eye(b.n_levels), Tb)
        off += q
    ZL = Z @ Lam
    M = ZL.T @ ZL + np.eye(ZL.shape[1])
    F = np.column_stack([X, y]) * sqrt_w[:, None]
    R = ZL.T @ F
    return np.linalg.slogdet(M)[1], F.T @ F - R.T @ np.linalg.solve(M, R), M


def _relative_factors(rng, blocks, W):
    """Lower-triangular relative factors (W, k, k) per term, some with a zero diagonal (boundary)."""
    out = []
    for b in blocks:
        T = np.tril(rng.normal(size=(W, b.k, b.k)))
        idx = np.arange(b.k)
        T[:, idx, idx] = np.abs(T[:, idx, idx]) + 0.1
        if W > 1:
            T[0, 0, 0] = 0.0
        out.append(T)
    return out


def _problem(rng, spec, n, weighted, thresholds):
    blocks = _blocks(rng, n, spec)
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = rng.normal(size=n) + 3.0
    sqrt_w = np.sqrt(rng.uniform(0.3, 3.0, n)) if weighted else None
    st_ = BlockStructure.analyse(blocks, None, *thresholds)
    return blocks, X, y, sqrt_w, CrossProducts(blocks, X, y, sqrt_w, structure=st_)


def _check_against_references(blocks, X, y, sqrt_w, cp, T, budget=None):
    W = T[0].shape[0]
    ldL2, G, ok = BatchedKernel(cp).schur(T, budget)
    assert ok.all()
    sw = np.ones(len(y)) if sqrt_w is None else sqrt_w
    for w in range(W):
        Tw = [t[w] for t in T]
        f = cp.factor(Tw)
        tail = f.fixed_factor
        ld_d, G_d, _ = _dense_schur(blocks, X, y, sw, Tw)
        scale = np.abs(G_d).max()
        assert abs(ldL2[w] - f.ldL2) <= 1e-10 * max(1.0, abs(f.ldL2))
        assert abs(ldL2[w] - ld_d) <= 1e-9 * max(1.0, abs(ld_d))
        assert np.abs(G[w] - tail @ tail.T).max() <= 1e-10 * scale
        assert np.abs(G[w] - G_d).max() <= 1e-9 * scale


_spec = st.lists(st.tuples(st.integers(2, 14), st.integers(1, 3), st.booleans()), min_size=1, max_size=3)


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(spec=_spec, n=st.integers(30, 120), weighted=st.booleans(), thr=st.sampled_from(THRESHOLDS),
       W=st.integers(1, 5), small=st.sampled_from([batched.SMALL_DENSE, 0]), seed=st.integers(0, 2 ** 32 - 1))
def test_batched_schur_matches_per_walker_and_dense(spec, n, weighted, thr, W, small, seed):
    """Random crossed / nested / vector-valued designs, each block-type decision, small (numpy)
    and large (per-walker LAPACK) dense factors."""
    rng = np.random.default_rng(seed)
    blocks, X, y, sqrt_w, cp = _problem(rng, spec, n, weighted, thr)
    T = _relative_factors(rng, blocks, W)
    with mock.patch.object(batched, "SMALL_DENSE", small):
        _check_against_references(blocks, X, y, sqrt_w, cp, T)


# one named design per structure, so that a failure says which structure broke
STRUCTURES = {
    "one scalar term": [(12, 1, False)],
    "one vector term (x|g)": [(12, 2, False)],
    "one k=3 term": [(9, 3, False)],
    "two crossed scalar": [(20, 1, False), (7, 1, False)],
    "three crossed scalar": [(20, 1, False), (9, 1, False), (5, 1, False)],
    "nested (1|a/b)": [(24, 1, False), (6, 1, True)],
    "nested vector (x|a/b)": [(24, 2, False), (6, 2, True)],
    "slopes + crossed intercept (x|g)+(1|h)": [(15, 2, False), (8, 1, False)],
    "crossed vector terms (x|g)+(x+z|h)": [(15, 2, False), (6, 3, False)],
    "nested then crossed": [(24, 1, False), (6, 1, True), (5, 2, False)],
}


@pytest.mark.parametrize("thr", THRESHOLDS, ids=["default", "sparse", "mixed"])
@pytest.mark.parametrize("name", list(STRUCTURES))
def test_each_structure(name, thr):
    rng = np.random.default_rng(abs(hash(name)) % 2 ** 32)
    blocks, X, y, sqrt_w, cp = _problem(rng, STRUCTURES[name], 150, True, thr)
    T = _relative_factors(rng, blocks, 4)
    _check_against_references(blocks, X, y, sqrt_w, cp, T)
    # chunks of one walker (the memory bound) give the same numbers
    _check_against_references(blocks, X, y, sqrt_w, cp, T, budget=1)


def test_structures_exercise_every_block_type():
    """The designs above do reach Sparse blocks, Gram plans, scatter plans and dense fill."""
    seen = set()
    for thr in THRESHOLDS:
        for spec in STRUCTURES.values():
            st_ = _problem(np.random.default_rng(0), spec, 150, False, thr)[4].structure
            seen |= set(st_.types.values())
            seen |= {"plan"} if st_.plans else set()
            seen |= {"gram"} if getattr(st_, "grams", None) else set()
    assert {SPARSE, DENSE, "Diagonal", "BlkDiag", "plan"} <= seen


def test_large_dense_block():
    """A dense remaining block of 80 levels: the per-walker in-place LAPACK path at its default size."""
    rng = np.random.default_rng(11)
    blocks, X, y, sqrt_w, cp = _problem(rng, [(200, 1, False), (80, 1, False), (6, 2, False)], 900, True,
                                        (0, 1.01))
    assert cp.structure.types[1, 1] == DENSE and cp.widths[1] > batched.SMALL_DENSE
    _check_against_references(blocks, X, y, sqrt_w, cp, _relative_factors(rng, blocks, 3))


@pytest.mark.parametrize("name", ["three crossed scalar", "nested vector (x|a/b)", "nested then crossed",
                                  "crossed vector terms (x|g)+(x+z|h)"])
def test_updates_without_plans_fall_back_to_a_loop_over_walkers(name):
    """With no scatter or Gram plan (the structure keeps none for updates of too many block pairs)
    every update into a dense, block-diagonal or sparse block takes the per-walker sparse product."""
    rng = np.random.default_rng(12)
    blocks, X, y, sqrt_w, cp = _problem(rng, STRUCTURES[name], 150, True, (0, 1.01))
    st_ = cp.structure
    assert st_.plans or getattr(st_, "grams", None)
    st_.plans.clear()
    getattr(st_, "grams", {}).clear()
    T = _relative_factors(rng, blocks, 3)
    ldL2, G, ok = BatchedKernel(cp).schur(T)
    assert ok.all()
    for w in range(3):
        ld_d, G_d, _ = _dense_schur(blocks, X, y, sqrt_w, [t[w] for t in T])
        assert abs(ldL2[w] - ld_d) <= 1e-9 * max(1.0, abs(ld_d))
        assert np.abs(G[w] - G_d).max() <= 1e-9 * np.abs(G_d).max()


@pytest.mark.parametrize("small", [batched.SMALL_DENSE, 0], ids=["numpy-dense", "lapack-dense"])
@pytest.mark.parametrize("name", ["three crossed scalar", "nested vector (x|a/b)", "crossed vector terms (x|g)+(x+z|h)"])
@pytest.mark.parametrize("thr", THRESHOLDS, ids=["default", "sparse", "mixed"])
def test_batched_solves_with_the_random_effects_factor(name, thr, small):
    """L_uu^{-T} L_uu^{-1} r = (Lambda'Z'WZ Lambda + I)^{-1} r per walker (the conditional draws of u)."""
    rng = np.random.default_rng(5)
    blocks, X, y, sqrt_w, cp = _problem(rng, STRUCTURES[name], 150, True, thr)
    T = _relative_factors(rng, blocks, 3)
    with mock.patch.object(batched, "SMALL_DENSE", small):
        f = BatchedKernel(cp).factor(T)
    r = rng.normal(size=(3, cp.q))
    x = f.solve_u(f.solve_u(r, trans=False), trans=True)
    for w in range(3):
        M = _dense_schur(blocks, X, y, sqrt_w, [t[w] for t in T])[2]
        assert np.allclose(x[w], np.linalg.solve(M, r[w]), rtol=1e-10, atol=1e-12)


def test_a_failing_walker_is_flagged_and_leaves_the_others_alone():
    rng = np.random.default_rng(2)
    blocks, X, y, sqrt_w, cp = _problem(rng, STRUCTURES["slopes + crossed intercept (x|g)+(1|h)"], 120, False,
                                        THRESHOLDS[1])
    T = _relative_factors(rng, blocks, 4)
    T[1][2, 0, 0] = np.nan
    ldL2, G, ok = BatchedKernel(cp).schur(T)
    assert ok.tolist() == [True, True, False, True]
    for w in (0, 1, 3):
        f = cp.factor([t[w] for t in T])
        assert ldL2[w] == pytest.approx(f.ldL2, rel=1e-12)


# ---- the posterior: log density against the dense joint Gaussian marginal ----------------------------
def _frame(seed, n=160):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 18, n)
    df = pd.DataFrame({"a": [f"a{i}" for i in a], "b": [f"b{i}" for i in rng.integers(0, 7, n)],
                       "c": [f"c{i}" for i in rng.integers(0, 4, n)],
                       "o": [f"o{i % 5}" for i in a],          # o is constant within a: a nested in o
                       "x": rng.normal(size=n), "z": rng.normal(size=n)})
    df["y"] = 50.0 + 2 * df.x + rng.normal(size=n) + rng.normal(size=18)[a]
    return df


FORMULAS = ["y ~ x + (1 | a) + (1 | b)",
            "y ~ x + (1 | a) + (1 | b) + (1 | c)",
            "y ~ x + (1 | o/a)",
            "y ~ x + (x | a) + (1 | b)",
            "y ~ x + (x + z | a) + (1 | c)",
            "y ~ x + (x || a) + (1 | b)",
            "y ~ 1 + (x | o/a)"]


def _dense_log_marginal(post, x):
    """log p(y | sigma, Sigma) with beta ~ N(m, P^{-1}) and b integrated out: y ~ N(X m, V) with
    V = sigma^2 I + Z G Z' + X P^{-1} X', plus the log prior and Jacobian of unpack."""
    sigma, chols, lp, _ = post.unpack(x[None])
    V = sigma[0] ** 2 * np.eye(post.n)
    for t, L in zip(post.terms, chols):
        Z = t.z_matrix().toarray()
        V += Z @ np.kron(np.eye(t.n_levels), L[0] @ L[0].T) @ Z.T
    V += post.Xc @ np.diag(1 / post.prior_prec) @ post.Xc.T
    r = post.y - post.Xc @ post.prior_loc
    Lc = np.linalg.cholesky(V)
    e = np.linalg.solve(Lc, r)
    return -0.5 * (e @ e) - np.log(np.diag(Lc)).sum() - 0.5 * post.n * np.log(2 * np.pi) + lp[0]


def _posterior(formula, df, **priors):
    d = build_design(formula, df)
    pr = resolve_priors("gaussian", "identity", d.y, d.X, d.fixef_names, **priors)
    return d, LMMPosterior(d, pr)


def _points(post, d, W=5, seed=3):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 0.5, (W, post.dim)) + np.r_[np.log(np.std(d.y) / 2), np.zeros(post.dim - 1)]


@pytest.mark.parametrize("sparse", [False, True], ids=["default-blocks", "sparse-blocks"])
@pytest.mark.parametrize("formula", FORMULAS)
def test_log_prob_matches_dense_and_loop(formula, sparse):
    with mock.patch.object(CrossProducts, "DENSE_LIMIT", 0 if sparse else CrossProducts.DENSE_LIMIT), \
            mock.patch.object(CrossProducts, "SPARSE_DENSITY", 1.01 if sparse else CrossProducts.SPARSE_DENSITY):
        d, post = _posterior(formula, _frame(1))
    xs = _points(post, d)
    lp = post.log_prob(xs)
    assert np.all(np.isfinite(lp))
    dense = np.array([_dense_log_marginal(post, x) for x in xs])
    assert np.allclose(lp, dense, rtol=1e-10, atol=1e-8)
    post._batched = False
    assert np.allclose(post.log_prob(xs), lp, rtol=1e-12, atol=1e-9)


def test_log_prob_shift_and_scale_safe():
    """y + 1e7 (with the intercept prior moved along) and 1e-6 y (with the autoscaled priors and
    sigma scaled along) give the same log density up to the Jacobian -n log(scale): the kernel only
    sees the scaled residual of mixedpy.linalg.response."""
    df = _frame(4)
    f = "y ~ x + (x | a) + (1 | b)"
    d, post = _posterior(f, df, prior_intercept=mp.normal(50.0, 10.0))
    xs = _points(post, d)
    base = post.log_prob(xs)
    shifted = df.assign(y=df.y + 1e7)
    _, post_s = _posterior(f, shifted, prior_intercept=mp.normal(50.0 + 1e7, 10.0))
    assert np.allclose(post_s.log_prob(xs), base, rtol=0, atol=1e-6)
    s = 1e-6
    _, post_k = _posterior(f, df.assign(y=df.y * s), prior_intercept=mp.normal(50.0 * s, 10.0 * s))
    xk = xs.copy()
    xk[:, 0] += np.log(s)
    assert np.allclose(post_k.log_prob(xk), base - post.n * np.log(s), rtol=1e-11, atol=1e-6)


def test_walkers_in_chunks_give_the_same_log_prob():
    d, post = _posterior("y ~ x + (x | a) + (1 | b) + (1 | c)", _frame(2))
    xs = _points(post, d, W=7)
    lp = post.log_prob(xs)
    with mock.patch.object(batched, "MEMORY_BUDGET", 1):
        post2 = LMMPosterior(d, post.priors)
        assert post2._kernel.chunk_size() == 1
        assert np.allclose(post2.log_prob(xs), lp, rtol=1e-13, atol=1e-10)


@pytest.mark.parametrize("formula", ["y ~ x + (1 | a) + (1 | b) + (1 | c)", "y ~ x + (x | a) + (1 | b)"])
def test_conditional_draws_of_b_match_dense_gaussian(formula):
    """For fixed (sigma, Sigma), the batched draws of (beta, b) follow the dense Gaussian posterior."""
    d, post = _posterior(formula, _frame(6))
    x = np.r_[np.log(np.std(d.y) / 2), 0.1 * np.ones(post.dim - 1)]
    S = 3000
    dr = post.draw(np.tile(x, (S, 1)), np.random.default_rng(9))
    sigma, chols, _, _ = post.unpack(x[None])
    Z = np.hstack([t.z_matrix().toarray() for t in post.terms])
    Ginv = np.zeros((Z.shape[1],) * 2)
    off = 0
    for t, L in zip(post.terms, chols):
        Ginv[off:off + t.n_coefs, off:off + t.n_coefs] = np.kron(np.eye(t.n_levels), np.linalg.inv(L[0] @ L[0].T))
        off += t.n_coefs
    A = np.hstack([post.Xc, Z])
    P = A.T @ A / sigma[0] ** 2
    P[:post.p, :post.p] += np.diag(post.prior_prec)
    P[post.p:, post.p:] += Ginv
    mean = np.linalg.solve(P, A.T @ post.y / sigma[0] ** 2 + np.r_[post.prior_prec * post.prior_loc,
                                                                     np.zeros(Z.shape[1])])
    sd = np.sqrt(np.diag(np.linalg.inv(P)))
    sample = np.hstack([post.centering.to_centered(dr["beta"])] + [b.reshape(S, -1) for b in dr["b"]])
    z = (sample.mean(0) - mean) / (sd / np.sqrt(S))
    assert np.abs(z).max() < 4.5
    assert np.allclose(sample.std(0), sd, rtol=0.1)
