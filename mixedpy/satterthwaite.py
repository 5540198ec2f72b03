"""Satterthwaite's denominator degrees of freedom for an lmer fit, as lmerTest computes them.

lmerTest (Kuznetsova, Brockhoff & Christensen 2017, J. Stat. Softw. 82(13), section 3.1; its
``as_lmerModLT``, ``devfun_vp`` and ``get_covbeta``) takes the variance parameters
varpar = (theta_1, ..., theta_k, sigma) and

* A = 2 H^{-1}, the asymptotic covariance of varpar, from the Hessian H of the deviance
  (the REML criterion for a REML fit) in varpar, with beta profiled out but sigma not:

      d(theta, sigma) = ldL2(theta) + pwrss(theta) / sigma^2 + n log(2 pi sigma^2)
                        [ + ldRX2(theta) - p log(2 pi sigma^2)   for REML ];

  H^{-1} is the Moore-Penrose inverse over the eigenvalues above 1e-8, as lmerTest's;
* J_i = d C / d varpar_i, the Jacobian of C(varpar) = sigma^2 (R_X'R_X)^{-1}(theta) = vcov(beta).

For a contrast L, var = L'CL, g_i = L'J_i L and df = 2 var^2 / (g'Ag) (lmerTest ``contest1D``).

Everything comes from the blocked Cholesky factor at a few theta values: the sigma parts of H and
J are analytic (d is explicit in sigma), and the theta parts are central differences of ldL2,
ldRX2, pwrss and (R_X'R_X)^{-1} with one Richardson step (lmerTest uses numDeriv's Richardson
extrapolation).  No n x n matrix is formed, so the cost is 4 k^2 + 1 factorizations.
"""
from __future__ import annotations

import warnings
import weakref
from dataclasses import dataclass

import numpy as np

from .errors import ConvergenceWarning

#: relative step of the central differences in theta (numDeriv's default d = 1e-4 is also relative)
STEP = 1e-3
#: absolute step for theta components at (or near) zero
MIN_STEP = 1e-4
#: eigenvalues of H at or below this are left out of its inverse (lmerTest's tol)
EIGEN_TOL = 1e-8


@dataclass(frozen=True)
class VarparCovariance:
    """lmerTest's ``vcov_varpar`` (A) and ``Jac_list`` (J, stacked (k+1, p, p)) with vcov(beta)."""

    varpar: np.ndarray
    hessian: np.ndarray
    vcov_varpar: np.ndarray
    jacobian: np.ndarray
    vcov_beta: np.ndarray

    def df(self, L: np.ndarray) -> float:
        """Satterthwaite's df of the 1-d contrast L'beta: 2 (L'CL)^2 / (g'Ag), g_i = L'J_iL."""
        L = np.asarray(L, dtype=float)
        var = L @ self.vcov_beta @ L
        g = np.einsum("a,iab,b->i", L, self.jacobian, L)
        return float(2.0 * var ** 2 / (g @ self.vcov_varpar @ g))


_cache: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def varpar_covariance(fit) -> VarparCovariance:
    """A and the Jacobian of vcov(beta) of an lmer fit (computed once per fit)."""
    hit = _cache.get(fit)
    if hit is None:
        hit = _cache[fit] = _compute(fit)
    return hit


def _pieces(problem, theta: np.ndarray, reml: bool) -> np.ndarray:
    """[a, b, vec(U)] at theta: a = ldL2 (+ ldRX2 for REML), b = pwrss, U = (R_X'R_X)^{-1}, as one
    flat vector so that the finite differences treat them together."""
    f = problem.cross.factor(problem.relative_factors(theta))
    a = f.ldL2 + (f.ldRX2 if reml else 0.0)
    return np.concatenate([[a, f.pwrss], f.unscaled_vcov().ravel()])


def _theta_derivatives(problem, theta: np.ndarray, reml: bool):
    """Gradient and Hessian in theta of the vector [a, b, vec(U)] by central differences with
    one Richardson extrapolation (error O(h^4))."""
    k = theta.size
    h0 = np.maximum(STEP * np.abs(theta), MIN_STEP)
    f0 = _pieces(problem, theta, reml)
    m = f0.size

    def at(h):
        grad = np.empty((k, m))
        hess = np.empty((k, k, m))
        plus, minus = [], []
        for i in range(k):
            e = np.zeros(k)
            e[i] = h[i]
            fp, fm = _pieces(problem, theta + e, reml), _pieces(problem, theta - e, reml)
            plus.append(fp)
            minus.append(fm)
            grad[i] = (fp - fm) / (2 * h[i])
            hess[i, i] = (fp - 2 * f0 + fm) / h[i] ** 2
        for i in range(k):
            for j in range(i):
                ei, ej = np.zeros(k), np.zeros(k)
                ei[i], ej[j] = h[i], h[j]
                fpp = _pieces(problem, theta + ei + ej, reml)
                fmm = _pieces(problem, theta - ei - ej, reml)
                # with the +-e_i, +-e_j evaluations: 2 evaluations per pair instead of 4
                hess[i, j] = hess[j, i] = ((fpp - plus[i] - plus[j] + 2 * f0 - minus[i] - minus[j] + fmm)
                                           / (2 * h[i] * h[j]))
        return grad, hess

    g1, H1 = at(h0)
    g2, H2 = at(h0 / 2)
    return f0, (4 * g2 - g1) / 3, (4 * H2 - H1) / 3


def _compute(fit) -> VarparCovariance:
    problem, reml = fit.problem, bool(fit.reml)
    theta = np.asarray(fit.theta, dtype=float)
    sigma = float(fit.sigma)
    n, p = problem.n, problem.p
    mdim = n - p if reml else n
    f0, grad, hess = _theta_derivatives(problem, theta, reml)
    k = theta.size
    b = f0[1]
    # d = a + b / s^2 + m log(2 pi s^2)
    H = np.empty((k + 1, k + 1))
    H[:k, :k] = hess[:, :, 0] + hess[:, :, 1] / sigma ** 2
    H[:k, k] = H[k, :k] = -2.0 * grad[:, 1] / sigma ** 3
    H[k, k] = 6.0 * b / sigma ** 4 - 2.0 * mdim / sigma ** 2
    A = 2.0 * _pseudo_inverse(H)
    U = f0[2:].reshape(p, p)
    J = np.empty((k + 1, p, p))
    J[:k] = sigma ** 2 * grad[:, 2:].reshape(k, p, p)
    J[k] = 2.0 * sigma * U
    return VarparCovariance(varpar=np.append(theta, sigma), hessian=H, vcov_varpar=A, jacobian=J,
                            vcov_beta=np.asarray(fit.vcov_array, dtype=float))


def _pseudo_inverse(H: np.ndarray) -> np.ndarray:
    """H^+ over its eigenvalues above EIGEN_TOL, warning of negative or zero ones as lmerTest does."""
    vals, vecs = np.linalg.eigh((H + H.T) / 2)
    neg = vals < -EIGEN_TOL
    zero = np.abs(vals) <= EIGEN_TOL
    if neg.any():
        warnings.warn(f"Model failed to converge with {neg.sum()} negative eigenvalue(s) of the Hessian "
                      f"of the deviance in (theta, sigma): {', '.join(f'{v:.1e}' for v in vals[neg])}",
                      ConvergenceWarning, stacklevel=4)
    if zero.any():
        warnings.warn(f"Model may not have converged with {zero.sum()} eigenvalue(s) of the Hessian of "
                      f"the deviance close to zero: {', '.join(f'{v:.1e}' for v in vals[zero])}",
                      ConvergenceWarning, stacklevel=4)
    pos = vals > EIGEN_TOL
    return (vecs[:, pos] / vals[pos]) @ vecs[:, pos].T


def get_fstat_ddf(nu: np.ndarray, tol: float = 1e-8) -> float:
    """Denominator df of an F statistic that averages q squared t statistics with df nu_m
    (lmerTest ``get_Fstat_ddf``): nu for q = 1, mean(nu) when all are equal, 2 when any nu_m <= 2,
    else 2 E / (E - q) with E = sum nu_m / (nu_m - 2)."""
    nu = np.asarray(nu, dtype=float)
    if nu.size == 1:
        return float(nu[0])
    if np.all(np.abs(np.diff(nu)) < tol):
        return float(nu.mean())
    if np.any(nu <= 2):
        return 2.0
    E = float(np.sum(nu / (nu - 2)))
    return 2 * E / (E - nu.size)
