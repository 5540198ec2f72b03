"""From rows to predict (new ones, or the fit's own) to the arrays every prediction reads: the
fixed-effects matrix X, the offset and, per chosen random-effects term, the rows' level codes and the
term's model matrix (lme4's ``predict.merMod`` / ``mkNewReTrms``).

Fits (``predict``, ``simulate``), arm's draws (``sim``'s fitted and predictive draws) and Bayesian
posteriors (``posterior_linpred``) all build their rows here, so a formula's columns, a factor's
levels and lme4's rules for new and missing levels mean the same everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from .errors import DataError
from .formula.bars import BarTerm, strip_bars
from .frames import to_pandas
from .formula.design import ModelDesign, new_fixed_matrix, new_offset, new_term_matrix, newdata_group_keys
from .validation import check_new_group_values


def selected_terms(terms, re_form) -> list[int]:
    """Indices of the terms lme4's ``re.form`` keeps: None keeps all, ``~0``/``NA`` none, a formula
    of bar terms those it names (a bar matching no term's expression falls back to its grouping
    factor's terms)."""
    if re_form is None:
        return list(range(len(terms)))
    if isinstance(re_form, float) and np.isnan(re_form):
        return []
    text = str(re_form).strip()
    if text in ("~0", "~ 0", "NA", "~ -1", "~-1", "0"):
        return []
    wanted: list[BarTerm] = strip_bars(text)
    chosen = []
    for bar in wanted:
        hits = [i for i, t in enumerate(terms)
                if t.group_name == bar.group_name and t.expr.replace(" ", "") == bar.expr.replace(" ", "")]
        if not hits:
            hits = [i for i, t in enumerate(terms) if t.group_name == bar.group_name]
        if not hits:
            raise DataError(f"re_form term ({bar.expr} | {bar.group_name}) is not in the model")
        chosen += [h for h in hits if h not in chosen]
    return chosen


@dataclass(frozen=True)
class TermRows:
    """One random-effects term on the rows to predict."""

    index: int                     # the term's position in the model
    codes: np.ndarray              # fitted level of each row, -1 for a new level or a missing group
    matrix: np.ndarray             # (n, k) the term's model matrix on these rows
    keys: np.ndarray | None        # level label of each row (None for the fit's own rows)
    missing: np.ndarray            # rows whose grouping value is missing
    n_fitted: int                  # the term's number of fitted levels

    @cached_property
    def new_levels(self) -> np.ndarray:
        """Per row, the number of its distinct new level (in sorted order of the labels; a row with a
        missing group is a new level of its own), -1 for the fitted levels."""
        out = np.full(self.codes.shape[0], -1)
        new = self.codes < 0
        if new.any():
            n = self.codes.shape[0]
            keyed = np.where(self.missing, np.char.add("\0row", np.arange(n).astype(str)), self.keys.astype(str))
            _, inv = np.unique(keyed[new], return_inverse=True)
            out[new] = inv
        return out

    def effect(self, b: np.ndarray) -> np.ndarray:
        """Z b on these rows for effects ``b`` of shape (..., J, k), one (J, k) array or a stack of
        draws: sum_c M[r, c] b[..., codes[r], c], and 0 for the rows of a new level."""
        if self.keys is None:   # the fit's own rows: every level is a fitted one
            return np.einsum("nk,...nk->...n", self.matrix, b[..., self.codes, :])
        contrib = np.einsum("nk,...nk->...n", self.matrix, b[..., np.clip(self.codes, 0, None), :])
        return np.where(self.codes >= 0, contrib, 0.0)

    def own_levels(self) -> tuple[np.ndarray, int]:
        """The rows coded on their own levels, fitted or not (sorted labels; -1 for a missing group),
        and the number of those levels: what ``simulate`` draws new effects for."""
        if self.keys is None:
            return self.codes, self.n_fitted
        _, codes = np.unique(self.keys, return_inverse=True)
        codes = np.where(self.missing, -1, codes.ravel())
        return codes, int(codes.max()) + 1 if (codes >= 0).any() else 0


@dataclass(frozen=True)
class ModelRows:
    X: np.ndarray                  # (n, p)
    offset: np.ndarray             # (n,)
    terms: list[TermRows]          # the chosen terms, in model order

    def linear_predictor(self, beta: np.ndarray, b_list: list[np.ndarray]) -> np.ndarray:
        """eta = X beta + offset + sum over the chosen terms of Z b (new levels contribute 0)."""
        eta = self.X @ beta + self.offset
        for tr in self.terms:
            eta = eta + tr.effect(b_list[tr.index])
        return eta


def model_rows(design: ModelDesign, chosen: list[int], newdata: pd.DataFrame | None = None,
               allow_new_levels: bool = False, new_level_effect: str = "random effects 0") -> ModelRows:
    """X, offset and the ``chosen`` terms' rows for ``newdata`` (the fit's own rows when None).

    New levels and missing grouping values are errors unless ``allow_new_levels`` (lme4's rule; the
    message says they would get ``new_level_effect``).  Offsets come from the formula's ``offset()``
    terms only: an ``offset=`` argument of the fit is not re-applied to new rows, as in lme4.
    """
    terms = design.terms
    if newdata is None:
        rows = [TermRows(i, terms[i].codes, terms[i].model_matrix, None, np.zeros(design.nobs, dtype=bool),
                         terms[i].n_levels) for i in chosen]
        return ModelRows(design.X, design.offset, rows)
    frame = pd.DataFrame(to_pandas(newdata, "newdata")).reset_index(drop=True)
    rows = []
    for i in chosen:
        t = terms[i]
        keys, missing = newdata_group_keys(t, frame)
        codes = pd.Index(t.levels).get_indexer(keys)
        codes[missing] = -1
        check_new_group_values(t.group_name, keys, codes, missing, allow_new_levels, new_level_effect)
        rows.append(TermRows(i, codes, new_term_matrix(t, frame), keys, missing, t.n_levels))
    return ModelRows(new_fixed_matrix(design, frame), new_offset(design, frame), rows)


def term_matrices(design: ModelDesign, indices: list[int], newdata: pd.DataFrame | None = None) -> list[np.ndarray]:
    """The small model matrices M (rows x k) of the terms ``indices`` on ``newdata`` (the fit's own
    rows when None), without their grouping factors: what a prediction that leaves those terms out
    needs for the variance they add."""
    if newdata is None:
        return [design.terms[i].model_matrix for i in indices]
    frame = pd.DataFrame(to_pandas(newdata, "newdata")).reset_index(drop=True)
    return [new_term_matrix(design.terms[i], frame) for i in indices]


__all__ = ["selected_terms", "model_rows", "term_matrices", "ModelRows", "TermRows"]
