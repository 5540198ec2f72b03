"""R's expression syntax: tokenizer, parser and deparser for formula right-hand sides.

Formulas are written in R (``I(Days^2)``, ``(a + b)^2``, `` `school id` ``, ``test.score``,
``poly(x, 2, raw = TRUE)``), so they are parsed with R's grammar and operator precedence
(R Language Definition, section 10.4.2 "Infix and prefix operators"), not Python's: ``^`` (and
its alias ``**``) is the power, names may hold dots and non-ASCII letters, and any name can be
quoted in backticks.  :func:`deparse` prints an expression as R's ``deparse`` does, because R
names model-matrix columns by the deparsed variable (``I(x/1000)``, ``log(x^2 + 1)``).

The tree is made of plain tuples so that parsed formulas pickle:
``("num", value, text)``, ``("str", value)``, ``("name", id)``, ``("call", func, args)`` with
``args`` a tuple of ``(keyword or None, node)``, ``("binop", op, left, right)``,
``("unary", op, operand)`` and ``("paren", inner)``.
"""
from __future__ import annotations

import math
import re

from ..errors import FormulaError

# binary operators: (precedence, right associative); higher binds tighter (R's ?Syntax)
_BINARY = {
    "|": (2, False), "||": (2, False), "&": (3, False), "&&": (3, False),
    "==": (5, False), "!=": (5, False), "<": (5, False), ">": (5, False), "<=": (5, False), ">=": (5, False),
    "+": (6, False), "-": (6, False), "*": (7, False), "/": (7, False),
    "%": (8, False),  # any %op%, e.g. %in%, %%, %/%
    ":": (9, False), "^": (11, True),
}
_UNARY_NOT = 4      # !x binds looser than comparisons
_UNARY_MINUS = 10   # -a:b is (-a):b, -x^2 is -(x^2)

# deparse: these operators are printed without surrounding spaces (R's deparse.c, BINARY2)
_TIGHT = {"/", "^", ":", "%%", "%/%"}

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?L?)
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<bq>`[^`]*`)
  | (?P<name>(?:[^\W\d]|\.(?!\d))[\w.]*)
  | (?P<op>%[^%]*%|\*\*|\|\||&&|==|!=|<=|>=|[-+*/^:~|&!<>(),=\[\]$])
""", re.VERBOSE | re.UNICODE)


def tokenize(text: str) -> list[tuple[str, str]]:
    """R tokens as ``(kind, text)``; backticked names come back as names without the backticks."""
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise FormulaError(f"cannot read {text[pos:]!r} in formula expression {text!r}")
        pos = m.end()
        kind = m.lastgroup
        tok = m.group()
        if kind == "ws":
            continue
        if kind == "bq":
            kind, tok = "name", tok[1:-1]
        elif kind == "op" and tok == "**":
            tok = "^"  # R's parser reads ** as ^
        out.append((kind, tok))
    return out


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.toks = tokenize(text)
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (expected is not None and tok[1] != expected):
            want = f"{expected!r}" if expected else "more input"
            got = "the end" if tok is None else repr(tok[1])
            raise FormulaError(f"expected {want} but found {got} in {self.text!r}")
        self.i += 1
        return tok

    def parse(self):
        if not self.toks:
            raise FormulaError("empty formula expression")
        node = self.expr(0)
        if self.peek() is not None:
            raise FormulaError(f"unexpected {self.peek()[1]!r} in {self.text!r}")
        return node

    def _binary(self, tok):
        if tok is None or tok[0] != "op":
            return None
        op = tok[1]
        key = "%" if op.startswith("%") else op
        return (op, *_BINARY[key]) if key in _BINARY else None

    def expr(self, min_prec: int):
        left = self.prefix()
        while True:
            b = self._binary(self.peek())
            if b is None or b[1] < min_prec:
                return left
            op, prec, right_assoc = b
            self.take()
            right = self.expr(prec if right_assoc else prec + 1)
            left = ("binop", op, left, right)

    def prefix(self):
        kind, tok = self.take()
        if kind == "op" and tok in ("-", "+"):
            node = ("unary", tok, self.expr(_UNARY_MINUS))
        elif kind == "op" and tok == "!":
            node = ("unary", tok, self.expr(_UNARY_NOT))
        elif kind == "op" and tok == "(":
            node = ("paren", self.expr(0))
            self.take(")")
        elif kind == "num":
            node = ("num", float(tok.rstrip("L")), tok)
        elif kind == "str":
            node = ("str", tok[1:-1].encode("utf-8").decode("unicode_escape"))
        elif kind == "name":
            node = ("name", tok)
        else:
            raise FormulaError(f"unexpected {tok!r} in {self.text!r}")
        while self.peek() == ("op", "("):
            self.take()
            node = ("call", node, tuple(self.arguments()))
        return node

    def arguments(self):
        args = []
        if self.peek() == ("op", ")"):
            self.take()
            return args
        while True:
            tok = self.peek()
            nxt = self.toks[self.i + 1] if self.i + 1 < len(self.toks) else None
            key = None
            if tok is not None and tok[0] == "name" and nxt == ("op", "="):
                key = tok[1]
                self.i += 2
            args.append((key, self.expr(0)))
            kind, sep = self.take()
            if sep == ")":
                return args
            if sep != ",":
                raise FormulaError(f"expected ',' or ')' in the arguments of a call in {self.text!r}")


def parse(text: str):
    """Parse one R expression (no ``~``) into the tuple tree described in the module docstring."""
    return _Parser(text).parse()


_SYNTACTIC = re.compile(r"^(?:[^\W\d_]|\.(?![\d]))[\w.]*$|^\.$", re.UNICODE)
# reserved words that are not constants (TRUE, Inf, NA ... print bare)
_RESERVED = {"if", "else", "repeat", "while", "function", "for", "next", "break", "in"}


def quote_name(name: str) -> str:
    """A name as R prints it: backticks around non-syntactic names (`` `school id` ``)."""
    return name if _SYNTACTIC.match(name) and name not in _RESERVED else f"`{name}`"


def format_number(value: float, text: str) -> str:
    """A numeric constant as R's deparse prints it (15 significant digits, fixed unless
    scientific is shorter: ``1e3`` -> ``1000``, ``1e5`` -> ``1e+05``, ``2.0`` -> ``2``)."""
    if text.endswith("L"):
        return f"{int(value)}L"
    if not math.isfinite(value):
        return "Inf" if value > 0 else "NaN"
    for digits in range(1, 16):
        if float(f"{value:.{digits - 1}e}") == value:
            break
    sci = f"{value:.{digits - 1}e}"
    mant, exp = sci.split("e")
    sci = f"{mant}e{exp[0]}{int(exp[1:]):02d}"
    fixed = f"{value:.{max(digits - 1 - int(exp), 0)}f}"
    return fixed if len(fixed) <= len(sci) else sci


def deparse(node) -> str:
    """R's ``deparse`` of an expression tree (spacing as R prints it)."""
    kind = node[0]
    if kind == "num":
        return format_number(node[1], node[2])
    if kind == "str":
        return '"' + node[1].replace("\\", "\\\\").replace('"', '\\"') + '"'
    if kind == "name":
        return quote_name(node[1])
    if kind == "paren":
        return f"({deparse(node[1])})"
    if kind == "unary":
        return f"{node[1]}{deparse(node[2])}"
    if kind == "binop":
        op = node[1]
        sep = op if op in _TIGHT else f" {op} "
        return f"{deparse(node[2])}{sep}{deparse(node[3])}"
    args = ", ".join(deparse(a) if k is None else f"{quote_name(k)} = {deparse(a)}" for k, a in node[2])
    return f"{deparse(node[1])}({args})"


def all_names(node, functions: bool = False) -> list[str]:
    """Names an expression reads, in order of first appearance (R's ``all.vars``); function names
    are included only with ``functions=True``."""
    out: list[str] = []

    def walk(n):
        kind = n[0]
        if kind == "name":
            if n[1] not in out:
                out.append(n[1])
        elif kind == "call":
            if functions or n[1][0] != "name":
                walk(n[1])
            for _, a in n[2]:
                walk(a)
        elif kind == "binop":
            walk(n[2])
            walk(n[3])
        elif kind in ("unary", "paren"):
            walk(n[-1])

    walk(node)
    return out
