"""Gram plans for vector-valued (random-slope) terms (issue 11's random-slope target).

When the first term is vector-valued (``(x | b) + (1 | a)``: BlkDiag first block), every update
from the first block column is a fixed sparse linear map of the per-level matrices
M_l = T_1 (F_l F_l')^{-1} T_1' (structure.GramPlan, blocked.gram_weights), and the objective never
forms L_i1 for a term all of whose uses are such products (blocked.gram_only_terms).  Checked here:
the objective and its pieces equal the scatter-plan path (no Gram plans) to 1e-10 relative and the
dense NumPy factorization on random slope/scalar mixes, nested and crossed; the factor with Gram
plans passes every check of the dense comparison (solves, conditional variances); the batched
kernel agrees; and lme4's criterion at its own estimates is reproduced on the corpus's
random-slope designs with every block forced sparse (so that the Gram plans run).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mixedpy.datasets import read_r_csv
from mixedpy.formula.design import build_design
from mixedpy.linalg import structure
from mixedpy.linalg.batched import BatchedKernel
from mixedpy.linalg.blocked import CrossProducts, gram_only_terms
from mixedpy.linalg.structure import BlockStructure
from mixedpy.lmm import LMMProblem
from test_bayes_lmm_batched import _blocks, _dense_schur, _relative_factors
from test_engine import check_against_dense

CORPUS = Path(__file__).parent / "reference" / "corpus"
SPARSE_ALL = (0, 1.01)      # (dense_limit, sparse_density): every off-diagonal block sparse
SPARSE_MIX = (0, 0.3)


def _pieces(blocks, X, y, sqrt_w, T, thresholds, grams=True, solves=True):
    """(ldL2, ldRX2, pwrss, structure) of the blocked kernel with or without Gram plans."""
    limit = structure.GRAM_PAIR_LIMIT
    try:
        if not grams:
            structure.GRAM_PAIR_LIMIT = -1
        st_ = BlockStructure.analyse(blocks, None, *thresholds)
    finally:
        structure.GRAM_PAIR_LIMIT = limit
    cp = CrossProducts(blocks, X, y, sqrt_w, structure=st_)
    f = cp.factor(T, scratch=not solves, solves=solves)
    return f.ldL2, f.ldRX2, f.pwrss, st_


def _reml(ldL2, ldRX2, pwrss, n, p):
    return ldL2 + ldRX2 + (n - p) * (1.0 + np.log(2.0 * np.pi * pwrss / (n - p)))


def _slope_first_data(seed, n=900, Jb=60, Ja=25):
    rng = np.random.default_rng(seed)
    b, a = rng.integers(0, Jb, n), rng.integers(0, Ja, n)
    x, h = rng.normal(size=n), rng.normal(size=n)
    y = 1 + x + rng.normal(size=Jb)[b] * (1 + x) + 0.5 * rng.normal(size=Ja)[a] + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "h": h, "b": b.astype(str), "a": a.astype(str),
                         "c": rng.integers(0, 3, n).astype(str), "w": rng.uniform(0.5, 2.0, n)})


def test_slope_first_crossed_is_a_gram_product(monkeypatch):
    """(x | b) + (1 | a) with b's blocks sparse: L[a, a] -= L[a, b] L[a, b]' is a Gram product, the
    [X | y] row's update too, and the objective never forms L[a, b]; it equals the objective
    without Gram plans (the per-eval scatter of pair products) to 1e-10 relative."""
    design = build_design("y ~ x + (x | b) + (1 | a)", _slope_first_data(1))
    th = np.array([0.9, -0.2, 0.5, 0.7])
    monkeypatch.setattr(CrossProducts, "DENSE_LIMIT", 0)
    monkeypatch.setattr(CrossProducts, "SPARSE_DENSITY", 1.1)
    prob = LMMProblem(design.terms, design.X, design.y)
    st_ = prob.cross.structure
    assert st_.k == [2, 1] and st_.types[0, 0] == "BlkDiag" and st_.types[1, 0] == "Sparse"
    assert (1, 1, 0) in st_.grams and (1, 1, 0) not in st_.plans
    assert gram_only_terms(st_) == {1}
    f = prob.cross.factor(prob.relative_factors(th), scratch=True, solves=False)
    assert f.L[1, 0] is None
    got = prob.objective(th, True)
    monkeypatch.setattr(structure, "GRAM_PAIR_LIMIT", -1)
    slow = LMMProblem(design.terms, design.X, design.y)
    assert not slow.cross.structure.grams and (1, 1, 0) in slow.cross.structure.plans
    assert got == pytest.approx(slow.objective(th, True), rel=1e-10)
    assert prob.objective(th, False) == pytest.approx(slow.objective(th, False), rel=1e-10)


@pytest.mark.parametrize("formula", ["y ~ x + (x | b) + (1 | a)", "y ~ x + (x + h | b) + (x | a)",
                                     "y ~ x + (x | b) + (1 | a) + (1 | c)", "y ~ x + (x | b:c) + (1 | b)",
                                     "y ~ x + (1 | b) + (x | a)"])
@pytest.mark.parametrize("weighted", [False, True])
def test_vector_gram_factor_matches_dense(formula, weighted, monkeypatch):
    """With Gram plans from a vector-valued first column (and a scalar one with vector targets), the
    whole factor -- every block, solves, conditional variances -- equals the dense factorization."""
    monkeypatch.setattr(CrossProducts, "DENSE_LIMIT", 0)
    monkeypatch.setattr(CrossProducts, "SPARSE_DENSITY", 1.1)
    df = _slope_first_data(4, n=500, Jb=30, Ja=9)
    design = build_design(formula, df, weights="w" if weighted else None)
    prob0 = LMMProblem(design.terms, design.X, design.y)
    rng = np.random.default_rng(2)
    theta = np.where(prob0.lower == 0, rng.uniform(0.3, 1.4, prob0.lower.size),
                     rng.normal(0, 0.4, prob0.lower.size))
    prob, _ = check_against_dense(design, theta, design.weights)
    st_ = prob.cross.structure
    assert st_.grams
    assert any(max(st_.k[0], st_.k[i], st_.k[j]) > 1 for i, j, _ in st_.grams)


def test_gram_only_objective_equals_full_factor(monkeypatch):
    """solves=False (the objective) gives bit-for-bit the three scalars of the full factor."""
    monkeypatch.setattr(CrossProducts, "DENSE_LIMIT", 0)
    monkeypatch.setattr(CrossProducts, "SPARSE_DENSITY", 1.1)
    design = build_design("y ~ x + (x + h | b) + (1 | a) + (1 | c)", _slope_first_data(6))
    prob = LMMProblem(design.terms, design.X, design.y)
    assert gram_only_terms(prob.cross.structure)
    T = prob.relative_factors(np.array([0.8, 0.1, -0.3, 0.6, 0.2, 0.4, 1.1, 0.3]))
    full = prob.cross.factor(T)
    lean = prob.cross.factor(T, scratch=True, solves=False)
    assert (lean.ldL2, lean.ldRX2, lean.pwrss) == pytest.approx((full.ldL2, full.ldRX2, full.pwrss),
                                                                rel=1e-13)


def test_vector_gram_entry_limit_falls_back_to_plans(monkeypatch):
    """A Gram matrix over GRAM_ENTRY_LIMIT entries is not built: the update is a scatter plan."""
    monkeypatch.setattr(CrossProducts, "DENSE_LIMIT", 0)
    monkeypatch.setattr(CrossProducts, "SPARSE_DENSITY", 1.1)
    design = build_design("y ~ x + (x | b) + (1 | a)", _slope_first_data(7))
    monkeypatch.setattr(structure, "GRAM_ENTRY_LIMIT", 10)
    prob = LMMProblem(design.terms, design.X, design.y)
    assert not prob.cross.structure.grams and (1, 1, 0) in prob.cross.structure.plans
    assert np.isfinite(prob.objective(np.array([0.9, -0.2, 0.5, 0.7]), True))


# ---- property test: random slope/scalar mixes, nested and crossed ---------------------------------
_first = st.tuples(st.integers(6, 24), st.integers(1, 3))
_rest = st.lists(st.tuples(st.integers(2, 10), st.integers(1, 2), st.booleans()), min_size=1, max_size=2)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=_first, rest=_rest, seed=st.integers(0, 2 ** 16), weighted=st.booleans(),
       mix=st.booleans())
def test_property_gram_objective_equals_scatter_path_and_dense(first, rest, seed, weighted, mix):
    """On random designs (a first term of k = 1..3 coefficients with many levels, then one or two
    scalar or slope terms crossed with it or nested in the term before), the REML criterion and
    its pieces with Gram plans equal those of the scatter path without them to 1e-10 relative, the
    objective's lean factor (solves=False) equals the full one, and all equal the dense algebra."""
    rng = np.random.default_rng(seed)
    n = 160
    spec = [(first[0], first[1], False)] + list(rest)
    blocks = _blocks(rng, n, spec)
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = rng.normal(size=n) + 2.0
    sqrt_w = np.sqrt(rng.uniform(0.3, 3.0, n)) if weighted else None
    T = [t[0] for t in _relative_factors(rng, blocks, 1)]
    thresholds = SPARSE_MIX if mix else SPARSE_ALL
    g = _pieces(blocks, X, y, sqrt_w, T, thresholds)
    lean = _pieces(blocks, X, y, sqrt_w, T, thresholds, solves=False)
    slow = _pieces(blocks, X, y, sqrt_w, T, thresholds, grams=False)
    assert not slow[3].grams
    p = X.shape[1]
    ref = _reml(*slow[:3], n, p)
    assert _reml(*g[:3], n, p) == pytest.approx(ref, rel=1e-10)
    assert _reml(*lean[:3], n, p) == pytest.approx(ref, rel=1e-10)
    for a, b in zip(g[:3], slow[:3]):
        assert a == pytest.approx(b, rel=1e-10, abs=1e-10)
    ld_d, G_d, _ = _dense_schur(blocks, X, y, np.ones(n) if sqrt_w is None else sqrt_w, T)
    assert g[0] == pytest.approx(ld_d, rel=1e-9, abs=1e-9)
    assert g[2] == pytest.approx(G_d[-1, -1] - G_d[-1, :-1] @ np.linalg.solve(G_d[:-1, :-1], G_d[:-1, -1]),
                                 rel=1e-8)


@pytest.mark.parametrize("k1", [2, 3])
def test_batched_kernel_uses_vector_grams(k1):
    """The walker-batched kernel takes the same Gram plans (weights per walker) and agrees with the
    per-walker blocked kernel."""
    rng = np.random.default_rng(k1)
    n = 300
    blocks = _blocks(rng, n, [(30, k1, False), (8, 1, False), (5, 2, False)])
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = rng.normal(size=n)
    st_ = BlockStructure.analyse(blocks, None, *SPARSE_ALL)
    assert (1, 1, 0) in st_.grams and (2, 1, 0) in st_.grams
    cp = CrossProducts(blocks, X, y, None, structure=st_)
    T = _relative_factors(rng, blocks, 4)
    ldL2, G, ok = BatchedKernel(cp).schur(T)
    assert ok.all()
    for w in range(4):
        f = cp.factor([t[w] for t in T])
        assert ldL2[w] == pytest.approx(f.ldL2, rel=1e-10)
        np.testing.assert_allclose(G[w], f.fixed_factor @ f.fixed_factor.T, rtol=0,
                                   atol=1e-10 * np.abs(G[w]).max())


# ---- lme4: the corpus's random-slope designs with their blocks forced sparse ----------------------
def _slope_designs():
    meta = json.loads((CORPUS / "designs.json").read_text())
    out = []
    for d in meta["designs"]:
        f = d["formula"]
        if d["kind"] == "lmer" and d["status"] == "ok" and "(x | " in f and f.count(" | ") >= 2:
            out.append(d)
    return out


@pytest.mark.parametrize("d", _slope_designs(), ids=lambda d: d["id"])
def test_lme4_criterion_with_vector_grams(d, monkeypatch):
    """lme4's criterion at lme4's estimates (1e-9 relative, as tests/test_corpus.py) with every
    off-diagonal block sparse, so that the updates from the first column are Gram products with
    vector-valued terms."""
    monkeypatch.setattr(CrossProducts, "DENSE_LIMIT", 0)
    monkeypatch.setattr(CrossProducts, "SPARSE_DENSITY", 1.1)
    data = read_r_csv(CORPUS / "data" / d["data"])
    design = build_design(d["formula"], data, weights=d["weights"], offset=d["offset"])
    prob = LMMProblem(design.terms, design.X, design.y, design.weights, design.offset)
    st_ = prob.cross.structure
    assert any(max(st_.k[0], st_.k[i], st_.k[j]) > 1 for i, j, _ in st_.grams)
    got = prob.objective(np.asarray(d["theta"], dtype=float), d["REML"])
    assert got == pytest.approx(d["objective"], rel=1e-9)


# ---- lme4: a random-slope first term crossed with an intercept, default block structure ------------
SLOPE_REF = json.loads((Path(__file__).parent / "reference" / "lme4" / "slope_gram.json").read_text())


@pytest.mark.parametrize("fit_ref", SLOPE_REF["fits"], ids=lambda r: "REML" if r["REML"] else "ML")
def test_lme4_slope_first_crossed(fit_ref):
    """y ~ x + (x | b) + (1 | a), b (980 levels) first: with the default thresholds L[a, b] is Sparse
    and the updates from b's column are vector-valued Gram products.  lme4's profiled criterion at
    fixed thetas (1e-9 relative), its optimum (mixedpy's <= lme4's + 1e-6 relative) and estimates."""
    import mixedpy as mp

    data = read_r_csv(Path(__file__).parent / "reference" / "data" / SLOPE_REF["data"])
    fit = mp.lmer(SLOPE_REF["formula"], data, REML=fit_ref["REML"])
    st_ = fit.problem.cross.structure
    assert st_.types[0, 0] == "BlkDiag" and st_.types[1, 0] == "Sparse" and (1, 1, 0) in st_.grams
    assert list(fit.theta_names) == fit_ref["theta_names"]
    for at in fit_ref["at"]:
        assert fit.problem.objective(np.asarray(at["theta"]), fit_ref["REML"]) == pytest.approx(
            at["value"], rel=1e-9)
    assert fit.criterion <= fit_ref["objective"] + 1e-6 * abs(fit_ref["objective"])
    np.testing.assert_allclose(fit.opt.x, fit_ref["theta"], rtol=0, atol=2e-3)
    np.testing.assert_allclose(fit.beta, list(fit_ref["fixef"].values()), rtol=1e-4)
    assert fit.sigma == pytest.approx(fit_ref["sigma"], rel=1e-4)
