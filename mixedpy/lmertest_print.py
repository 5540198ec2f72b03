"""lmerTest's printed ``summary(m, ddf=...)``: lme4's summary with lmerTest's title and a coefficient
block that has the df and p-values of :func:`mixedpy.lmertest.coef_table`.

lmerTest's ``print.summary.lmerModLmerTest`` keeps lme4's sections and replaces two of them:

* the title ``Linear mixed model fit by REML. t-tests use Satterthwaite's method [lmerModLmerTest]``,
  wrapped as lme4's ``.prt.methTit`` wraps it (``strwrap`` to width 78, then ``cat(fill = TRUE)``
  at width 80) when it is longer than 80 characters, as it always is;
* the fixed effects, printed by R's ``printCoefmat`` with digits 4: Estimate, Std. Error and df
  are the coefficient columns (``cs.ind = 1:3``), rounded together to
  ``max(1, digits - (1 + floor(log10(min |x|))))`` decimals and formatted with 4 significant
  digits; the t value is rounded to 3 decimals; Pr(>|t|) is ``format.pval`` with 3 digits and
  significance stars with their legend.
"""
from __future__ import annotations

import numpy as np

from .printing import Summary, _stars, format_pvalues, summary_sections
from .rformat import format_r

#: R's getOption("width")
WIDTH = 80
LEGEND = "Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1"


def strwrap(text: str, width: int, exdent: int = 0) -> list[str]:
    """R's ``strwrap``: words greedily joined while the line stays below ``width`` characters."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        ind = exdent if lines else 0
        if line and ind + len(line) + 1 + len(word) >= width:
            lines.append(" " * ind + line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(" " * (exdent if lines else 0) + line)
    return lines


def cat_fill(items: list[str], width: int = WIDTH) -> list[str]:
    """R's ``cat(..., sep = "", fill = TRUE)``: items on one line until the next would pass ``width``."""
    lines, line = [], ""
    for item in items:
        if line and len(line) + len(item) > width:
            lines.append(line)
            line = item
        else:
            line += item
    return lines + [line]


def method_title(fit, ddf: str) -> list[str]:
    """lme4's ``.prt.methTit`` of lmerTest's title."""
    method = "REML" if fit.reml else "maximum likelihood "
    title = f"Linear mixed model fit by {method}. t-tests use {ddf}'s method"
    cls = "lmerModLmerTest"
    if len(title) + 5 + len(cls) > WIDTH:
        return cat_fill(strwrap(title, WIDTH - 2, exdent=2) + [" [", cls, "]"])
    return [f"{title} ['{cls}']"]


def coefmat_lines(table, digits: int = 4) -> list[str]:
    """R's ``printCoefmat`` of lmerTest's coefficient table (columns Estimate, Std. Error, df,
    t value, Pr(>|t|)) with significance stars and their legend."""
    cs = table[["Estimate", "Std. Error", "df"]].to_numpy(float)
    acs = np.abs(cs[np.isfinite(cs) & (cs != 0)])
    digmin = 1 + (int(np.floor(np.log10(acs.min()))) if acs.size else 0)
    both = format_r(np.round(cs.T.ravel(), max(1, digits - digmin)), digits)
    n = len(table)
    # one format() of the three columns together: a common width as well as common decimals
    cols = [(h, both[i * n:(i + 1) * n]) for i, h in enumerate(["Estimate", "Std. Error", "df"])]
    cols.append(("t value", [s.strip() for s in format_r(np.round(table["t value"].to_numpy(float), 3), digits)]))
    p = table["Pr(>|t|)"].to_numpy(float)
    cols.append(("Pr(>|t|)", format_pvalues(p)))
    stars = [_stars(v) for v in p]
    names = [str(i) for i in table.index]
    wn = max(len(nm) for nm in names)
    widths = [max(len(h), *(len(v) for v in vals)) for h, vals in cols]
    ws = max(len(s) for s in stars)
    tail = " " * (ws + 1) if ws else ""
    lines = [" " * wn + " " + " ".join(h.rjust(w) for (h, _), w in zip(cols, widths)) + tail]
    for i, nm in enumerate(names):
        row = nm.ljust(wn) + " " + " ".join(vals[i].rjust(w) for (_, vals), w in zip(cols, widths))
        lines.append(row + (" " + stars[i].ljust(ws) if ws else ""))
    if ws:
        lines += ["---", LEGEND]
    return lines


def lmertest_summary(fit, ddf: str) -> Summary:
    """lmerTest's ``summary(m, ddf=ddf)`` text for an lmer fit (ddf "Satterthwaite" or "Kenward-Roger")."""
    from .lmertest import coef_table

    sections = Summary(summary_sections(fit))
    fixed = ["Fixed effects:"] + coefmat_lines(coef_table(fit, ddf=ddf)) if len(fit.beta) else []
    return sections.with_sections(title=method_title(fit, ddf), fixed=fixed)
