"""Every text rendering of a fit: lme4's ``summary()`` and ``print()`` layouts.

(arm's ``display()`` lives in :mod:`mixedpy.arm`.)
"""
from __future__ import annotations

import numpy as np

from .rformat import format_r


def _fixef_table(fit, stat_name: str, pvalues: bool) -> str:
    est = fit.beta
    se = fit.se_fixef
    stat = est / se
    cols = [("Estimate", format_r(est, 4)), ("Std. Error", format_r(se, 4)),
            (stat_name, format_r(stat, 3 if pvalues else 4))]
    if pvalues:
        from scipy.stats import norm

        p = 2 * norm.sf(np.abs(stat))
        cols.append(("Pr(>|z|)", [f"{v:.3g}" if v >= 2e-16 else "<2e-16" for v in p]))
    names = fit.fixef_names
    wn = max(len(n) for n in names)
    widths = [max(len(h), *(len(v) for v in vals)) for h, vals in cols]
    lines = [" " * wn + " " + " ".join(h.rjust(w) for (h, _), w in zip(cols, widths))]
    for i, n in enumerate(names):
        lines.append(n.ljust(wn) + " " + " ".join(vals[i].rjust(w) for (_, vals), w in zip(cols, widths)))
    return "\n".join(lines)


def _abbreviate(name: str, width: int = 6) -> str:
    """R's ``abbreviate(name, 6)`` (roughly): drop lower-case vowels from the end until it fits."""
    if len(name) <= width:
        return name
    chars = list(name)
    i = len(chars) - 1
    while len(chars) > width and i > 0:
        if chars[i] in "aeiou" and chars[i - 1] != " ":
            del chars[i]
        i -= 1
    i = len(chars) - 1
    while len(chars) > width and i > 0:
        if chars[i].islower():
            del chars[i]
        i -= 1
    return "".join(chars[:width])


def _fixef_correlation(fit) -> str:
    V = fit.vcov_array
    sd = np.sqrt(np.diag(V))
    C = V / np.outer(sd, sd)
    names = fit.fixef_names
    short = [_abbreviate(n) for n in names]
    wn = max(len(n) for n in names[1:])
    lines = [" " * wn + " " + " ".join(s.ljust(6) for s in short[:-1])]
    for i in range(1, len(names)):
        cells = [f"{C[i, j]:.3f}".replace("0.", ".", 1) if abs(C[i, j]) < 1 else f"{C[i, j]:.2f}"
                 for j in range(i)]
        cells = [c.rjust(6) for c in cells]
        lines.append(names[i].ljust(wn) + " " + " ".join(cells))
    return "\n".join(line.rstrip() for line in lines)


def _ngrps_line(fit) -> str:
    groups = ";".join(f" {g}, {n}" for g, n in fit.ngrps.items())
    return f"Number of obs: {fit.nobs}, groups: {groups}"


def _scaled_residuals(fit) -> str:
    r = fit.resid / fit.sigma
    if fit.design.weights is not None:
        r = r * np.sqrt(fit.design.weights)
    q = np.quantile(r, [0, 0.25, 0.5, 0.75, 1.0])
    vals = format_r(q, 4)
    heads = ["Min", "1Q", "Median", "3Q", "Max"]
    w = max(len(v) for v in vals + heads)
    return (" ".join(h.rjust(w) for h in heads) + " \n" + " ".join(v.rjust(w) for v in vals) + " ")


def _info_table(fit) -> str:
    heads = ["AIC", "BIC", "logLik", "deviance", "df.resid"]
    vals = [f"{fit.aic:.1f}", f"{fit.bic:.1f}", f"{fit.loglik:.1f}", f"{-2 * fit.loglik:.1f}",
            str(fit.nobs - fit.df)]
    w = max(len(v) for v in vals + heads) + 1
    return " ".join(h.rjust(w) for h in heads) + "\n" + " ".join(v.rjust(w) for v in vals)


def lmer_summary(fit) -> str:
    """lme4's ``summary(lmerMod)`` text."""
    method = "REML" if fit.reml else "maximum likelihood "
    out = [f"Linear mixed model fit by {method} ['lmerMod']", f"Formula: {fit.formula}"]
    if fit.design.weights is not None:
        out.append(" Weights: (given)")
    if fit.design.n_dropped:
        out.append(f"({fit.design.n_dropped} observations deleted due to missingness)")
    out.append("")
    if fit.reml:
        out.append(f"REML criterion at convergence: {fit.reml_crit:.1f}")
    else:
        out.append(_info_table(fit))
    out += ["", "Scaled residuals: ", _scaled_residuals(fit), "", "Random effects:",
            fit.varcorr().format(digits=4, variance=True), _ngrps_line(fit), ""]
    if len(fit.beta):
        out += ["Fixed effects:", _fixef_table(fit, "t value", pvalues=False)]
        if len(fit.beta) > 1:
            out += ["", "Correlation of Fixed Effects:", _fixef_correlation(fit)]
    notes = list(fit.messages)
    if fit.design.dropped_columns:
        notes.append("fixed-effect model matrix is rank deficient so dropping "
                     f"{len(fit.design.dropped_columns)} column(s): {', '.join(fit.design.dropped_columns)}")
    if notes:
        out += [""] + [f"optimizer note: {m}" for m in notes]
    return "\n".join(out)


def lmer_brief(fit) -> str:
    """lme4's ``print(lmerMod)``."""
    method = "REML" if fit.reml else "maximum likelihood "
    out = [f"Linear mixed model fit by {method} ['lmerMod']", f"Formula: {fit.formula}"]
    if fit.reml:
        out.append(f"REML criterion at convergence: {fit.reml_crit:.4f}")
    else:
        out.append(_info_table(fit))
    out += ["Random effects:", fit.varcorr().format(digits=5), _ngrps_line(fit), "Fixed Effects:"]
    vals = format_r(fit.beta, 5)
    ws = [max(len(n), len(v)) for n, v in zip(fit.fixef_names, vals)]
    out.append("  ".join(n.rjust(w) for n, w in zip(fit.fixef_names, ws)))
    out.append("  ".join(v.rjust(w) for v, w in zip(vals, ws)))
    if fit.is_singular:
        out.append("optimizer: boundary (singular) fit: see is_singular")
    return "\n".join(out)
