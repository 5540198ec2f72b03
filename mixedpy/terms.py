"""A random-effects term: integer level codes, a small model matrix and its theta -> Lambda map.

For term i with k_i coefficients and J_i levels, lme4 writes Z_i as the row-wise
Kronecker product of the level indicators and the n x k_i model matrix M_i, with
columns ordered level-major, and Lambda_i = I_{J_i} (x) T_i where T_i is lower
triangular and theta_i = vech(T_i) in column-major order (Bates et al. 2015,
section 2.2; MixedModels.jl ``ReMat``).  We keep only ``codes`` and ``M_i``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .linalg.blocked import TermBlock


def vech_indices(k: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) of the lower triangle of a k x k matrix in column-major order."""
    rows, cols = [], []
    for c in range(k):
        for r in range(c, k):
            rows.append(r)
            cols.append(c)
    return np.asarray(rows, dtype=int), np.asarray(cols, dtype=int)


@dataclass(frozen=True, eq=False, kw_only=True)
class RandomEffectsTerm(TermBlock):
    """The one random-effects term class: the kernel's :class:`~mixedpy.linalg.blocked.TermBlock`
    (codes (n,), model matrix (n, k), J levels) with its names, levels and formula."""

    codes: np.ndarray             # (n,) level index of each observation
    model_matrix: np.ndarray      # (n, k)
    n_levels: int = field(init=False, default=0)   # len(levels), set from them
    group_name: str               # e.g. "Subject" or "cask:batch"
    group_columns: tuple[str, ...]
    expr: str                     # R formula right-hand side of the term's model matrix
    levels: list[str]             # level labels, in code order
    coef_names: list[str]
    design_info: object = field(repr=False, default=None)
    group_dtypes: tuple = field(repr=False, default=())  # training dtypes of group_columns (newdata matching)

    def __post_init__(self):
        object.__setattr__(self, "n_levels", len(self.levels))

    @property
    def n_coefs(self) -> int:
        return self.width

    @property
    def n_theta(self) -> int:
        return self.k * (self.k + 1) // 2

    def theta_lower(self) -> np.ndarray:
        r, c = vech_indices(self.k)
        return np.where(r == c, 0.0, -np.inf)

    def theta_start(self) -> np.ndarray:
        r, c = vech_indices(self.k)
        return (r == c).astype(float)

    def theta_names(self) -> list[str]:
        r, c = vech_indices(self.k)
        g, n = self.group_name, self.coef_names
        return [f"{g}.{n[i]}" if i == j else f"{g}.{n[i]}.{n[j]}" for i, j in zip(r, c)]

    def relative_factor(self, theta_i: np.ndarray) -> np.ndarray:
        """T_i (k x k lower triangular) from theta_i."""
        T = np.zeros((self.k, self.k))
        r, c = vech_indices(self.k)
        T[r, c] = theta_i
        return T

    def linear_predictor(self, b: np.ndarray) -> np.ndarray:
        """Z_i b_i for b_i of shape (J, k): sum_c M[r, c] * b[codes[r], c]."""
        return np.einsum("nk,nk->n", self.model_matrix, b[self.codes])


def order_terms(terms: list[RandomEffectsTerm]) -> list[RandomEffectsTerm]:
    """lme4's term order: when a later term has more levels than an earlier one, sort by
    decreasing level count by reversing a stable ascending sort (so ties are reversed)."""
    nl = np.array([t.n_levels for t in terms])
    if len(nl) > 1 and np.any(np.diff(nl) > 0):
        order = np.argsort(nl, kind="stable")[::-1]
        return [terms[i] for i in order]
    return list(terms)


def split_theta(terms: list[RandomEffectsTerm], theta: np.ndarray) -> list[np.ndarray]:
    out, start = [], 0
    for t in terms:
        out.append(np.asarray(theta[start:start + t.n_theta], dtype=float))
        start += t.n_theta
    return out


def relative_factors(terms: list[RandomEffectsTerm], theta: np.ndarray) -> list[np.ndarray]:
    """T_i for every term from the stacked theta."""
    return [t.relative_factor(th) for t, th in zip(terms, split_theta(terms, theta))]


def b_from_u(terms: list[RandomEffectsTerm], T_list: list[np.ndarray], u: np.ndarray) -> list[np.ndarray]:
    """b = Lambda u, split per term into (J_i, k_i) arrays (level-major): b_ij = T_i u_ij."""
    out, start = [], 0
    for t, T in zip(terms, T_list):
        out.append(u[start:start + t.n_coefs].reshape(t.n_levels, t.k) @ T.T)
        start += t.n_coefs
    return out


def random_part(terms: list[RandomEffectsTerm], b_list: list[np.ndarray]) -> np.ndarray:
    """Z b, summed over terms."""
    return sum(t.linear_predictor(b) for t, b in zip(terms, b_list))
