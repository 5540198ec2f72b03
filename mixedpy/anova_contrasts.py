"""The hypothesis matrices of lmerTest's single-fit F tables (types I, II and III).

One contrast matrix per model term, in the coordinates of the fixed effects, as lmerTest's
``get_contrasts_type1``, ``get_contrasts_type2_unfolded`` and ``get_contrasts_type3``
(Kuznetsova et al. 2017, section 3.3; SAS's definitions of the types):

* type I: the rows of the term's columns in the unit upper-triangular factor of X'X
  (Doolittle, X'X = L D L'; sequential sums of squares);
* type II: a term contained in no other term gets the marginal test of its coefficients; a term
  contained in others gets type I contrasts with the columns ordered
  [unrelated terms, the term, the terms containing it];
* type III: with treatment coding, L = ginv(X) X_full maps the over-parameterized (all indicator)
  coding X_full of every term to the coefficients; the columns of a term are orthogonalized against
  those of the terms containing it (highest order first).  For other contrasts (``contr.poly`` of
  ordered factors) the treatment-coded contrasts are mapped by ginv(X_treatment) X.

A term T1 is contained in T2 when T2 has all of T1's variables and more, and both involve the same
numeric variables (lmerTest's ``containment``).  The per-variable blocks are recovered from the
columns of the variable's main-effect term in X (the design keeps X, not the data frame).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .errors import FormulaError, MixedpyInfo
from .formula.modelmatrix import _column_label, contr_poly, term_codes

#: lmerTest's doolittle() sets entries below this to zero
DOOLITTLE_EPS = 1e-6


@dataclass(frozen=True)
class FixedTerms:
    """The fixed-effects terms of a design: labels, the columns of each term, variable sets."""

    X: np.ndarray
    names: list[str]
    labels: list[str]              # term labels (R's term.labels)
    col_terms: np.ndarray          # term index of each column of X, -1 for the intercept
    term_vars: list[tuple[int, ...]]
    is_factor: list[bool]          # per variable
    intercept: bool
    spec: object

    @classmethod
    def of(cls, design) -> "FixedTerms":
        spec = design.fixed_spec
        s = spec.structure
        col_terms = np.asarray(spec.column_terms)[np.asarray(design.kept_columns, dtype=int)]
        is_factor = [v in spec.levels for v in range(len(s.labels))]
        return cls(X=np.asarray(design.X, dtype=float), names=list(design.fixef_names),
                   labels=s.term_labels(), col_terms=col_terms, term_vars=list(s.terms),
                   is_factor=is_factor, intercept=bool(s.intercept), spec=spec)

    def columns(self, term: int) -> np.ndarray:
        return np.flatnonzero(self.col_terms == term)

    def contained_in(self, term: int) -> list[int]:
        """Terms that contain ``term`` (lmerTest's ``containment``)."""
        vs = set(self.term_vars[term])
        nums = {v for v in vs if not self.is_factor[v]}
        out = []
        for j, other in enumerate(self.term_vars):
            o = set(other)
            if vs <= o and o - vs and nums == {v for v in o if not self.is_factor[v]}:
                out.append(j)
        return out


def doolittle_upper(XtX: np.ndarray) -> np.ndarray:
    """t(L) of lmerTest's ``doolittle(X'X)``: the unit upper-triangular U with X'X = U'DU, entries
    below 1e-6 in absolute value set to zero (and rows of zero pivots zero), as lmerTest."""
    p = XtX.shape[0]
    L = np.eye(p)
    U = np.zeros((p, p))
    for i in range(p):   # p is the number of fixed effects: small
        U[i, :] = XtX[i, :] - L[i, :i] @ U[:i, :]
        if i + 1 < p:
            col = XtX[i + 1:, i] - L[i + 1:, :i] @ U[:i, i]
            L[i + 1:, i] = 0.0 if abs(U[i, i]) < DOOLITTLE_EPS else col / U[i, i]
    L[np.abs(L) < DOOLITTLE_EPS] = 0.0
    return L.T


def type1(ft: FixedTerms) -> dict[str, np.ndarray]:
    p = ft.X.shape[1]
    if p == 0:
        return {}
    if p == 1 and ft.intercept:
        return {lab: np.zeros((0, 1)) for lab in ft.labels}
    Lt = np.eye(1) if p == 1 else doolittle_upper(ft.X.T @ ft.X)
    return {lab: Lt[ft.columns(t)] for t, lab in enumerate(ft.labels)}


def _few_terms(ft: FixedTerms) -> bool:
    return ft.X.shape[1] <= 1 or len(ft.labels) <= 1


def marginal(ft: FixedTerms, term: int) -> np.ndarray:
    return np.eye(ft.X.shape[1])[ft.columns(term)]


def type2(ft: FixedTerms) -> dict[str, np.ndarray]:
    """lmerTest's ``get_contrasts_type2_unfolded``."""
    if _few_terms(ft):
        return type1(ft)
    out = {}
    p = ft.X.shape[1]
    for t, lab in enumerate(ft.labels):
        containers = ft.contained_in(t)
        if not containers:
            out[lab] = marginal(ft, t)
            continue
        cols = np.concatenate([ft.columns(j) for j in [t] + containers])
        rest = np.setdiff1d(np.arange(p), cols)
        order = np.concatenate([rest, cols])
        Lc = doolittle_upper(ft.X[:, order].T @ ft.X[:, order])
        rows = Lc[ft.col_terms[order] == t]
        back = np.empty(p, dtype=int)
        back[order] = np.arange(p)
        out[lab] = rows[:, back]
    return out


def zapsmall(x: np.ndarray, digits: int = 7) -> np.ndarray:
    """R's zapsmall: round to ``digits`` significant digits of the largest absolute entry."""
    x = np.asarray(x, dtype=float)
    mx = np.max(np.abs(x)) if x.size else 0.0
    if not mx > 0:
        return np.round(x, digits)
    return np.round(x, max(0, digits - int(np.ceil(np.log10(mx)))))


class _Blocks:
    """Per-variable value blocks rebuilt from the main-effect columns of X."""

    def __init__(self, ft: FixedTerms):
        self.ft = ft
        self.s = ft.spec.structure
        self.single = {tv[0]: t for t, tv in enumerate(ft.term_vars) if len(tv) == 1}
        self.codes = term_codes(self.s, ft.is_factor)

    def label(self, v: int) -> str:
        return _column_label(self.s.variables[v], self.s.labels[v])

    def _main(self, v: int) -> tuple[np.ndarray, int]:
        t = self.single.get(v)
        if t is None:
            raise FormulaError(f"type III tests need the main effect of {self.s.labels[v]!r} in the model "
                               "(the variable is rebuilt from its own columns of X)")
        cols = self.ft.columns(t)
        expected = len(self.ft.spec.levels[v]) - (self.codes[t][0] == 1) if self.ft.is_factor[v] else len(cols)
        if len(cols) != expected:
            raise FormulaError(f"type III tests need every column of {self.s.labels[v]!r}; some were dropped "
                               "as rank deficient")
        return self.ft.X[:, cols], self.codes[t][0]

    def full(self, v: int) -> tuple[np.ndarray, list[str]]:
        """All-indicator block of a factor (or the value of a numeric variable) with R's names."""
        Xv, code = self._main(v)
        if not self.ft.is_factor[v]:
            return Xv, [self.ft.names[c] for c in self.ft.columns(self.single[v])]
        levels = self.ft.spec.levels[v]
        names = [f"{self.label(v)}{lev}" for lev in levels]
        if code == 2:
            return Xv, names
        if self.poly(v):
            k = len(levels)
            basis = np.column_stack([np.ones(k), contr_poly(k)])
            return np.column_stack([np.ones(len(Xv)), Xv]) @ np.linalg.inv(basis), names
        return np.column_stack([1.0 - Xv.sum(axis=1), Xv]), names

    def poly(self, v: int) -> bool:
        cols = self.ft.columns(self.single[v])
        return bool(len(cols)) and self.ft.names[cols[0]].endswith(".L")

    def term_matrix(self, t: int, codes: list[int] | None) -> tuple[np.ndarray, list[str]]:
        """Columns of term t with full indicators (codes None) or treatment coding by ``codes``."""
        n = self.ft.X.shape[0]
        cols, names = np.ones((n, 1)), [""]
        for i, v in enumerate(self.ft.term_vars[t]):
            block, bnames = self.full(v)
            if codes is not None and self.ft.is_factor[v] and codes[i] == 1:
                block, bnames = block[:, 1:], bnames[1:]
            cols = (cols[:, None, :] * block[:, :, None]).reshape(n, -1)
            names = [f"{p}:{b}" if p else b for b in bnames for p in names]
        return cols, names


def type3(ft: FixedTerms) -> dict[str, np.ndarray]:
    """lmerTest's ``get_contrasts_type3`` / ``extract_contrasts_type3``."""
    if _few_terms(ft):
        return type1(ft)
    bl = _Blocks(ft)
    n = ft.X.shape[0]
    lead = [np.ones((n, 1))] if ft.intercept else []
    lead_names = ["(Intercept)"] if ft.intercept else []
    # the full-rank treatment-coded X and the all-indicator X of every term
    treat = [bl.term_matrix(t, bl.codes[t]) for t in range(len(ft.labels))]
    full = [bl.term_matrix(t, None) for t in range(len(ft.labels))]
    Xt = np.column_stack(lead + [m for m, _ in treat])
    xt_names = lead_names + [nm for _, names in treat for nm in names]
    xt_terms = np.concatenate([[-1] * len(lead)] + [[t] * len(names) for t, (_, names) in enumerate(treat)])
    rdX = np.column_stack(lead + [m for m, _ in full])
    rd_names = lead_names + [nm for _, names in full for nm in names]
    empty = [nm for nm, c in zip(rd_names, rdX.T) if not np.any(c)]
    if empty:
        warnings.warn(f"Missing cells for: {', '.join(empty)}. Interpret type III hypotheses with care.",
                      MixedpyInfo, stacklevel=3)
    L = zapsmall(np.linalg.lstsq(Xt, rdX, rcond=None)[0].T)       # rows: rdX columns, cols: Xt columns
    order = sorted(range(len(ft.labels)), key=lambda t: -len(ft.term_vars[t]))   # stable, as R's order
    for t in order:
        containers = ft.contained_in(t)
        if containers:
            own = np.flatnonzero(xt_terms == t)
            other = np.flatnonzero(np.isin(xt_terms, containers))
            coef = np.linalg.lstsq(L[:, other], L[:, own], rcond=None)[0]
            L[:, own] = zapsmall(L[:, own] - L[:, other] @ coef)
    pos = {nm: i for i, nm in enumerate(rd_names)}
    missing = [nm for nm in xt_names if nm not in pos]
    if missing:
        raise FormulaError(f"cannot match the type III contrasts to the coefficients {missing}")
    L = L[[pos[nm] for nm in xt_names]]                         # square: Xt's coefficients
    if not np.array_equal(Xt, ft.X) or xt_names != ft.names:
        # another coding than contr.treatment (or dropped columns): map to the fitted coefficients
        L_map = zapsmall(np.linalg.lstsq(Xt, ft.X, rcond=None)[0])
    else:
        L_map = None
    out = {}
    for t, lab in enumerate(ft.labels):
        Lt = L[:, xt_terms == t].T
        Lt = Lt[np.abs(Lt).sum(axis=1) > 1e-8]
        out[lab] = Lt if L_map is None else Lt @ L_map
    return out


def hypotheses(design, type: int) -> dict[str, np.ndarray]:
    """The contrast matrix of each term for an F table of ``type`` 1, 2 or 3."""
    ft = FixedTerms.of(design)
    fn = {1: type1, 2: type2, 3: type3}.get(_type_number(type))
    return fn(ft)


def _type_number(type) -> int:
    names = {"1": 1, "2": 2, "3": 3, "I": 1, "II": 2, "III": 3}
    key = str(type).strip()
    if key not in names:
        raise ValueError(f"type must be 1, 2 or 3 (or 'I', 'II', 'III'), got {type!r}")
    return names[key]
