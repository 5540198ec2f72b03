"""The posterior mode and curvature that start the LMM sampler, made insensitive to rounding.

:func:`mixedpy.bayes.sampler.find_mode` runs BFGS with finite-difference gradients, so a change of
the log density at the level of its last bit (the data's sums taken in another order: another row
order, or a Dask frame's partitions) moves its gradients by ~1e-5 and hence its path, its mode
(to its tolerance) and its inverse-Hessian estimate, and emcee's walkers start elsewhere.  Here
the mode is polished by Newton steps on a central-difference gradient and Hessian taken with
steps of a tenth of each parameter's posterior SD, rounded to a power of two, so both are
identical for any two nearly equal log densities: the steps converge to the same point up to
(noise / step) / curvature ~ 1e-12 SD, and the Hessian there, whose noise is relative ~1e-11,
gives the proposal covariance.  An ensemble sampler amplifies any difference of its walkers
(differential-evolution moves combine them: a 1e-11 difference grows by ~10% a step), so the mode
is then rounded to a grid of 2^-20 of each SD and the covariance to 20 significant bits of its
SDs and 2^-20 of its correlations: for two such log densities both are bitwise the same except
with probability ~1e-5.  The chains then start from the same walkers and take the same
accept/reject decisions (their log densities differ by ~1e-13), so the draws of ``bayes_lmer`` on
the same rows in any order, in memory or partitioned, agree to rounding (~1e-10).

All the evaluation points of one gradient and Hessian (1 + 2d + 2d(d - 1) for d parameters) go
to the vectorised log density in one call.
"""
from __future__ import annotations

import numpy as np

#: Newton steps with steps from the first estimate of the SDs, then with the rounded ones
FIRST_STEPS, FINAL_STEPS = 2, 3
#: finite-difference step as a fraction of each parameter's posterior SD
STEP_FRACTION = 0.1
#: bits of the grids the mode and covariance are rounded to
GRID_BITS = 20
#: a Newton step is kept unless it lowers the log density by more than this (a tie here would be
#: decided by rounding; a converged step changes it by ~1e-13)
DESCENT_TOLERANCE = 1e-6


def _fd_points(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """x, x +- h_i e_i, and x + (+-h_i e_i) + (+-h_j e_j) for i < j."""
    d = x.size
    E = np.diag(h)
    pts = [x[None], x + E, x - E]
    i, j = np.triu_indices(d, 1)
    for si, sj in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
        pts.append(x + si * E[i] + sj * E[j])
    return np.vstack(pts)


def gradient_hessian(log_prob, x: np.ndarray, h: np.ndarray):
    """(f(x), central-difference gradient, Hessian) of the vectorised ``log_prob`` at x with steps h."""
    d = x.size
    f = np.asarray(log_prob(_fd_points(x, h)), dtype=float)
    f0, fp, fm = f[0], f[1:1 + d], f[1 + d:1 + 2 * d]
    i, j = np.triu_indices(d, 1)
    m = i.size
    fpp, fpm, fmp, fmm = (f[1 + 2 * d + k * m:1 + 2 * d + (k + 1) * m] for k in range(4))
    g = (fp - fm) / (2 * h)
    H = np.diag((fp - 2 * f0 + fm) / h ** 2)
    H[i, j] = H[j, i] = (fpp - fpm - fmp + fmm) / (4 * h[i] * h[j])
    return f0, g, H


def _sd(H: np.ndarray) -> np.ndarray | None:
    """Posterior SDs from the Hessian of the log density, or None where it is not negative definite."""
    try:
        L = np.linalg.cholesky(-H)
    except np.linalg.LinAlgError:
        return None
    Linv = np.linalg.inv(L)
    return np.sqrt(np.einsum("ij,ij->j", Linv, Linv))


def _power_of_two(a: np.ndarray) -> np.ndarray:
    return np.exp2(np.round(np.log2(a)))


def _round_to(a: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """a rounded to multiples of ``unit`` (powers of two, so the result is exact)."""
    return np.round(a / unit) * unit


def rounded_start(x: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x on a grid of 2^-GRID_BITS of each SD (itself a power of two) and cov from its SDs rounded to
    GRID_BITS significant bits and its correlations to multiples of 2^-GRID_BITS."""
    sd = np.sqrt(np.diag(cov))
    x = _round_to(x, _power_of_two(sd) * 2.0 ** -GRID_BITS)
    m, e = np.frexp(sd)
    sd_r = np.ldexp(np.round(np.ldexp(m, GRID_BITS)), e - GRID_BITS)
    corr = _round_to(np.clip(cov / np.outer(sd, sd), -1.0, 1.0), np.full(cov.shape, 2.0 ** -GRID_BITS))
    np.fill_diagonal(corr, 1.0)
    return x, corr * np.outer(sd_r, sd_r)


def _newton(log_prob, x, h, steps):
    """Up to ``steps`` Newton steps; returns x and the Hessian at it (None if not negative definite)."""
    f, g, H = gradient_hessian(log_prob, x, h)
    for _ in range(steps):
        if _sd(H) is None or not np.isfinite(f):
            return x, None
        x_new = x - np.linalg.solve(H, g)
        f_new, g_new, H_new = gradient_hessian(log_prob, x_new, h)
        if not (np.isfinite(f_new) and f_new >= f - DESCENT_TOLERANCE):
            break
        x, f, g, H = x_new, f_new, g_new, H_new
    return x, H if _sd(H) is not None else None


def polish_mode(log_prob, x: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mode and covariance (inverse negative Hessian) of ``log_prob`` from BFGS's ``x`` and
    ``cov`` (:func:`~mixedpy.bayes.sampler.find_mode`), as the module docstring says; BFGS's own
    where the log density is not concave enough near its mode for Newton steps."""
    x = np.asarray(x, dtype=float)
    h0 = STEP_FRACTION * np.sqrt(np.clip(np.diag(cov), 1e-16, 1.0))
    x1, H = _newton(log_prob, x, h0, FIRST_STEPS)
    sd = None if H is None else _sd(H)
    if sd is None or not np.all(np.isfinite(sd) & (sd > 0)):
        return x, cov
    h = _power_of_two(STEP_FRACTION * sd)
    x2, H = _newton(log_prob, x1, h, FINAL_STEPS)
    if H is None:
        return x, cov
    w, V = np.linalg.eigh(np.linalg.inv(-H))
    # as find_mode: no direction wider than 2 (unconstrained scale) or flatter than 1e-6 of the widest
    cov2 = (V * np.clip(w, 1e-6 * w.max(), 4.0)) @ V.T
    return rounded_start(x2, 0.5 * (cov2 + cov2.T))
