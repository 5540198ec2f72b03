"""A well-conditioned response for the penalized least-squares cross-products.

lme4's profiled criterion reads sqrt(pwrss) from the last diagonal of the Cholesky factor of
[Z|X|y]'W[Z|X|y] (Bates et al. 2015, eqs. 16-18).  That diagonal is a downdate of y'Wy, so a
response with a large mean (y + 1e6) or an extreme scale loses digits by cancellation before the
factor is even formed.  The criterion is unchanged when y is replaced by

    y = X c + s * y_tilde

for any c and any s > 0: beta-hat = c + s beta_tilde, u-hat = s u_tilde and pwrss = s^2 pwrss_tilde,
while L, ldL2 and ldRX2 do not involve y at all.  c is the weighted least-squares coefficient of y
on X, so y_tilde is the weighted OLS residual; s is its weighted RMS, so y_tilde has RMS one.
Because s is the residual's own RMS, y and k y give the same y_tilde up to rounding (and -y gives
-y_tilde, whose sums of squares are the same), so the criterion without its 2 m log s term
(:meth:`mixedpy.lmm.LMMProblem.scale_free_objective`) takes the same values for both: the optimizer
sees the same function and returns the same theta.

When X has an intercept, y is first moved by one of its own values (exactly, by Sterbenz's lemma),
so y + a with a exactly representable gives a bit-identical y_tilde and hence bit-identical
criterion values: the optimizer then takes the same path and returns the same theta.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ResponseScaling:
    """y = X c + s y_tilde; maps the coefficients of y_tilde back to those of y."""

    c: np.ndarray   # (p,) weighted OLS coefficients removed from y
    s: float        # weighted RMS of the residual

    @classmethod
    def identity(cls, p: int) -> "ResponseScaling":
        return cls(np.zeros(p), 1.0)

    @classmethod
    def of(cls, X: np.ndarray, y: np.ndarray, sqrt_w: np.ndarray | None = None
           ) -> tuple["ResponseScaling", np.ndarray]:
        """(scaling, y_tilde) for response y (offset already subtracted) and weights sqrt_w**2."""
        y = np.asarray(y, dtype=float)
        p = X.shape[1]
        c = np.zeros(p)
        r = y.copy()
        const = _constant_column(X)
        if const is not None:
            # First move y by one of its own values along the constant column: y_i - y_ref is exact
            # when the two are close (Sterbenz), so for y + a (a exactly representable) r is
            # bit-for-bit the same as for y, and so is everything computed from it below.
            j, v = const
            ref = y[int(np.argmax(sqrt_w > 0))] if sqrt_w is not None else y[0]
            if np.isfinite(ref):
                c[j] = ref / v
                r = y - ref if v == 1.0 else y - X[:, j] * c[j]
        if p:
            Xw = X if sqrt_w is None else X * sqrt_w[:, None]
            rw = r if sqrt_w is None else r * sqrt_w
            d = np.linalg.lstsq(Xw, rw, rcond=None)[0]
            d[~np.isfinite(d)] = 0.0
            # Subtract column by column, largest contribution first: when r still has a large mean
            # the first step is r - d0 with r and d0 close, which is exact, so no rounding of size
            # eps * |mean| enters y_tilde (a matrix product X @ d would round there).
            size = np.abs(d) * np.abs(X).max(axis=0, initial=0.0)
            for k in np.argsort(-size, kind="stable"):
                if d[k] != 0.0:
                    r = r - X[:, k] * d[k]
            c = c + d
        rw = r if sqrt_w is None else r * sqrt_w
        rms = float(np.sqrt(np.mean(rw * rw))) if r.size else 0.0
        s = rms if np.isfinite(rms) and rms > 0.0 else 1.0
        return cls(c, s), r / s

    # ---- back to the scale of y -----------------------------------------------------------
    def beta(self, beta_tilde: np.ndarray) -> np.ndarray:
        return self.c + self.s * np.asarray(beta_tilde)

    def u(self, u_tilde: np.ndarray) -> np.ndarray:
        return self.s * np.asarray(u_tilde)

    def pwrss(self, pwrss_tilde: float) -> float:
        return self.s * self.s * pwrss_tilde


def _constant_column(X: np.ndarray) -> tuple[int, float] | None:
    """(index, value) of the first column of X with one nonzero value in every row (an intercept)."""
    if X.shape[0] == 0 or X.shape[1] == 0:
        return None
    first = X[0]
    const = np.all(X == first[None, :], axis=0) & (first != 0) & np.isfinite(first)
    if not const.any():
        return None
    j = int(np.argmax(const))
    return j, float(first[j])
