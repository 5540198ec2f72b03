"""Every lme4 text rendering of a fit: ``summary()`` and ``print()`` for lmer and glmer fits.

(arm's ``display()`` lives in :mod:`mixedpy.arm`; VarCorr's table in :mod:`mixedpy.varcorr`.)
Layouts follow lme4's ``summary.merMod``/``print.merMod`` and R's ``printCoefmat``, with R's number
formatting from :mod:`mixedpy.rformat`.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import norm

from .rformat import format_r


def abbreviate(name: str, width: int = 6) -> str:
    """R's ``abbreviate(name, 6)`` (roughly): drop lower-case vowels from the end, then other
    lower-case letters, until the name fits."""
    if len(name) <= width:
        return name
    chars = list(name)
    for drop in ("aeiou", "abcdefghijklmnopqrstuvwxyz"):
        i = len(chars) - 1
        while len(chars) > width and i > 0:
            if chars[i] in drop and chars[i - 1] != " ":
                del chars[i]
            i -= 1
    return "".join(chars[:width])


def named_row(names: list[str], values: list[str], sep: str = " ") -> list[str]:
    """R's print of a named vector: one common width, right-justified, with a trailing separator."""
    w = max(len(x) for x in names + values)
    return ["".join(x.rjust(w) + sep for x in names), "".join(x.rjust(w) + sep for x in values)]


def _stars(p: float) -> str:
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else "." if p < 0.1 else ""


def format_pvalues(p: np.ndarray) -> list[str]:
    """Pr(>|z|) as ``printCoefmat``/``format.pval`` print it (3 significant digits): values from 1e-4
    up in fixed notation with common decimals, smaller ones in scientific notation, "< 2e-16" below
    machine epsilon."""
    p = np.asarray(p, dtype=float)
    out = [""] * p.size
    tiny = p < np.finfo(float).eps
    fixed = (p >= 1e-4) & ~tiny
    sci = ~fixed & ~tiny
    if fixed.any():
        for i, t in zip(np.flatnonzero(fixed), format_r(p[fixed], 3)):
            out[i] = t.strip()
    if sci.any():
        texts = [f"{v:.2e}" for v in p[sci]]
        # drop mantissa digits only when every value can (R formats the group together)
        for nd in (1, 0):
            shorter = [f"{v:.{nd}e}" for v in p[sci]]
            if all(float(a) == float(b) for a, b in zip(shorter, texts)):
                texts = shorter
        for i, t in zip(np.flatnonzero(sci), texts):
            out[i] = t
    for i in np.flatnonzero(tiny):
        out[i] = "< 2e-16"
    return out


def coef_table(fit) -> str:
    """``printCoefmat`` with digits 4: Estimate and Std. Error formatted together, the statistic
    rounded to 3 decimals; glmer fits (no scale) add Pr(>|z|) and significance stars."""
    est, se = fit.beta, fit.se_fixef
    stat = est / se
    both = format_r(np.concatenate([est, se]), 4)
    cols = [("Estimate", [s.strip() for s in both[:len(est)]]),
            ("Std. Error", [s.strip() for s in both[len(est):]]),
            ("t value" if fit.use_scale else "z value", [s.strip() for s in format_r(np.round(stat, 3), 4)])]
    stars: list[str] = []
    if not fit.use_scale:
        p = 2 * norm.sf(np.abs(stat))
        cols.append(("Pr(>|z|)", format_pvalues(p)))
        stars = [_stars(v) for v in p]
    names = fit.fixef_names
    wn = max(len(n) for n in names)
    widths = [max(len(h), *(len(v) for v in vals)) for h, vals in cols]
    ws = max((len(s) for s in stars), default=0)
    lines = [" " * wn + " " + " ".join(h.rjust(w) for (h, _), w in zip(cols, widths)) + (" " * (ws + 1) if ws else "")]
    for i, nm in enumerate(names):
        row = nm.ljust(wn) + " " + " ".join(vals[i].rjust(w) for (_, vals), w in zip(cols, widths))
        lines.append(row + (" " + stars[i].ljust(ws) if ws else ""))
    if ws:
        lines += ["---", "Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1"]
    return "\n".join(lines)


def correlation_table(fit) -> str:
    """lme4's "Correlation of Fixed Effects": round(., 3), abbreviated column names, strict lower triangle."""
    V = fit.vcov_array
    sd = np.sqrt(np.diag(V))
    C = V / np.outer(sd, sd)
    names = fit.fixef_names
    p = len(names)
    cells = [[f"{round(C[i, j], 3) + 0.0:.3f}" if j < i else "" for j in range(p - 1)] for i in range(1, p)]
    heads = [abbreviate(n) for n in names[:-1]]
    widths = [max(len(h), *(len(r[j]) for r in cells)) for j, h in enumerate(heads)]
    wn = max(len(n) for n in names[1:])
    lines = [" " * wn + " " + " ".join(h.ljust(w) for h, w in zip(heads, widths))]
    for i, row in enumerate(cells):
        lines.append(names[i + 1].ljust(wn) + " " + " ".join(c.rjust(w) for c, w in zip(row, widths)))
    return "\n".join(lines)


def ngrps_line(fit) -> str:
    groups = ";".join(f" {g}, {n}" for g, n in fit.ngrps.items())
    return f"Number of obs: {fit.nobs}, groups: {groups}"


def residual_quantiles(r: np.ndarray) -> str:
    q = np.quantile(r, [0, 0.25, 0.5, 0.75, 1.0])
    return "\n".join(named_row(["Min", "1Q", "Median", "3Q", "Max"], [v.strip() for v in format_r(q, 4)]))


def info_lines(fit, digits: int) -> list[str]:
    """The AIC/BIC/logLik/deviance/df.resid row of ML fits (summary rounds to 1 decimal)."""
    heads = ["AIC", "BIC", "logLik", "deviance", "df.resid"]
    values = (fit.aic, fit.bic, fit.loglik, -2 * fit.loglik)
    if digits == 4:
        vals = [f"{v:.1f}" for v in values]
    else:
        vals = [v.strip() for v in format_r(values, digits)]
    return named_row(heads, vals + [str(fit.nobs - fit.df)])


def _header(fit) -> list[str]:
    if fit.use_scale:
        method = "REML" if fit.reml else "maximum likelihood "
        out = [f"Linear mixed model fit by {method} ['lmerMod']"]
    else:
        out = [f"Generalized linear mixed model fit by maximum likelihood ({fit.method_label}) [glmerMod]",
               f" Family: {fit.family.name}  ( {fit.family.link.name} )"]
    out.append(f"Formula: {fit.formula}")
    if getattr(fit, "data_name", "data") != "data":
        out.append(f"   Data: {fit.data_name}")
    if fit.design.weights is not None:
        out.append(" Weights: (given)")
    if fit.design.n_dropped:
        out.append(f"({fit.design.n_dropped} observations deleted due to missingness)")
    return out


def _scaled_residuals(fit) -> np.ndarray:
    """lmer: residuals / sigma (times sqrt(w)); glmer: Pearson residuals."""
    if not fit.use_scale:
        return fit.residuals("pearson")
    r = fit.resid / fit.sigma
    return r * np.sqrt(fit.design.weights) if fit.design.weights is not None else r


def _notes(fit) -> list[str]:
    notes = list(fit.messages)
    if fit.design.dropped_columns:
        notes.append("fixed-effect model matrix is rank deficient so dropping "
                     f"{len(fit.design.dropped_columns)} column(s): {', '.join(fit.design.dropped_columns)}")
    return [""] + [f"optimizer note: {m}" for m in notes] if notes else []


def fit_summary(fit) -> str:
    """lme4's ``summary(merMod)`` text for lmer and glmer fits."""
    out = _header(fit) + [""]
    if fit.use_scale and fit.reml:
        out.append(f"REML criterion at convergence: {fit.reml_crit:.1f}")
    else:
        out += info_lines(fit, 4)
    out += ["", "Scaled residuals: ", residual_quantiles(_scaled_residuals(fit)), "", "Random effects:",
            fit.varcorr().format(digits=4, variance=True), ngrps_line(fit), ""]
    if len(fit.beta):
        out += ["Fixed effects:", coef_table(fit)]
        if len(fit.beta) > 1:
            out += ["", "Correlation of Fixed Effects:", correlation_table(fit)]
    return "\n".join(out + _notes(fit))


def fit_brief(fit) -> str:
    """lme4's ``print(merMod)``."""
    out = _header(fit)
    if fit.use_scale and fit.reml:
        out.append(f"REML criterion at convergence: {fit.reml_crit:.4f}")
    else:
        out += info_lines(fit, 6)
    out += ["Random effects:", fit.varcorr().format(digits=4), ngrps_line(fit), "Fixed Effects:"]
    if len(fit.beta):
        out += named_row(list(fit.fixef_names), [v.strip() for v in format_r(fit.beta, 4)], sep="  ")
    if fit.is_singular:
        out.append("optimizer: boundary (singular) fit: see is_singular")
    return "\n".join(out)
