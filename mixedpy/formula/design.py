"""Build the arrays of a mixed model from a parsed formula and a DataFrame.

This is lme4's ``lFormula``/``mkReTrms`` stage: the response, the fixed-effects
matrix X (R's ``model.matrix``, :mod:`.modelmatrix`, with lme4's column names),
and one :class:`~mixedpy.terms.RandomEffectsTerm` per bar term (integer level
codes plus a small model matrix; never a dense Z).  Rows with a missing value in
any used column are dropped and counted, as ``na.action = na.omit`` does.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import validation
from ..errors import DataError, FormulaError
from ..terms import RandomEffectsTerm, order_terms
from ..validation import drop_rank_deficient, warn_on_scales
from .bars import ParsedFormula, parse_formula
from .modelmatrix import ModelMatrixSpec, fixed_matrix
from .namespace import FormulaEnv, used_env
from .reval import Evaluator, sorted_levels
from .rsyntax import all_names, parse
from .rterms import expand_dot


def formula_variables(expr: str) -> set[str]:
    """Names an R formula expression reads (R's ``all.vars``; function names excluded)."""
    return set(all_names(parse(expr)))


def _check_columns(names: set[str], data: pd.DataFrame, env: dict, formula: str) -> None:
    """Every name must be a column, a data value of the caller or an R constant: a missing column
    called like a function (``id``, ``sum``, ``lambda``) is still a missing column, as in R."""
    missing = _unresolved(names - {"."}, data, env)
    if missing:
        raise FormulaError(
            f"unknown column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} in formula "
            f"{formula!r}; the data has columns {', '.join(map(str, data.columns))}")


def _unresolved(names: set[str], data: pd.DataFrame, env: dict) -> list[str]:
    """The names that are neither a column of ``data``, a data value in ``env`` nor an R constant."""
    ev = Evaluator(data.iloc[:0], env, {})
    missing = []
    for name in sorted(names):
        try:
            ev.name(name)
        except FormulaError:
            missing.append(name)
    return missing


def _eval_expr(expr: str, data: pd.DataFrame, env: dict):
    """The value of an R expression (response, offset) on ``data``, with ``env``'s names."""
    try:
        return Evaluator(data, env, {}).eval(parse(expr))
    except FormulaError as exc:
        raise FormulaError(f"cannot evaluate {expr!r}: {exc}") from exc


def _response_parts(lhs: str) -> list[str]:
    m = re.match(r"^cbind\((.*)\)$", lhs.strip())
    if not m:
        return [lhs]
    inner = m.group(1)
    depth, cut = 0, None
    for i, ch in enumerate(inner):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            cut = i
            break
    if cut is None:
        raise FormulaError(f"cbind() response {lhs!r} needs two arguments: cbind(successes, failures)")
    return [inner[:cut].strip(), inner[cut + 1:].strip()]


def level_codes(values: pd.Series, levels) -> np.ndarray:
    """int64 position of each value among ``levels`` (-1 for a missing value or one not among them).
    A Categorical is recoded through its categories (no pass over the values' labels), and never by
    ``pd.Categorical(values, categories=levels)``, which pandas deprecates when the values' own
    categories include ones outside ``levels`` (a subset of a bundled dataset's rows)."""
    index = pd.Index(levels)
    if isinstance(values.dtype, pd.CategoricalDtype):
        pos = np.append(index.get_indexer(values.cat.categories), -1)   # code -1 (missing) stays -1
        return pos[values.cat.codes.to_numpy()].astype(np.int64)
    return index.get_indexer(values).astype(np.int64)


def grouping_codes(data: pd.DataFrame, group: tuple[str, ...]) -> tuple[np.ndarray, list[str]]:
    """Integer codes and string labels of the factor ``a:b:...`` (first factor slowest)."""
    per_factor = []
    for g in group:
        levels = sorted_levels(data[g])
        codes = level_codes(data[g], levels)
        per_factor.append((codes, [str(v) for v in levels]))
    if len(per_factor) == 1:
        codes, labels = per_factor[0]
        return codes, labels
    combined = np.zeros(len(data), dtype=np.int64)
    for codes, labels in per_factor:
        combined = combined * len(labels) + codes
    used, new_codes = np.unique(combined, return_inverse=True)
    # decode each used combination into its factors' labels, all combinations at once
    parts, rest = [], used
    for _, lab in reversed(per_factor):
        parts.append(pd.Series(np.asarray(lab, dtype=object)[rest % len(lab)]))
        rest = rest // len(lab)
    parts.reverse()
    labels = parts[0].str.cat(parts[1:], sep=":").tolist()
    return new_codes.astype(np.int64), labels


@dataclass(frozen=True)
class ModelDesign:
    """Everything the numerical stages need, frozen after construction."""

    formula: str
    parsed: ParsedFormula
    response_name: str
    y: np.ndarray                  # (n,) or (n, 2) for cbind responses
    X: np.ndarray                  # (n, p)
    fixef_names: list[str]
    terms: list[RandomEffectsTerm]  # in lme4's order
    weights: np.ndarray | None
    offset: np.ndarray
    row_index: pd.Index            # rows of the input data that were used
    n_dropped: int
    fixed_spec: ModelMatrixSpec = field(repr=False)   # rebuilds X on newdata (R's terms + predvars)
    kept_columns: np.ndarray = field(repr=False)
    dropped_columns: list[str] = field(default_factory=list)
    env: dict = field(default_factory=FormulaEnv, repr=False)  # only the caller's names the formula uses

    @property
    def nobs(self) -> int:
        return self.X.shape[0]

    def ngrps(self) -> dict[str, int]:
        """Levels per unique grouping factor, in term order (lme4 ``ngrps``)."""
        out: dict[str, int] = {}
        for t in self.terms:
            out.setdefault(t.group_name, t.n_levels)
        return out


def _term_model_matrix(expr: str, data: pd.DataFrame, env: dict):
    try:
        spec, M = ModelMatrixSpec.fit(expr, data, env)
    except FormulaError as exc:
        raise FormulaError(f"cannot build the random-effects model matrix of ({expr} | ...): {exc}") from exc
    return M, list(spec.column_names), spec


def _expand_dot(parsed: ParsedFormula, data: pd.DataFrame) -> ParsedFormula:
    """R's ``.``: every column that the response does not use.  lme4 expands it over the data's
    columns, so grouping columns enter the fixed part too (``y ~ . + (1 | g)`` has ``g2``, ...)."""
    if "." not in formula_variables(parsed.fixed_rhs):
        return parsed
    lhs = formula_variables(parsed.response)
    columns = [str(c) for c in data.columns if str(c) not in lhs]
    return dataclasses.replace(parsed, fixed_rhs=expand_dot(parsed.fixed_rhs, columns))


def _used_rows(parsed: ParsedFormula, data: pd.DataFrame, env: dict, extra: list[np.ndarray]) -> np.ndarray:
    """Boolean mask of complete rows over every column the model uses."""
    names = formula_variables(parsed.response) | formula_variables(parsed.fixed_rhs)
    for b in parsed.bars:
        names |= formula_variables(b.expr) | set(b.group)
    for off in parsed.offsets:
        names |= formula_variables(off)
    cols = [c for c in data.columns if str(c) in names]
    mask = data[cols].notna().all(axis=1).to_numpy() if cols else np.ones(len(data), bool)
    for arr in extra:
        if arr is not None:
            mask = mask & ~pd.isna(arr)
    return mask


def build_design(formula: str, data: pd.DataFrame, weights=None, offset=None,
                 env: dict | None = None, allow_n_levels: bool = False,
                 drop_zero_weights: bool = True) -> ModelDesign:
    """Parse ``formula`` and build the model arrays on ``data`` (lme4 ``lFormula``).

    lme4 needs fewer levels (and random effects) per term than observations for an LMM, where a
    level per observation is confounded with the residual; GLMMs may have as many
    (``allow_n_levels``, lme4's ``allow.n`` in ``glFormula``), e.g. an observation-level random
    effect for overdispersion.  Rows with weight 0 are left out unless ``drop_zero_weights`` is
    False (glmer, as lme4).  The checks are in :mod:`mixedpy.validation`.
    """
    data = validation.as_data_frame(data)
    parsed = parse_formula(formula)
    if not parsed.bars:
        raise FormulaError(
            f"formula {formula!r} has no random-effects terms; add one such as (1 | group) "
            "(for a model without random effects use statsmodels' OLS/GLM)")
    parsed = _expand_dot(parsed, data)
    env = used_env(env, [parsed.response, parsed.fixed_rhs, *parsed.offsets, *(b.expr for b in parsed.bars)])
    used = set()
    for part in [parsed.response, parsed.fixed_rhs, *parsed.offsets, *(b.expr for b in parsed.bars)]:
        used |= formula_variables(part)
    for b in parsed.bars:
        _check_columns(set(b.group), data, {}, formula)
    _check_columns(used, data, env, formula)

    w_all = validation.resolve_vector(weights, data, "weights")
    off_all = validation.resolve_vector(offset, data, "offset")
    mask = _used_rows(parsed, data, env, [w_all, off_all])
    n_dropped = validation.report_missing(mask)
    validation.check_weights(w_all, mask)
    if drop_zero_weights:
        mask = validation.drop_zero_weights(w_all, mask)
    frame = data.loc[mask]
    row_index = frame.index
    frame = frame.reset_index(drop=True)
    n = len(frame)

    parts = _response_parts(parsed.response)
    ys = [validation.numeric_vector(_eval_expr(p, frame, env), f"response {p!r}", n) for p in parts]
    y = ys[0] if len(ys) == 1 else np.column_stack(ys)
    validation.check_finite(y, f"response {parsed.response!r}", row_index)

    fixed_spec, X_full, names_full = fixed_matrix(parsed.fixed_rhs, frame, env)
    validation.check_finite_columns(X_full, names_full, "fixed-effects", row_index)
    keep_r = drop_rank_deficient(X_full)
    dropped = [names_full[j] for j in range(len(names_full)) if j not in set(keep_r.tolist())]
    keep = keep_r  # indices into the full model matrix's columns
    validation.warn_rank_deficient(dropped)
    X = X_full[:, keep_r]
    fixef_names = [names_full[j] for j in keep_r]
    warn_on_scales(X, fixef_names)

    offset_vec = np.zeros(n) if off_all is None else off_all[mask]
    for off in parsed.offsets:
        offset_vec = offset_vec + validation.numeric_vector(_eval_expr(off, frame, env), f"offset({off})", n)
    validation.check_finite(offset_vec, "offset", row_index)
    w = None if w_all is None else w_all[mask]

    terms = []
    for bar in parsed.bars:
        codes, labels = grouping_codes(frame, bar.group)
        M, coef_names, info = _term_model_matrix(bar.expr, frame, env)
        if M.shape[1] == 0:
            raise FormulaError(f"random-effects term ({bar.expr} | {bar.group_name}) has no columns")
        what = f"random-effects term ({bar.expr} | {bar.group_name})"
        validation.check_finite_columns(M, coef_names, what, row_index)
        terms.append(RandomEffectsTerm(group_name=bar.group_name, group_columns=bar.group, expr=bar.expr,
                                       codes=codes, levels=labels, model_matrix=M,
                                       coef_names=coef_names, design_info=info,
                                       group_dtypes=tuple(frame[g].dtype for g in bar.group),
                                       structure=bar.structure))
    terms = order_terms(terms)
    # lme4's lFormula/glFormula order: checkNlevels over the factors, then checkZdims per term
    validation.check_nlevels(terms, n, allow_n_levels)
    validation.check_zdims(terms, n, allow_n_levels)
    return ModelDesign(formula=formula, parsed=parsed, response_name=parsed.response, y=y, X=X,
                       fixef_names=fixef_names, terms=terms, weights=w, offset=offset_vec,
                       row_index=row_index, n_dropped=n_dropped, fixed_spec=fixed_spec,
                       kept_columns=keep, dropped_columns=dropped, env=env)


def check_newdata_columns(names: set[str], newdata: pd.DataFrame, env: dict, what: str) -> None:
    """Error naming the columns a prediction needs that newdata lacks."""
    missing = _unresolved(names, newdata, env)
    if missing:
        raise DataError(f"newdata has no column{'s' if len(missing) > 1 else ''} "
                        f"{', '.join(map(repr, missing))} (used by the {what})")


def new_fixed_matrix(design: ModelDesign, newdata: pd.DataFrame) -> np.ndarray:
    """X for new rows, with the fit's levels, contrasts and dropped columns."""
    check_newdata_columns(formula_variables(design.parsed.fixed_rhs), newdata, design.env, "fixed effects")
    return _new_matrix(design.fixed_spec, newdata, design.env, "fixed-effects matrix")[:, design.kept_columns]


def _new_matrix(spec: ModelMatrixSpec, newdata: pd.DataFrame, env: dict, what: str) -> np.ndarray:
    try:
        M = spec.matrix(newdata.reset_index(drop=True), env)
    except FormulaError as exc:
        raise DataError(f"cannot build the {what} for newdata: {exc}") from exc
    if np.isnan(M).any():
        raise DataError(f"cannot build the {what} for newdata: missing values in rows "
                        f"{', '.join(map(str, np.flatnonzero(np.isnan(M).any(axis=1))[:10]))}")
    return M


def newdata_group_keys(term: RandomEffectsTerm, newdata: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Level labels of newdata's rows for a term's grouping factor (``a:b`` joined as the fit's
    labels are) and a mask of rows with a missing grouping value."""
    for col in term.group_columns:
        if col not in newdata.columns:
            raise DataError(f"newdata has no column {col!r} for grouping factor {term.group_name!r}")
    sub = newdata[list(term.group_columns)]
    missing = sub.isna().any(axis=1).to_numpy()
    dtypes = term.group_dtypes or tuple(np.dtype(object) for _ in term.group_columns)
    parts = [validation.as_training_keys(sub[c], dt) for c, dt in zip(term.group_columns, dtypes)]
    keys = parts[0]
    for part in parts[1:]:
        keys = keys + ":" + part
    # a missing value is no level: a sentinel string that no label can equal (keys stay sortable)
    keys = np.where(missing, "\0NA", keys).astype(object)
    return keys, missing


def new_term_matrix(term: RandomEffectsTerm, newdata: pd.DataFrame) -> np.ndarray:
    """A random-effects term's small model matrix M (rows x k) for newdata."""
    spec = term.design_info
    return _new_matrix(spec, newdata, spec.env, f"({term.expr} | {term.group_name}) model matrix")


def new_offset(design: ModelDesign, newdata: pd.DataFrame) -> np.ndarray:
    """Offsets from the formula's ``offset()`` terms evaluated on newdata (an ``offset=`` argument
    given to the fit is not re-applied, as in lme4's predict)."""
    out = np.zeros(len(newdata))
    frame = newdata.reset_index(drop=True)
    for off in design.parsed.offsets:
        out = out + validation.numeric_vector(_eval_expr(off, frame, design.env), f"offset({off})", len(frame))
    return out
