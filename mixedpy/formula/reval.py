"""Evaluate the variables of an R formula (``log(x^2 + 1)``, ``I(Days^2)``, ``factor(n)``,
``poly(x, 2)``, ``scale(x)``) on a DataFrame, vectorised with numpy, as R's ``model.frame`` does.

Names resolve as in R: a data column first, then the caller's variables; ``np.log`` and other
dotted names that are not columns are looked up attribute by attribute.  Calls to the R
functions of :data:`R_FUNCTIONS` keep R's meaning whatever the caller has imported under the
same name; other calls go to the caller's functions.  Data-dependent
transforms (``scale``, ``poly``) keep what they learned from the fitting data in ``state``
(R's ``predvars``), so new data reuse the fit's centre, scale and polynomial coefficients.
"""
from __future__ import annotations

import types
from dataclasses import dataclass
from functools import reduce

import numpy as np
import pandas as pd

from ..errors import FormulaError
from .poly import poly_coefs, poly_predict, poly_raw
from .rsyntax import deparse


@dataclass
class Factor:
    """A factor: integer codes (-1 for missing) into ``levels`` (strings), as R's factor."""

    codes: np.ndarray
    levels: list[str]
    ordered: bool = False


@dataclass
class Matrix:
    """A matrix-valued variable (``poly(x, 2)``): columns named ``1``, ``2``, ... as R."""

    values: np.ndarray
    colnames: list[str]


def level_label(value) -> str:
    """A level as R's ``as.character`` prints it: ``1`` not ``1.0``, ``TRUE``/``FALSE``."""
    if isinstance(value, (bool, np.bool_)):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.15g}"
    return str(value)


def sorted_levels(values: pd.Series) -> list:
    """Levels in R's order: categorical order if given, else sorted unique values."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        # the categories that occur, in their order: one pass over the codes, not one per category
        codes = values.cat.codes.to_numpy()
        seen = np.bincount(codes[codes >= 0], minlength=len(values.cat.categories)) > 0
        return values.cat.categories[seen].tolist()
    uniq = pd.unique(values.dropna())
    if all(isinstance(v, str) for v in uniq):
        # R's sort() of strings collates case-insensitively first, lower case before upper on ties
        return sorted(uniq, key=lambda v: (v.casefold(), v.swapcase()))
    try:
        return sorted(uniq)
    except TypeError:
        return sorted(uniq, key=str)


def as_factor(value, levels: list | None = None) -> Factor:
    """R's ``factor(x)`` of a column, array or factor; ``levels`` fixes the level order."""
    if isinstance(value, Factor):
        if levels is None:
            return value
        labels = [level_label(v) for v in levels]
        return _recode(value, labels, value.ordered)
    series = pd.Series(np.asarray(value) if not isinstance(value, pd.Series) else value)
    ordered = isinstance(series.dtype, pd.CategoricalDtype) and bool(series.dtype.ordered)
    if series.dtype == bool:
        raw_levels = [False, True]
    else:
        raw_levels = sorted_levels(series) if levels is None else list(levels)
    labels = [level_label(v) for v in raw_levels]
    codes = pd.Categorical(series.astype(object) if not isinstance(series.dtype, pd.CategoricalDtype) else series,
                           categories=raw_levels).codes.astype(np.int64)
    return Factor(codes, labels, ordered)


def _recode(f: Factor, labels: list[str], ordered: bool) -> Factor:
    lookup = {lab: i for i, lab in enumerate(labels)}
    mapping = np.array([lookup.get(lab, -2) for lab in f.levels] + [-1], dtype=np.int64)
    return Factor(mapping[f.codes], labels, ordered)


def align_factor(f: Factor, fit_levels: list[str], what: str) -> Factor:
    """A newdata factor coded with the fit's levels; a level the fit never saw is an error."""
    out = _recode(f, list(fit_levels), f.ordered)
    if (out.codes == -2).any():
        new = sorted({f.levels[c] for c, o in zip(f.codes, out.codes) if o == -2})
        raise FormulaError(f"factor {what} has new level{'s' if len(new) > 1 else ''} {', '.join(new)} "
                           f"(the fit has {', '.join(fit_levels)})")
    return out


def _numeric(value, what: str) -> np.ndarray:
    if isinstance(value, Factor):
        raise FormulaError(f"arithmetic on the factor {what} is not meaningful; use as.numeric() if intended")
    if isinstance(value, Matrix):
        return value.values
    if isinstance(value, pd.Series):
        if isinstance(value.dtype, pd.CategoricalDtype) or value.dtype == object \
                or pd.api.types.is_string_dtype(value.dtype):
            raise FormulaError(f"{what} is not numeric (it is a factor or strings)")
        return value.to_numpy(dtype=float, na_value=np.nan) if value.dtype != bool else value.to_numpy()
    arr = np.asarray(value)
    if arr.dtype.kind in "OUS":
        raise FormulaError(f"{what} is not numeric")
    return arr


def _scale(ev, node, args):
    x = np.asarray(_numeric(args.pop(0), deparse(node)), dtype=float)
    center, rescale = args.get("center", True), args.get("scale", True)
    key = deparse(node)
    if key not in ev.state:
        mean = float(np.nanmean(x)) if center is True else (0.0 if center is False else float(center))
        if rescale is True:
            dev = x - mean
            sd = float(np.sqrt(np.nansum(dev ** 2) / max(np.sum(~np.isnan(x)) - 1, 1)))
        else:
            sd = 1.0 if rescale is False else float(rescale)
        ev.state[key] = {"center": mean, "scale": sd}
    st = ev.state[key]
    return (x - st["center"]) / (st["scale"] if st["scale"] > 0 else 1.0)


def _poly(ev, node, args):
    x = np.asarray(_numeric(args.pop(0), deparse(node)), dtype=float)
    degree = args.get("degree", 1)
    raw = args.get("raw", False)
    if args:
        raise FormulaError(f"{deparse(node)}: poly() of several variables is not supported")
    degree = int(np.asarray(degree).item())
    if degree < 1:
        raise FormulaError(f"{deparse(node)}: 'degree' must be at least 1")
    names = [str(i) for i in range(1, degree + 1)]
    if bool(raw):
        return Matrix(poly_raw(x, degree), names)
    key = deparse(node)
    if key not in ev.state:
        ev.state[key] = poly_coefs(x, degree)
    return Matrix(poly_predict(x, degree, ev.state[key]), names)


def _factor(ev, node, args):
    value = args.pop(0)
    levels = args.get("levels")
    if levels is not None:
        levels = list(np.atleast_1d(levels))
    f = as_factor(value, levels)
    return Factor(f.codes, f.levels, bool(args.pop("ordered", False)) or f.ordered)


def _ordered(ev, node, args):
    f = _factor(ev, node, args)
    return Factor(f.codes, f.levels, True)


def _relevel(ev, node, args):
    f = as_factor(args.pop(0))
    ref = level_label(args.get("ref"))
    if ref not in f.levels:
        raise FormulaError(f"{deparse(node)}: 'ref' {ref!r} is not a level ({', '.join(f.levels)})")
    return _recode(f, [ref] + [v for v in f.levels if v != ref], f.ordered)


def _as_numeric(ev, node, args):
    value = args.pop(0)
    if isinstance(value, Factor):
        return np.where(value.codes < 0, np.nan, value.codes + 1.0)
    return np.asarray(_numeric(value, deparse(node)), dtype=float)


def _log(ev, node, args):
    x = np.asarray(_numeric(args.pop(0), deparse(node)), dtype=float)
    base = args.get("base")
    return np.log(x) if base is None else np.log(x) / np.log(base)


def _c(ev, node, args):
    return np.asarray(args.rest())


def _unary_np(fn):
    return lambda ev, node, args: fn(np.asarray(_numeric(args.pop(0), deparse(node)), dtype=float))


def _identity(ev, node, args):
    return args.pop(0)


R_FUNCTIONS = {
    "I": _identity, "offset": _identity, "C": lambda ev, node, args: as_factor(args.pop(0)),
    "scale": _scale, "poly": _poly, "factor": _factor, "as.factor": _factor, "ordered": _ordered,
    "Q": lambda ev, node, args: ev.name(str(args.pop(0))),  # patsy's quoting of a column name
    "relevel": _relevel, "as.numeric": _as_numeric, "as.double": _as_numeric, "as.integer": _as_numeric,
    "log": _log, "c": _c,
    "pmin": lambda ev, node, args: reduce(np.minimum, [_numeric(a, deparse(node)) for a in args.rest()]),
    "pmax": lambda ev, node, args: reduce(np.maximum, [_numeric(a, deparse(node)) for a in args.rest()]),
    "ifelse": lambda ev, node, args: np.where(*[_numeric(a, deparse(node)) for a in args.rest()]),
    "round": lambda ev, node, args: np.round(_numeric(args.pop(0), deparse(node)), int(args.get("digits", 0))),
    **{name: _unary_np(fn) for name, fn in {
        "exp": np.exp, "sqrt": np.sqrt, "abs": np.abs, "log10": np.log10, "log2": np.log2,
        "log1p": np.log1p, "expm1": np.expm1, "sin": np.sin, "cos": np.cos, "tan": np.tan,
        "floor": np.floor, "ceiling": np.ceil, "trunc": np.trunc, "sign": np.sign}.items()},
}
"""Functions with R's meaning (R's name -> implementation); other calls go to the caller's
variables or a module attribute (``np.log``)."""

STATEFUL = {"scale", "poly"}
CONSTANTS = {"TRUE": True, "FALSE": False, "T": True, "F": False, "True": True, "False": False,
             "pi": np.pi, "Inf": np.inf, "NA": np.nan, "NaN": np.nan}

_OPS = {
    "+": np.add, "-": np.subtract, "*": np.multiply, "/": np.true_divide, "^": np.power,
    "%%": np.mod, "%/%": np.floor_divide, "==": np.equal, "!=": np.not_equal, "<": np.less,
    ">": np.greater, "<=": np.less_equal, ">=": np.greater_equal, "&": np.logical_and,
    "|": np.logical_or, "&&": np.logical_and, "||": np.logical_or,
}


class _Args:
    """A call's evaluated arguments: ``pop(0)`` takes the next positional, ``pop(name)`` a keyword."""

    def __init__(self, positional, keywords):
        self.positional, self.keywords = list(positional), dict(keywords)

    def pop(self, key, default=None):
        if isinstance(key, int):
            if not self.positional:
                raise FormulaError("a formula function call is missing an argument")
            return self.positional.pop(key)
        return self.keywords.pop(key, default)

    def rest(self) -> list:
        """All remaining positional arguments (``pmax(a, b, ...)``)."""
        out, self.positional = self.positional, []
        return out

    def get(self, name: str, default=None):
        """R's argument matching: the keyword ``name`` if given, else the next positional."""
        if name in self.keywords:
            return self.keywords.pop(name)
        return self.positional.pop(0) if self.positional else default

    def __len__(self):
        return len(self.positional) + len(self.keywords)


def is_data_value(value) -> bool:
    """Whether a caller's variable can stand in a formula as data (not a function, module or class)."""
    return not (callable(value) or isinstance(value, types.ModuleType))


class Evaluator:
    """Evaluate expression trees on one DataFrame with the caller's names and a transform state."""

    def __init__(self, frame: pd.DataFrame, env: dict, state: dict):
        self.frame, self.env, self.state = frame, env, state
        self.columns = {str(c): c for c in frame.columns}

    def name(self, name: str):
        if name in self.columns:
            return self.frame[self.columns[name]]
        if name in self.env and is_data_value(self.env[name]):
            return self.env[name]
        if name in CONSTANTS:
            return CONSTANTS[name]
        value = self._dotted(name)
        if value is not None and is_data_value(value):
            return value
        raise FormulaError(f"unknown column {name!r} in formula; the data has columns "
                           f"{', '.join(map(str, self.frame.columns))}")

    def _dotted(self, name: str):
        head, *rest = name.split(".")
        if head not in self.env or not rest:
            return None
        value = self.env[head]
        for part in rest:
            if not hasattr(value, part):
                return None
            value = getattr(value, part)
        return value

    def function(self, node):
        if node[0] != "name":
            raise FormulaError(f"cannot call {deparse(node)!r} in a formula")
        name = node[1]
        # R's own functions first: a caller's ``from math import log`` or sklearn's ``scale`` must not
        # change what ``log(x)`` or the stateful ``scale(x)`` of a formula mean
        if name in R_FUNCTIONS:
            return R_FUNCTIONS[name], None
        if name in self.env and callable(self.env[name]):
            return None, self.env[name]
        value = self._dotted(name)
        if callable(value):
            return None, value
        raise FormulaError(f"unknown function {name!r} in formula")

    def eval(self, node):
        kind = node[0]
        if kind == "num":
            return node[1]
        if kind == "str":
            return node[1]
        if kind == "name":
            return self.name(node[1])
        if kind == "paren":
            return self.eval(node[1])
        if kind == "unary":
            value = self.eval(node[2])
            if node[1] == "!":
                return np.logical_not(_numeric(value, deparse(node[2])))
            return -_numeric(value, deparse(node[2])) if node[1] == "-" else value
        if kind == "binop":
            op = node[1]
            left, right = self.eval(node[2]), self.eval(node[3])
            if op == "%in%":
                return _isin(left, right)
            if op not in _OPS:
                raise FormulaError(f"operator {op!r} is not supported inside a formula expression")
            a, b = _numeric(left, deparse(node[2])), _numeric(right, deparse(node[3]))
            if op == "^":
                a = np.asarray(a, dtype=float)
            return _OPS[op](a, b)
        r_fn, py_fn = self.function(node[1])
        args = [(k, self.eval(a)) for k, a in node[2]]
        if r_fn is not None:
            call_args = _Args([v for k, v in args if k is None], [(k, v) for k, v in args if k is not None])
            out = r_fn(self, node, call_args)
            if len(call_args):
                raise FormulaError(f"unused argument{'s' if len(call_args) > 1 else ''} in {deparse(node)!r}")
            return out
        plain = [_plain(v) for k, v in args if k is None]
        kw = {k: _plain(v) for k, v in args if k is not None}
        try:
            return py_fn(*plain, **kw)
        except Exception as exc:  # the user's function: name the call, keep the cause
            raise FormulaError(f"cannot evaluate {deparse(node)!r}: {exc}") from exc


def _plain(value):
    if isinstance(value, pd.Series):
        return value.to_numpy()
    return value


def _isin(left, right) -> np.ndarray:
    def labels(v):
        if isinstance(v, Factor):
            return np.array([v.levels[c] if c >= 0 else None for c in v.codes], dtype=object)
        return np.asarray(v.to_numpy() if isinstance(v, pd.Series) else v, dtype=object)
    return np.isin(labels(left), np.atleast_1d(labels(right)))


def evaluate(node, frame: pd.DataFrame, env: dict, state: dict):
    """The value of one formula expression on ``frame``: a float array, a :class:`Factor` (factor,
    string, categorical or logical columns) or a :class:`Matrix`."""
    value = Evaluator(frame, env, state).eval(node)
    return as_variable(value, deparse(node), len(frame))


def as_variable(value, label: str, n: int):
    """Normalise a value to what the model matrix needs."""
    if isinstance(value, (Factor, Matrix)):
        return value
    if isinstance(value, pd.Series):
        if isinstance(value.dtype, pd.CategoricalDtype) or value.dtype == object or value.dtype == bool \
                or pd.api.types.is_string_dtype(value.dtype):
            return as_factor(value)
        return value.to_numpy(dtype=float, na_value=np.nan)
    arr = np.asarray(value)
    if arr.ndim == 0:
        arr = np.full(n, arr)
    if arr.dtype == bool or arr.dtype.kind in "OUS":
        return as_factor(arr)
    if arr.ndim == 2:
        if arr.shape[1] == 1:
            return arr[:, 0].astype(float)
        return Matrix(arr.astype(float), [str(i) for i in range(1, arr.shape[1] + 1)])
    if arr.shape != (n,):
        raise FormulaError(f"variable {label!r} has length {arr.size} but the data has {n} rows")
    return arr.astype(float)

