"""Every check mixedpy makes on its inputs, in one place.

The model-building stages (``formula.design.build_design``, ``lmer``, ``glmer``, the families,
the model matrix, ``predict``, ``bayes_lmer``/``bayes_glmer``) call these functions for their data
checks.  A check either raises an exception from :mod:`mixedpy.errors` that names the problem, or
warns with a specific category (:class:`~mixedpy.errors.DataWarning` and its subclasses) saying
what was done.  The identifiability checks are lme4 1.1's, with lme4's defaults
(``lmerControl()``/``glmerControl()``; lme4 ``R/modular.R``):

* ``checkNlevels``: every grouping factor needs > 1 sampled level (``check.nlev.gtr.1 = "stop"``)
  and fewer levels than observations, or at most as many for a GLMM (``check.nobs.vs.nlev``);
* ``checkZdims``: per random-effects term, fewer random effects (levels x coefficients) than
  observations, or at most as many for a GLMM (``check.nobs.vs.nRE``); glmer passes
  ``allow.n = TRUE``, which is what lets an observation-level effect (1 | obs) sit beside others;
* ``chkRank.drop.cols``: rank-deficient fixed-effects columns are dropped with lme4's message
  (``check.rankX = "message+drop.cols"``; a :class:`~mixedpy.errors.RankDeficiencyWarning` here);
* ``checkScaleX``: warn when non-indicator columns of X are on very different scales.

lme4's ``check.nobs.vs.rankZ`` and ``check.nlev.gtreq.5`` default to ``"ignore"`` and are not made.
The data checks follow R's ``model.frame``/``model.matrix``: rows with missing values are dropped
(``na.omit``) and counted, a factor with one level in the rows used is an error ("contrasts can be
applied only to factors with 2 or more levels"), an infinite value is an error (R fails in ``qr``).
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .errors import (DataError, DataWarning, MissingValuesWarning, RankDeficiencyWarning, ScaleWarning,
                     ZeroWeightsWarning)
from .frames import to_pandas


# -- arguments ------------------------------------------------------------------------------
def check_bool(value, name: str) -> bool:
    """``value`` as a bool; anything but True/False (numpy bools included) is an error, so that
    ``REML="no"`` does not silently mean REML."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")


# -- the data frame -------------------------------------------------------------------------
def as_data_frame(data) -> pd.DataFrame:
    """``data`` as a DataFrame with unique column names (polars, pyarrow and interchange-protocol
    frames are converted by :func:`mixedpy.frames.to_pandas`)."""
    data = to_pandas(data)
    if not isinstance(data, pd.DataFrame):
        try:
            data = pd.DataFrame(data)
        except Exception as exc:
            raise DataError(f"data must be a pandas DataFrame (or convertible), got {type(data).__name__}") from exc
    dup = data.columns[data.columns.duplicated()]
    if len(dup):
        names = ", ".join(map(repr, pd.unique(np.asarray(dup, dtype=object))))
        raise DataError(f"the data has duplicate column names: {names}; a formula could not tell them apart. "
                        "Rename them (e.g. data.columns = [...]) before fitting")
    return data


def resolve_vector(arg, data: pd.DataFrame, what: str) -> np.ndarray | None:
    """A per-row argument (``weights``, ``offset``) as a float array aligned with ``data``'s rows:
    a column name, a pandas Series (aligned by ``data``'s index, as pandas aligns; an error if the
    indexes differ) or an array in row order."""
    if arg is None:
        return None
    if isinstance(arg, str):
        if arg not in data.columns:
            raise DataError(f"{what}={arg!r} is not a column of the data")
        arg = data[arg]
    elif isinstance(arg, pd.Series) and not arg.index.equals(data.index):
        same_labels = (arg.index.is_unique and data.index.is_unique and len(arg) == len(data)
                       and arg.index.sort_values().equals(data.index.sort_values()))
        if not same_labels:
            raise DataError(f"{what} is a Series whose index does not match the data's index; pass a Series "
                            f"indexed like the data, a column name, or an array in row order "
                            f"(e.g. {what}=s.to_numpy())")
        arg = arg.reindex(data.index)
    arr = numeric_vector(arg, what, len(data))
    if arr.shape != (len(data),):
        raise DataError(f"{what} has length {arr.size} but the data has {len(data)} rows")
    return arr


def numeric_vector(value, what: str, n: int) -> np.ndarray:
    """A numeric (or boolean) vector as floats; strings are an error, never parsed into numbers
    (R: "response must be numeric")."""
    arr = np.asarray(value)
    if arr.ndim == 0:
        arr = np.full(n, arr)
    if arr.dtype.kind in "biuf":
        return arr.astype(float)
    if arr.dtype.kind == "O":
        kind = pd.api.types.infer_dtype(arr.ravel(), skipna=True)
        if kind in ("integer", "floating", "mixed-integer-float", "boolean", "decimal", "empty"):
            return pd.to_numeric(pd.Series(arr.ravel()), errors="coerce").to_numpy(dtype=float).reshape(arr.shape)
        raise DataError(f"{what} is not numeric: it holds {kind} values (e.g. {arr.ravel()[0]!r}). "
                        "Convert the column first (e.g. pd.to_numeric(df[col])) if the values are numbers")
    raise DataError(f"{what} is not numeric (dtype {arr.dtype}); convert the column first "
                    "(e.g. pd.to_numeric(df[col])) if the values are numbers")


def report_missing(mask: np.ndarray) -> int:
    """Warn (MissingValuesWarning) with the number of rows dropped for missing values; error if none is left."""
    n_dropped = int((~mask).sum())
    if n_dropped:
        warnings.warn(f"{n_dropped} row{'s' if n_dropped > 1 else ''} with missing values dropped "
                      f"({int(mask.sum())} of {mask.size} used)", MissingValuesWarning, stacklevel=4)
    if not mask.any():
        raise DataError("no complete rows left after dropping missing values")
    return n_dropped


def check_weights(w: np.ndarray | None, mask: np.ndarray) -> None:
    """Prior weights must be finite and >= 0 on the rows used."""
    if w is None:
        return
    used = w[mask]
    if not np.all(np.isfinite(used)):
        raise DataError(f"weights must be finite; {int((~np.isfinite(used)).sum())} used row(s) have inf")
    if np.any(used < 0):
        raise DataError(f"weights must be non-negative; {int((used < 0).sum())} used row(s) are negative "
                        f"(first {used[used < 0][0]:g})")


def drop_zero_weights(w: np.ndarray | None, mask: np.ndarray) -> np.ndarray:
    """Leave rows with prior weight 0 out of a linear mixed model (with a ZeroWeightsWarning).

    A zero weight means the row carries no information; lme4's lmer keeps it and its profiled
    deviance has the term -sum log w_i = +inf (logLik -Inf, the optimizer stops with "Gradient
    contains NAs"), so R has no defined answer.  We follow R's ``lm``, whose residual degrees of
    freedom leave such rows out: sigma, logLik and nobs equal those of the fit without the rows.
    (glmer keeps them, as lme4's glmer does: they add nothing to the likelihood.)
    """
    if w is None:
        return mask
    zero = mask & (w == 0)
    k = int(zero.sum())
    if not k:
        return mask
    warnings.warn(f"{k} row{'s' if k > 1 else ''} with weight 0 left out of the fit (they carry no "
                  "information; sigma and the degrees of freedom use the remaining rows, as R's lm)",
                  ZeroWeightsWarning, stacklevel=4)
    mask = mask & ~zero
    if not mask.any():
        raise DataError("every row has weight 0 or a missing value")
    return mask


# -- response, predictors, offset -----------------------------------------------------------
def check_finite(values: np.ndarray, what: str, row_index=None) -> None:
    """Error naming ``what`` when an array has NaN or inf (R: "NA/NaN/Inf in 'y'", or qr failing)."""
    bad = ~np.isfinite(values)
    if bad.any():
        rows = np.flatnonzero(bad.reshape(bad.shape[0], -1).any(axis=1))
        first = rows[0] if row_index is None else row_index[rows[0]]
        kinds = sorted({"NaN" if np.isnan(v) else ("inf" if v > 0 else "-inf") for v in values[bad][:50]})
        raise DataError(f"{what} has non-finite values ({', '.join(kinds)}) in {rows.size} row(s) (first at row "
                        f"{first!r}); remove or replace them (missing values are dropped only when NaN is in "
                        "the data itself)")


def check_finite_columns(X: np.ndarray, names: list[str], what: str, row_index=None) -> None:
    """Error naming the columns of a model matrix with NaN or inf (e.g. inf in a predictor, or log(0))."""
    bad = ~np.isfinite(X)
    if not bad.any():
        return
    cols = np.flatnonzero(bad.any(axis=0))
    rows = np.flatnonzero(bad.any(axis=1))
    first = rows[0] if row_index is None else row_index[rows[0]]
    raise DataError(f"{what} column{'s' if cols.size > 1 else ''} {', '.join(repr(names[j]) for j in cols)} "
                    f"{'have' if cols.size > 1 else 'has'} non-finite values (inf or NaN) in {rows.size} row(s) "
                    f"(first at row {first!r}); remove or replace those values (R's lmer stops too: "
                    "'NA/NaN/Inf in foreign function call')")


def check_constant_response(y: np.ndarray, weights: np.ndarray | None, name: str, model: str) -> None:
    """A response with a single value (over rows with positive weight) is an error.

    glmer: lme4's ``check.response.not.const = "stop"`` ("Response is constant").  lmer: lme4 1.1
    fits it and returns sigma ~ 1e-17 with convergence warnings; here the error says why instead.
    """
    yy = np.asarray(y, dtype=float)
    if weights is not None:
        yy = yy[np.asarray(weights) > 0]
    if yy.size == 0 or np.all(yy == yy[0]):   # (np.unique would sort all n values)
        value = f" (every value is {yy[0]:g})" if yy.size else ""
        raise DataError(f"response {name!r} is constant{value}: {model} needs variation in the response "
                        "(the residual and random-effect variances are not identifiable otherwise)")


# -- factors -----------------------------------------------------------------------------------
def check_factor_levels(label: str, levels) -> None:
    """R's ``model.matrix`` error for a factor with one level in the rows used: "contrasts can be
    applied only to factors with 2 or more levels" (a one-level factor would otherwise vanish into
    the intercept without a word)."""
    k = len(levels)
    if k < 2:
        seen = f" ({levels[0]!r})" if k else ""
        raise DataError(f"factor {label!r} has {k} level{seen} in the rows used; contrasts can be applied only to "
                        "factors with 2 or more levels (R's model.matrix error). Remove it from the formula or "
                        "check the data")


# -- lme4's identifiability checks ---------------------------------------------------------------
def check_nlevels(terms, n: int, allow_n: bool) -> None:
    """lme4 ``checkNlevels`` over the distinct grouping factors: > 1 sampled level, and fewer levels
    than observations (``allow_n``, glmer: at most as many)."""
    nlev: dict[str, int] = {}
    for t in terms:
        nlev.setdefault(t.group_name, t.n_levels)
    one = [g for g, k in nlev.items() if k < 2]
    if one:
        raise DataError(f"grouping factor {one[0]!r} has {nlev[one[0]]} level; grouping factors must have > 1 "
                        "sampled level (lme4 check.nlev.gtr.1)")
    bad = [g for g, k in nlev.items() if (k > n if allow_n else k >= n)]
    if bad:
        detail = ", ".join(f"{g!r} has {nlev[g]} levels" for g in bad)
        raise DataError(f"number of levels of each grouping factor must be {'<=' if allow_n else '<'} number of "
                        f"observations (problems: {detail} for {n} observations; lme4 check.nobs.vs.nlev)")


def check_zdims(terms, n: int, allow_n: bool) -> None:
    """lme4 ``checkZdims``: for each term, the number of random effects q_i = levels x coefficients
    must be below n (lmer, where q_i = n is confounded with the residual) or at most n (glmer).
    Skipped when any term has a covariance structure, as lme4 2.x does (its few parameters can be
    identified even with one observation per random effect)."""
    if any(getattr(t, "is_structured", False) for t in terms):
        return
    for t in terms:
        q = t.n_coefs
        if (n < q) if allow_n else (n <= q):
            cmp = "<" if allow_n else "<="
            resid = "" if allow_n else " and the residual variance (or scale parameter)"
            raise DataError(f"number of observations (={n}) {cmp} number of random effects (={q}) for term "
                            f"({t.expr} | {t.group_name}); the random-effects parameters{resid} are probably "
                            "unidentifiable (lme4 check.nobs.vs.nRE)")


def drop_rank_deficient(X: np.ndarray, tol: float = 1e-7) -> np.ndarray:
    """Indices of the columns kept by LINPACK-style limited pivoting (lme4 ``chkRank.drop.cols``,
    ``qr(X, tol = 1e-7, LAPACK = FALSE)``).

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


def warn_rank_deficient(dropped: list[str]) -> None:
    """lme4's message for dropped columns, as a RankDeficiencyWarning naming them."""
    k = len(dropped)
    if k:
        warnings.warn(f"fixed-effect model matrix is rank deficient so dropping {k} column"
                      f"{'s' if k > 1 else ''} / coefficient{'s' if k > 1 else ''} ({', '.join(dropped)})",
                      RankDeficiencyWarning, stacklevel=4)


def warn_on_scales(X: np.ndarray, names: list[str]) -> None:
    """lme4 ``checkScaleX`` (``check.scaleX = "warning"``): over the columns that are not 0/1
    indicators, warn when two SDs differ by more than a factor 1000 or one SD is beyond 1000 or
    below 1/1000 (a constant non-indicator column has SD 0 and warns, as in lme4)."""
    if X.shape[0] < 2:
        return
    binary = np.all((X == 0) | (X == 1), axis=0)
    sd = X[:, ~binary].std(axis=0, ddof=1)
    if sd.size == 0:
        return
    with np.errstate(divide="ignore"):
        logsd = np.log(sd)
    if np.ptp(logsd) > np.log(1000) or np.max(np.abs(logsd)) > np.log(1000):
        cols = [n for n, b in zip(names, binary) if not b]
        warnings.warn("Some predictor variables are on very different scales: consider rescaling "
                      f"(e.g. scale(x) in the formula); SDs {', '.join(f'{c}={s:.3g}' for c, s in zip(cols, sd))}",
                      ScaleWarning, stacklevel=4)


# -- new data for predictions --------------------------------------------------------------------
def as_training_keys(values: pd.Series, dtype) -> np.ndarray:
    """newdata's grouping values as the fit's level labels, matched by value in the training
    column's dtype: 101.0 is level "101" of an integer column, 2 is level "2.0" of a float one,
    101 is level "101" of a string column (R compares factor levels as.character)."""
    if isinstance(dtype, pd.CategoricalDtype):
        dtype = dtype.categories.dtype
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype(object)
    kind = getattr(dtype, "kind", "O")
    text = values.astype(object).map(str).to_numpy(dtype=object)
    if kind in "iuf" or values.dtype.kind in "iuf":
        num = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
        ok = np.isfinite(num)
        if kind == "f":
            text = np.where(ok, pd.Series(num).astype(str).to_numpy(dtype=object), text)
        elif kind in "iu" or values.dtype.kind in "iuf":
            # integer training column, or numbers matched against string labels: 101.0 -> "101"
            integral = ok & (num == np.round(num)) & (np.abs(num) < 2 ** 53)
            ints = np.where(integral, num, 0).astype(np.int64).astype(str).astype(object)
            text = np.where(integral, ints, text)
    return text


def check_new_group_values(group_name: str, keys: np.ndarray, codes: np.ndarray, missing: np.ndarray,
                           allow_new_levels: bool, effect: str = "random effects 0") -> None:
    """lme4's ``predict`` rules: a missing grouping value is an error unless ``allow_new_levels``
    (then it is a new level, with ``effect``); so is a level the fit has not seen."""
    if allow_new_levels:
        return
    if missing.any():
        raise DataError(f"newdata has {int(missing.sum())} row(s) with a missing value in grouping factor "
                        f"{group_name!r}; NAs are not allowed in prediction data for grouping variables unless "
                        f"allow_new_levels=True (then they get {effect}), as lme4")
    new = codes < 0
    if new.any():
        listing = ", ".join(map(str, sorted(set(keys[new].tolist()))))
        raise DataError(f"new levels detected in newdata for {group_name!r}: {listing[:60]}; "
                        f"pass allow_new_levels=True to predict them with {effect}")


def new_response(newresp, n: int) -> np.ndarray:
    """A replacement response for ``refit(newresp)``: n finite numbers."""
    y = numeric_vector(newresp, "newresp", n)
    if y.shape != (n,):
        raise DataError(f"newresp has shape {y.shape}; the model has {n} observations")
    check_finite(y, "newresp")
    return y


def check_single_response(y: np.ndarray, name: str, model: str, hint: str) -> None:
    """A Gaussian model needs one response column (a cbind() response is binomial)."""
    if y.ndim != 1:
        raise DataError(f"{model} needs a single numeric response; {name!r} has two columns ({hint})")


# -- family responses (glmer, bayes_glmer) --------------------------------------------------------
def check_binomial_response(y: np.ndarray, weights: np.ndarray | None, name: str) -> None:
    """A binomial response is 0/1, a proportion in [0, 1] (with ``weights`` = trials), or a
    ``cbind(successes, failures)`` pair of non-negative whole numbers (R's ``binomial()$initialize``).
    A proportion whose successes ``weights * y`` are not whole numbers warns, as R does."""
    prior = np.ones(y.shape[0]) if weights is None else np.asarray(weights, dtype=float)
    if y.ndim == 2:
        s, f = y[:, 0], y[:, 1]
        if np.any(s < 0):
            raise DataError(f"binomial response {name!r}: {int(np.sum(s < 0))} rows have negative successes")
        if np.any(f < 0):
            bad = np.flatnonzero(f < 0)
            raise DataError(
                f"binomial response {name!r}: successes exceed trials in {bad.size} row(s) (first at row "
                f"{bad[0]}: {s[bad[0]]:g} successes, {f[bad[0]]:g} failures); cbind() takes "
                "(successes, failures), not (successes, trials)")
        if np.any(np.abs(s - np.round(s)) > 1e-3) or np.any(np.abs(f - np.round(f)) > 1e-3):
            raise DataError(f"binomial response {name!r}: cbind(successes, failures) needs whole-number counts")
        return
    yv = np.asarray(y, dtype=float)
    if np.any(yv < 0) or np.any(yv > 1):
        if weights is not None and np.all(yv >= 0) and np.all(yv <= prior + 1e-8):
            raise DataError(
                f"binomial response {name!r} has values above 1 with weights given: with weights=trials "
                "the response must be the proportion of successes (successes exceed trials otherwise); "
                "or use cbind(successes, failures)")
        raise DataError(
            f"binomial response {name!r} must be 0/1 or a proportion in [0, 1] (found values from "
            f"{yv.min():g} to {yv.max():g}); for counts out of trials use cbind(successes, failures) or "
            "proportions with weights=trials")
    k = prior * yv
    if np.any(np.abs(k - np.round(k)) > 1e-3):
        warnings.warn(f"non-integer number of successes in binomial response {name!r}: proportions need "
                      "weights=trials (successes = weights * y must be whole numbers)", DataWarning, stacklevel=4)


def check_poisson_response(y: np.ndarray, name: str, family: str = "poisson") -> None:
    """A Poisson (or other count-family: ``family``) response is one column of non-negative whole numbers."""
    if y.ndim != 1:
        raise DataError(f"{family} response {name!r} must be a single column of counts, not cbind(...)")
    yv = np.asarray(y, dtype=float)
    if np.any(yv < 0):
        bad = np.flatnonzero(yv < 0)
        raise DataError(f"{family} response {name!r} has {bad.size} negative value(s) (first {yv[bad[0]]:g} "
                        f"at row {bad[0]}); counts must be >= 0")
    frac = np.abs(yv - np.round(yv)) > 1e-8
    if np.any(frac):
        bad = np.flatnonzero(frac)
        label = "Poisson" if family == "poisson" else family
        raise DataError(f"{family} response {name!r} has {bad.size} non-integer value(s) (first {yv[bad[0]]:g} "
                        f"at row {bad[0]}); the {label} family models counts. For rates use counts with "
                        "offset=np.log(exposure)")


def check_positive_response(y: np.ndarray, name: str, family: str, link: str, positive_only: bool) -> None:
    """A Gamma or inverse-Gaussian response is one column of positive numbers (R's ``validmu`` and
    ``initialize``: "non-positive values not allowed for the 'Gamma' family"); a gaussian response with
    the log link needs y > 0 and with the inverse link y != 0 for R's starting values (mu = y)."""
    if y.ndim != 1:
        raise DataError(f"{family} response {name!r} must be a single numeric column, not cbind(...)")
    yv = np.asarray(y, dtype=float)
    if positive_only or link == "log":
        bad = np.flatnonzero(yv <= 0)
        need = "positive values (y > 0)"
    elif link == "inverse":
        bad = np.flatnonzero(yv == 0)
        need = "non-zero values"
    else:
        return
    if bad.size:
        what = (f"the {family} family" if positive_only else
                f"starting values of the {family} family with the {link} link (mu = y)")
        raise DataError(f"response {name!r} has {bad.size} value(s) not allowed for {what} (first {yv[bad[0]]:g} "
                        f"at row {bad[0]}); it needs {need}. Drop or recode those rows, or choose another family.")
