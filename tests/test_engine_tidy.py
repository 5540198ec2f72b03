"""The updates from the first block column as fixed sparse operators (blocked.GramOperator,
weighted_rows, fixed_row_update) against dense algebra; their storage; and ``with_structure``
keeping what the new structure shares (so that the Dask ``bayes_lmer`` reuses its REML fit's).

The first diagonal block has no fill, so every update from the first column is
L_i1 L_j1' = Lambda_i' (A_i1 M A_j1') Lambda_j with M = blockdiag(M_l) (structure.GramPlan).  The
checks here form A_i1 = Z_i'WZ_1 and M densely and compare the operators' brackets entry by entry
on every target block the plan covers (and zero elsewhere), for one vector of weights and for a
batch of walkers.
"""
from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mixedpy.linalg import structure
from mixedpy.linalg.batched import BatchedKernel
from mixedpy.linalg.blocked import CrossProducts, fixed_row_terms, fixed_row_update, weighted_rows
from mixedpy.linalg.structure import BLKDIAG, CHOLMOD, DENSE, DIAGONAL, SPARSE, BlockStructure
from test_bayes_lmm_batched import _blocks, _relative_factors, _z

SPARSE_ALL = (0, 1.01)      # (dense_limit, sparse_density): every off-diagonal block sparse
SPARSE_MIX = (0, 0.3)


def _weights(rng, J: int, k: int, W: int | None = None):
    """Random symmetric M_l: (w, M) with w the packed lower triangles (gram_weights' layout,
    (J m,) or (J m, W)) and M (J, k, k) or (W, J, k, k)."""
    B = rng.normal(size=(J, k, k) if W is None else (W, J, k, k))
    M = B + np.swapaxes(B, -1, -2)
    r, c = np.tril_indices(k)
    w = M[..., r, c]
    return (w.reshape(-1) if W is None else np.moveaxis(w, 0, -1).reshape(-1, W)), M


def _blockdiag(M: np.ndarray) -> np.ndarray:
    J, k = M.shape[0], M.shape[1]
    out = np.zeros((J * k, J * k))
    for l in range(J):
        out[l * k:(l + 1) * k, l * k:(l + 1) * k] = M[l]
    return out


def _covered(st_: BlockStructure, i: int, j: int, n_rows: int):
    """(rows, cols) levels of target block t of Gram plan (i, j, 0), by the target's storage."""
    t = np.arange(n_rows)
    typ = st_.types[i, j]
    if typ == SPARSE or typ == CHOLMOD:
        pat = st_.patterns[i, j]
        return pat.rows[t], pat.cols[t]
    if typ in (DIAGONAL, BLKDIAG):
        return t, t
    assert typ == DENSE
    return np.divmod(t, st_.J[j])


def _rows_form(on: bool) -> int:
    """GRAM_LEVELS_LIMIT that makes a vector-valued first term take the rows form (on) or the levels form."""
    return -1 if on else 10 ** 12


def _check_operators(blocks, X, y, sqrt_w, thresholds, rng, rows_form=True):
    """Every Gram operator (in the rows form for k_1 > 1 when ``rows_form``, else the levels form)
    and the [X | y] row's update equal the dense brackets."""
    limit = structure.GRAM_LEVELS_LIMIT
    structure.GRAM_LEVELS_LIMIT = _rows_form(rows_form)
    try:
        return _check_operators_now(blocks, X, y, sqrt_w, thresholds, rng, rows_form)
    finally:
        structure.GRAM_LEVELS_LIMIT = limit


def _check_operators_now(blocks, X, y, sqrt_w, thresholds, rng, rows_form):
    st_ = BlockStructure.analyse(blocks, None, *thresholds)
    cp = CrossProducts(blocks, X, y, sqrt_w, structure=st_)
    sw = np.ones(X.shape[0]) if sqrt_w is None else sqrt_w
    Z = [_z(b) * sw[:, None] for b in blocks]
    Xy = np.column_stack([X, y]) * sw[:, None]
    J1, k1 = st_.J[0], st_.k[0]
    W = 3
    if k1 == 1:
        # the levels form merges the columns of levels of equal a_l = (Z_1'WZ_1)_ll, whose weights
        # t^2 / (1 + t^2 a_l) are equal: weights of that form
        a = cp.A[0, 0].reshape(-1)
        t = rng.uniform(0.3, 2.0, W + 1) ** 2
        d = t[None, :] / (1.0 + t[None, :] * a[:, None])
        w, M = d[:, 0], d[:, 0, None, None]
        wW, MW = d[:, 1:], np.moveaxis(d[:, 1:], 1, 0)[..., None, None]
    else:
        w, M = _weights(rng, J1, k1)
        wW, MW = _weights(rng, J1, k1, W)
    Mbd = _blockdiag(M)
    for key in st_.grams:
        i, j, _ = key
        op = cp.gram_operator(key)
        assert (op.source is None) == (k1 == 1 or not rows_form)
        ki, kj = st_.k[i], st_.k[j]
        want = Z[i].T @ Z[0] @ Mbd @ Z[0].T @ Z[j]
        x = w if op.source is None else cp.first_column_rows(i, w)
        U = op.apply(x)
        assert U.shape == (st_.grams[key].n_rows, ki, kj)
        r, c = _covered(st_, i, j, U.shape[0])
        if st_.types[i, j] == DENSE and i == j:     # a dense diagonal target: its lower triangle only
            assert not U[r < c].any()
            U, r, c = U[r >= c], r[r >= c], c[r >= c]
        got = np.zeros_like(want)
        mask = np.zeros(want.shape, bool)
        for a in range(ki):
            for b in range(kj):
                got[r * ki + a, c * kj + b] = U[:, a, b]
                mask[r * ki + a, c * kj + b] = True
        scale = np.abs(want).max() + 1.0
        np.testing.assert_allclose(got[mask], want[mask], rtol=0, atol=1e-12 * scale)
        if st_.types[i, j] != DENSE:       # a sparse or block-diagonal target: nothing outside its pattern
            np.testing.assert_allclose(want[~mask], 0.0, rtol=0, atol=1e-12 * scale)
        elif i == j:
            np.testing.assert_array_equal(mask, np.kron(np.tril(np.ones((st_.J[i],) * 2, bool)),
                                                        np.ones((ki, kj), bool)))
        # walkers: one product for all, each as its own vector
        xW = wW if op.source is None else cp.first_column_rows(i, wW)
        UW = op.apply(xW)
        for v in range(W):
            xv = wW[:, v] if op.source is None else cp.first_column_rows(i, wW[:, v])
            np.testing.assert_allclose(UW[..., v], op.apply(xv), rtol=1e-13, atol=1e-13 * scale)
        # restricted to the nonempty targets (the batched kernel's view): the same rows, no copy
        targets = np.flatnonzero(np.diff(st_.grams[key].indptr))
        sub = op.restricted(targets)
        np.testing.assert_array_equal(sub.apply(x), op.apply(x)[targets])
        assert np.shares_memory(sub.mats[0][0].data, op.mats[0][0].data)
    # the [X | y] row: (A_F1 M) A_j1' Lambda_j, one theta and a walker batch
    T = st_.n_terms
    Y_F = cp.first_column_rows(T, w)
    Y_FW = cp.first_column_rows(T, wW)
    for j in fixed_row_terms(st_):
        kj = st_.k[j]
        Tj = np.tril(rng.normal(size=(kj, kj))) + 2 * np.eye(kj)
        lam = np.kron(np.eye(st_.J[j]), Tj)
        want = Xy.T @ Z[0] @ Mbd @ Z[0].T @ Z[j] @ lam
        got = fixed_row_update(cp, j, Y_F, Tj)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * (np.abs(want).max() + 1.0))
        TW = np.stack([Tj * (1 + 0.1 * v) for v in range(W)])
        gotW = fixed_row_update(cp, j, Y_FW, TW)
        for v in range(W):
            wantv = Xy.T @ Z[0] @ _blockdiag(MW[v]) @ Z[0].T @ Z[j] @ np.kron(np.eye(st_.J[j]), TW[v])
            np.testing.assert_allclose(gotW[v], wantv, rtol=0, atol=1e-12 * (np.abs(wantv).max() + 1.0))
    return st_, cp


_first = st.tuples(st.integers(4, 20), st.integers(1, 3))
_rest = st.lists(st.tuples(st.integers(2, 9), st.integers(1, 3), st.booleans()), min_size=1, max_size=2)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=_first, rest=_rest, seed=st.integers(0, 2 ** 16), weighted=st.booleans(), mix=st.booleans(),
       rows_form=st.booleans())
def test_property_first_column_operators_equal_dense(first, rest, seed, weighted, mix, rows_form):
    """On random designs (a first term of k = 1..3 coefficients, then one or two terms of k = 1..3
    crossed with it or nested in the term before, weighted or not, every off-diagonal block sparse
    or a mix): each Gram operator, in either form for a vector-valued first term, gives
    A_i1 M A_j1' on every target block of its plan, for one M and for walkers; the [X | y] row's
    update is (A_F1 M) A_j1' Lambda_j."""
    rng = np.random.default_rng(seed)
    n = 120
    blocks = _blocks(rng, n, [(first[0], first[1], False)] + list(rest))
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = rng.normal(size=n)
    sqrt_w = np.sqrt(rng.uniform(0.3, 3.0, n)) if weighted else None
    _check_operators(blocks, X, y, sqrt_w, SPARSE_MIX if mix else SPARSE_ALL, rng, rows_form)


@pytest.mark.parametrize("rows_form", [True, False])
@pytest.mark.parametrize("k1", [1, 2, 3])
def test_operators_cover_every_target_type(k1, rows_form):
    """Dense-lower, dense, sparse and block-diagonal (a nested term) targets, scalar and vector terms."""
    rng = np.random.default_rng(10 + k1)
    n = 400
    blocks = _blocks(rng, n, [(40, k1, False), (12, 2, True), (6, 1, False), (20, 1, True)])
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    st_, _ = _check_operators(blocks, X, rng.normal(size=n), None, SPARSE_ALL, rng, rows_form)
    assert {st_.types[i, j] for i, j, _ in st_.grams} == {BLKDIAG, DENSE, SPARSE}


def test_weighted_rows_per_block_and_per_level():
    """Y_n = X_n M_l(n) for blocks with their levels, and for the [X | y] row (block n = level n)."""
    rng = np.random.default_rng(3)
    J, k, N, R = 7, 3, 25, 2
    w, M = _weights(rng, J, k)
    X = rng.normal(size=(N, R, k))
    levels = rng.integers(0, J, N)
    Y = weighted_rows(np.ascontiguousarray(np.moveaxis(X, 2, 0)), w, levels)
    np.testing.assert_allclose(np.moveaxis(Y, 0, 2), X @ M[levels], rtol=1e-14, atol=1e-14)
    X2 = rng.normal(size=(J, R, k))
    Y2 = weighted_rows(np.ascontiguousarray(np.moveaxis(X2, 2, 0)), w)
    np.testing.assert_allclose(np.moveaxis(Y2, 0, 2), X2 @ M, rtol=1e-14, atol=1e-14)
    wW, MW = _weights(rng, J, k, 4)
    YW = weighted_rows(np.ascontiguousarray(np.moveaxis(X, 2, 0)), wW, levels)
    for v in range(4):
        np.testing.assert_allclose(np.moveaxis(YW[..., v], 0, 2), X @ MW[v][levels], rtol=1e-13, atol=1e-13)


def test_rows_form_stores_k_j_k_1_numbers_per_pair_and_shares_the_plan(monkeypatch):
    """A vector-valued first term (k_1 = 2, scalar target) over GRAM_LEVELS_LIMIT: the operator holds
    2 numbers per pair and uses the plan's own ``ia`` and ``indptr`` as its index arrays, where the
    levels form's matrix holds k_1 (k_1 + 1) / 2 = 3 values and 3 column indices per pair."""
    rng = np.random.default_rng(5)
    n = 3000
    blocks = _blocks(rng, n, [(300, 2, False), (40, 1, False)])
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    st_ = BlockStructure.analyse(blocks, None, *SPARSE_ALL)
    cp = CrossProducts(blocks, X, rng.normal(size=n), None, structure=st_)
    plan = st_.grams[1, 1, 0]
    assert structure.gram_form(2, 1, 1, plan.nnz) == "levels"          # small: the levels form
    levels = cp.gram_operator((1, 1, 0))
    assert levels.source is None and levels.mats[0][0].nnz == 3 * plan.nnz
    monkeypatch.setattr(structure, "GRAM_LEVELS_LIMIT", 3 * plan.nnz - 1)
    assert structure.gram_form(2, 1, 1, plan.nnz) == "rows"
    cp = CrossProducts(blocks, X, rng.normal(size=n), None, structure=st_)
    op = cp.gram_operator((1, 1, 0))
    H = [m for row in op.mats for m in row]
    assert len(H) == 2
    for m in H:
        assert np.shares_memory(m.indices, plan.ia) and np.shares_memory(m.indptr, plan.indptr)
        assert m.data.size == plan.nnz
    assert op.nbytes == 2 * 8 * plan.nnz + plan.ia.nbytes + plan.indptr.nbytes
    assert op.nbytes - plan.ia.nbytes - plan.indptr.nbytes < 0.5 * levels.nbytes


# ---- with_structure keeps what its structure shares ---------------------------------------------
def _slope_problem(rng, n=600):
    blocks = _blocks(rng, n, [(50, 2, False), (9, 1, False), (5, 1, False)])
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    st_ = BlockStructure.analyse(blocks, None, *SPARSE_ALL)
    return blocks, X, st_


@pytest.mark.parametrize("rows_form", [True, False])
def test_with_structure_keeps_operators_and_replacing_the_fixed_row_is_safe(rows_form, monkeypatch):
    """The same structure: the Gram operators, the [X | y] row's operators and the first-column
    rows of the terms are the same objects; the [X | y] row's own pieces are not kept, so that a
    replaced [X | y] row (as mixedpy.scale.bayes does) factors as fresh cross-products of it."""
    monkeypatch.setattr(structure, "GRAM_LEVELS_LIMIT", _rows_form(rows_form))
    rng = np.random.default_rng(8)
    blocks, X, st_ = _slope_problem(rng)
    y, y2 = rng.normal(size=X.shape[0]), rng.normal(size=X.shape[0]) + 3.0
    cp = CrossProducts(blocks, X, y, None, structure=st_)
    T_list = [t[0] for t in _relative_factors(rng, blocks, 1)]
    cp.factor(T_list)                                  # forms every operator and row piece
    cp2 = cp.with_structure(cp.structure)
    for key in st_.grams:
        assert cp2.gram_operator(key) is cp.gram_operator(key)
    for j in fixed_row_terms(st_):
        assert cp2.a_operator(j) is cp.a_operator(j)
    if rows_form:
        assert cp2.row_components(1) is cp.row_components(1)
    assert ("rows", cp.T) not in cp2._gram_cache
    other = CrossProducts(blocks, X, y2, None, structure=st_)
    cp2.A = dict(cp.A)
    for j in range(cp.T + 1):
        cp2.A[cp.T, j] = other.A[cp.T, j]
    got, want = cp2.factor(T_list), other.factor(T_list)
    assert (got.ldL2, got.ldRX2, got.pwrss) == pytest.approx((want.ldL2, want.ldRX2, want.pwrss), rel=1e-13)
    np.testing.assert_allclose(got.dense(), want.dense(), rtol=1e-12, atol=1e-12)
    # the original's own factor is untouched by the copy's
    again = cp.factor(T_list)
    fresh = CrossProducts(blocks, X, y, None, structure=st_).factor(T_list)
    assert (again.ldL2, again.pwrss) == pytest.approx((fresh.ldL2, fresh.pwrss), rel=1e-13)


def test_with_structure_rebuilds_what_a_new_structure_does_not_share():
    """A pickled copy of the structure (new plan and pattern objects): nothing is kept, and the
    factor is the same."""
    rng = np.random.default_rng(9)
    blocks, X, st_ = _slope_problem(rng)
    cp = CrossProducts(blocks, X, rng.normal(size=X.shape[0]), None, structure=st_)
    T_list = [t[0] for t in _relative_factors(rng, blocks, 1)]
    f = cp.factor(T_list)
    cp2 = cp.with_structure(pickle.loads(pickle.dumps(st_)))
    assert not cp2._gram_cache and not cp2._templates
    f2 = cp2.factor(T_list)
    assert cp2.gram_operator((1, 1, 0)) is not cp.gram_operator((1, 1, 0))
    assert f2.ldL2 == pytest.approx(f.ldL2, rel=1e-13) and f2.pwrss == pytest.approx(f.pwrss, rel=1e-13)


def _has_cvxopt():
    from mixedpy.linalg import cholmod
    return cholmod.available()


@pytest.mark.skipif(not _has_cvxopt(), reason="cvxopt (extra 'sparse') not installed")
def test_without_cholmod_keeps_the_operators_of_unchanged_plans(monkeypatch):
    """The batched kernel's Dense variant of a Cholmod structure rebuilds only the Cholmod block's
    Gram plan: the other operators are the per-walker kernel's, and both kernels agree."""
    from test_engine import crossed_data
    from mixedpy.formula.design import build_design
    from mixedpy.linalg import structure
    from mixedpy.lmm import LMMProblem

    monkeypatch.setattr(CrossProducts, "CHOLMOD_MIN_ORDER", 50)       # as test_engine's small_cholmod
    monkeypatch.setattr(structure, "CHOLMOD_FLOP_FRACTION", 1.0)
    monkeypatch.setattr(CrossProducts, "DENSE_LIMIT", 0)              # e's blocks sparse: more plans
    monkeypatch.setattr(CrossProducts, "SPARSE_DENSITY", 1.1)
    design = build_design("y ~ x + (1 | s) + (1 | d) + (1 | e)", crossed_data(26))
    prob = LMMProblem(design.terms, design.X, design.y)
    st_ = prob.cross.structure
    assert st_.types[1, 1] == CHOLMOD
    theta = np.array([0.8, 0.6, 0.4])
    f = prob.cross.factor(prob.relative_factors(theta))
    kernel = BatchedKernel(prob.cross)
    assert len(st_.grams) > 1
    for key in st_.grams:
        same = kernel.cp.gram_operator(key) is prob.cross.gram_operator(key)
        assert same == (key != (1, 1, 0)), key
    for j in fixed_row_terms(st_):
        assert kernel.cp.a_operator(j) is prob.cross.a_operator(j)
    T_list = [t[None] for t in prob.relative_factors(theta)]
    ldL2, G, ok = kernel.schur(T_list)
    assert ok.all() and ldL2[0] == pytest.approx(f.ldL2, rel=1e-10)


def test_dask_bayes_lmer_reuses_the_reml_fits_operators(monkeypatch):
    """The Dask ``bayes_lmer`` samples on a copy of its REML fit's cross-products
    (scale.bayes.reduced_system): every first-column operator is formed once for both."""
    pytest.importorskip("dask.dataframe")
    import mixedpy as mp
    from test_dask_lmer import DATA, partitioned

    monkeypatch.setattr(CrossProducts, "DENSE_LIMIT", 0)
    monkeypatch.setattr(CrossProducts, "SPARSE_DENSITY", 1.1)
    monkeypatch.setattr(structure, "GRAM_LEVELS_LIMIT", -1)          # the rows form
    seen = {}

    def recording(name):
        real = getattr(CrossProducts, name)

        def method(self, key):
            got = real(self, key)
            seen.setdefault((name, key), set()).add(id(got))
            return got
        return method

    for name in ("gram_operator", "a_operator"):
        monkeypatch.setattr(CrossProducts, name, recording(name))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = mp.bayes_lmer("y ~ x + (x | a) + (1 | b)", partitioned(DATA, [600, 600]), chains=2, iter=40,
                             seed=3)
    assert post.n_draws > 0
    # b's diagonal block from a's slopes (a Gram operator) and the [X | y] row by b (A_ba): one
    # object each, for the REML fit and the sampler
    assert set(seen) == {("gram_operator", (1, 1, 0)), ("a_operator", 1)}
    assert all(len(ids) == 1 for ids in seen.values()), seen

@pytest.mark.parametrize("formula", ["y ~ x + (x | b) + (1 | a)", "y ~ x + (x + h | b) + (x | a)",
                                     "y ~ x + (x | b) + (1 | a) + (1 | c)", "y ~ x + (x | b:c) + (1 | b)"])
@pytest.mark.parametrize("weighted", [False, True])
def test_rows_form_factor_matches_dense_and_the_batched_kernel(formula, weighted, monkeypatch):
    """With every Gram operator of a vector-valued first term in the rows form, the whole factor --
    every block, solves, conditional variances -- equals the dense factorization, and the
    objective's lean factor its full one."""
    from test_engine import check_against_dense
    from test_slope_gram import _slope_first_data
    from mixedpy.formula.design import build_design
    from mixedpy.lmm import LMMProblem

    monkeypatch.setattr(CrossProducts, "DENSE_LIMIT", 0)
    monkeypatch.setattr(CrossProducts, "SPARSE_DENSITY", 1.1)
    monkeypatch.setattr(structure, "GRAM_LEVELS_LIMIT", -1)
    design = build_design(formula, _slope_first_data(4, n=500, Jb=30, Ja=9), weights="w" if weighted else None)
    prob0 = LMMProblem(design.terms, design.X, design.y)
    rng = np.random.default_rng(2)
    theta = np.where(prob0.lower == 0, rng.uniform(0.3, 1.4, prob0.lower.size),
                     rng.normal(0, 0.4, prob0.lower.size))
    prob, f = check_against_dense(design, theta, design.weights)
    cp = prob.cross
    assert cp.structure.grams and all(cp.gram_operator(key).source is not None for key in cp.structure.grams)
    lean = cp.factor(prob.relative_factors(theta), scratch=True, solves=False)
    assert (lean.ldL2, lean.ldRX2, lean.pwrss) == pytest.approx((f.ldL2, f.ldRX2, f.pwrss), rel=1e-13)


@pytest.mark.parametrize("k1", [2, 3])
def test_batched_kernel_with_rows_form(k1, monkeypatch):
    """test_slope_gram's check of the walker-batched kernel against the per-walker one, with the
    Gram operators in the rows form (Y = A_i1 M per walker)."""
    from test_slope_gram import test_batched_kernel_uses_vector_grams

    monkeypatch.setattr(structure, "GRAM_LEVELS_LIMIT", -1)
    test_batched_kernel_uses_vector_grams(k1)
