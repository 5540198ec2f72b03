"""R's ``model.matrix``: columns, coding and names of a formula right-hand side.

For each term (in :func:`~mixedpy.formula.rterms.expand_terms` order) every factor is coded by
contrasts or by indicators for all its levels, by the rule of R's ``TermCode`` (Chambers &
Hastie 1992, p. 38): a factor gets contrasts when the term without it is empty or contained in
an earlier term, and indicators otherwise; without an intercept the first factor of the first
term holding one gets indicators.  Unordered factors use ``contr.treatment`` (columns named
``f`` + level), ordered factors ``contr.poly`` (``.L``, ``.Q``, ``.C``, ``^4`` ...), logical
variables are factors with levels FALSE, TRUE.  An interaction's columns are the products of
its variables' columns with the first variable varying fastest, named ``a:b``.

:class:`ModelMatrixSpec` holds everything needed to rebuild the matrix on new data (levels,
``scale``/``poly`` state) as plain arrays, so fits pickle.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import DataError, FormulaError
from ..validation import check_factor_levels
from .poly import poly_coefs, poly_predict
from .reval import Factor, Matrix, align_factor, evaluate
from .rterms import TermStructure, expand_terms


def contr_poly(k: int) -> np.ndarray:
    """R's ``contr.poly(k)``: orthonormal polynomial contrasts over the scores 1..k (k x (k - 1))."""
    scores = np.arange(1.0, k + 1)
    return poly_predict(scores, k - 1, poly_coefs(scores, k - 1))


def contr_poly_names(k: int) -> list[str]:
    return [".L", ".Q", ".C"][: k - 1] + [f"^{i}" for i in range(4, k)]


def term_codes(structure: TermStructure, is_factor: list[bool]) -> list[list[int]]:
    """For each term, the code of each of its variables: 1 = contrasts, 2 = indicators
    (R's ``TermCode`` in model.c plus model.matrix's no-intercept rule)."""
    codes: list[list[int]] = []
    for k, term in enumerate(structure.terms):
        row = []
        for v in term:
            rest = set(term) - {v}
            row.append(1 if not rest or any(rest <= set(t) for t in structure.terms[:k]) else 2)
        codes.append(row)
    if not structure.intercept:
        for k, term in enumerate(structure.terms):
            hit = next((i for i, v in enumerate(term) if is_factor[v]), None)
            if hit is not None:
                codes[k][hit] = 2
                break
    return codes


def _factor_block(f: Factor, code: int, label: str) -> tuple[np.ndarray, list[str]]:
    k = len(f.levels)
    check_factor_levels(label, f.levels)
    ind = np.zeros((f.codes.size, k))
    ok = f.codes >= 0
    ind[np.flatnonzero(ok), f.codes[ok]] = 1.0
    ind[~ok] = np.nan
    if code == 2:
        return ind, [f"{label}{lev}" for lev in f.levels]
    if f.ordered:
        return ind @ contr_poly(k), [f"{label}{n}" for n in contr_poly_names(k)]
    return ind[:, 1:], [f"{label}{lev}" for lev in f.levels[1:]]


def _variable_block(value, code: int, label: str) -> tuple[np.ndarray, list[str]]:
    if isinstance(value, Factor):
        return _factor_block(value, code, label)
    if isinstance(value, Matrix):
        return value.values, [f"{label}{c}" for c in value.colnames]
    return np.asarray(value, dtype=float)[:, None], [label]


def _column_label(node, label: str) -> str:
    """patsy's ``C(x)`` names its columns after ``x`` (``C(period)`` -> ``period2``)."""
    if node[0] == "call" and node[1] == ("name", "C") and len(node[2]) == 1 and node[2][0][1][0] == "name":
        return node[2][0][1][1]
    return label


@dataclass
class ModelMatrixSpec:
    """A formula right-hand side bound to the fitting data: rebuilds X on any data frame."""

    rhs: str
    structure: TermStructure
    levels: dict = field(default_factory=dict)     # variable index -> fit's factor levels
    state: dict = field(default_factory=dict)      # scale/poly state, keyed by the call's label
    column_names: list[str] = field(default_factory=list)
    column_terms: list[int] = field(default_factory=list)  # term of each column (-1: intercept)
    env: dict = field(default_factory=dict, repr=False)    # the caller's names the formula uses

    @classmethod
    def fit(cls, rhs: str, frame: pd.DataFrame, env: dict, dot_columns=None) -> tuple["ModelMatrixSpec", np.ndarray]:
        spec = cls(rhs, expand_terms(rhs, dot_columns), env=env)
        X, names, col_terms = spec._build(frame, env, fitting=True)
        spec.column_names, spec.column_terms = names, col_terms
        return spec, X

    def matrix(self, frame: pd.DataFrame, env: dict | None = None) -> np.ndarray:
        """The model matrix of new data with the fit's levels, contrasts and transform state."""
        X, _, _ = self._build(frame, self.env if env is None else env, fitting=False)
        return X

    def _build(self, frame, env, fitting: bool):
        s = self.structure
        n = len(frame)
        used = sorted({v for t in s.terms for v in t})
        values = {}
        for v in used:
            value = evaluate(s.variables[v], frame, env, self.state)
            if fitting and isinstance(value, Factor):
                self.levels[v] = list(value.levels)
            elif not fitting and isinstance(value, Factor) != (v in self.levels):
                was, now = ("a factor", "numeric") if v in self.levels else ("numeric", "a factor")
                raise DataError(f"variable {s.labels[v]!r} was {was} in the fit but is {now} in newdata")
            elif not fitting and isinstance(value, Factor):
                value = align_factor(value, self.levels[v], repr(s.labels[v]))
            values[v] = value
        is_factor = [isinstance(values.get(v), Factor) for v in range(len(s.labels))]
        codes = term_codes(s, is_factor)
        blocks = [np.ones((n, 1))] if s.intercept else []
        names = ["(Intercept)"] if s.intercept else []
        col_terms = [-1] if s.intercept else []
        for k, term in enumerate(s.terms):
            cols, cnames = np.ones((n, 1)), [""]
            for v, code in zip(term, codes[k]):
                block, bnames = _variable_block(values[v], code, _column_label(s.variables[v], s.labels[v]))
                # the first variable varies fastest: the new variable's columns are the outer loop
                cols = (cols[:, None, :] * block[:, :, None]).reshape(n, -1)
                cnames = [f"{p}:{b}" if p else b for b in bnames for p in cnames]
            blocks.append(cols)
            names += cnames
            col_terms += [k] * len(cnames)
        X = np.concatenate(blocks, axis=1) if blocks else np.zeros((n, 0))
        return X, names, col_terms


def fixed_matrix(rhs: str, frame: pd.DataFrame, env: dict, dot_columns=None):
    """``(spec, X, names)`` of a fixed-effects right-hand side; errors name the formula."""
    try:
        spec, X = ModelMatrixSpec.fit(rhs, frame, env, dot_columns)
    except FormulaError as exc:
        raise FormulaError(f"cannot build the model matrix of {rhs!r}: {exc}") from exc
    return spec, X, list(spec.column_names)
