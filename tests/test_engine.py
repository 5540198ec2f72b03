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
    Ld = f.dense()
    if prob.cross.structure.cholmod:
        # a Cholmod block holds L~ = P' L (not triangular): L L' = A still, the last block row's
        # diagonal block is the same, and the solves below are checked against this L
        np.testing.assert_allclose(Ld @ Ld.T, A, rtol=0, atol=tol * np.abs(A).max())
        np.testing.assert_allclose(Ld[q:, q:], L[q:, q:], rtol=0, atol=tol * scale)
        L = Ld
    else:
        # every block of L, whatever its storage
        np.testing.assert_allclose(Ld, L, rtol=0, atol=tol * scale)
    d = np.diag(L)
    assert f.ldL2 == pytest.approx(np.linalg.slogdet(A[:q, :q])[1], rel=tol, abs=tol)
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
@pytest.mark.parametrize("storage", ["default", "sparse", "sparse-nogram", "sparse-noplan"])
def test_every_block_type_matches_dense(formula, types, storage, monkeypatch):
    if storage != "default":
        # every off-diagonal term block stored sparse, so the sparse paths run on every design
        monkeypatch.setattr(CrossProducts, "DENSE_LIMIT", 0)
        monkeypatch.setattr(CrossProducts, "SPARSE_DENSITY", 1.1)
    if storage in ("sparse-nogram", "sparse-noplan"):
        monkeypatch.setattr(structure, "GRAM_PAIR_LIMIT", -1)   # scatter plans from the first column too
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
    assert (1, 1, 0) in st_.grams            # scalar terms: a product with the fixed Gram matrix
    check_against_dense(design, np.array([0.8, 1.3]))


@pytest.mark.parametrize("gram", [True, False])
def test_sparse_target_from_sparse_sources_uses_plan(gram, monkeypatch):
    """Three nested levels with forced sparse storage: L[a, b:a] -= L[a, c] L[b:a, c]' is a Gram
    product (scalar terms, first column) or, without Gram plans, a scatter plan."""
    monkeypatch.setattr(CrossProducts, "DENSE_LIMIT", 0)
    if not gram:
        monkeypatch.setattr(structure, "GRAM_PAIR_LIMIT", -1)
    design = build_design("y ~ x + (1 | a/b/c)", nested_data(2))
    prob = LMMProblem(design.terms, design.X, design.y)
    st_ = prob.cross.structure
    assert st_.types[2, 1] == "Sparse" and (2, 1, 0) in (st_.grams if gram else st_.plans)
    assert ((2, 1, 0) in st_.plans) != gram
    check_against_dense(design, np.array([0.7, 1.1, 0.4]))


@pytest.mark.parametrize("weighted", [False, True])
def test_gram_plans_chunked_and_merged_match_dense(weighted, monkeypatch):
    """Crossed scalar terms stored sparse: every update from the first column is a Gram product
    (dense-lower, dense, sparse and diagonal targets), the same when its pairs come in chunks of 7;
    without weights the columns of equal count are merged, with weights (all distinct) not."""
    monkeypatch.setattr(CrossProducts, "DENSE_LIMIT", 0)
    monkeypatch.setattr(CrossProducts, "SPARSE_DENSITY", 1.1)
    df = nested_data(11, n=600, outer=40)
    design = build_design("y ~ x + (1 | a) + (1 | c) + (1 | g) + (1 | a:b)", df,
                          weights="w" if weighted else None)
    theta = np.array([0.9, 0.5, 1.4, 0.7])
    prob, f = check_against_dense(design, theta, design.weights)
    grams = prob.cross.structure.grams
    assert len(grams) == 6     # (1,1), (2,1), (3,1), (2,2), (3,2), (3,3) from block column 0
    targets = {prob.cross.structure.types[i, j] for i, j, _ in grams}
    assert "Dense" in targets
    merged = [prob.cross._gram_matrix(key)[1] is not None for key in grams]
    assert any(merged) != weighted
    monkeypatch.setattr(structure, "GRAM_CHUNK", 7)
    chunked = LMMProblem(design.terms, design.X, design.y, design.weights)
    for key, g in chunked.cross.structure.grams.items():
        a = prob.cross._gram_matrix(key)[0].toarray()
        np.testing.assert_allclose(chunked.cross._gram_matrix(key)[0].toarray(), a, rtol=1e-14, atol=0)
    f2 = chunked.cross.factor(prob.relative_factors(theta))
    np.testing.assert_allclose(f2.dense(), f.dense(), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("formula", ["y ~ x + (1 | a) + (1 | g)", "y ~ x + h + (x + h | a) + (1 | g)",
                                     "y ~ x + (x | a:b) + (x | a)"])
def test_scratch_factor_reuses_storage_and_matches_a_fresh_one(formula, monkeypatch):
    """The objective factors in reusable work arrays: alternating thetas give exactly the values of
    fresh factorizations, and a factor kept from an ordinary call is not touched by them."""
    monkeypatch.setattr(CrossProducts, "DENSE_LIMIT", 0)
    design = build_design(formula, nested_data(12))
    prob = LMMProblem(design.terms, design.X, design.y)
    thetas = [theta_for(prob, s) for s in (1, 2, 3)]
    kept = prob.cross.factor(prob.relative_factors(thetas[0]))
    kept_dense = kept.dense()
    for theta in thetas + thetas[::-1]:
        fresh = prob.cross.factor(prob.relative_factors(theta))
        scratch = prob.cross.factor(prob.relative_factors(theta), scratch=True)
        assert (scratch.ldL2, scratch.ldRX2, scratch.pwrss) == (fresh.ldL2, fresh.ldRX2, fresh.pwrss)
        assert prob.objective(theta, True) == prob._criterion(fresh.ldL2, fresh.ldRX2, fresh.pwrss_tilde, True) \
            + prob.scale_offset(True)
    assert prob.cross.__dict__.get("_workspace")
    np.testing.assert_array_equal(kept.dense(), kept_dense)


def test_level_cholesky_matches_lapack(monkeypatch):
    """Block-diagonal blocks (k = 2 and 3) factored entry by entry over the levels agree with
    batched LAPACK (the path beyond LEVEL_CHOLESKY_MAX_K), and both with the dense factor."""
    from mixedpy.linalg import blocked
    design = build_design("y ~ x + h + (x + h | a) + (x | g)", nested_data(13))
    prob = LMMProblem(design.terms, design.X, design.y)
    theta = theta_for(prob, 4)
    by_level = prob.cross.factor(prob.relative_factors(theta))
    monkeypatch.setattr(blocked, "LEVEL_CHOLESKY_MAX_K", 1)
    _, lapack = check_against_dense(design, theta)
    np.testing.assert_allclose(by_level.dense(), lapack.dense(), rtol=1e-12, atol=1e-13)
    assert by_level.inv[0].shape[1:] == (3, 3)
    for j in by_level.inv:
        np.testing.assert_allclose(by_level.inv[j], lapack.inv[j], rtol=1e-12, atol=1e-13)


def test_not_positive_definite_gives_inf():
    design = build_design("y ~ x + (1 | a) + (1 | g)", nested_data(4))
    prob = LMMProblem(design.terms, design.X, design.y)
    with np.errstate(all="ignore"):
        assert prob.objective(np.array([np.nan, 1.0]), True) == np.inf


@st.composite
def designs(draw):
    n = draw(st.integers(30, 160))
    seed = draw(st.integers(0, 10_000))
    kind = draw(st.sampled_from(["nested", "nested-slope", "crossed", "crossed-slope", "three", "crossed-three"]))
    outer = draw(st.integers(2, 12))
    inner = draw(st.integers(1, 5))
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"y": rng.normal(size=n), "x": rng.normal(size=n),
                       "a": rng.integers(0, outer, n).astype(str), "b": rng.integers(0, inner, n).astype(str),
                       "g": rng.integers(0, draw(st.integers(2, 8)), n).astype(str),
                       "w": rng.uniform(0.5, 2.0, n)})
    formula = {"nested": "y ~ x + (1 | a/b)", "nested-slope": "y ~ x + (x | a) + (1 | a:b)",
               "crossed": "y ~ x + (1 | a) + (1 | g)", "crossed-slope": "y ~ x + (x | a) + (1 | g)",
               "three": "y ~ x + (1 | a:b) + (1 | a) + (1 | g)",
               "crossed-three": "y ~ x + (1 | a) + (1 | b) + (1 | g)"}[kind]
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
    monkeypatch.setattr(structure, "GRAM_PAIR_LIMIT", -1)
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


# ----- the CHOLMOD block (mixedpy.linalg.cholmod): a large sparse Schur complement --------------------


def _has_cvxopt():
    from mixedpy.linalg import cholmod
    return cholmod.available()


needs_cvxopt = pytest.mark.skipif(not _has_cvxopt(), reason="cvxopt (extra 'sparse') not installed")


def crossed_data(seed, n=1500, n_s=900, n_d=160, n_e=12):
    """Crossed scalar factors, few observations per (s, d) pair, as InstEval (students x lecturers)."""
    rng = np.random.default_rng(seed)
    s, d, e = rng.integers(0, n_s, n), rng.integers(0, n_d, n), rng.integers(0, n_e, n)
    y = rng.normal(size=n) + rng.normal(0, 0.7, n_s)[s] + rng.normal(0, 0.5, n_d)[d] + rng.normal(0, 0.4, n_e)[e]
    return pd.DataFrame({"y": y, "x": rng.normal(size=n), "s": s.astype(str), "d": d.astype(str),
                         "e": e.astype(str), "w": rng.uniform(0.5, 2.0, n)})


@pytest.fixture
def small_cholmod(monkeypatch):
    """The CHOLMOD block from order 50 on, whatever its fill (the designs here are small)."""
    monkeypatch.setattr(CrossProducts, "CHOLMOD_MIN_ORDER", 50)
    monkeypatch.setattr(structure, "CHOLMOD_FLOP_FRACTION", 1.0)


@needs_cvxopt
@pytest.mark.parametrize("formula", ["y ~ x + (1 | s) + (1 | d)", "y ~ x + (1 | s) + (1 | d) + (1 | e)",
                                     "y ~ x + (1 | s) + (1 | d) + (x | e)"])
@pytest.mark.parametrize("weighted", [False, True])
def test_cholmod_block_matches_dense_numpy(formula, weighted, small_cholmod):
    """The Cholmod block: L L' = A, ldL2, ldRX2, pwrss, coefficients, u_precision_inverse_blocks,
    vcov and both solves against a dense NumPy factorization of the same system."""
    design = build_design(formula, crossed_data(21), weights="w" if weighted else None)
    prob0 = LMMProblem(design.terms, design.X, design.y)
    prob, f = check_against_dense(design, theta_for(prob0, 3), design.weights)
    st_ = prob.cross.structure
    assert st_.types[1, 1] == "Cholmod" and set(st_.cholmod) == {1}
    assert "Diag/Cholmod" in str(prob.cross.description())


@needs_cvxopt
@pytest.mark.filterwarnings("ignore:boundary")   # (x | e): no slope variance in these data
@pytest.mark.parametrize("formula", ["y ~ x + (1 | s) + (1 | d)", "y ~ x + (1 | s) + (1 | d) + (x | e)"])
def test_cholmod_block_agrees_with_dense_path(formula, small_cholmod, monkeypatch):
    """With cvxopt disabled (MIXEDPY_CHOLMOD=0) the same design takes the Dense path; every
    profiled quantity and the fits agree."""
    df = crossed_data(22)
    design = build_design(formula, df)
    sparse_prob = LMMProblem(design.terms, design.X, design.y)
    monkeypatch.setenv("MIXEDPY_CHOLMOD", "0")
    dense_prob = LMMProblem(design.terms, design.X, design.y)
    assert sparse_prob.cross.structure.types[1, 1] == "Cholmod"
    assert dense_prob.cross.structure.types[1, 1] == "Dense" and not dense_prob.cross.structure.cholmod
    theta = theta_for(sparse_prob, 5)
    a = sparse_prob.cross.factor(sparse_prob.relative_factors(theta))
    b = dense_prob.cross.factor(dense_prob.relative_factors(theta))
    for name in ("ldL2", "ldRX2", "pwrss"):
        assert getattr(a, name) == pytest.approx(getattr(b, name), rel=1e-12)
    for x, y in zip(a.coefficients(), b.coefficients()):
        np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-12)
    for x, y in zip(a.u_precision_inverse_blocks(), b.u_precision_inverse_blocks()):
        np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(a.fixed_factor, b.fixed_factor, rtol=1e-11, atol=1e-13)
    monkeypatch.delenv("MIXEDPY_CHOLMOD")
    fit_sparse = mp.lmer(formula, df)
    monkeypatch.setattr(CrossProducts, "CHOLMOD_MIN_ORDER", None)
    fit_dense = mp.lmer(formula, df)
    assert "Cholmod" in str(mp.block_description(fit_sparse))
    assert "Cholmod" not in str(mp.block_description(fit_dense))
    assert fit_sparse.deviance == pytest.approx(fit_dense.deviance, rel=1e-10)
    np.testing.assert_allclose(fit_sparse.theta, fit_dense.theta, rtol=1e-5, atol=1e-7)


@needs_cvxopt
def test_cholmod_chosen_by_predicted_flops(monkeypatch):
    """With the default thresholds a large, sparse Schur complement (order >= 500, few students per
    lecturer) is Cholmod; the same design with a flop fraction no factor can meet stays Dense."""
    design = build_design("y ~ x + (1 | s) + (1 | d)", crossed_data(23, n=2400, n_s=2000, n_d=600))
    st_ = CrossProducts.analyse(LMMProblem(design.terms, design.X, design.y).blocks)
    assert st_.types[1, 1] == "Cholmod"
    assert st_.cholmod[1].flop_fraction() <= structure.CHOLMOD_FLOP_FRACTION
    monkeypatch.setattr(structure, "CHOLMOD_FLOP_FRACTION", 0.0)
    assert CrossProducts.analyse(LMMProblem(design.terms, design.X, design.y).blocks).types[1, 1] == "Dense"


@needs_cvxopt
def test_cholmod_scratch_factor_does_not_touch_kept_factor_and_pickles(small_cholmod):
    """Scratch factorizations share one numeric CHOLMOD factor; an ordinary factor has its own and
    stays valid.  The structure pickles (its symbolic factor is rebuilt)."""
    import pickle
    design = build_design("y ~ x + (1 | s) + (1 | d)", crossed_data(24))
    prob = LMMProblem(design.terms, design.X, design.y)
    thetas = [theta_for(prob, s) for s in (1, 2, 3)]
    kept = prob.cross.factor(prob.relative_factors(thetas[0]))
    kept_dense, kept_coef = kept.dense(), kept.coefficients()[0]
    for theta in thetas:
        fresh = prob.cross.factor(prob.relative_factors(theta))
        scratch = prob.cross.factor(prob.relative_factors(theta), scratch=True)
        assert scratch.ldL2 == pytest.approx(fresh.ldL2, rel=1e-14)
        assert scratch.pwrss == pytest.approx(fresh.pwrss, rel=1e-13)
    np.testing.assert_array_equal(kept.dense(), kept_dense)
    np.testing.assert_array_equal(kept.coefficients()[0], kept_coef)
    st2 = pickle.loads(pickle.dumps(prob.cross.structure))
    cp2 = prob.cross.with_structure(st2)
    f2 = cp2.factor(prob.relative_factors(thetas[0]))
    assert f2.ldL2 == pytest.approx(kept.ldL2, rel=1e-13)
    kept2 = pickle.loads(pickle.dumps(kept))
    np.testing.assert_allclose(kept2.dense(), kept_dense, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(kept2.coefficients()[0], kept_coef, rtol=1e-12, atol=1e-13)


@needs_cvxopt
def test_cholmod_not_positive_definite_gives_inf(small_cholmod):
    design = build_design("y ~ x + (1 | s) + (1 | d)", crossed_data(25))
    prob = LMMProblem(design.terms, design.X, design.y)
    assert prob.cross.structure.types[1, 1] == "Cholmod"
    with np.errstate(all="ignore"):
        assert prob.objective(np.array([np.nan, 1.0]), True) == np.inf


@needs_cvxopt
def test_batched_kernel_uses_dense_variant_of_cholmod_block(small_cholmod):
    """The walker-batched factor (mixedpy.linalg.batched) has no Cholmod type: it runs on the Dense
    variant of the structure and agrees with the per-walker CHOLMOD factor."""
    from mixedpy.linalg.batched import BatchedKernel
    design = build_design("y ~ x + (1 | s) + (1 | d) + (1 | e)", crossed_data(26))
    prob = LMMProblem(design.terms, design.X, design.y)
    assert prob.cross.structure.types[1, 1] == "Cholmod"
    kernel = BatchedKernel(prob.cross)
    assert kernel.st.types[1, 1] == "Dense" and prob.cross.structure.types[1, 1] == "Cholmod"
    thetas = [theta_for(prob, s) for s in (1, 2)]
    Ts = [prob.relative_factors(t) for t in thetas]
    T_list = [np.stack([T[i] for T in Ts]) for i in range(len(Ts[0]))]
    got = kernel.factor(T_list)
    for w, T in enumerate(Ts):
        assert got.ldL2[w] == pytest.approx(prob.cross.factor(T).ldL2, rel=1e-11)


def test_without_cvxopt_the_block_stays_dense(small_cholmod, monkeypatch):
    """cvxopt is optional: when it cannot be imported the structure is today's Dense one."""
    from mixedpy.linalg import cholmod
    monkeypatch.setattr(cholmod, "_cm", None)
    design = build_design("y ~ x + (1 | s) + (1 | d)", crossed_data(27))
    prob = LMMProblem(design.terms, design.X, design.y)
    assert prob.cross.structure.types[1, 1] == "Dense" and not prob.cross.structure.cholmod
    check_against_dense(design, theta_for(prob, 2))
