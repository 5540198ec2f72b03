"""A random-effects term: integer level codes, a small model matrix and its theta -> Lambda map.

For term i with k_i coefficients and J_i levels, lme4 writes Z_i as the row-wise
Kronecker product of the level indicators and the n x k_i model matrix M_i, with
columns ordered level-major, and Lambda_i = I_{J_i} (x) T_i where T_i is lower
triangular and theta_i = vech(T_i) in column-major order (Bates et al. 2015,
section 2.2; MixedModels.jl ``ReMat``).  We keep only ``codes`` and ``M_i``.  A structured term
(``cs(0 + f | g)``, ``ar1(...)``, ``diag(...)``: :mod:`mixedpy.covstruct`) has its own theta_i and
map theta_i -> T_i; the engine only sees T_i.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .covstruct import CovStructure, check_structured_terms, make_structure
from .linalg.blocked import TermBlock


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
    structure: str = "us"         # covariance structure: us (lme4's), diag, cs, homcs, ar1
    covstruct: CovStructure = field(init=False, repr=False, default=None)

    def __post_init__(self):
        object.__setattr__(self, "n_levels", len(self.levels))
        what = f"random-effects term {self.structure}({self.expr} | {self.group_name})"
        if self.design_info is not None:
            check_structured_terms(self.structure, self.design_info, what)
        object.__setattr__(self, "covstruct", make_structure(self.structure, self.k, what))

    @property
    def n_coefs(self) -> int:
        return self.width

    @property
    def n_theta(self) -> int:
        return self.covstruct.n_theta

    @property
    def is_structured(self) -> bool:
        """True unless the term is lme4's unstructured one (theta = vech(T))."""
        return self.covstruct.name != "us"

    def theta_lower(self) -> np.ndarray:
        return self.covstruct.lower()

    def theta_start(self) -> np.ndarray:
        return self.covstruct.start()

    def theta_names(self) -> list[str]:
        return self.covstruct.theta_names(self.group_name, self.coef_names)

    def relative_factor(self, theta_i: np.ndarray) -> np.ndarray:
        """T_i (k x k lower triangular, T_i T_i' = Sigma_i / sigma^2) from theta_i."""
        return self.covstruct.factor(theta_i)

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
