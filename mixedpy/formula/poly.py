"""R's ``poly(x, degree)``: orthogonal polynomials with the coefficients that predict reuses.

R (stats::poly) centres x at its mean, takes the QR decomposition of the Vandermonde matrix
[1, x, ..., x^d] and keeps Z = Q diag(R): column j is x^j with its projection on the lower
powers removed, so the sign is that of the leading power.  It stores ``alpha`` (the
recurrence's centres) and ``norm2`` (1, n, ||Z_1||^2, ...), and new data are evaluated with the
three-term recurrence (Kennedy & Gentle 1980, section 7.3.3; stats::predict.poly)

    P_0 = 1,  P_1 = x - alpha_1,  P_{i+1} = (x - alpha_{i+1}) P_i - (norm2_{i+2} / norm2_{i+1}) P_{i-1},

each column divided by sqrt(norm2).  ``raw=TRUE`` gives the plain powers x, ..., x^d.
"""
from __future__ import annotations

import numpy as np

from ..errors import FormulaError


def poly_coefs(x: np.ndarray, degree: int) -> dict:
    """``attr(poly(x, degree), "coefs")``: ``alpha`` (degree,) and ``norm2`` (degree + 2,)."""
    x = np.asarray(x, dtype=float)
    if np.isnan(x).any():
        raise FormulaError("missing values are not allowed in 'poly'")
    if degree >= np.unique(x).size:
        raise FormulaError(f"'degree' ({degree}) must be less than the number of unique points in poly()")
    xbar = x.mean()
    xc = x - xbar
    V = np.vander(xc, degree + 1, increasing=True)
    Q, R = np.linalg.qr(V)
    Z = Q * np.diag(R)
    norm2 = (Z ** 2).sum(axis=0)
    alpha = ((xc[:, None] * Z ** 2).sum(axis=0) / norm2 + xbar)[:degree]
    return {"alpha": alpha, "norm2": np.concatenate([[1.0], norm2])}


def poly_predict(x: np.ndarray, degree: int, coefs: dict) -> np.ndarray:
    """The orthogonal polynomial columns (n, degree) of ``x`` from stored coefficients."""
    x = np.asarray(x, dtype=float)
    alpha, norm2 = coefs["alpha"], coefs["norm2"]
    Z = np.ones((x.size, degree + 1))
    Z[:, 1] = x - alpha[0]
    for i in range(1, degree):
        Z[:, i + 1] = (x - alpha[i]) * Z[:, i] - (norm2[i + 1] / norm2[i]) * Z[:, i - 1]
    return (Z / np.sqrt(norm2[1:]))[:, 1:]


def poly_raw(x: np.ndarray, degree: int) -> np.ndarray:
    """``poly(x, degree, raw = TRUE)``: x, x^2, ..., x^degree."""
    return np.asarray(x, dtype=float)[:, None] ** np.arange(1, degree + 1)
