"""The block-structured LMM kernel (issue 10): block types chosen from the data, every block type
against a dense NumPy factorization of the same system, property tests on nested and crossed
designs, the block description and lme4's modular ``devFunOnly`` function."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import mixedpy as mp
from conftest import dense_u
from mixedpy.formula.design import build_design
from mixedpy.linalg import structure
from mixedpy.linalg.blocked import CrossProducts
from mixedpy.lmm import LMMProblem

REF = Path(__file__).parent / "reference"


def dense_system(design, prob, theta, weights=None):
    """The augmented matrix [[U'WU + I, U'WX, U'Wy], [.., X'WX, X'Wy], [.., .., y'Wy]], U = Z Lambda,
    built densely from the codes and model matrices (y as the kernel's scaled residual), and its
    NumPy Cholesky factor."""
    n = design.nobs
    U = dense_u(design, prob, theta)
    sw = np.ones(n) if weights is None else np.sqrt(weights)
    # the response as the kernel factors it: y - offset - X c scaled by s (mixedpy.linalg.response)
    resp = prob.cross.response
    y_tilde = (design.y - design.offset - design.X @ resp.c) / resp.s
    M = np.column_stack([U, design.X, y_tilde]) * sw[:, None]
    A = M.T @ M
    q = U.shape[1]
    A[np.arange(q), np.arange(q)] += 1.0
    return A, np.linalg.cholesky(A), q


def check_against_dense(design, theta, weights=None, tol=1e-10):
    prob = LMMProblem(design.terms, design.X, design.y, weights, design.offset)
    f = prob.cross.factor(prob.relative_factors(theta))
    A, L, q = dense_system(design, prob, theta, weights)
    p = design.X.shape[1]
    scale = np.abs(L).max()
    # every block of L, whatever its storage
    np.testing.assert_allclose(f.dense(), L, rtol=0, atol=tol * scale)
    d = np.diag(L)
    assert f.ldL2 == pytest.approx(2 * np.log(d[:q]).sum(), rel=tol, abs=tol)
    assert f.ldRX2 == pytest.approx(2 * np.log(d[q:q + p]).sum(), rel=tol, abs=tol)
    resp = prob.cross.response
    assert f.pwrss == pytest.approx(resp.s ** 2 * d[-1] ** 2, rel=1e-9)
    u, beta = f.coefficients()
    sol = np.linalg.solve(A[:-1, :-1], A[:-1, -1])
    sol = np.concatenate([resp.u(sol[:q]), resp.beta(sol[q:])])
    np.testing.assert_allclose(np.concatenate([u, beta]), sol, rtol=1e-8, atol=1e-9 * np.abs(sol).max())
    Puu_inv = np.linalg.inv(A[:q, :q])
    start = 0
    for t, blk in zip(design.terms, f.u_precision_inverse_blocks()):
        idx = start + np.arange(t.n_coefs).reshape(t.n_levels, t.k)
        np.testing.assert_allclose(blk, Puu_inv[idx[:, :, None], idx[:, None, :]], rtol=0, atol=1e-10)
        start += t.n_coefs
    np.testing.assert_allclose(f.unscaled_vcov(), np.linalg.inv(A[:-1, :-1])[q:, q:], rtol=1e-8, atol=1e-12)
    z = np.random.default_rng(1).normal(size=(q + p, 2))
    c1, c2 = f.solve_lower(z[:prob.cross.q1], z[prob.cross.q1:])
    np.testing.assert_allclose(np.vstack([c1, c2]), np.linalg.solve(L[:-1, :-1], z), rtol=1e-8, atol=1e-9)
    x1, x2 = f.solve_upper(z[:prob.cross.q1], z[prob.cross.q1:])
    np.testing.assert_allclose(np.vstack([x1, x2]), np.linalg.solve(L[:-1, :-1].T, z), rtol=1e-8, atol=1e-9)
    return prob, f


def nested_data(seed, n=400, outer=12, inner=4, k3=3):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, outer, n)
    b = rng.integers(0, inner, n)
    c = rng.integers(0, k3, n)
    return pd.DataFrame({"y": rng.normal(size=n), "x": rng.normal(size=n), "h": rng.normal(size=n),
                         "a": a.astype(str), "b": b.astype(str), "c": c.astype(str),
                         "g": rng.integers(0, 5, n).astype(str), "w": rng.uniform(0.5, 2.0, n)})


def theta_for(prob, seed):
    rng = np.random.default_rng(seed)
    return np.where(prob.lower == 0, rng.uniform(0.3, 1.5, prob.lower.size), rng.normal(0, 0.4, prob.lower.size))


# (formula, expected L types {(i, j): type} with the default thresholds, or None)
CASES = [
    ("y ~ x + (1 | a)", {(0, 0): "Diagonal", (1, 0): "Dense"}),
    ("y ~ x + (x | a)", {(0, 0): "BlkDiag"}),
    ("y ~ x + (1 | a/b)", {(0, 0): "Diagonal", (1, 1): "Diagonal"}),       # b:a nested in a
    ("y ~ x + (1 | a/b/c)", {(1, 1): "Diagonal", (2, 2): "Diagonal"}),     # three nested levels
    ("y ~ x + h + (h | a) + (1 | g) + (1 | a:b)", {(0, 0): "Diagonal", (1, 1): "BlkDiag", (2, 2): "Dense"}),
    ("y ~ x + (x || a)", {(0, 0): "Diagonal", (1, 1): "Diagonal"}),        # same factor twice
    ("y ~ x + (1 | a) + (1 | g)", {(1, 1): "Dense"}),                      # crossed: fill-in
    ("y ~ x + (x | a:b) + (x | a)", {(0, 0): "BlkDiag", (1, 1): "BlkDiag"}),
]


@pytest.mark.parametrize("formula,types", CASES)
@pytest.mark.parametrize("storage", ["default", "sparse", "sparse-noplan"])
def test_every_block_type_matches_dense(formula, types, storage, monkeypatch):
    if storage != "default":
        # every off-diagonal term block stored sparse, so the sparse paths run on every design
        monkeypatch.setattr(CrossProducts, "DENSE_LIMIT", 0)
        monkeypatch.setattr(CrossProducts, "SPARSE_DENSITY", 1.1)
    if storage == "sparse-noplan":
        monkeypatch.setattr(structure, "DENSE_PLAN_LIMIT", -1)  # scipy products into dense blocks
    df = nested_data(3)
    for weighted in (False, True):
        design = build_design(formula, df, weights="w" if weighted else None)
        prob0 = LMMProblem(design.terms, design.X, design.y)
        prob, f = check_against_dense(design, theta_for(prob0, 7), design.weights)
        got = prob.cross.structure.types
        for ij, t in types.items():
            assert got[ij] == t, (ij, got[ij], t)
        if storage != "default" and len(design.terms) > 1:
            assert prob.cross.sparse
            assert any(v == "Sparse" for v in got.values())


def test_nested_term_is_diagonal_and_its_fill_a_scatter():
    """(1 | a/b): L[a, b:a] has one nonzero per column, so L[a, a] stays diagonal (issue 10)."""
    design = build_design("y ~ x + (1 | a/b)", nested_data(1, n=1200, outer=120, inner=5))
    prob = LMMProblem(design.terms, design.X, design.y)
    st_ = prob.cross.structure
    assert st_.types[0, 0] == "Diagonal" and st_.types[1, 1] == "Diagonal"
    assert st_.types[1, 0] == "Sparse"
    assert st_.patterns[1, 0].nnz == design.terms[0].n_levels   # one block per inner level
    assert (1, 1, 0) in st_.plans
    check_against_dense(design, np.array([0.8, 1.3]))


def test_sparse_target_from_sparse_sources_uses_plan(monkeypatch):
    """Three nested levels with forced sparse storage: L[a, b:a] -= L[a, c] L[b:a, c]' is a plan."""
    monkeypatch.setattr(CrossProducts, "DENSE_LIMIT", 0)
    design = build_design("y ~ x + (1 | a/b/c)", nested_data(2))
    prob = LMMProblem(design.terms, design.X, design.y)
    st_ = prob.cross.structure
    assert st_.types[2, 1] == "Sparse" and (2, 1, 0) in st_.plans
    check_against_dense(design, np.array([0.7, 1.1, 0.4]))


def test_not_positive_definite_gives_inf():
    design = build_design("y ~ x + (1 | a) + (1 | g)", nested_data(4))
    prob = LMMProblem(design.terms, design.X, design.y)
    with np.errstate(all="ignore"):
        assert prob.objective(np.array([np.nan, 1.0]), True) == np.inf


@st.composite
def designs(draw):
    n = draw(st.integers(30, 160))
    seed = draw(st.integers(0, 10_000))
    kind = draw(st.sampled_from(["nested", "nested-slope", "crossed", "crossed-slope", "three"]))
    outer = draw(st.integers(2, 12))
    inner = draw(st.integers(1, 5))
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"y": rng.normal(size=n), "x": rng.normal(size=n),
                       "a": rng.integers(0, outer, n).astype(str), "b": rng.integers(0, inner, n).astype(str),
                       "g": rng.integers(0, draw(st.integers(2, 8)), n).astype(str),
                       "w": rng.uniform(0.5, 2.0, n)})
    formula = {"nested": "y ~ x + (1 | a/b)", "nested-slope": "y ~ x + (x | a) + (1 | a:b)",
               "crossed": "y ~ x + (1 | a) + (1 | g)", "crossed-slope": "y ~ x + (x | a) + (1 | g)",
               "three": "y ~ x + (1 | a:b) + (1 | a) + (1 | g)"}[kind]
    return df, formula, seed, draw(st.booleans()), draw(st.booleans())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(designs())
def test_property_nested_and_crossed_designs_match_dense(case):
    df, formula, seed, weighted, sparse = case
    old = CrossProducts.DENSE_LIMIT, CrossProducts.SPARSE_DENSITY
    if sparse:
        CrossProducts.DENSE_LIMIT, CrossProducts.SPARSE_DENSITY = 0, 1.1
    try:
        try:
            design = build_design(formula, df, weights="w" if weighted else None)
        except mp.DataError:  # more random effects than observations, or a one-level factor
            assume(False)
        prob0 = LMMProblem(design.terms, design.X, design.y)
        check_against_dense(design, theta_for(prob0, seed), design.weights, tol=1e-9)
    finally:
        CrossProducts.DENSE_LIMIT, CrossProducts.SPARSE_DENSITY = old


def test_structure_is_reused_across_weights():
    """GLMM PIRLS forms new cross-products every iteration on the structure analysed once."""
    design = build_design("y ~ x + (1 | a/b)", nested_data(5))
    prob = LMMProblem(design.terms, design.X, design.y)
    st_ = prob.cross.structure
    w = np.random.default_rng(0).uniform(0.5, 2, design.nobs)
    cp = CrossProducts(prob.blocks, design.X, design.y, np.sqrt(w), structure=st_, stabilize=True)
    assert cp.structure is st_
    theta = np.array([0.9, 0.6])
    ref = LMMProblem(design.terms, design.X, design.y, w).cross.factor(prob.relative_factors(theta))
    np.testing.assert_allclose(cp.factor(prob.relative_factors(theta)).dense(), ref.dense(), atol=1e-12)


def test_glmer_problem_analyses_structure_once():
    cbpp = mp.datasets.load("cbpp")
    fit = mp.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial")
    assert fit.state.factor.cp.structure is fit.problem.structure
    assert str(mp.block_description(fit)).splitlines()[1].split() == ["15:", "Diagonal"]


def test_block_description_table():
    design = build_design("y ~ x + h + (h | a) + (1 | g) + (1 | a:b)", nested_data(6, n=3000, outer=150))
    prob = LMMProblem(design.terms, design.X, design.y)
    desc = mp.block_description(prob)
    lines = str(desc).splitlines()
    assert lines[0].split() == ["rows:", "a:b", "a", "g", "fixed"]
    n_ab = design.terms[0].n_levels
    assert lines[1].split() == [f"{n_ab}:", "Diagonal"]
    assert lines[2].split() == ["300:", "Sparse", "BlkDiag"]
    assert lines[3].split() == ["5:", "Dense", "Dense", "Diag/Dense"]
    assert lines[4].split() == ["4:", "Dense", "Dense", "Dense", "Dense"]
    assert desc[2, 2] == "Diag/Dense"
    fit = mp.lmer("Reaction ~ Days + (Days | Subject)", mp.datasets.load("sleepstudy"))
    assert str(mp.block_description(fit)).splitlines()[1].split() == ["36:", "BlkDiag"]
    with pytest.raises(TypeError, match="block_description"):
        mp.block_description(3)


def _read_ref_csv(name):
    for folder in (REF / "data", Path(mp.__file__).parent / "datasets" / "data"):
        if (folder / f"{name}.csv").exists():
            df = pd.read_csv(folder / f"{name}.csv", dtype=str)
            break
    for col in df.columns:
        try:
            df[col] = df[col].astype(float)
        except ValueError:
            pass
    return df


@pytest.mark.parametrize("case", json.loads((REF / "lme4" / "devfun.json").read_text()),
                         ids=lambda c: f"{c['name']}-{'REML' if c['REML'] else 'ML'}")
def test_lmer_devfun_matches_lme4_devFunOnly(case):
    dev = mp.lmer_devfun(case["formula"], _read_ref_csv(case["name"]), REML=case["REML"])
    np.testing.assert_allclose(dev.start, case["start"], rtol=1e-10)
    lower = np.array([-np.inf if v == "-Inf" else v for v in case["lower"]], dtype=float)
    np.testing.assert_array_equal(dev.lower, lower)
    assert dev.theta_names == case["theta_names"]
    for theta, value in zip(case["thetas"], case["values"]):
        assert dev(theta) == pytest.approx(value, rel=1e-10)
    assert dev.n_evals == len(case["thetas"])
    assert dev.REML == case["REML"]


def test_lmer_devfun_is_what_lmer_minimizes():
    sleep = mp.datasets.load("sleepstudy")
    dev = mp.lmer_devfun("Reaction ~ Days + (Days | Subject)", sleep, REML=False)
    fit = mp.lmer("Reaction ~ Days + (Days | Subject)", sleep, REML=False)
    assert dev(fit.opt.x) == pytest.approx(fit.deviance, rel=1e-12)
    np.testing.assert_allclose(dev.profile(fit.opt.x).beta, fit.beta, rtol=1e-10)
    assert "BlkDiag" in str(dev.block_description())
    with pytest.raises(ValueError, match="theta has 2 values"):
        dev([1.0, 0.0])


def test_sparse_target_with_dense_stored_sources_gathers_on_pattern(monkeypatch):
    """A Sparse block updated from a dense-stored one (possible when a block is dense by size or
    density while its pattern stays sparse): the product is gathered on the target's pattern, and a
    block-diagonal block is downdated from a dense-stored block."""
    monkeypatch.setattr(CrossProducts, "DENSE_LIMIT", 0)
    design = build_design("y ~ x + (1 | a/b/c)", nested_data(8))
    prob = LMMProblem(design.terms, design.X, design.y)
    st_ = CrossProducts.analyse(prob.blocks)
    assert st_.types[2, 1] == st_.types[2, 0] == st_.types[1, 0] == "Sparse"
    # store L[b:a, c:b:a] dense, keeping its (nested) pattern for the symbolic decisions
    st_.types[1, 0] = "Dense"
    del st_.patterns[1, 0]
    codes = [t.codes for t in design.terms]
    st_.a_pos[1, 0] = codes[1] * design.terms[0].n_levels + codes[0]
    del st_.plans[1, 1, 0], st_.plans[2, 1, 0]
    cp = CrossProducts(prob.blocks, design.X, design.y, structure=st_, stabilize=True)
    theta = np.array([0.6, 1.2, 0.5])
    f = cp.factor(prob.relative_factors(theta))
    _, L, _ = dense_system(design, prob, theta)
    np.testing.assert_allclose(f.dense(), L, rtol=0, atol=1e-10 * np.abs(L).max())
