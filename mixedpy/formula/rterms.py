"""R's ``terms.formula``: the model terms a formula right-hand side stands for.

A term is a set of variables; R keeps it as a bit set over the variables in order of first
appearance in the formula, so a term's label lists its variables in that order (``y ~ f + t +
t:f`` has the term ``f:t``).  The operators expand as in R's ``model.c`` (Chambers & Hastie
1992, *Statistical Models in S*, ch. 2; Wilkinson & Rogers 1973):

* ``a + b`` both; ``a:b`` every pairwise union; ``a * b`` = ``a + b + a:b``;
* ``(a + b + c)^2`` every product of at most two terms (``.^2`` likewise);
* ``a / b`` = ``a + a:b`` (``b`` within all of ``a``); ``b %in% a`` = ``b:a``;
* ``- t`` removes a term; ``0 +``, ``- 1`` drop the intercept and ``1 +`` restores it;
* ``.`` is every data column that the response does not use.

Terms are then sorted by order (main effects, two-way interactions, ...), stably, as R does
with ``keep.order = FALSE``.  Anything else (a name, ``log(x)``, ``I(x^2)``, ``poly(x, 2)``)
is one variable, labelled by its deparsed expression.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

from ..errors import FormulaError, FormulaWarning
from .rsyntax import deparse, parse


@dataclass(frozen=True)
class TermStructure:
    """The expanded right-hand side: intercept flag, variables (expression trees and R labels,
    in order of first appearance) and the sorted terms as tuples of variable indices."""

    intercept: bool
    variables: tuple
    labels: tuple[str, ...]
    terms: tuple[tuple[int, ...], ...]

    def term_labels(self) -> list[str]:
        return [":".join(self.labels[v] for v in t) for t in self.terms]


class _Encoder:
    def __init__(self, dot_columns):
        self.dot_columns = dot_columns
        self.variables: list = []
        self.labels: list[str] = []
        self.intercept = True

    def install(self, node) -> int:
        label = deparse(node)
        if label not in self.labels:
            self.labels.append(label)
            self.variables.append(node)
        return self.labels.index(label)

    def encode(self, node) -> list[frozenset]:
        kind = node[0]
        if kind == "paren":
            return self.encode(node[1])
        if kind == "num":
            if node[1] in (0.0, 1.0):
                self.intercept = node[1] == 1.0
                return []
            raise FormulaError(f"invalid model formula term {node[2]!r} (only 0 and 1 are allowed as numbers)")
        if kind == "name" and node[1] == ".":
            if self.dot_columns is None:
                raise FormulaError("'.' in a formula needs the data's columns")
            return _unique([frozenset([self.install(("name", c))]) for c in self.dot_columns])
        if kind == "unary" and node[1] == "-":
            self.delete([], node[2])
            return []
        if kind == "unary" and node[1] == "+":
            return self.encode(node[2])
        if kind != "binop":
            return [frozenset([self.install(node)])]
        op, left, right = node[1], node[2], node[3]
        if op == "+":
            return _unique(self.encode(left) + self.encode(right))
        if op == "-":
            return self.delete(self.encode(left), right)
        if op == ":":
            return _interact(self.encode(left), self.encode(right))
        if op == "*":
            lt, rt = self.encode(left), self.encode(right)
            return _unique(lt + rt + _interact(lt, rt))
        if op == "/":
            lt, rt = self.encode(left), self.encode(right)
            whole = frozenset().union(*lt) if lt else frozenset()
            return _unique(lt + [r | whole for r in rt])
        if op == "%in%":
            lt, rt = self.encode(left), self.encode(right)
            whole = frozenset().union(*rt) if rt else frozenset()
            return _unique([t | whole for t in lt])
        if op == "^":
            power = _power(right)
            base = self.encode(left)
            if power > 1 and len(base) == 1:
                warnings.warn(f"{deparse(node)} in a formula is R's crossing of {deparse(left)} with itself, "
                              f"i.e. just {deparse(left)}; write I({deparse(node)}) for the power",
                              FormulaWarning, stacklevel=6)
            out = list(base)
            for _ in range(power - 1):
                out = _unique(out + _interact(base, out))
            return out
        return [frozenset([self.install(node)])]

    def delete(self, terms: list[frozenset], right) -> list[frozenset]:
        keep_intercept = self.intercept
        removed = self.encode(right)
        # "- 1" drops the intercept and "- 0" restores it: encode() set the flag the opposite way
        if _is_number(right, 1.0) or _is_number(right, 0.0):
            self.intercept = _is_number(right, 0.0)
        else:
            self.intercept = keep_intercept
        return [t for t in terms if t not in set(removed)]


def _is_number(node, value: float) -> bool:
    while node[0] == "paren":
        node = node[1]
    return node[0] == "num" and node[1] == value


def _power(node) -> int:
    while node[0] == "paren":
        node = node[1]
    if node[0] != "num" or node[1] != int(node[1]) or node[1] < 1:
        raise FormulaError(f"invalid power {deparse(node)!r} in formula: crossing needs a positive integer, "
                           "as in (a + b)^2; write I(x^2) for the square of x")
    return int(node[1])


def _unique(terms: list[frozenset]) -> list[frozenset]:
    out: list[frozenset] = []
    for t in terms:
        if t not in out:
            out.append(t)
    return out


def _interact(left: list[frozenset], right: list[frozenset]) -> list[frozenset]:
    return _unique([a | b for a in left for b in right])


def expand_terms(rhs: str, dot_columns=None) -> TermStructure:
    """Expand an R formula right-hand side (no bars) into its sorted terms.

    ``dot_columns`` lists the columns that ``.`` stands for (the data's columns minus the
    response's variables).
    """
    enc = _Encoder(dot_columns)
    terms = [t for t in enc.encode(parse(rhs)) if t]
    terms = sorted(terms, key=len)  # stable: same-order terms keep their written order
    return TermStructure(intercept=enc.intercept, variables=tuple(enc.variables), labels=tuple(enc.labels),
                         terms=tuple(tuple(sorted(t)) for t in terms))


def expand_dot(rhs: str, columns: list[str]) -> str:
    """``rhs`` with R's ``.`` written out as ``(a + b + ...)`` over ``columns`` (deparsed, so
    non-syntactic names come back in backticks); unchanged when there is no ``.``."""
    node = parse(rhs)

    def sub(n):
        if n == ("name", "."):
            if not columns:
                raise FormulaError("'.' in the formula stands for no column: the data has only the response")
            total = ("name", columns[0])
            for c in columns[1:]:
                total = ("binop", "+", total, ("name", c))
            return ("paren", total)
        if n[0] == "binop":
            return ("binop", n[1], sub(n[2]), sub(n[3]))
        if n[0] in ("unary", "paren"):
            return (*n[:-1], sub(n[-1]))
        return n

    new = sub(node)
    return rhs if new == node else deparse(new)
