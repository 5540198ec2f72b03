"""Split an lme4 formula into its fixed part and its random-effects ("bar") terms.

lme4 (via reformulas' ``findbars``/``nobars``) strips every ``(expr | group)`` term
from the right-hand side before the fixed-effects model matrix is built; the
model-matrix stage (:mod:`.modelmatrix`) only ever sees the bar-free remainder.
This module does the same on strings:

* ``(x | g)``      one correlated term with the columns of ``~ x`` (intercept implied);
* ``(x || g)``     one uncorrelated term per model term of ``~ x`` (``(1|g) + (0 + x|g)``);
* ``(1 | a/b)``    nested: ``(1 | a) + (1 | b:a)``, as lme4 names the inner factor;
* ``(1 | a:b)``    one factor made of the observed combinations of ``a`` and ``b``;
* ``cs(0 + f | g)``, ``homcs(...)``, ``ar1(...)``, ``diag(x | g)``, ``us(x | g)``: one term with that
  covariance structure (glmmTMB's and lme4 2.x's syntax; :mod:`mixedpy.covstruct`).  ``us(x | g)`` is
  ``(x | g)``.  ``diag(x | g)`` is one term whose coefficients are independent: for numeric x the
  same model as lme4's ``(x || g)``; for a factor it is glmmTMB's and lme4 2.x's diag (every
  model-matrix column independent), whereas ``(1 + f || g)`` splits into ``(1 | g) + (0 + f | g)``
  and keeps the factor's columns in one unstructured term (lme4 1.1 and, by default, 2.x);
* ``offset(expr)`` in the formula is collected as an offset, as in R.

Reference: Bates, Maechler, Bolker & Walker (2015), "Fitting Linear Mixed-Effects
Models Using lme4", J. Stat. Softw. 67(1), section 2.1.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..covstruct import STRUCTURES
from ..errors import FormulaError
from .rterms import expand_terms


@dataclass(frozen=True)
class BarTerm:
    """One random-effects term ``(expr | group)`` after expansion.

    ``expr`` is an R formula right-hand side for the term's model matrix and
    ``group`` a tuple of column names whose combination is the grouping factor.
    """

    expr: str
    group: tuple[str, ...]
    structure: str = "us"   # covariance structure (mixedpy.covstruct): us, diag, cs, homcs, ar1

    @property
    def group_name(self) -> str:
        return ":".join(self.group)


@dataclass(frozen=True)
class ParsedFormula:
    response: str
    fixed_rhs: str
    bars: tuple[BarTerm, ...]
    offsets: tuple[str, ...]
    original: str


def _code_chars(text: str):
    """``(index, char)`` of the characters outside backticks and string literals, so that a
    name such as `` `a-b` `` or a string ``"x|y"`` never splits a formula."""
    quote = None
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = None
            continue
        if ch in "`'\"":
            quote = ch
            continue
        yield i, ch


def _split_top_level(text: str, seps: str) -> list[tuple[str, str]]:
    """Split ``text`` at the characters in ``seps`` that are outside parentheses.

    Returns ``(sign, piece)`` pairs, the sign being the separator that preceded the
    piece (``"+"`` for the first piece).
    """
    pieces: list[tuple[str, str]] = []
    depth = 0
    sign = "+"
    start = 0
    for i, ch in _code_chars(text):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
            if depth < 0:
                raise FormulaError(f"unbalanced parentheses in formula term {text!r}")
        elif ch in seps and depth == 0:
            pieces.append((sign, text[start:i].strip()))
            sign = ch
            start = i + 1
    if depth != 0:
        raise FormulaError(f"unbalanced parentheses in formula {text!r}")
    pieces.append((sign, text[start:].strip()))
    return pieces


def _strip_outer_parens(text: str) -> str | None:
    """Return the inside of ``(...)`` when the parentheses enclose the whole text."""
    text = text.strip()
    if not (text.startswith("(") and text.endswith(")")):
        return None
    depth = 0
    for i, ch in _code_chars(text):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0 and i < len(text) - 1:
            return None
    return text[1:-1]


def top_level_chars(text: str):
    """(index, character) of the code characters of ``text`` outside any parentheses or brackets."""
    depth = 0
    for i, ch in _code_chars(text):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif depth == 0:
            yield i, ch


def _find_bar(inner: str) -> tuple[str, str, bool] | None:
    """Locate a top-level ``|`` or ``||`` in the inside of a parenthesised term."""
    for i, ch in top_level_chars(inner):
        if ch == "|":
            double = i + 1 < len(inner) and inner[i + 1] == "|"
            lhs = inner[:i].strip()
            rhs = inner[i + (2 if double else 1):].strip()
            return lhs, rhs, double
    return None


_STRUCTURED = re.compile(r"^(" + "|".join(STRUCTURES) + r")\s*(\(.*\))$", re.S)


def _structured_term(piece: str) -> tuple[str, str] | None:
    """``cs(0 + f | g)`` -> ("cs", "0 + f | g") when the call's parentheses enclose the rest."""
    m = _STRUCTURED.match(piece.strip())
    if m is None:
        return None
    inner = _strip_outer_parens(m.group(2))
    return None if inner is None else (m.group(1), inner)


_NAME = re.compile(r"^(?:[^\W\d]|\.)[\w.]*$|^`[^`]+`$")  # an R name (any letters) or a backticked one


def _expand_group(group: str, term_text: str) -> list[tuple[str, ...]]:
    """``a/b/c`` -> [(a,), (b, a), (c, b, a)]; ``a:b`` -> [(a, b)]; ``a`` -> [(a,)].

    lme4 names the nested factor ``b:a`` (inner first), so we do too.
    """
    group = group.strip()
    if not group:
        raise FormulaError(f"random-effects term {term_text!r} has no grouping factor after '|'")
    nest = [part.strip() for part in group.split("/")]
    out: list[tuple[str, ...]] = []
    for depth in range(len(nest)):
        names: list[str] = []
        for level in nest[: depth + 1]:
            parts = [p.strip() for p in level.split(":")]
            for p in parts:
                if not _NAME.match(p):
                    raise FormulaError(
                        f"grouping factor {p!r} in {term_text!r} is not a column name; "
                        "use (expr | g), (expr | a:b) or (expr | a/b)")
            names = [q.strip("`") for q in parts] + names if depth else [q.strip("`") for q in parts]
        out.append(tuple(names))
    return out


def _double_bar_exprs(lhs: str) -> list[str]:
    """``x + z`` under ``||`` -> ["1", "0 + x", "0 + z"]: one term per model term of ``~ lhs``,
    the intercept first unless removed (lme4 ``expandDoubleVerts``, so ``x*z`` gives x, z, x:z)."""
    structure = expand_terms(lhs)
    exprs = (["1"] if structure.intercept else []) + [f"0 + {t}" for t in structure.term_labels()]
    if not exprs:
        raise FormulaError(f"random-effects term ({lhs} || ...) has no columns")
    return exprs


def parse_formula(formula: str) -> ParsedFormula:
    """Parse an lme4-style model formula.

    Examples
    --------
    >>> p = parse_formula("Reaction ~ Days + (Days | Subject)")
    >>> p.fixed_rhs, p.bars[0]
    ('Days', BarTerm(expr='Days', group=('Subject',)))
    """
    if not isinstance(formula, str):
        raise FormulaError(f"formula must be a string, got {type(formula).__name__}")
    if formula.count("~") != 1:
        raise FormulaError(f"formula {formula!r} must have exactly one '~' (response ~ terms)")
    lhs, rhs = (s.strip() for s in formula.split("~"))
    if not lhs:
        raise FormulaError(f"formula {formula!r} has no response on the left of '~'")
    if not rhs:
        raise FormulaError(f"formula {formula!r} has no terms on the right of '~'")

    fixed: list[str] = []
    bars: list[BarTerm] = []
    offsets: list[str] = []
    for sign, piece in _split_top_level(rhs, "+-"):
        if not piece:
            if sign == "-" or fixed or bars:
                raise FormulaError(f"empty term in formula {formula!r}")
            continue
        structure = "us"
        inner = _strip_outer_parens(piece)
        call = _structured_term(piece) if inner is None else None
        if call is not None:
            structure, inner = call
        bar = _find_bar(inner) if inner is not None else None
        if call is not None and bar is None:
            raise FormulaError(f"{structure}() in {piece!r} needs a random-effects term: "
                               f"write {structure}(expr | group)")
        if bar is None and "|" in piece:
            raise FormulaError(
                f"malformed random-effects term {piece!r}: write it as (expr | group) in parentheses")
        if bar is not None:
            if sign == "-":
                raise FormulaError(f"cannot subtract a random-effects term: {piece!r}")
            term_lhs, group, double = bar
            if not term_lhs:
                raise FormulaError(f"random-effects term {piece!r} has nothing before '|'")
            if double and call is not None:
                raise FormulaError(f"{structure}() in {piece!r} takes a single bar: write {structure}(expr | group)"
                                   + (" (diag() is already uncorrelated)" if structure == "diag" else ""))
            groups = _expand_group(group, piece)
            exprs = _double_bar_exprs(term_lhs) if double else [term_lhs]
            for g in groups:
                for e in exprs:
                    bars.append(BarTerm(expr=e, group=g, structure=structure))
            continue
        if piece.startswith("offset(") and piece.endswith(")") and sign == "+":
            offsets.append(piece[len("offset("):-1])
            continue
        fixed.append(piece if sign == "+" else f"- {piece}")

    fixed_rhs = " + ".join(p for p in fixed if not p.startswith("- "))
    removals = " ".join(p for p in fixed if p.startswith("- "))
    fixed_rhs = (fixed_rhs or "1") + (f" {removals}" if removals else "")
    fixed_rhs = fixed_rhs.replace("+ -", "-")
    return ParsedFormula(response=lhs, fixed_rhs=fixed_rhs, bars=tuple(bars),
                         offsets=tuple(offsets), original=formula)


def strip_bars(formula_rhs: str) -> list[BarTerm]:
    """Parse a ``re_form`` such as ``"~ (1 | Subject)"`` into its bar terms."""
    text = formula_rhs.strip()
    if text.startswith("~"):
        text = text[1:]
    return list(parse_formula("y ~ " + text).bars)
