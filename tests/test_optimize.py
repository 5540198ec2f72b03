"""lme4's checkConv rules on hand-made gradients and Hessians, and the optimizer record."""
import numpy as np
import pytest

import mixedpy as mp
from mixedpy.optimize import OptSummary, assess, finite_difference_derivs, is_singular, minimize


def checks(summary, singular):
    """The (category, message) warnings of lme4's checkConv on a summary with no optimizer failure."""
    return list(assess(summary, singular).warnings)


def summary_with(grad, hess):
    s = OptSummary(optimizer="bobyqa", x0=np.zeros(len(grad)), lower=np.zeros(len(grad)))
    s.gradient, s.hessian = np.asarray(grad, float), np.asarray(hess, float)
    return s


def test_large_scaled_gradient_warns_with_advice():
    msgs = checks(summary_with([0.5, 0.0], np.eye(2)), singular=False)
    assert [c for c, _ in msgs] == [mp.ConvergenceWarning]
    assert "failed to converge with max|grad| = 0.5" in msgs[0][1] and "optimizer=" in msgs[0][1]


def test_small_gradient_and_good_hessian_pass():
    assert checks(summary_with([1e-5, -1e-5], [[2.0, 0.3], [0.3, 1.0]]), singular=False) == []


def test_negative_eigenvalue_and_singular_hessian():
    msgs = checks(summary_with([0.0, 0.0], [[1.0, 0.0], [0.0, -1.0]]), singular=False)
    assert any("negative eigenvalues" in m for _, m in msgs)
    msgs = checks(summary_with([0.0, 0.0], [[1.0, 0.0], [0.0, 1e-9]]), singular=False)
    assert any("numerically singular" in m for _, m in msgs)


def test_singular_fit_skips_gradient_checks():
    msgs = checks(summary_with([5.0, 5.0], -np.eye(2)), singular=True)
    assert [c for c, _ in msgs] == [mp.SingularFitWarning]


def test_is_singular_rule():
    assert is_singular([1.0, 5e-5], [0.0, 0.0])
    assert not is_singular([1.0, -5e-5], [0.0, -np.inf])  # off-diagonals are unbounded


def test_finite_differences_of_a_quadratic():
    A = np.array([[3.0, 1.0], [1.0, 2.0]])
    g, H = finite_difference_derivs(lambda x: 0.5 * x @ A @ x + x[0], np.array([0.2, -0.1]))
    np.testing.assert_allclose(H, A, atol=1e-5)
    np.testing.assert_allclose(g, A @ [0.2, -0.1] + [1, 0], atol=1e-7)


@pytest.mark.parametrize("optimizer", ["bobyqa", "scipy", "nelder_mead"])
def test_backends_find_a_bounded_minimum(optimizer):
    s = minimize(lambda x: (x[0] + 1) ** 2 + (x[1] - 2) ** 2, np.array([1.0, 1.0]), np.array([0.0, -np.inf]),
                 optimizer=optimizer)
    np.testing.assert_allclose(s.x, [0.0, 2.0], atol=1e-4)
    assert s.converged and s.n_evals > 0
