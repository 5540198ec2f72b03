"""Model building as in R: ``update`` (with R's ``update.formula``), ``drop1`` and ``ranova``.

* :func:`update_formula` is R's ``update.formula(old, new)``: ``.`` on the left of ``new`` stands
  for the old response and on the right for the old right-hand side; the result is simplified as
  R's ``terms.formula(simplify = TRUE)`` does (term labels sorted by order, random-effects terms
  in parentheses, offsets last, ``- 1`` for no intercept).
* :func:`update` refits a model with an updated formula and/or other arguments, as R's
  ``update(fit, . ~ . + x, REML = FALSE)``: the new call is evaluated where ``update`` was called,
  so the data is found by the name it had when the model was fitted (``fit.data_name``), as R
  finds it; ``data=`` gives it explicitly.
* :func:`drop1` is lmerTest's ``drop1.lmerModLmerTest`` for lmer fits (one F test per marginal
  term, with Satterthwaite's or Kenward-Roger's df, from :mod:`mixedpy.lmertest`) and lme4's
  ``drop1.merMod`` otherwise (the model refitted without each marginal term, by ML; AIC and the
  likelihood-ratio test).
* :func:`ranova` is lmerTest's ``ranova``: a likelihood-ratio test for each random-effects term,
  reduced (``(x | g)`` to ``(1 | g)``) or removed (``(1 | g)``).

Sources: R's ``stats::update.formula``/``terms.formula``/``drop.scope``, lme4 1.1-31
``drop1.merMod``/``findbars``/``nobars``/``expandDoubleVerts``, lmerTest 3.1-3 ``drop1``,
``ranova``, ``get_newforms``, ``mk_LRtab`` (Kuznetsova, Brockhoff & Christensen 2017, J. Stat.
Softw. 82(13), section 5).
"""
from __future__ import annotations

import builtins
import sys

import numpy as np
import pandas as pd

from .anova_contrasts import FixedTerms, _few_terms, marginal, type1, zapsmall
from .errors import DataError, FormulaError, MixedpyError
from .formula.bars import _expand_group, top_level_chars
from .formula.design import _eval_expr
from .formula.modelmatrix import fixed_matrix
from .formula.rsyntax import all_names, deparse, parse
from .formula.rterms import expand_dot, expand_terms
from .likelihood_ratio import chisq_pvalue
from .lmertest import F_COLUMNS, _check_ddf, _f_row, _is_lmer
from .threads import controls_threads

# ------------------------------------------------------------------------------------------
# R's update.formula


def split_formula(formula: str) -> tuple[str | None, str]:
    """(lhs or None, rhs) of ``"lhs ~ rhs"`` / ``"~ rhs"``, split at the top-level ``~``."""
    if not isinstance(formula, str):
        raise FormulaError(f"a formula must be a string, got {type(formula).__name__}")
    cut = None
    for i, ch in top_level_chars(formula):
        if ch == "~":
            if cut is not None:
                raise FormulaError(f"formula {formula!r} has more than one '~'")
            cut = i
    if cut is None:
        raise FormulaError(f"{formula!r} is not a formula: it has no '~' (write '. ~ . + x' or '~ . + x')")
    lhs, rhs = formula[:cut].strip(), formula[cut + 1:].strip()
    if not rhs:
        raise FormulaError(f"formula {formula!r} has nothing on the right of '~'")
    return (lhs or None), rhs


_OPERATORS = ("binop", "unary")


def _substitute_dot(node, value, paren: bool):
    """``node`` with every ``.`` replaced by ``value``; with ``paren`` the value is parenthesized
    where it is the operand of an operator (R's ``ExpandDots``, which adds parentheses only where
    precedence needs them: the printed formula means the same)."""

    def sub(n, operand: bool):
        if n == ("name", "."):
            return ("paren", value) if paren and operand and value[0] in _OPERATORS else value
        kind = n[0]
        if kind == "binop":
            return ("binop", n[1], sub(n[2], True), sub(n[3], True))
        if kind == "unary":
            return ("unary", n[1], sub(n[2], True))
        if kind == "paren":
            return ("paren", sub(n[1], False))
        if kind == "call":
            return ("call", sub(n[1], False), tuple((k, sub(a, False)) for k, a in n[2]))
        return n

    return sub(node, False)


def _is_offset(node) -> bool:
    return node[0] == "call" and node[1] == ("name", "offset")


def simplify_rhs(rhs: str) -> str:
    """The right-hand side as R's ``formula(terms.formula(f, simplify = TRUE))`` writes it: the
    term labels (sorted by order) joined by ``+``, labels with a ``|`` in parentheses, the
    offsets after them, ``1`` when there is no term and ``- 1`` when there is no intercept; then
    parsed and deparsed (R's ``fixFormulaObject``)."""
    ts = expand_terms(rhs)
    offsets = {v for v, node in enumerate(ts.variables) if _is_offset(node)}
    labels = [":".join(ts.labels[v] for v in t) for t in ts.terms if not offsets & set(t)]
    labels = [f"({lab})" if "|" in lab else lab for lab in labels]
    labels += [ts.labels[v] for v in sorted(offsets)]
    text = " + ".join(labels) if labels else "1"
    if not ts.intercept:
        text += " - 1"
    return deparse(parse(text))


def update_formula(old: str, new: str) -> str:
    """R's ``update.formula(old, new)`` as a string.

    >>> update_formula("Reaction ~ Days + (Days | Subject)", ". ~ . - (Days | Subject) + (1 | Subject)")
    'Reaction ~ Days + (1 | Subject)'
    >>> update_formula("y ~ x + (1 | g)", "log(.) ~ . + z")
    'log(y) ~ x + (1 | g) + z'

    A ``.`` left in the result (the old formula's own ``.``, R's "every other column") is an
    error, as in R without data; :func:`update` first writes it out over the data's columns.
    """
    old_lhs, old_rhs = split_formula(old)
    new_lhs, new_rhs = split_formula(new)
    if new_lhs is None:
        lhs = old_lhs
    elif old_lhs is None:
        if "." in _names(new_lhs):
            raise FormulaError(f"'.' on the left of {new!r} stands for the response of {old!r}, which has none")
        lhs = deparse(parse(new_lhs))
    else:
        lhs = deparse(_substitute_dot(parse(new_lhs), parse(old_lhs), paren=True))
    rhs_node = _substitute_dot(parse(new_rhs), ("paren", parse(old_rhs)), paren=False)
    rhs = simplify_rhs(deparse(rhs_node))
    return f"{lhs} ~ {rhs}" if lhs is not None else f"~{rhs}"


def _names(expr: str) -> set[str]:
    return set(all_names(parse(expr)))


# ------------------------------------------------------------------------------------------
# update: a refitted model


def _user_namespace() -> dict:
    """Names visible in the first frame outside mixedpy: where the user called us (R evaluates
    ``update``'s new call in the caller's environment, ``parent.frame()``)."""
    frame = sys._getframe(1)
    try:
        while frame.f_back is not None and str(frame.f_globals.get("__name__", "")).startswith("mixedpy."):
            frame = frame.f_back
        return {**frame.f_globals, **frame.f_locals}
    finally:
        del frame


def model_data(fit, data=None, namespace: dict | None = None):
    """The data a refit of ``fit`` uses: ``data`` when given, else the object called
    ``fit.data_name`` where the user called us (fits do not keep their data)."""
    if data is not None:
        return data
    ns = _user_namespace() if namespace is None else namespace
    name = getattr(fit, "data_name", "data")
    found = ns.get(name)
    if found is None or not hasattr(found, "columns"):
        raise MixedpyError(f"refitting this model needs its data: no data frame called {name!r} (the name it had "
                           "when the model was fitted) is visible here, and mixedpy fits do not keep their "
                           "data; pass data=")
    index = getattr(found, "index", None)
    if isinstance(found, pd.DataFrame) and not fit.design.row_index.isin(index).all():
        raise MixedpyError(f"{name!r} is not the data this model was fitted to (it lacks some of the model's "
                           "rows); pass data=")
    return found


def model_formula(fit, data) -> str:
    """The fit's formula with R's ``.`` written out over ``data``'s columns (as the fit was built)."""
    lhs, rhs = split_formula(fit.formula)
    if "." not in rhs:
        return fit.formula
    used = _names(lhs) if lhs else set()
    return f"{lhs} ~ {expand_dot(rhs, [str(c) for c in data.columns if str(c) not in used])}"


def _fit_call(fit) -> tuple[object, dict]:
    """The fitting function of ``fit`` and the arguments that reproduce it (R's ``getCall``)."""
    from .glmer import GlmerFit, glmer
    from .lmer import lmer

    kwargs: dict = {}
    if getattr(fit, "na_action", "omit") != "omit":
        kwargs["na_action"] = fit.na_action
    if getattr(fit, "control", None) is not None:
        kwargs["control"] = fit.control
    if type(fit).__name__ == "GlmerNbFit":
        from .glmer_nb import glmer_nb

        return glmer_nb, {**kwargs, "link": fit.family.link.name, "nAGQ": fit.nAGQ}
    if isinstance(fit, GlmerFit):
        return glmer, {**kwargs, "family": fit.family, "nAGQ": fit.nAGQ}
    if hasattr(fit, "reml") and hasattr(fit, "problem"):
        return lmer, {**kwargs, "REML": fit.reml}
    raise TypeError(f"update refits lmer, glmer and glmer_nb fits, got {type(fit).__name__}")


def _row_arguments(fit, data, overrides: dict) -> tuple[object, dict]:
    """The fit's prior weights and offset argument, given to the refit on the rows it used.

    mixedpy does not record whether they were given as column names or arrays, so they are
    passed as arrays over the fit's rows (the data is cut to those rows); an offset written in the
    formula (``offset(log(n))``) is evaluated again and is not counted twice.
    """
    d = fit.design
    extra: dict = {}
    if d.weights is not None and "weights" not in overrides:
        extra["weights"] = np.asarray(d.weights, dtype=float)
    if "offset" not in overrides and np.any(d.offset != 0):
        off = np.asarray(d.offset, dtype=float).copy()
        if d.parsed.offsets:
            frame = data.loc[d.row_index].reset_index(drop=True)
            for expr in d.parsed.offsets:
                off -= np.asarray(_eval_expr(expr, frame, d.env), dtype=float)
        if np.any(off != 0):
            extra["offset"] = off
    if not extra:
        return data, {}
    if not isinstance(data, pd.DataFrame):
        raise MixedpyError("the fit has prior weights or an offset argument; pass weights=/offset= to update "
                           "for this data")
    if not d.row_index.isin(data.index).all():
        raise MixedpyError("the fit has prior weights or an offset argument given per row of its own data; "
                           "pass weights= and offset= with the new data")
    return data.loc[d.row_index], extra


def refit_formula(fit, formula: str, data, namespace: dict, **overrides):
    """Fit ``formula`` with ``fit``'s fitting function and arguments (``overrides`` replacing
    them) on ``data``; the call is evaluated in ``namespace`` (with the names the fit's formula
    used), so the new formula sees the caller's variables as R's ``update`` does."""
    fn, kwargs = _fit_call(fit)
    data, rows = _row_arguments(fit, data, overrides)
    kwargs.update(rows)
    kwargs.update(overrides)
    name = fit.data_name if str(getattr(fit, "data_name", "")).isidentifier() else "data"
    scope = {**namespace, **fit.design.env, "__builtins__": builtins, name: data,
             "_mixedpy_fit_": fn, "_mixedpy_args_": {"formula": formula, "data": data, **kwargs}}
    # evaluated as the caller's own call: the fitting function reads the formula's names (and the
    # data's name, for display) from the frame that called it
    return eval("_mixedpy_fit_(**_mixedpy_args_)", scope)   # noqa: S307 - a fixed expression


def update(fit, formula: str | None = None, *, data=None, **overrides):
    """R's ``update(fit, formula, ...)``: the model refitted with an updated formula and/or
    other arguments; returns a fit of the same kind (lmer, glmer, glmer_nb).

    ``formula`` follows R's ``update.formula`` (:func:`update_formula`): ``". ~ . + x"``,
    ``". ~ . - x"``, ``"log(.) ~ ."``, ``"~ . + (1 | h)"``.  Keyword arguments replace the fit's
    own (``REML=False``, ``family=``, ``nAGQ=``, ``control=``, ``weights=``, ...).

    The data is ``data=`` or, as in R, the object that has the data's name where ``update`` is
    called (``fit.data_name``).  Prior weights and an offset argument are carried over as arrays
    over the fit's rows.

    >>> fit2 = mp.update(fit, ". ~ . - (Days | Subject) + (1 | Subject)")   # doctest: +SKIP
    >>> fit_ml = mp.update(fit, REML=False)                                  # doctest: +SKIP
    """
    namespace = _user_namespace()
    data = model_data(fit, data, namespace)
    old = model_formula(fit, data)
    new = old if formula is None else update_formula(old, formula)
    return refit_formula(fit, new, data, namespace, **overrides)


# ------------------------------------------------------------------------------------------
# drop1


def drop_scope(term_vars: list[tuple[int, ...]], labels: list[str]) -> list[str]:
    """R's ``drop.scope``: the terms no other term contains (all of whose variables no other term
    has), i.e. those that can be dropped without breaking marginality."""
    sets = [set(t) for t in term_vars]
    return [lab for i, lab in enumerate(labels) if not any(j != i and sets[i] <= s for j, s in enumerate(sets))]


def _scope(scope, marginal_terms: list[str], all_terms: list[str], lmertest: bool) -> list[str]:
    if scope is None:
        return marginal_terms
    if isinstance(scope, str):
        scope = expand_terms(split_formula(scope)[1]).term_labels() if "~" in scope else [scope]
    scope = list(scope)
    allowed = marginal_terms if lmertest else all_terms
    bad = [s for s in scope if s not in allowed]
    if not scope or bad:
        what = "marginal terms (" if lmertest else "terms of the model ("
        raise ValueError(f"scope {bad or scope} is not a subset of the {what}{', '.join(allowed) or 'none'})")
    return scope


def difference_contrasts(X0: np.ndarray, X: np.ndarray) -> np.ndarray:
    """lmerTest's ``get_Ldiffmat2``: the contrasts of the coefficients of X that the smaller model
    matrix X0 does not span.  R = the residuals of each column of X regressed on X0 (columns with
    sum |R| <= 1e-8 dropped), L' = the zapsmall-ed Q of the QR of X'R."""
    coef = np.linalg.lstsq(X0, X, rcond=None)[0] if X0.shape[1] else np.zeros((0, X.shape[1]))
    R = X - X0 @ coef
    R = R[:, np.abs(R).sum(axis=0) > 1e-8]
    if R.shape[1] == 0:
        return np.zeros((0, X.shape[1]))
    Q = np.linalg.qr(X.T @ R)[0]
    return zapsmall(Q).T


def _difference_hypotheses(fit, scope: list[str], data, namespace) -> dict[str, np.ndarray]:
    """Each term's contrasts from the model matrix without it, on the model's rows (lmerTest's
    drop1 when X lost aliased columns, or with ``force_get_contrasts``)."""
    d = fit.design
    data = model_data(fit, data, namespace)
    frame = data.loc[d.row_index].reset_index(drop=True)
    old = model_formula(fit, data)
    X = np.asarray(d.X, dtype=float)
    out = {}
    for term in scope:
        rhs = nobars(split_formula(update_formula(old, f"~ . - ({term})"))[1])
        X0 = fixed_matrix(rhs, frame, d.env)[1]
        L = difference_contrasts(np.asarray(X0, dtype=float), X)
        out[term] = L if L.size else np.full((1, X.shape[1]), np.nan)
    return out


@controls_threads
def _drop1_f(fit, scope, ddf: str, force_get_contrasts: bool, data, namespace) -> pd.DataFrame:
    """lmerTest's ``drop1.lmerModLmerTest``: ``contestMD`` of each marginal term's coefficients."""
    ft = FixedTerms.of(fit.design)
    terms = drop_scope(ft.term_vars, ft.labels)
    scope = _scope(scope, terms, ft.labels, lmertest=True)
    if fit.design.dropped_columns or force_get_contrasts:
        Ls = _difference_hypotheses(fit, scope, data, namespace)
    elif _few_terms(ft):
        Ls = type1(ft)     # lmerTest's get_contrasts_marginal falls back to type 1 here
    else:
        Ls = {lab: marginal(ft, t) for t, lab in enumerate(ft.labels)}
    nan_row = dict.fromkeys(F_COLUMNS, np.nan)
    rows = [nan_row if np.isnan(Ls[s]).any() else _f_row(fit, Ls[s], ddf) for s in scope]
    out = pd.DataFrame(rows, index=pd.Index(scope, dtype=object), columns=F_COLUMNS)
    method = "Satterthwaite's" if ddf == "Satterthwaite" else "Kenward-Roger's"
    out.attrs["heading"] = f"Single term deletions using {method} method:\n\nModel:\n{fit.formula}"
    out.attrs["hypotheses"] = {s: pd.DataFrame(Ls[s], columns=fit.fixef_names) for s in scope}
    return out


def _same_rows(fit, other) -> None:
    if other.nobs != fit.nobs:
        raise DataError("number of rows in use has changed: remove missing values? "
                        f"({fit.nobs} rows in the model, {other.nobs} in a refit)")


def _drop1_lrt(fit, scope, test: str, k: float, data, namespace) -> pd.DataFrame:
    """lme4's ``drop1.merMod``: the model refitted without each term (``update(fit, ~ . - term)``),
    compared by ``extractAIC`` (ML log-likelihood: a REML lmer fit is refitted by ML)."""
    ft = FixedTerms.of(fit.design)
    scope = _scope(scope, drop_scope(ft.term_vars, ft.labels), ft.labels, lmertest=False)
    data = model_data(fit, data, namespace)
    old = model_formula(fit, data)
    ml = {"REML": False} if getattr(fit, "reml", False) else {}
    base = fit.refit(reml=False) if ml else fit
    fits = [base]
    for term in scope:
        fits.append(refit_formula(fit, update_formula(old, f"~ . - {term}"), data, namespace, **ml))
        _same_rows(fit, fits[-1])
    edf = np.array([f.df for f in fits], dtype=float)
    dev = np.array([-2.0 * f.loglik for f in fits])
    npar = edf[0] - edf
    npar[0] = np.nan
    out = pd.DataFrame({"npar": npar, "AIC": dev + k * edf}, index=pd.Index(["<none>", *scope], dtype=object))
    if test == "Chisq":
        lrt = dev - dev[0]
        lrt[0] = np.nan
        out["LRT"] = lrt
        out["Pr(Chi)"] = chisq_pvalue(lrt, npar)
    out.attrs["heading"] = f"Single term deletions\n\nModel:\n{fit.formula}"
    return out


def drop1(fit, scope=None, test: str | None = None, ddf: str = "Satterthwaite", k: float = 2, *, data=None,
          force_get_contrasts: bool = False) -> pd.DataFrame:
    """Tests of dropping each marginal fixed-effects term: lmerTest's ``drop1`` for an lmer fit,
    lme4's ``drop1`` otherwise.

    lmer fit, ``test=None`` or ``"F"``: lmerTest's F table (``ddf="Satterthwaite"`` or
    ``"Kenward-Roger"``), index the marginal terms, columns ``Sum Sq``, ``Mean Sq``, ``NumDF``,
    ``DenDF``, ``F value``, ``Pr(>F)``: the F test that all coefficients of the term are zero
    (``contestMD``; the model is not refitted).  When X lost aliased columns (or with
    ``force_get_contrasts``) the hypothesis is, as lmerTest's, the part of X that the model matrix
    without the term does not span (:func:`difference_contrasts`); that needs the data.

    ``test="Chisq"`` (the default for glmer fits) or ``"none"`` (R's default of lme4's
    ``drop1``), and ``ddf="lme4"`` for an lmer fit: lme4's table, index ``<none>`` and the
    terms, columns ``npar`` (parameters removed), ``AIC`` (by ML) and, with ``"Chisq"``, ``LRT``
    and ``Pr(Chi)``; each term is removed by refitting ``update(fit, "~ . - term")`` (REML lmer
    fits are compared by ML, as lme4's ``extractAIC``).  The refits need the data: ``data=`` or,
    as in R, the object named ``fit.data_name`` where drop1 is called.

    ``scope`` is a list of term labels (or a one-sided formula); only marginal terms (contained in
    no other term, R's ``drop.scope``) may be dropped in lmerTest's table.
    """
    lmer = _is_lmer(fit)
    ddf = _check_ddf(ddf)
    if test is None:
        test = ("none" if ddf == "lme4" else "F") if lmer else "Chisq"
    if test not in ("F", "Chisq", "none"):
        raise ValueError(f"test must be 'F' (lmerTest, lmer fits), 'Chisq' or 'none', got {test!r}")
    if test == "F":
        if not lmer:
            raise MixedpyError("drop1's F tests (lmerTest) are for lmer fits; use test='Chisq' for a glmer fit")
        if ddf == "lme4":
            raise ValueError("drop1(test='F') needs ddf='Satterthwaite' or 'Kenward-Roger'")
        return _drop1_f(fit, scope, ddf, force_get_contrasts, data, _user_namespace())
    return _drop1_lrt(fit, scope, test, k, data, _user_namespace())


# ------------------------------------------------------------------------------------------
# ranova


def _is_bar(node) -> bool:
    while node[0] == "paren":
        node = node[1]
    return node[0] == "binop" and node[1] in ("|", "||")


def _bar_node(node):
    while node[0] == "paren":
        node = node[1]
    return node


def _contains_bar(node) -> bool:
    if _is_bar(node):
        return True
    kind = node[0]
    if kind == "binop":
        return _contains_bar(node[2]) or _contains_bar(node[3])
    if kind in ("unary", "paren"):
        return _contains_bar(node[-1])
    if kind == "call":
        return any(_contains_bar(a) for _, a in node[2])
    return False


def findbars(rhs: str) -> list[str]:
    """lme4's ``findbars`` on a right-hand side, deparsed: the random-effects terms in formula
    order, ``(x || g)`` expanded to ``1 | g``, ``0 + x | g`` (``expandDoubleVerts``) and
    ``(1 | a/b)`` to ``1 | b:a``, ``1 | a`` (``expandSlash``)."""
    out: list[str] = []

    def walk(node):
        if _is_bar(node):
            bar = _bar_node(node)
            lhs, group = deparse(bar[2]), deparse(bar[3])
            exprs = [lhs]
            if bar[1] == "||":
                ts = expand_terms(lhs)
                exprs = (["1"] if ts.intercept else []) + [f"0 + {lab}" for lab in ts.term_labels()]
            groups = [":".join(g) for g in _expand_group(group, deparse(node))][::-1]
            out.extend(deparse(parse(f"{e} | {g}")) for g in groups for e in exprs)
        elif node[0] == "binop":
            walk(node[2])
            walk(node[3])
        elif node[0] in ("unary", "paren"):
            walk(node[-1])
        elif node[0] == "call" and _contains_bar(node):
            raise FormulaError(f"ranova does not handle the random-effects term {deparse(node)!r} "
                               "(structured covariances are not lmerTest's)")

    walk(parse(rhs))
    return out


def nobars(rhs: str) -> str:
    """lme4's ``nobars``: the right-hand side without its random-effects terms ("1" if none is left)."""

    def strip(node):
        if _is_bar(node):
            return None
        kind = node[0]
        if kind == "binop":
            left, right = strip(node[2]), strip(node[3])
            if left is None:
                return right
            if right is None:
                return left
            return ("binop", node[1], left, right)
        if kind in ("unary", "paren"):
            inner = strip(node[-1])
            return None if inner is None else (*node[:-1], inner)
        return node

    out = strip(parse(rhs))
    return "1" if out is None else deparse(out)


def _reduced_forms(bar: str, full: str) -> dict[str, str]:
    """lmerTest's ``get_newforms``: each marginal term of the bar's left side removed in turn
    (the last one leaves ``1``); a term with no such term (``(1 | g)``) is removed whole."""
    lhs, group = (s.strip() for s in bar.split("|", 1))
    ts = expand_terms(lhs)
    labels = ts.term_labels()
    scope = drop_scope(list(ts.terms), labels)
    if not labels or not scope:
        return {f"({bar})": update_formula(full, f"~ . - ({bar})")}
    out = {}
    for scp in scope:
        new_lhs = "1" if set(labels) == {scp} else update_formula(f"~ {lhs}", f"~ . - {scp}").replace("~", "")
        out[f"{scp} in ({bar})"] = update_formula(full, f"~ . - ({bar}) + ({new_lhs} | {group})")
    return out


def lm_loglik(y: np.ndarray, X: np.ndarray, weights: np.ndarray | None, reml: bool) -> tuple[int, float]:
    """(df, log-likelihood) of the weighted least-squares fit of y on X, as R's ``logLik.lm``
    (``REML=TRUE``: the restricted likelihood, less sum log|diag R| of the QR of W^(1/2) X)."""
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=float)
    keep = w != 0
    y, X, w = y[keep], X[keep], w[keep]
    sw = np.sqrt(w)
    Q, R = np.linalg.qr(X * sw[:, None])
    res = sw * y - Q @ (Q.T @ (sw * y))
    p = X.shape[1]
    n = len(y) - (p if reml else 0)
    val = 0.5 * (np.log(w).sum() - n * (np.log(2 * np.pi) + 1 - np.log(n) + np.log(res @ res)))
    if reml:
        val -= np.log(np.abs(np.diag(R))).sum()
    return p + 1, float(val)


def ranova(fit, reduce_terms: bool = True, *, data=None) -> pd.DataFrame:
    """lmerTest's ``ranova(fit, reduce.terms=TRUE)``: likelihood-ratio tests of the random effects.

    Each random-effects term is reduced, one marginal term of its left side at a time
    (``(Days | Subject)`` to ``(1 | Subject)``, row ``Days in (Days | Subject)``), or removed when
    it has none (``(1 | Subject)``, row ``(1 | Subject)``); ``reduce_terms=False`` removes every
    term whole.  A model left without random effects is a linear model (its REML or ML
    log-likelihood as R's ``logLik.lm``).  The fits are compared by REML for a REML fit, as
    lmerTest does.

    Returns a DataFrame indexed ``<none>`` (the model) and the rows above, columns ``npar``,
    ``logLik``, ``AIC``, ``LRT``, ``Df``, ``Pr(>Chisq)``; ``attrs["formulae"]`` has the reduced
    formulas and ``attrs["heading"]`` lmerTest's heading.  The refits need the data: ``data=`` or
    the object named ``fit.data_name`` where ranova is called.
    """
    if not _is_lmer(fit):
        raise MixedpyError(f"ranova is for lmer fits (lmerTest's ranova needs an lmerMod), got {type(fit).__name__}")
    namespace = _user_namespace()
    data = model_data(fit, data, namespace)
    old = model_formula(fit, data)
    rhs = split_formula(old)[1]
    bars = findbars(rhs)
    full = update_formula(old, ". ~ " + " + ".join([nobars(rhs)] + [f"({b})" for b in bars]))
    if reduce_terms:
        forms = {name: f for b in bars for name, f in _reduced_forms(b, full).items()}
    else:
        forms = {f"({b})": update_formula(full, f"~ . - ({b})") for b in bars}
    rows = [(fit.df, fit.loglik)]
    d = fit.design
    for form in forms.values():
        if findbars(split_formula(form)[1]):
            other = refit_formula(fit, form, data, namespace)
            _same_rows(fit, other)
            rows.append((other.df, other.loglik))
        else:     # lmerTest fits lm() with the model's fixed effects, weights and offset
            rows.append(lm_loglik(np.asarray(d.y, dtype=float) - d.offset, np.asarray(d.X, dtype=float),
                                  d.weights, fit.reml))
    npar = np.array([r[0] for r in rows], dtype=float)
    ll = np.array([r[1] for r in rows])
    lrt = 2 * (ll[0] - ll)
    df = npar[0] - npar
    lrt[0] = df[0] = np.nan
    out = pd.DataFrame({"npar": npar.astype(int), "logLik": ll, "AIC": -2 * ll + 2 * npar, "LRT": lrt, "Df": df,
                        "Pr(>Chisq)": chisq_pvalue(lrt, df)}, index=pd.Index(["<none>", *forms], dtype=object))
    out.attrs["formulae"] = dict(forms)
    out.attrs["heading"] = f"ANOVA-like table for random-effects: Single term deletions\n\nModel:\n{full}"
    return out


__all__ = ["update", "update_formula", "drop1", "ranova", "findbars", "nobars", "drop_scope", "lm_loglik",
           "model_data", "refit_formula"]
