"""Build the arrays of a mixed model from a parsed formula and a DataFrame.

This is lme4's ``lFormula``/``mkReTrms`` stage: the response, the fixed-effects
matrix X (through patsy, with R's treatment contrasts and lme4's column names),
and one :class:`~mixedpy.terms.RandomEffectsTerm` per bar term (integer level
codes plus a small model matrix; never a dense Z).  Rows with a missing value in
any used column are dropped and counted, as ``na.action = na.omit`` does.
"""
from __future__ import annotations

import ast
import builtins
import re
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import patsy
import patsy.builtins

from ..errors import DataError, FormulaError
from ..terms import RandomEffectsTerm, order_terms
from .bars import ParsedFormula, parse_formula


class _RScale:
    """R's ``scale(x)``: centre by the mean and divide by the sd with n - 1.

    patsy's own ``scale`` divides by the n-denominator sd; R users expect R's.
    Stateful so that predictions on new data reuse the training mean and sd.
    """

    def __init__(self):
        self._sum = 0.0
        self._sumsq = 0.0
        self._n = 0

    def memorize_chunk(self, x, center=True, rescale=True):
        x = np.asarray(x, dtype=float)
        self._sum += x.sum()
        self._sumsq += (x ** 2).sum()
        self._n += x.size

    def memorize_finish(self, center=True, rescale=True):
        self.mean = self._sum / self._n
        var = (self._sumsq - self._n * self.mean ** 2) / max(self._n - 1, 1)
        self.sd = np.sqrt(max(var, 0.0))

    def transform(self, x, center=True, rescale=True):
        x = np.asarray(x, dtype=float)
        if center:
            x = x - self.mean
        if rescale and self.sd > 0:
            x = x / self.sd
        return x


r_scale = patsy.stateful_transform(_RScale)

FORMULA_NAMESPACE = {"np": np, "numpy": np, "scale": r_scale, "factor": patsy.builtins.C,
                     "log": np.log, "exp": np.exp, "sqrt": np.sqrt}

_LEVEL = re.compile(r"^(?P<var>.*?)\[(?:T\.|S\.)?(?P<level>.*)\]$")


def r_column_name(patsy_name: str) -> str:
    """patsy's column names in lme4's spelling: ``Intercept`` -> ``(Intercept)``,
    ``sex[T.M]`` -> ``sexM``, ``C(period)[T.2]`` -> ``period2``, ``a[T.x]:b`` -> ``ax:b``."""
    if patsy_name == "Intercept":
        return "(Intercept)"
    parts = []
    for part in patsy_name.split(":"):
        m = _LEVEL.match(part)
        if m:
            var = m.group("var")
            c = re.match(r"^C\((\w+)\)$", var)
            if c:
                var = c.group(1)
            part = f"{var}{m.group('level')}"
        parts.append(part)
    return ":".join(parts)


def formula_variables(expr: str) -> set[str]:
    """Names a formula expression reads from the data (function and module names excluded)."""
    text = expr.replace("||", "|").replace(":", "*").replace("~", "+")
    try:
        trees = [ast.parse(text, mode="eval")]
    except SyntaxError:
        trees = []
        for piece in re.split(r"[+|]", text):
            try:
                trees.append(ast.parse(piece.strip(), mode="eval"))
            except SyntaxError:
                continue
    names: set[str] = set()
    for tree in trees:
        skip = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
        skip |= {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        names |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in skip}
    return names


def _check_columns(names: set[str], data: pd.DataFrame, env: dict, formula: str) -> None:
    known = set(map(str, data.columns)) | set(env) | set(dir(builtins)) | {"Treatment", "Sum", "Poly", "Helmert", "Diff", "C", "I", "Q"}
    missing = sorted(n for n in names if n not in known)
    if missing:
        raise FormulaError(
            f"unknown column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} in formula "
            f"{formula!r}; the data has columns {', '.join(map(str, data.columns))}")


def _eval_expr(expr: str, data: pd.DataFrame, env: dict) -> np.ndarray:
    namespace = dict(env)
    namespace.update({str(c): data[c] for c in data.columns})
    try:
        value = eval(expr, {"__builtins__": builtins}, namespace)  # noqa: S307 - formula expressions are user code by design
    except Exception as exc:  # the message names the expression, the cause follows
        raise FormulaError(f"cannot evaluate {expr!r}: {exc}") from exc
    return value


def _as_numeric_vector(value, what: str, n: int) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim == 0:
        arr = np.full(n, arr)
    if arr.dtype.kind not in "biuf":
        if arr.dtype.kind == "O":
            try:
                arr = arr.astype(float)
            except (TypeError, ValueError):
                raise DataError(f"{what} is not numeric (dtype {arr.dtype})") from None
        else:
            raise DataError(f"{what} is not numeric (dtype {arr.dtype})")
    return arr.astype(float)


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


def r_column_order(info: patsy.DesignInfo, rhs: str) -> np.ndarray:
    """Column permutation from patsy's term order to R's: terms as written, stably sorted by
    their order (main effects, then two-way interactions, ...), intercept first."""
    written = patsy.ModelDesc.from_formula(rhs).rhs_termlist
    rank = {term: i for i, term in enumerate(written)}
    terms = sorted(info.term_slices, key=lambda t: (len(t.factors), rank.get(t, len(rank))))
    return np.concatenate([np.arange(info.term_slices[t].start, info.term_slices[t].stop) for t in terms]
                          + [np.zeros(0, dtype=int)]).astype(int)


def warn_on_scales(X: np.ndarray, names: list[str]) -> None:
    """lme4 ``check.scaleX``: over the columns that are not 0/1 indicators, warn when two SDs differ
    by more than a factor 1000 or one SD is beyond 1000 or below 1/1000."""
    if X.shape[0] < 2:
        return
    binary = np.all((X == 0) | (X == 1), axis=0)
    sd = X[:, ~binary].std(axis=0, ddof=1)
    sd = sd[sd > 0]
    if sd.size == 0:
        return
    logsd = np.log(sd)
    if np.ptp(logsd) > np.log(1000) or np.max(np.abs(logsd)) > np.log(1000):
        warnings.warn("Some predictor variables are on very different scales: consider rescaling "
                      "(e.g. scale(x) in the formula)", UserWarning, stacklevel=4)


def drop_rank_deficient(X: np.ndarray, tol: float = 1e-7) -> np.ndarray:
    """Indices of the columns kept by LINPACK-style limited pivoting (lme4 ``check.rankX``).

    A column is dropped when its residual after projecting on the columns kept so far
    has norm below ``tol`` times its own norm; kept columns keep their order.
    """
    keep: list[int] = []
    Q = np.zeros((X.shape[0], 0))
    for j in range(X.shape[1]):
        col = X[:, j]
        norm = np.linalg.norm(col)
        resid = col - Q @ (Q.T @ col)
        resid = resid - Q @ (Q.T @ resid)
        rnorm = np.linalg.norm(resid)
        if norm > 0 and rnorm > tol * norm:
            keep.append(j)
            Q = np.column_stack([Q, resid / rnorm])
    return np.asarray(keep, dtype=int)


def sorted_levels(values: pd.Series) -> list:
    """Levels in R's order: categorical order if given, else sorted unique values."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return [c for c in values.cat.categories if (values == c).any()]
    uniq = pd.unique(values.dropna())
    if all(isinstance(v, str) for v in uniq):
        # R's sort() of strings collates case-insensitively first, lower case before upper on ties
        return sorted(uniq, key=lambda v: (v.casefold(), v.swapcase()))
    try:
        return sorted(uniq)
    except TypeError:
        return sorted(uniq, key=str)


def grouping_codes(data: pd.DataFrame, group: tuple[str, ...]) -> tuple[np.ndarray, list[str]]:
    """Integer codes and string labels of the factor ``a:b:...`` (first factor slowest)."""
    per_factor = []
    for g in group:
        levels = sorted_levels(data[g])
        codes = pd.Categorical(data[g], categories=levels).codes.astype(np.int64)
        per_factor.append((codes, [str(v) for v in levels]))
    if len(per_factor) == 1:
        codes, labels = per_factor[0]
        return codes, labels
    combined = np.zeros(len(data), dtype=np.int64)
    for codes, labels in per_factor:
        combined = combined * len(labels) + codes
    used, new_codes = np.unique(combined, return_inverse=True)
    labels = []
    for value in used:
        parts = []
        for codes, lab in reversed(per_factor):
            parts.append(lab[value % len(lab)])
            value //= len(lab)
        labels.append(":".join(reversed(parts)))
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
    fixed_design_info: patsy.DesignInfo = field(repr=False)
    kept_columns: np.ndarray = field(repr=False)
    dropped_columns: list[str] = field(default_factory=list)
    env: dict = field(default_factory=dict, repr=False)

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
        mat = patsy.dmatrix(expr, data, eval_env=patsy.EvalEnvironment([env]),
                            NA_action="raise", return_type="dataframe")
    except patsy.PatsyError as exc:
        raise FormulaError(f"cannot build the random-effects model matrix of ({expr} | ...): {exc}") from exc
    names = [r_column_name(c) for c in mat.columns]
    return np.asarray(mat, dtype=float), names, mat.design_info


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


def _resolve_vector(arg, data: pd.DataFrame, what: str) -> np.ndarray | None:
    if arg is None:
        return None
    if isinstance(arg, str):
        if arg not in data.columns:
            raise DataError(f"{what}={arg!r} is not a column of the data")
        arg = data[arg]
    arr = np.asarray(arg, dtype=float)
    if arr.shape != (len(data),):
        raise DataError(f"{what} has length {arr.size} but the data has {len(data)} rows")
    return arr


def build_design(formula: str, data: pd.DataFrame, weights=None, offset=None,
                 env: dict | None = None, allow_n_levels: bool = False) -> ModelDesign:
    """Parse ``formula`` and build the model arrays on ``data`` (lme4 ``lFormula``).

    lme4 needs fewer levels (and random effects) than observations for an LMM, where a level per
    observation is confounded with the residual; GLMMs may have as many (``allow_n_levels``, lme4's
    ``allow.n`` in ``glFormula``), e.g. an observation-level random effect for overdispersion.
    """
    if not isinstance(data, pd.DataFrame):
        try:
            data = pd.DataFrame(data)
        except Exception as exc:
            raise DataError(f"data must be a pandas DataFrame (or convertible), got {type(data).__name__}") from exc
    parsed = parse_formula(formula)
    if not parsed.bars:
        raise FormulaError(
            f"formula {formula!r} has no random-effects terms; add one such as (1 | group) "
            "(for a model without random effects use statsmodels' OLS/GLM)")
    env = {**FORMULA_NAMESPACE, **(env or {})}
    used = set()
    for part in [parsed.response, parsed.fixed_rhs, *parsed.offsets, *(b.expr for b in parsed.bars)]:
        used |= formula_variables(part)
    for b in parsed.bars:
        _check_columns(set(b.group), data, {}, formula)
    _check_columns(used, data, env, formula)

    w_all = _resolve_vector(weights, data, "weights")
    off_all = _resolve_vector(offset, data, "offset")
    mask = _used_rows(parsed, data, env, [w_all, off_all])
    n_dropped = int((~mask).sum())
    if n_dropped:
        warnings.warn(f"{n_dropped} row{'s' if n_dropped > 1 else ''} with missing values dropped "
                      f"({mask.sum()} of {len(data)} used)", stacklevel=3)
    if not mask.any():
        raise DataError("no complete rows left after dropping missing values")
    frame = data.loc[mask]
    row_index = frame.index
    frame = frame.reset_index(drop=True)
    n = len(frame)

    parts = _response_parts(parsed.response)
    ys = [_as_numeric_vector(_eval_expr(p, frame, env), f"response {p!r}", n) for p in parts]
    y = ys[0] if len(ys) == 1 else np.column_stack(ys)
    if not np.all(np.isfinite(y)):
        raise DataError(f"response {parsed.response!r} has non-finite values (NaN or inf)")

    try:
        fixed = patsy.dmatrix(parsed.fixed_rhs, frame, eval_env=patsy.EvalEnvironment([env]),
                              NA_action="raise", return_type="dataframe")
    except patsy.PatsyError as exc:
        raise FormulaError(f"cannot build the fixed-effects matrix from {parsed.fixed_rhs!r}: {exc}") from exc
    order = r_column_order(fixed.design_info, parsed.fixed_rhs)
    X_full = np.asarray(fixed, dtype=float)[:, order]
    names_full = [r_column_name(fixed.columns[j]) for j in order]
    keep_r = drop_rank_deficient(X_full)
    dropped = [names_full[j] for j in range(len(names_full)) if j not in set(keep_r.tolist())]
    keep = order[keep_r]  # indices into patsy's columns, in R's order
    if dropped:
        k = len(dropped)
        print(f"fixed-effect model matrix is rank deficient so dropping {k} column"
              f"{'s' if k > 1 else ''} / coefficient{'s' if k > 1 else ''} ({', '.join(dropped)})")
    X = X_full[:, keep_r]
    fixef_names = [names_full[j] for j in keep_r]
    warn_on_scales(X, fixef_names)

    offset_vec = np.zeros(n) if off_all is None else off_all[mask]
    for off in parsed.offsets:
        offset_vec = offset_vec + _as_numeric_vector(_eval_expr(off, frame, env), f"offset({off})", n)
    w = None if w_all is None else w_all[mask]
    if w is not None and np.any(w < 0):
        raise DataError("weights must be non-negative")

    terms = []
    for bar in parsed.bars:
        codes, labels = grouping_codes(frame, bar.group)
        M, coef_names, info = _term_model_matrix(bar.expr, frame, env)
        if M.shape[1] == 0:
            raise FormulaError(f"random-effects term ({bar.expr} | {bar.group_name}) has no columns")
        if len(labels) < 2:
            raise DataError(
                f"grouping factor {bar.group_name!r} has {len(labels)} level; a grouping factor needs at "
                "least 2 levels (lme4: 'grouping factors must have > 1 sampled level')")
        if len(labels) > n or (len(labels) == n and not allow_n_levels):
            raise DataError(
                f"grouping factor {bar.group_name!r} has {len(labels)} levels for {n} observations; "
                "the number of levels must be less than the number of observations")
        terms.append(RandomEffectsTerm(group_name=bar.group_name, group_columns=bar.group, expr=bar.expr,
                                       codes=codes, levels=labels, model_matrix=M,
                                       coef_names=coef_names, design_info=info))
    terms = order_terms(terms)
    q = sum(t.n_coefs for t in terms)
    if q > n or (q == n and not allow_n_levels):
        raise DataError(
            f"the model has {q} random effects for {n} observations; the random effects must be fewer "
            "than the observations (lme4 check.nobs.vs.nRE)")
    return ModelDesign(formula=formula, parsed=parsed, response_name=parsed.response, y=y, X=X,
                       fixef_names=fixef_names, terms=terms, weights=w, offset=offset_vec,
                       row_index=row_index, n_dropped=n_dropped, fixed_design_info=fixed.design_info,
                       kept_columns=keep, dropped_columns=dropped, env=env)


def check_newdata_columns(names: set[str], newdata: pd.DataFrame, env: dict, what: str) -> None:
    """Error naming the columns a prediction needs that newdata lacks."""
    missing = sorted(n for n in names if n not in newdata.columns and n not in env and not hasattr(builtins, n))
    if missing:
        raise DataError(f"newdata has no column{'s' if len(missing) > 1 else ''} "
                        f"{', '.join(map(repr, missing))} (used by the {what})")


def new_fixed_matrix(design: ModelDesign, newdata: pd.DataFrame) -> np.ndarray:
    """X for new rows, with the fit's levels, contrasts and dropped columns."""
    check_newdata_columns(formula_variables(design.parsed.fixed_rhs), newdata, design.env, "fixed effects")
    try:
        (mat,) = patsy.build_design_matrices([design.fixed_design_info], newdata, NA_action="raise")
    except patsy.PatsyError as exc:
        raise DataError(f"cannot build the fixed-effects matrix for newdata: {exc}") from exc
    return np.asarray(mat, dtype=float)[:, design.kept_columns]


def newdata_group_keys(term: RandomEffectsTerm, newdata: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Level labels of newdata's rows for a term's grouping factor (``a:b`` joined as the fit's
    labels are) and a mask of rows with a missing grouping value."""
    for col in term.group_columns:
        if col not in newdata.columns:
            raise DataError(f"newdata has no column {col!r} for grouping factor {term.group_name!r}")
    sub = newdata[list(term.group_columns)]
    missing = sub.isna().any(axis=1).to_numpy()
    keys = sub.astype(str).agg(":".join, axis=1) if len(term.group_columns) > 1 else sub.iloc[:, 0].astype(str)
    return keys.to_numpy(), missing


def new_term_matrix(term: RandomEffectsTerm, newdata: pd.DataFrame) -> np.ndarray:
    """A random-effects term's small model matrix M (rows x k) for newdata."""
    try:
        (M,) = patsy.build_design_matrices([term.design_info], newdata, NA_action="raise")
    except patsy.PatsyError as exc:
        raise DataError(f"cannot build the ({term.expr} | {term.group_name}) model matrix for newdata: {exc}") from exc
    return np.asarray(M, dtype=float)


def new_offset(design: ModelDesign, newdata: pd.DataFrame) -> np.ndarray:
    """Offsets from the formula's ``offset()`` terms evaluated on newdata (an ``offset=`` argument
    given to the fit is not re-applied, as in lme4's predict)."""
    out = np.zeros(len(newdata))
    frame = newdata.reset_index(drop=True)
    for off in design.parsed.offsets:
        out = out + _as_numeric_vector(_eval_expr(off, frame, design.env), f"offset({off})", len(frame))
    return out
