"""The blocked kernel against a dense NumPy computation of the same objective.

The dense side uses the marginal model y ~ N(X beta, sigma^2 V), V = Z Lambda Lambda' Z' + W^{-1},
with beta and sigma profiled by GLS: an independent route to lme4's ML deviance and REML criterion.
"""
import numpy as np
import pandas as pd
import pytest

from conftest import dense_u
from mixedpy.formula.design import build_design
from mixedpy.linalg.blocked import CrossProducts
from mixedpy.lmm import LMMProblem


def simulated(seed, n=300):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"y": rng.normal(size=n), "x": rng.normal(size=n), "z": rng.normal(size=n),
                         "a": rng.integers(0, 25, n).astype(str), "b": rng.integers(0, 9, n).astype(str),
                         "c": rng.integers(0, 4, n).astype(str), "w": rng.uniform(0.5, 2, n)})


FORMULAS = ["y ~ x + (1 | a)", "y ~ x + (x | a)", "y ~ x + (1 | a) + (1 | b)",
            "y ~ x + z + (x + z | a) + (1 | b)", "y ~ x + (1 | a) + (x | b) + (1 | c)",
            "y ~ x + (x || a) + (1 | a:b)"]


def dense_objective(design, theta, reml, weights=None):
    X, y, n = design.X, design.y - design.offset, design.nobs
    p = X.shape[1]
    Zs, Ls, start = [], [], 0
    for t in design.terms:
        Z = np.zeros((n, t.n_coefs))
        for c in range(t.k):
            Z[np.arange(n), t.codes * t.k + c] = t.model_matrix[:, c]
        T = t.relative_factor(theta[start:start + t.n_theta])
        Zs.append(Z)
        Ls.append(np.kron(np.eye(t.n_levels), T))
        start += t.n_theta
    Z = np.hstack(Zs)
    Lam = np.zeros((Z.shape[1], Z.shape[1]))
    off = 0
    for L in Ls:
        Lam[off:off + L.shape[0], off:off + L.shape[0]] = L
        off += L.shape[0]
    Winv = np.diag(1 / weights) if weights is not None else np.eye(n)
    V = Z @ Lam @ Lam.T @ Z.T + Winv
    Vi = np.linalg.inv(V)
    XVX = X.T @ Vi @ X
    beta = np.linalg.solve(XVX, X.T @ Vi @ y)
    r = y - X @ beta
    rss = r @ Vi @ r
    logdetV = np.linalg.slogdet(V)[1]
    if reml:
        return (n - p) * (1 + np.log(2 * np.pi * rss / (n - p))) + logdetV + np.linalg.slogdet(XVX)[1], beta
    return n * (1 + np.log(2 * np.pi * rss / n)) + logdetV, beta


@pytest.mark.parametrize("formula", FORMULAS)
@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("sparse", [False, True])
def test_objective_matches_dense(formula, reml, sparse, monkeypatch):
    if sparse:
        monkeypatch.setattr(CrossProducts, "DENSE_LIMIT", 0)
        monkeypatch.setattr(CrossProducts, "SPARSE_DENSITY", 1.1)
    df = simulated(11)
    for weighted in (False, True):
        design = build_design(formula, df, weights="w" if weighted else None)
        prob = LMMProblem(design.terms, design.X, design.y, design.weights, design.offset)
        # one term has no off-diagonal term blocks to store sparse
        assert prob.cross.sparse == (sparse and len(design.terms) > 1)
        rng = np.random.default_rng(5)
        theta = np.abs(rng.normal(0.8, 0.3, len(prob.lower))) * np.where(prob.lower == 0, 1, 0.4)
        dense, beta = dense_objective(design, theta, reml, design.weights)
        assert prob.objective(theta, reml) == pytest.approx(dense, rel=1e-9)
        np.testing.assert_allclose(prob.profile(theta).beta, beta, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("formula", FORMULAS)
def test_solves_and_inverse_blocks_match_dense(formula):
    design = build_design(formula, simulated(4))
    prob = LMMProblem(design.terms, design.X, design.y)
    theta = np.linspace(0.5, 1.2, len(prob.lower))
    f = prob.cross.factor(prob.relative_factors(theta))
    q1 = f.cp.q1
    U, X, y = dense_u(design, prob, theta), design.X, design.y
    q = U.shape[1]
    A = np.block([[U.T @ U + np.eye(q), U.T @ X], [X.T @ U, X.T @ X]])
    # forward then backward solve with L is a solve with A = L L'
    z = np.random.default_rng(0).normal(size=(A.shape[0], 3))
    c1, c2 = f.solve_lower(z[:q1], z[q1:])
    x1, x2 = f.solve_upper(c1, c2)
    np.testing.assert_allclose(np.vstack([x1, x2]), np.linalg.solve(A, z), rtol=1e-8, atol=1e-10)
    # L^{-T} z has covariance A^{-1} when z is standard normal: check L'^{-1} through L' x = z
    x1, x2 = f.solve_upper(z[:q1], z[q1:])
    L = np.linalg.cholesky(A)
    np.testing.assert_allclose(np.vstack([x1, x2]), np.linalg.solve(L.T, z), rtol=1e-8, atol=1e-10)
    u, beta = f.coefficients()
    np.testing.assert_allclose(np.concatenate([u, beta]), np.linalg.solve(A, np.concatenate([U.T @ y, X.T @ y])),
                               rtol=1e-8, atol=1e-10)
    Puu_inv = np.linalg.inv(U.T @ U + np.eye(q))
    start = 0
    for t, blk in zip(design.terms, f.u_precision_inverse_blocks()):
        for j in range(t.n_levels):
            idx = start + j * t.k + np.arange(t.k)
            np.testing.assert_allclose(blk[j], Puu_inv[np.ix_(idx, idx)], rtol=1e-8, atol=1e-12)
        start += t.n_coefs
    np.testing.assert_allclose(f.unscaled_vcov(), np.linalg.inv(A)[q:, q:], rtol=1e-8)
