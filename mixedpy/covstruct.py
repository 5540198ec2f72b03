"""Covariance structures of a random-effects term: the map theta_i -> T_i, and the sd/cor scale.

A term with k coefficients has Sigma_i = sigma^2 T_i T_i' (LMM; T_i T_i' for a GLMM), T_i lower
triangular (Bates et al. 2015, sec. 2.2).  lme4 1.1 has one structure, the unstructured one, with
theta_i = vech(T_i).  lme4 2.x (``Covariance.us/diag/cs/ar1``) and glmmTMB (``us``, ``diag``, ``cs``,
``homcs``, ``ar1``) add structured ones, written ``cs(0 + f | g)`` in the formula.  Each structure
here gives T_i = chol(Sigma_i / sigma^2) from its own parameters, so the engine only ever sees T_i:

=========  =====================================  ==========================================
name       Sigma_i / sigma^2                      theta_i (lower bounds)
=========  =====================================  ==========================================
us         T T', T lower triangular               vech(T) (0 on the diagonal), as lme4
diag       diag(s_1^2, ..., s_k^2)                s_1..s_k (0)
cs         D ((1 - rho) I + rho 11') D, D = diag(s) s_1..s_k (0), t
homcs      s^2 ((1 - rho) I + rho 11')            s (0), t
ar1        s^2 [rho^|i - j|]                      s (0), t
=========  =====================================  ==========================================

The s are standard deviations relative to sigma, bounded below by 0 as lme4's diagonal theta (so a
zero SD is a singular fit, as in lme4).  The correlation is reached through an unbounded t with
glmmTMB's transforms, so the optimizer needs no upper bounds:

* cs, homcs: rho = -a + (1 + a) expit(t), a = 1 / (k - 1) (glmmTMB ``cs_covstruct``), which keeps
  rho in (-1/(k-1), 1), where R = (1 - rho) I + rho 11' is positive definite; t starts at log(a),
  i.e. rho = 0 (lme4 2.x's start);
* ar1: rho = t / sqrt(1 + t^2) (glmmTMB ``ar1_covstruct``), rho in (-1, 1), t starts at 0.

Every structure also maps (theta, sigma) to its natural "sd/cor" parameters, lme4 2.x's ``par``
(SDs on sigma's scale, then rho), and back; profile, confint and bootMer work on that scale
(:mod:`mixedpy.sdcor`).  ``linear_basis`` gives Sigma = sum_r phi_r G_r when Sigma is linear in some
parameters (us, diag, homcs), which is what the Kenward-Roger adjustment needs.

Differences from glmmTMB 1.1.5: its SDs are exp(theta), so a zero SD is approached but never
reached (the fit here reaches the bound and says it is singular, as lme4); an intercept in ar1()
is an error here (glmmTMB warns "AR1 not meaningful with intercept"), as it is in cs() and homcs();
glmmTMB 1.1.5 has no homcs(), which follows later glmmTMB and lme4 2.x (one SD, one correlation).
theta's names follow lme4 2.x's ``par`` names (``g.timet1``, ``g.*`` for a common SD) with the
correlation's entry named ``g.rho_t``, since it holds the transform t, not rho.

The Cholesky factors of R are in closed form: for compound symmetry the Schur complement left
after eliminating a column is again compound-symmetric (diagonal d, off-diagonal c), so
L_jj = sqrt(d_j), L_ij = c_j / sqrt(d_j) (i > j), d_{j+1} = d_j - c_j^2 / d_j, c_{j+1} = c_j - c_j^2 / d_j,
d_1 = 1, c_1 = rho.  For AR(1), L_i1 = rho^(i-1) and L_ij = rho^(i-j) sqrt(1 - rho^2) for j >= 2.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy.special import expit, logit

from .errors import FormulaError

#: the structures parameterized by SDs and one shared correlation rho (over the levels of a factor)
CORRELATED_STRUCTURES = ("cs", "homcs", "ar1")
#: the structures a formula may name: cs(0 + f | g) etc.; us(x | g) is lme4's (x | g)
STRUCTURES = ("us", "diag") + CORRELATED_STRUCTURES


def vech_indices(k: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) of the lower triangle of a k x k matrix in column-major order."""
    rows, cols = [], []
    for c in range(k):
        for r in range(c, k):
            rows.append(r)
            cols.append(c)
    return np.asarray(rows, dtype=int), np.asarray(cols, dtype=int)


def psd_cholesky(C: np.ndarray, tol: float = 1e-12) -> np.ndarray | None:
    """Lower Cholesky factor of a positive semi-definite matrix (zero pivots give zero columns,
    so a correlation of exactly +-1 or an sd of 0 is allowed); None if C is not PSD."""
    k = C.shape[0]
    L = np.zeros_like(C)
    scale = max(float(np.max(np.abs(np.diag(C)))), 1e-300)
    for j in range(k):
        d = C[j, j] - L[j, :j] @ L[j, :j]
        if d < -tol * scale:
            return None
        if d <= tol * scale:
            if np.any(np.abs(C[j + 1:, j] - L[j + 1:, :j] @ L[j, :j]) > 1e-8 * scale):
                return None
            continue
        L[j, j] = np.sqrt(d)
        L[j + 1:, j] = (C[j + 1:, j] - L[j + 1:, :j] @ L[j, :j]) / L[j, j]
    return L


@dataclass(frozen=True)
class CovStructure:
    """Base of the structures; ``k`` is the term's number of coefficients."""

    k: int
    name: ClassVar[str] = "us"

    # -- theta, as the optimizer sees it ----------------------------------------------------
    @property
    def n_theta(self) -> int:
        raise NotImplementedError

    def lower(self) -> np.ndarray:
        raise NotImplementedError

    def start(self) -> np.ndarray:
        raise NotImplementedError

    def theta_names(self, group: str, coef_names: list[str]) -> list[str]:
        raise NotImplementedError

    def factor(self, theta: np.ndarray) -> np.ndarray:
        """T (k x k lower triangular) with T T' = Sigma / sigma^2."""
        raise NotImplementedError

    # -- the sd/cor scale ---------------------------------------------------------------------
    def kinds(self) -> list[str]:
        """"sd" or "cor" per natural parameter."""
        raise NotImplementedError

    def to_sdcor(self, theta: np.ndarray, scale: float) -> np.ndarray:
        """The natural parameters: SDs (sigma's scale) and correlations, in :meth:`kinds` order."""
        raise NotImplementedError

    def from_sdcor(self, phi: np.ndarray, scale: float) -> np.ndarray | None:
        """theta from the natural parameters; None when they give no covariance matrix."""
        raise NotImplementedError

    def sdcor_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        kinds = self.kinds()
        return (np.array([-1.0 if c == "cor" else 0.0 for c in kinds]),
                np.array([1.0 if c == "cor" else np.inf for c in kinds]))

    def linear_basis(self) -> list[np.ndarray] | None:
        """Symmetric G_r with Sigma = sum_r phi_r G_r, or None when Sigma is not linear in its
        parameters (then the Kenward-Roger adjustment, which assumes such a basis, is undefined)."""
        return None


class Unstructured(CovStructure):
    """lme4's term: theta = vech(T), column-major, diagonal bounded below by 0."""

    name: ClassVar[str] = "us"

    @property
    def n_theta(self) -> int:
        return self.k * (self.k + 1) // 2

    def lower(self) -> np.ndarray:
        r, c = vech_indices(self.k)
        return np.where(r == c, 0.0, -np.inf)

    def start(self) -> np.ndarray:
        r, c = vech_indices(self.k)
        return (r == c).astype(float)

    def theta_names(self, group, coef_names):
        r, c = vech_indices(self.k)
        n = coef_names
        return [f"{group}.{n[i]}" if i == j else f"{group}.{n[i]}.{n[j]}" for i, j in zip(r, c)]

    def factor(self, theta):
        T = np.zeros((self.k, self.k))
        r, c = vech_indices(self.k)
        T[r, c] = theta
        return T

    def kinds(self):
        r, c = vech_indices(self.k)
        return ["sd" if i == j else "cor" for i, j in zip(r, c)]

    def to_sdcor(self, theta, scale):
        T = self.factor(theta)
        C = scale * scale * (T @ T.T)
        sd = np.sqrt(np.diag(C))
        with np.errstate(invalid="ignore", divide="ignore"):
            R = C / np.outer(sd, sd)
        r, c = vech_indices(self.k)
        return np.where(r == c, sd[r], R[r, c])

    def from_sdcor(self, phi, scale):
        r, c = vech_indices(self.k)
        sd = np.zeros(self.k)
        sd[r[r == c]] = phi[r == c]
        R = np.eye(self.k)
        off = r != c
        R[r[off], c[off]] = R[c[off], r[off]] = phi[off]
        L = psd_cholesky(np.outer(sd, sd) * R)
        return None if L is None else L[r, c] / scale

    def linear_basis(self):
        out = []
        for r, c in zip(*vech_indices(self.k)):
            E = np.zeros((self.k, self.k))
            E[r, c] = E[c, r] = 1.0
            out.append(E)
        return out


class Diagonal(CovStructure):
    """Independent coefficients with their own SDs: T = diag(s)."""

    name: ClassVar[str] = "diag"

    @property
    def n_theta(self) -> int:
        return self.k

    def lower(self):
        return np.zeros(self.k)

    def start(self):
        return np.ones(self.k)

    def theta_names(self, group, coef_names):
        return [f"{group}.{n}" for n in coef_names]

    def factor(self, theta):
        return np.diag(np.asarray(theta, dtype=float))

    def kinds(self):
        return ["sd"] * self.k

    def to_sdcor(self, theta, scale):
        return scale * np.asarray(theta, dtype=float)

    def from_sdcor(self, phi, scale):
        return np.asarray(phi, dtype=float) / scale

    def linear_basis(self):
        out = []
        for j in range(self.k):
            E = np.zeros((self.k, self.k))
            E[j, j] = 1.0
            out.append(E)
        return out


class _OneCorrelation(CovStructure):
    """SDs (k of them, or one when homogeneous) and one correlation parameter t, last."""

    homogeneous: ClassVar[bool] = False

    @property
    def n_sd(self) -> int:
        return 1 if self.homogeneous else self.k

    @property
    def n_theta(self) -> int:
        return self.n_sd + 1

    def lower(self):
        return np.concatenate([np.zeros(self.n_sd), [-np.inf]])

    def start(self):
        return np.concatenate([np.ones(self.n_sd), [self.t_from_rho(0.0)]])

    def theta_names(self, group, coef_names):
        sds = ["*"] if self.homogeneous else coef_names
        # lme4 2.x names its par "g.<coef>" and "g.rho"; theta's last entry is rho's transform t
        return [f"{group}.{n}" for n in sds] + [f"{group}.rho_t"]

    def sds(self, theta) -> np.ndarray:
        theta = np.asarray(theta, dtype=float)
        return np.full(self.k, theta[0]) if self.homogeneous else theta[:self.k]

    def rho(self, theta) -> float:
        return self.rho_from_t(float(np.asarray(theta)[-1]))

    def factor(self, theta):
        return self.sds(theta)[:, None] * self.correlation_factor(self.rho(theta))

    def kinds(self):
        return ["sd"] * self.n_sd + ["cor"]

    def to_sdcor(self, theta, scale):
        theta = np.asarray(theta, dtype=float)
        return np.concatenate([scale * theta[:self.n_sd], [self.rho(theta)]])

    def from_sdcor(self, phi, scale):
        phi = np.asarray(phi, dtype=float)
        lo, hi = self.rho_bounds()
        if not lo <= phi[-1] <= hi:
            return None
        return np.concatenate([phi[:-1] / scale, [self.t_from_rho(phi[-1])]])

    def sdcor_bounds(self):
        lo, hi = self.rho_bounds()
        return (np.concatenate([np.zeros(self.n_sd), [lo]]),
                np.concatenate([np.full(self.n_sd, np.inf), [hi]]))

    # each structure: its correlation matrix's Cholesky factor and the transform rho <-> t
    def correlation_factor(self, rho: float) -> np.ndarray:
        raise NotImplementedError

    def rho_bounds(self) -> tuple[float, float]:
        raise NotImplementedError

    def rho_from_t(self, t: float) -> float:
        raise NotImplementedError

    def t_from_rho(self, rho: float) -> float:
        raise NotImplementedError


class CompoundSymmetry(_OneCorrelation):
    """glmmTMB's ``cs``: heterogeneous SDs, one common correlation."""

    name: ClassVar[str] = "cs"

    @property
    def a(self) -> float:
        return 1.0 / (self.k - 1)

    def rho_bounds(self):
        return -self.a, 1.0

    def rho_from_t(self, t):
        return float(expit(t) * (1.0 + self.a) - self.a)

    def t_from_rho(self, rho):
        with np.errstate(divide="ignore"):
            return float(logit((rho + self.a) / (1.0 + self.a)))

    def correlation_factor(self, rho):
        k = self.k
        L = np.zeros((k, k))
        d, c = 1.0, rho
        for j in range(k):
            if d <= 1e-14:   # R is singular (rho = 1 or -1/(k-1)): the remaining columns are zero
                break
            L[j, j] = np.sqrt(d)
            L[j + 1:, j] = c / L[j, j]
            d, c = d - c * c / d, c - c * c / d
        return L


class HomogeneousCompoundSymmetry(CompoundSymmetry):
    """glmmTMB's (and lme4 2.x's) ``homcs``: one SD, one correlation."""

    name: ClassVar[str] = "homcs"
    homogeneous: ClassVar[bool] = True

    def linear_basis(self):
        # Sigma = s^2 I + s^2 rho (11' - I)
        return [np.eye(self.k), np.ones((self.k, self.k)) - np.eye(self.k)]


class AR1(_OneCorrelation):
    """glmmTMB's ``ar1`` (homogeneous): one SD, correlation rho^|i - j| between levels i and j."""

    name: ClassVar[str] = "ar1"
    homogeneous: ClassVar[bool] = True

    def rho_bounds(self):
        return -1.0, 1.0

    def rho_from_t(self, t):
        # t / sqrt(1 + t^2), written so that t = +-inf gives +-1
        return float(np.sign(t) / np.sqrt(1.0 + 1.0 / (t * t))) if t != 0 else 0.0

    def t_from_rho(self, rho):
        with np.errstate(divide="ignore"):
            return float(rho / np.sqrt(1.0 - rho * rho)) if abs(rho) < 1 else float(np.sign(rho) * np.inf)

    def correlation_factor(self, rho):
        i, j = np.tril_indices(self.k)
        L = np.zeros((self.k, self.k))
        L[i, j] = rho ** (i - j) * np.where(j == 0, 1.0, np.sqrt(max(1.0 - rho * rho, 0.0)))
        return L


_CLASSES = {c.name: c for c in (Unstructured, Diagonal, CompoundSymmetry, HomogeneousCompoundSymmetry, AR1)}


def make_structure(name: str, k: int, what: str = "random-effects term") -> CovStructure:
    """The structure ``name`` for a term with k coefficients."""
    if name not in _CLASSES:
        raise FormulaError(f"unknown covariance structure {name!r} in {what}; "
                           f"choose from {', '.join(STRUCTURES)}")
    if name in CORRELATED_STRUCTURES and k < 2:
        raise FormulaError(f"{name}() in {what} needs at least two columns (levels of the factor); "
                           f"it has {k}")
    return _CLASSES[name](k)


def check_structured_terms(name: str, spec, what: str) -> None:
    """glmmTMB's checks of the term's model matrix: ar1() needs a single factor (glmmTMB: "ar1()
    expects a single, factor variable as the time component"), and ar1(), cs() and homcs() no
    intercept (glmmTMB only warns "AR1 not meaningful with intercept"; an intercept column beside
    the factor's dummies gives a structure over unlike columns, so it is an error here).

    ``spec`` is the term's :class:`mixedpy.formula.modelmatrix.ModelMatrixSpec`."""
    if name not in CORRELATED_STRUCTURES:
        return
    if spec.structure.intercept:
        raise FormulaError(f"{name}() in {what} has an intercept; {name}() is a structure over the levels "
                           f"of a factor: write {name}(0 + f | g)")
    labels = spec.structure.term_labels()
    if name == "ar1" and (len(labels) != 1 or len(spec.levels) != 1):
        raise FormulaError(f"ar1() in {what} expects a single factor as the time component "
                           f"(as glmmTMB); {' + '.join(labels) or 'nothing'} is not one: use ar1(0 + factor(t) | g)")


def require_unstructured(bars, what: str) -> None:
    """Error for a method that knows only lme4's unstructured terms (``bars``: parsed bar terms or
    model terms, anything with ``structure``, ``expr`` and ``group_name``)."""
    structured = [f"{b.structure}({b.expr} | {b.group_name})" for b in bars if b.structure != "us"]
    if structured:
        raise FormulaError(f"{what} supports only lme4's unstructured terms (x | g); "
                           f"{', '.join(structured)} has a covariance structure: fit it with lmer/glmer")
