"""The model of a Dask fit: what the formula reads, the level pass, and each partition's arrays.

lme4's ``lFormula`` stage needs the whole data for three things: which rows are complete, the
levels of the factors (sorted over the rows used), and a reference value of the response.  The
level pass (:func:`discover_partition`, combined by :func:`combine_discovery`) gets them in one
pass: per partition the distinct tuples of every grouping factor and the distinct values of every
factor the model matrices use, the counts of complete and dropped rows, the first complete row and
the range of the response.  :func:`finish` then builds what memory would: the levels in R's
order (the same :func:`~mixedpy.formula.design.grouping_codes` over the distinct tuples), the
fixed-effects and random-effects model-matrix specs (fitted on a small prototype frame holding
every level, so their levels and columns are those of the whole data) and lme4's checks.
:func:`model_arrays` rebuilds the arrays of one partition from that model.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import validation
from ..errors import DataError, FormulaError, MissingValuesWarning, ZeroWeightsWarning
from ..formula.bars import ParsedFormula, parse_formula
from ..formula.design import (_check_columns, _eval_expr, _expand_dot, _response_parts, _term_model_matrix,
                              _used_rows, formula_variables, grouping_codes, level_codes)
from ..formula.modelmatrix import ModelMatrixSpec, fixed_matrix
from ..formula.namespace import used_env
from ..formula.reval import sorted_levels
from ..terms import RandomEffectsTerm, order_terms

#: calls that make a factor of a column, so its levels must be discovered whatever its dtype
_FACTOR_CALL = re.compile(r"\b(?:factor|ordered|as\.factor|relevel)\(\s*`?([A-Za-z_.][\w.]*)")
#: complete rows kept from the first partition for the prototype frame
_HEAD_ROWS = 20


@dataclass(frozen=True)
class Plan:
    """What the formula reads, known from the frame's metadata alone."""

    formula: str
    parsed: ParsedFormula
    env: dict
    meta: pd.DataFrame              # the Dask frame's empty metadata (its dtypes)
    columns: list[str]              # every column the model reads, weights and offset included
    factor_sets: list[tuple]        # column tuples whose distinct values the level pass collects
    expr_factors: list[str]         # factor columns of the model matrices (in the prototype frame)
    weights: str | None
    offset: str | None
    allow_n_levels: bool = False    # glmer: as many levels as observations allowed (lme4 allow.n)
    drop_zero_weights: bool = True  # lmer leaves weight-0 rows out; glmer keeps them


def _column_arg(arg, what: str) -> str | None:
    if arg is None or isinstance(arg, str):
        return arg
    raise DataError(f"{what} on a Dask frame must be a column name (an array or Series cannot be split "
                    f"into the frame's partitions); add it as a column, e.g. ddf = ddf.assign({what}=...)")


def make_plan(formula: str, ddf, weights=None, offset=None, env: dict | None = None,
              allow_n_levels: bool = False, drop_zero_weights: bool = True) -> Plan:
    """Parse the formula against the frame's metadata: unknown columns are errors before any pass."""
    meta = validation.as_data_frame(ddf._meta)
    parsed = parse_formula(formula)
    if not parsed.bars:
        raise FormulaError(f"formula {formula!r} has no random-effects terms; add one such as (1 | group)")
    parsed = _expand_dot(parsed, meta)
    exprs = [parsed.response, parsed.fixed_rhs, *parsed.offsets, *(b.expr for b in parsed.bars)]
    env = used_env(env, exprs)
    used = set().union(*(formula_variables(e) for e in exprs))
    for b in parsed.bars:
        _check_columns(set(b.group), meta, {}, formula)
    _check_columns(used, meta, env, formula)
    weights, offset = _column_arg(weights, "weights"), _column_arg(offset, "offset")
    for name, what in ((weights, "weights"), (offset, "offset")):
        if name is not None and name not in meta.columns:
            raise DataError(f"{what}={name!r} is not a column of the data")
    groups = {g for b in parsed.bars for g in b.group}
    columns = [str(c) for c in meta.columns if str(c) in used | groups or c in (weights, offset)]
    matrix_names = set().union(*(formula_variables(e) for e in [parsed.fixed_rhs, *(b.expr for b in parsed.bars)]))
    called = set(_FACTOR_CALL.findall(" ".join([parsed.fixed_rhs, *(b.expr for b in parsed.bars)])))
    expr_factors = [c for c in columns if c in matrix_names
                    and (c in called or not pd.api.types.is_numeric_dtype(meta[c].dtype)
                         or pd.api.types.is_bool_dtype(meta[c].dtype))]
    sets = list(dict.fromkeys([tuple(b.group) for b in parsed.bars] + [(c,) for c in expr_factors]))
    return Plan(formula, parsed, env, meta, columns, sets, expr_factors, weights, offset,
                allow_n_levels, drop_zero_weights)


# -- the rows of one partition ---------------------------------------------------------------------
@dataclass
class Rows:
    """The complete rows of one partition (lme4's na.omit), with the response and offset."""

    frame: pd.DataFrame             # the rows used, index reset
    index: pd.Index                 # their labels in the partition
    y: np.ndarray                   # (n,) or (n, 2) for cbind responses
    offset: np.ndarray
    w: np.ndarray | None
    n_missing: int
    n_zero: int


def _same_dtype(got, want) -> bool:
    if isinstance(got, pd.CategoricalDtype) or isinstance(want, pd.CategoricalDtype):
        return isinstance(got, pd.CategoricalDtype) and isinstance(want, pd.CategoricalDtype)
    return got == want


def check_dtypes(part: pd.DataFrame, plan: Plan) -> None:
    """A partition whose column dtype differs from the frame's metadata (e.g. parquet files written
    with different schemas) is an error: levels and model matrices would differ between partitions."""
    for c in plan.columns:
        got, want = part[c].dtype, plan.meta[c].dtype
        if not _same_dtype(got, want):
            raise DataError(f"column {c!r} has dtype {got} here but {want} in the Dask frame's metadata; "
                            f"partitions must agree (cast it, e.g. ddf = ddf.astype({{{c!r}: ...}}))")


def complete_rows(part: pd.DataFrame, plan: Plan) -> Rows:
    """The rows of a partition that the fit uses, as :func:`~mixedpy.formula.design.build_design`
    selects them (complete in every column used, weight > 0 for lmer)."""
    check_dtypes(part, plan)
    w_all = validation.resolve_vector(plan.weights, part, "weights")
    off_all = validation.resolve_vector(plan.offset, part, "offset")
    mask = _used_rows(plan.parsed, part, plan.env, [w_all, off_all])
    n_missing = int((~mask).sum())
    validation.check_weights(w_all, mask)
    n_zero = 0
    if w_all is not None and plan.drop_zero_weights:
        zero = mask & (w_all == 0)
        n_zero = int(zero.sum())
        mask = mask & ~zero
    frame = part.loc[mask]
    index = frame.index
    frame = frame.reset_index(drop=True)
    n = len(frame)
    parsed, env = plan.parsed, plan.env
    ys = [validation.numeric_vector(_eval_expr(p, frame, env), f"response {p!r}", n)
          for p in _response_parts(parsed.response)]
    y = ys[0] if len(ys) == 1 else np.column_stack(ys)
    validation.check_finite(y, f"response {parsed.response!r}", index)
    off = np.zeros(n) if off_all is None else off_all[mask]
    for o in parsed.offsets:
        off = off + validation.numeric_vector(_eval_expr(o, frame, env), f"offset({o})", n)
    validation.check_finite(off, "offset", index)
    return Rows(frame, index, y, off, None if w_all is None else w_all[mask], n_missing, n_zero)


# -- the level pass ----------------------------------------------------------------------------------
@dataclass
class Discovery:
    """What the level pass collects; :func:`combine_discovery` adds two of them in partition order."""

    n_used: int
    n_missing: int
    n_zero: int
    head: pd.DataFrame | None        # the first complete rows of the first partition that has any
    ref: np.ndarray | None           # [y, y - offset] of the first complete row (first column of y)
    y_range: np.ndarray              # [min, max] of the response's first column
    tuples: list[pd.DataFrame]       # distinct values per factor set


def discover_partition(part: pd.DataFrame, index: int, plan: Plan) -> Discovery:
    rows = complete_rows(part, plan)
    n = len(rows.frame)
    y1 = rows.y if rows.y.ndim == 1 else rows.y[:, 0]
    ref = np.array([y1[0], y1[0] - rows.offset[0]]) if n else None
    y_range = np.array([y1.min(), y1.max()]) if n else np.array([np.inf, -np.inf])
    tuples = [rows.frame[list(s)].drop_duplicates() for s in plan.factor_sets]
    head = rows.frame.head(_HEAD_ROWS) if n else None
    return Discovery(n, rows.n_missing, rows.n_zero, head, ref, y_range, tuples)


def combine_discovery(a: Discovery, b: Discovery) -> Discovery:
    return Discovery(a.n_used + b.n_used, a.n_missing + b.n_missing, a.n_zero + b.n_zero,
                     a.head if a.head is not None else b.head, a.ref if a.ref is not None else b.ref,
                     np.array([min(a.y_range[0], b.y_range[0]), max(a.y_range[1], b.y_range[1])]),
                     [pd.concat([s, t], ignore_index=True).drop_duplicates() for s, t in zip(a.tuples, b.tuples)])


# -- the model, after the level pass ------------------------------------------------------------------
@dataclass(frozen=True)
class TermCoder:
    """Level codes of a grouping factor in a partition, with the levels of the whole data."""

    columns: tuple[str, ...]
    values: tuple[pd.Index, ...]        # per column, its levels in code order
    used: np.ndarray | None             # several columns: the sorted combined codes that occur

    def codes(self, frame: pd.DataFrame) -> np.ndarray:
        per = []
        for c, vals in zip(self.columns, self.values):
            codes = level_codes(frame[c], vals)
            if (codes < 0).any():
                raise DataError(self._unseen(c, frame[c][codes < 0].iloc[0]))
            per.append(codes)
        if self.used is None:
            return per[0]
        combined = np.zeros(len(frame), dtype=np.int64)
        for codes, vals in zip(per, self.values):
            combined = combined * len(vals) + codes
        pos = np.minimum(np.searchsorted(self.used, combined), len(self.used) - 1)
        bad = self.used[pos] != combined
        if bad.any():
            row = frame.loc[bad, list(self.columns)].iloc[0]
            raise DataError(self._unseen(":".join(self.columns), ":".join(map(str, row.tolist()))))
        return pos

    @staticmethod
    def _unseen(column: str, value) -> str:
        return (f"level {value!r} of grouping column {column!r} was not found by the level pass (did the "
                "data change between passes? a Dask frame must give the same rows each time it is computed)")


@dataclass(frozen=True)
class Model:
    """Everything a partition needs to build its arrays, and the fit's terms."""

    plan: Plan
    n: int
    n_missing: int
    fixed_spec: ModelMatrixSpec
    fixed_names: list[str]              # all columns of the fixed-effects matrix, before rank checks
    terms: list[RandomEffectsTerm]      # lme4's order; codes/model matrices empty (levels, specs kept)
    coders: list[TermCoder]
    ref: np.ndarray                     # [y, y - offset] of the first row used
    kept: np.ndarray | None = field(default=None)   # fixed-effects columns kept (after the cross-product pass)


def _prototype(plan: Plan, disc: Discovery) -> pd.DataFrame:
    """A small frame with the first complete rows, in which every factor of the model matrices takes
    each of its levels of the whole data (so model-matrix specs fitted on it have every level)."""
    levels = {s[0]: t[s[0]] for s, t in zip(plan.factor_sets, disc.tuples) if len(s) == 1}
    length = max([len(disc.head)] + [len(levels[c]) for c in plan.expr_factors])
    out = disc.head.iloc[np.resize(np.arange(len(disc.head)), length)].reset_index(drop=True)
    for c in plan.expr_factors:
        vals = levels[c]   # keeps its dtype (a categorical keeps its categories' order)
        out[c] = vals.iloc[np.resize(np.arange(len(vals)), length)].reset_index(drop=True)
    return out


def _fitted_spec(spec: ModelMatrixSpec, what: str) -> ModelMatrixSpec:
    if spec.state:
        calls = ", ".join(sorted(spec.state))
        raise FormulaError(f"{calls} in the {what} learn their centring/coefficients from the whole data, "
                           "which a Dask fit does not hold; compute the column first (e.g. with "
                           "ddf.assign) and use it in the formula")
    return spec


def finish(plan: Plan, disc: Discovery) -> Model:
    """The model after the level pass: warnings and checks as in memory, levels, specs and terms."""
    if disc.n_missing:
        n = disc.n_missing
        warnings.warn(f"{n} row{'s' if n > 1 else ''} with missing values dropped "
                      f"({disc.n_used + disc.n_zero} of {disc.n_used + disc.n_zero + n} used)",
                      MissingValuesWarning, stacklevel=4)
    if disc.n_zero:
        k = disc.n_zero
        warnings.warn(f"{k} row{'s' if k > 1 else ''} with weight 0 left out of the fit (they carry no "
                      "information; sigma and the degrees of freedom use the remaining rows, as R's lm)",
                      ZeroWeightsWarning, stacklevel=4)
    if disc.n_used == 0:
        raise DataError("no complete rows left after dropping missing values (or weight 0)")
    proto = _prototype(plan, disc)
    fixed_spec, _, fixed_names = fixed_matrix(plan.parsed.fixed_rhs, proto, plan.env)
    _fitted_spec(fixed_spec, "fixed effects")
    tuples = dict(zip(plan.factor_sets, disc.tuples))
    pairs = []
    for bar in plan.parsed.bars:
        found = tuples[tuple(bar.group)].reset_index(drop=True)
        combo, labels = grouping_codes(found, bar.group)
        values = tuple(pd.Index(sorted_levels(found[g])) for g in bar.group)
        used = None
        if len(bar.group) > 1:
            per = [level_codes(found[g], v) for g, v in zip(bar.group, values)]
            key = np.zeros(len(found), dtype=np.int64)
            for codes, v in zip(per, values):
                key = key * len(v) + codes
            used = np.unique(key)
        M, coef_names, info = _term_model_matrix(bar.expr, proto, plan.env)
        _fitted_spec(info, f"random-effects term ({bar.expr} | {bar.group_name})")
        if M.shape[1] == 0:
            raise FormulaError(f"random-effects term ({bar.expr} | {bar.group_name}) has no columns")
        term = RandomEffectsTerm(group_name=bar.group_name, group_columns=bar.group, expr=bar.expr,
                                 codes=np.zeros(0, dtype=np.int64), levels=labels,
                                 model_matrix=np.zeros((0, M.shape[1])), coef_names=coef_names,
                                 design_info=info, group_dtypes=tuple(plan.meta[g].dtype for g in bar.group),
                                 structure=bar.structure)
        pairs.append((term, TermCoder(tuple(bar.group), values, used)))
    terms = order_terms([t for t, _ in pairs])
    coder_of = {id(t): c for t, c in pairs}
    validation.check_nlevels(terms, disc.n_used, plan.allow_n_levels)
    validation.check_zdims(terms, disc.n_used, plan.allow_n_levels)
    return Model(plan, disc.n_used, disc.n_missing, fixed_spec, list(fixed_names), terms,
                 [coder_of[id(t)] for t in terms], disc.ref)


def model_arrays(part: pd.DataFrame, model: Model):
    """(rows, X, codes, Ms) of one partition: its complete rows, fixed-effects matrix (the kept
    columns once known), and per term the level codes and model matrix."""
    rows = complete_rows(part, model.plan)
    env = model.plan.env
    X = model.fixed_spec.matrix(rows.frame, env)
    validation.check_finite_columns(X, model.fixed_names, "fixed-effects", rows.index)
    if model.kept is not None:
        X = X[:, model.kept]
    codes = [c.codes(rows.frame) for c in model.coders]
    Ms = []
    for t in model.terms:
        M = t.design_info.matrix(rows.frame, env)
        validation.check_finite_columns(M, t.coef_names, f"random-effects term ({t.expr} | {t.group_name})",
                                        rows.index)
        Ms.append(M)
    return rows, X, codes, Ms
