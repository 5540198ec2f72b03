"""R's number formatting, so printed tables line up digit for digit with lme4 and arm.

``format_r(x, digits)`` follows R's ``formatReal``: each value is rounded to ``digits``
significant digits, the number of decimals shown is the largest any value needs
(trailing zeros dropped), and all values get that many decimals and a common width.
``fround(x, digits)`` is arm's ``format(round(x, digits), nsmall = digits)``.
"""
from __future__ import annotations

import math

import numpy as np


def _decimals_needed(x: float, digits: int) -> int:
    if x == 0 or not np.isfinite(x):
        return 0
    power = math.floor(math.log10(abs(x)))
    rounded = float(f"{x:.{digits - 1}e}")
    power = math.floor(math.log10(abs(rounded))) if rounded != 0 else power
    dec = max(0, digits - 1 - power)
    text = f"{abs(rounded):.{dec}f}"
    if "." in text:
        frac = text.split(".")[1].rstrip("0")
        return len(frac)
    return 0


def format_r(values, digits: int = 7, width: int | None = None) -> list[str]:
    """R ``format(values, digits=digits)`` for a numeric vector (fixed notation)."""
    vals = np.atleast_1d(np.asarray(values, dtype=float))
    finite = vals[np.isfinite(vals)]
    dec = max((_decimals_needed(float(v), digits) for v in finite), default=0)
    out = ["NA" if np.isnan(v) else ("Inf" if v > 0 else "-Inf") if not np.isfinite(v) else f"{v:.{dec}f}"
           for v in vals]
    w = max(len(s) for s in out) if out else 0
    if width is not None:
        w = max(w, width)
    return [s.rjust(w) for s in out]


def round_r(x: float, digits: int = 0) -> float:
    """R's round(): IEC 60559 round-half-even on the decimal representation."""
    return float(np.round(x, digits))


def fround(values, digits: int) -> list[str]:
    """arm ``fround``: ``format(round(x, digits), nsmall = digits)`` over all values at once
    (common width, right-justified; NaN prints as R's ``NaN``; -0.00 prints as 0.00, as in R)."""
    vals = np.atleast_1d(np.asarray(values, dtype=float))
    out = []
    for v in vals:
        if np.isnan(v):
            out.append("NaN")
            continue
        s = f"{round_r(v, digits) + 0.0:.{digits}f}"
        out.append(s.lstrip("-") if float(s) == 0.0 else s)
    w = max((len(s) for s in out), default=0)
    return [s.rjust(w) for s in out]
