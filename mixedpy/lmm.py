"""The linear mixed model as a function of theta: lme4's profiled deviance.

With ``L``, ``R_X`` and ``pwrss`` from :mod:`mixedpy.linalg.blocked`,

    ML:    d(theta)   = ldL2 - ldW + n [1 + log(2 pi pwrss / n)]
    REML:  d_R(theta) = ldL2 + ldRX2 - ldW + (n - p) [1 + log(2 pi pwrss / (n - p))]

with beta and sigma profiled out (Bates et al. 2015, eqs. 34 and 41;
``../shared/design/ALGORITHMS.md`` section 1.2).  sigma-hat is sqrt(pwrss / n) for ML
and sqrt(pwrss / (n - p)) for REML.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .linalg.blocked import BlockedFactor, CrossProducts, NotPositiveDefinite
from .terms import RandomEffectsTerm, b_from_u, relative_factors


@dataclass(frozen=True)
class Profiled:
    """Everything lme4's ``devcomp`` keeps for one theta."""

    theta: np.ndarray
    factor: BlockedFactor
    beta: np.ndarray
    u: np.ndarray
    ldL2: float
    ldRX2: float
    pwrss: float
    wrss: float
    ussq: float
    deviance_ml: float
    reml_crit: float
    sigma_ml: float
    sigma_reml: float


class LMMProblem:
    """Arrays of one LMM and its objective; knows nothing of formulas or DataFrames.

    Parameters
    ----------
    terms : random-effects terms in lme4's order
    X : (n, p) fixed-effects matrix
    y : (n,) response
    weights : (n,) prior weights or None
    offset : (n,) offset or None
    """

    def __init__(self, terms: list[RandomEffectsTerm], X: np.ndarray, y: np.ndarray,
                 weights: np.ndarray | None = None, offset: np.ndarray | None = None):
        self.terms = terms
        self.X = np.ascontiguousarray(X, dtype=float)
        self.y = np.asarray(y, dtype=float)
        self.n, self.p = self.X.shape
        self.weights = None if weights is None else np.asarray(weights, dtype=float)
        self.offset = np.zeros(self.n) if offset is None else np.asarray(offset, dtype=float)
        self.ldW = 0.0 if self.weights is None else float(np.log(self.weights[self.weights > 0]).sum())
        sqrt_w = None if self.weights is None else np.sqrt(self.weights)
        self.blocks = list(terms)   # RandomEffectsTerm is the kernel's TermBlock
        # stabilize: the cross-products use the scaled weighted-OLS residual of y - offset, so a
        # large mean or extreme scale of y loses no digits (mixedpy.linalg.response)
        self.cross = CrossProducts(self.blocks, self.X, self.y - self.offset, sqrt_w,
                                   names=[t.group_name for t in terms], stabilize=True)
        self.lower = np.concatenate([t.theta_lower() for t in terms])
        self.n_evals = 0

    # ------------------------------------------------------------------------------
    def relative_factors(self, theta: np.ndarray) -> list[np.ndarray]:
        return relative_factors(self.terms, theta)

    def objective(self, theta: np.ndarray, reml: bool) -> float:
        """The profiled deviance (ML) or REML criterion at theta; +inf where L does not exist."""
        return self.scale_free_objective(theta, reml) + self.scale_offset(reml)

    def scale_free_objective(self, theta: np.ndarray, reml: bool) -> float:
        """The criterion of the scaled response y_tilde (mixedpy.linalg.response): the criterion of y
        less :meth:`scale_offset`.  The optimizer minimizes this one, so that y and k y present it
        with the same values (and y + a with bit-identical ones) and it returns the same theta."""
        self.n_evals += 1
        try:
            # scratch: the factor's work arrays are reused by the next evaluation; solves=False:
            # only its three scalars are read here, so blocks used only through Gram products
            # are not formed
            f = self.cross.factor(self.relative_factors(np.asarray(theta, dtype=float)), scratch=True,
                                  solves=False)
        except NotPositiveDefinite:
            return np.inf
        return self._criterion(f.ldL2, f.ldRX2, f.pwrss_tilde, reml)

    def scale_offset(self, reml: bool) -> float:
        """criterion(y) - criterion(y_tilde) = m log s^2, m = n - p (REML) or n (ML): pwrss = s^2
        pwrss_tilde enters the criterion only through m log(pwrss)."""
        m = self.n - self.p if reml else self.n
        return m * 2.0 * np.log(self.cross.response.s)

    def _criterion(self, ldL2: float, ldRX2: float, pwrss: float, reml: bool) -> float:
        if pwrss <= 0:
            return -np.inf
        if reml:
            nmp = self.n - self.p
            return ldL2 + ldRX2 - self.ldW + nmp * (1.0 + np.log(2.0 * np.pi * pwrss / nmp))
        return ldL2 - self.ldW + self.n * (1.0 + np.log(2.0 * np.pi * pwrss / self.n))

    def profile(self, theta: np.ndarray) -> Profiled:
        """Factor at theta and solve for beta-hat and u-hat (lme4 ``devcomp``)."""
        theta = np.asarray(theta, dtype=float)
        f = self.cross.factor(self.relative_factors(theta))
        u, beta = f.coefficients()
        ussq = float(u @ u)
        n, p = self.n, self.p
        return Profiled(theta=theta, factor=f, beta=beta, u=u, ldL2=f.ldL2, ldRX2=f.ldRX2,
                        pwrss=f.pwrss, wrss=f.pwrss - ussq, ussq=ussq,
                        deviance_ml=self._criterion(f.ldL2, f.ldRX2, f.pwrss, False),
                        reml_crit=self._criterion(f.ldL2, f.ldRX2, f.pwrss, True),
                        sigma_ml=np.sqrt(f.pwrss / n), sigma_reml=np.sqrt(f.pwrss / (n - p)))

    # ------------------------------------------------------------------------------
    def b_from_u(self, theta: np.ndarray, u: np.ndarray) -> list[np.ndarray]:
        """b = Lambda u, per term as (J_i, k_i) arrays."""
        return b_from_u(self.terms, self.relative_factors(theta), u)

    def start_theta(self) -> np.ndarray:
        """lme4's start: 1 on diagonals, 0 off them; for all-scalar intercept terms, one per factor,
        theta_f = sqrt(v_f / v_e) from the variance of the group means (ALGORITHMS.md 1.3)."""
        start = np.concatenate([t.theta_start() for t in self.terms])
        groups = [t.group_name for t in self.terms]
        simple = all(t.k == 1 and t.coef_names == ["(Intercept)"] for t in self.terms)
        if not simple or len(set(groups)) != len(groups):
            return start
        # The ratio of variances is invariant to y -> a + b y.  Moving y by one of its own values is
        # exact (Sterbenz), keeps the group sums from cancelling when y has a large mean, and makes
        # the start bit-identical for y and y + a (then the optimizer takes the same path).
        y = self.y - self.y[0] if self.n and np.isfinite(self.y[0]) else self.y
        v_f = []
        for t in self.terms:
            sums = np.bincount(t.codes, weights=y, minlength=t.n_levels)
            counts = np.bincount(t.codes, minlength=t.n_levels)
            v_f.append(np.var((sums / counts)[t.codes], ddof=1))
        v_e = np.var(y, ddof=1) - sum(v_f)
        if v_e > 0:
            return np.sqrt(np.asarray(v_f) / v_e)
        return start
