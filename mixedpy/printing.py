"""Every text rendering of a frequentist fit: lme4's ``summary()`` and ``print()`` for lmer and
glmer fits, lme4's ``print(VarCorr(fit))`` and arm's ``display()``.

Layouts follow lme4's ``summary.merMod``/``print.merMod``/``formatVC``, R's ``printCoefmat`` and
arm 1.13's ``display`` (ALGORITHMS.md 3.2), with R's number formatting from :mod:`mixedpy.rformat`.
Everything here reads a fit's attributes and returns text; nothing computes or prints.  The text
comes back as :class:`Text` (a ``str`` that shows as itself at the prompt and as ``<pre>`` in
Jupyter); ``summary`` as :class:`Summary`, which also keeps its sections.
"""
from __future__ import annotations

import html

import numpy as np
from scipy.stats import norm

from .residuals import is_glmm as _is_glmm
from .rformat import format_r, fround, round_r


class HtmlPre:
    """Jupyter shows the object's printed text in a ``<pre>`` block (escaped), as statsmodels'
    ``Summary`` does, instead of an HTML rendering of its own."""

    def _repr_html_(self) -> str:
        return "<pre>" + html.escape(str(self)) + "</pre>"


class Text(HtmlPre, str):
    """Text a person reads (lme4's ``summary``, arm's ``display``, rstanarm's ``print``).

    It is a ``str`` (compare, split, write it as before), but at the prompt it shows as the text
    itself, not as an escaped one-line string literal, and in Jupyter as a ``<pre>`` block, so
    ``mp.display(fit)`` or ``fit.summary()`` typed at the prompt reads like R's output.
    """

    def __repr__(self) -> str:
        return str.__str__(self)

    def as_text(self) -> str:
        """The plain ``str``."""
        return str.__str__(self)


class Summary(Text):
    """lme4's ``summary(fit)`` text, kept also as its named sections, in print order:

    ``title`` (model class and method, and the family line of a GLMM), ``call`` (formula, data,
    weights, deleted rows), ``criterion`` (REML criterion, or the AIC/BIC/logLik row), ``residuals``
    (scaled residual quantiles), ``random`` (variance components and group counts), ``fixed``
    (the coefficient table), ``correlation`` (of the fixed effects) and ``notes`` (optimizer notes).
    Each section is a list of lines that starts with the blank line that separates it from the
    one before, so the text is the concatenation of the sections' lines.

    ``with_sections(title=..., fixed=...)`` gives the same summary with sections replaced, as
    lmerTest's ``summary`` replaces the title and the coefficient table (t-tests with denominator
    degrees of freedom) and leaves the rest as lme4 prints it.
    """

    def __new__(cls, sections: dict[str, list[str]]):
        self = super().__new__(cls, "\n".join(line for lines in sections.values() for line in lines))
        self.sections = dict(sections)
        return self

    def with_sections(self, **changes: list[str]) -> "Summary":
        unknown = set(changes) - set(self.sections)
        if unknown:
            raise KeyError(f"no summary section {sorted(unknown)}; sections are {list(self.sections)}")
        return Summary({k: list(changes.get(k, v)) for k, v in self.sections.items()})

    def __reduce__(self):
        return (Summary, (self.sections,))


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


def abbreviate_unique(names: list[str], width: int) -> list[str]:
    """R's ``abbreviate(names, width)`` over a vector: abbreviations that collide are made again
    from the full names with one more character, until all differ (week:grouphi and week:grouplo
    give wk:grph and wk:grpl, not wk:grp twice)."""
    out = [abbreviate(n, width) for n in names]
    longest = max((len(n) for n in names), default=0)
    while len(set(out)) < len(out) and width < longest:
        width += 1
        counts = {a: out.count(a) for a in out}
        out = [abbreviate(n, width) if counts[a] > 1 else a for n, a in zip(names, out)]
    return out


def named_row(names: list[str], values: list[str], sep: str = " ") -> list[str]:
    """R's print of a named vector: one common width, right-justified, with a trailing separator."""
    w = max(len(x) for x in names + values)
    return ["".join(x.rjust(w) + sep for x in names), "".join(x.rjust(w) + sep for x in values)]


def char_matrix(rownames: list[str], header: list[str], cells: list[list[str]]) -> list[str]:
    """R's ``print(<character matrix>, quote = FALSE)``: every column (row names included)
    left-justified to its widest entry and separated by one space."""
    cols = list(zip(*cells)) if cells else [[] for _ in header]
    wr = max((len(r) for r in rownames), default=0)
    widths = [max([len(h)] + [len(c) for c in col]) for h, col in zip(header, cols)]
    lines = [" " * wr + "".join(" " + h.ljust(w) for h, w in zip(header, widths))]
    for r, row in zip(rownames, cells):
        lines.append(r.ljust(wr) + "".join(" " + c.ljust(w) for c, w in zip(row, widths)))
    return lines


def _stars(p: float) -> str:
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else "." if p < 0.1 else ""


def format_pvalues(p: np.ndarray) -> list[str]:
    """Pr(>|z|) as ``printCoefmat``/``format.pval`` print it (3 significant digits): values from 1e-4
    up in fixed notation with common decimals, smaller ones in scientific notation, "< 2e-16" below
    machine epsilon ("<2e-16" when the other values are at most 6 characters wide, as R's)."""
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
    # format.pval: "<2e-16" without a space when every other value is 6 characters or fewer
    nc = max((len(out[i]) for i in np.flatnonzero(~tiny)), default=0)
    sep = "" if nc <= 6 else " "
    for i in np.flatnonzero(tiny):
        out[i] = f"<{sep}2e-16"
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
    if _is_glmm(fit):  # lme4: t values for a family with a dispersion, but Pr(>|z|) for every GLMM
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
    # format() of the whole matrix gives every entry one width; print() then left-justifies columns
    cw = max(len(f"{round(v, 3) + 0.0:.3f}") for v in C.ravel())
    cells = [[f"{round(C[i, j], 3) + 0.0:.3f}".rjust(cw) if j < i else "" for j in range(p - 1)] for i in range(1, p)]
    heads = abbreviate_unique(list(names), 6)[:-1]   # lme4 abbreviates every name, then drops the last
    widths = [max(len(h), *(len(r[j]) for r in cells)) for j, h in enumerate(heads)]
    rows = abbreviate_unique(list(names), 11)[1:]   # lme4: abbreviate(rownames, minlength = 11)
    wn = max(len(n) for n in rows)
    lines = [" " * wn + " " + " ".join(h.ljust(w) for h, w in zip(heads, widths))]
    for i, row in enumerate(cells):
        lines.append(rows[i].ljust(wn) + " " + " ".join(c.ljust(w) for c, w in zip(row, widths)))
    return "\n".join(lines)


def varcorr_table(vc, digits: int = 5, variance: bool = False) -> str:
    """lme4's ``print(VarCorr(fit))`` of a :class:`mixedpy.varcorr.VarCorr`: Groups, Name, (Variance,)
    Std.Dev. and the lower triangle of each correlation matrix (``comp=c("Variance","Std.Dev.")``
    with variance=True)."""
    groups, names, sds, vars_, corr_rows = [], [], [], [], []
    for t in vc.terms:
        # each term's rows: lme4's lower triangle, or a structure's glmmTMB-style summary
        for i, (name, sd, var, cells) in enumerate(t.table_rows(max(2, digits - 2))):
            groups.append(t.label if i == 0 else "")
            names.append(name)
            sds.append(sd)
            vars_.append(var)
            corr_rows.append(cells)
    if vc.sigma is not None:
        groups.append("Residual")
        names.append("")
        sds.append(vc.sigma)
        vars_.append(vc.sigma ** 2)
        corr_rows.append([])
    header = ["Groups", "Name"] + (["Variance"] if variance else []) + ["Std.Dev."]
    cols = [groups, names]
    if variance:
        cols.append(format_r(vars_, digits))
    cols.append(format_r(sds, digits))
    n_corr = max((len(r) for r in corr_rows), default=0)
    if n_corr > 0:
        header += ["Corr"] + [""] * (n_corr - 1)
        for j in range(n_corr):
            cols.append([r[j] if j < len(r) else "" for r in corr_rows])
    widths = [max(len(h), *(len(v) for v in col)) for h, col in zip(header, cols)]
    # lme4 formats each numeric column to a common width, then left-justifies it in the table
    lines = [" " + " ".join(h.ljust(w) for h, w in zip(header, widths))]
    for r in range(len(groups)):
        lines.append(" " + " ".join(col[r].ljust(w) for col, w in zip(cols, widths)))
    return "\n".join(line.rstrip() for line in lines)


def ngrps_line(fit) -> str:
    groups = ";".join(f" {g}, {n}" for g, n in fit.ngrps.items())
    return f"Number of obs: {fit.nobs}, groups: {groups}"


def zapsmall(x: np.ndarray, digits: int) -> np.ndarray:
    """R's ``zapsmall(x, digits)``: ``round(x, max(0, digits - log10(max|x|)))``; R's round takes
    the nearest integer of the non-integer digits (so 5 - log10(2.75) rounds to 5 decimals)."""
    x = np.asarray(x, dtype=float)
    mx = float(np.max(np.abs(x))) if x.size else 0.0
    return np.round(x, max(0, int(np.floor(digits - np.log10(mx) + 0.5))) if mx > 0 else digits)


def residual_quantiles(r: np.ndarray, digits: int = 4) -> str:
    """lme4's ``.prt.resids``: the quartiles of the scaled residuals, ``zapsmall`` to digits + 1
    and printed with ``digits`` significant digits."""
    q = zapsmall(np.quantile(r, [0, 0.25, 0.5, 0.75, 1.0]), digits + 1)
    return "\n".join(named_row(["Min", "1Q", "Median", "3Q", "Max"], [v.strip() for v in format_r(q, digits)]))


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
    if not _is_glmm(fit):
        method = "REML" if fit.reml else "maximum likelihood "
        out = [f"Linear mixed model fit by {method} ['lmerMod']"]
    else:
        out = [f"Generalized linear mixed model fit by maximum likelihood ({fit.method_label}) [glmerMod]",
               f" Family: {getattr(fit.family, 'r_family', fit.family.name)}  ( {fit.family.link.name} )"]
    out.append(f"Formula: {fit.formula}")
    if getattr(fit, "data_name", "data") != "data":
        out.append(f"   Data: {fit.data_name}")
    if fit.design.weights is not None:
        out.append(" Weights: (given)")
    if fit.design.n_dropped:
        out.append(f"({fit.design.n_dropped} observations deleted due to missingness)")
    return out


def _scaled_residuals(fit) -> np.ndarray:
    """lme4's ``residuals(object, "pearson", scaled = TRUE)`` of the rows used: sqrt(w)(y - mu)/sigma
    for lmer, the Pearson residuals / sigma for glmer."""
    from .residuals import residuals

    r = residuals(fit, "pearson", scaled=True)
    r = r.compute() if hasattr(r, "compute") else r   # a Dask fit's, per partition
    return r.dropna().to_numpy()   # without the rows na_action="exclude" pads


def _notes(fit) -> list[str]:
    notes = list(fit.messages)
    if fit.design.dropped_columns:
        notes.append("fixed-effect model matrix is rank deficient so dropping "
                     f"{len(fit.design.dropped_columns)} column(s): {', '.join(fit.design.dropped_columns)}")
    return [""] + [f"optimizer note: {m}" for m in notes] if notes else []


def summary_sections(fit) -> dict[str, list[str]]:
    """The sections of lme4's ``summary(merMod)`` (see :class:`Summary`), as lists of lines."""
    header = _header(fit)
    n_title = 2 if _is_glmm(fit) else 1
    if fit.use_scale and fit.reml:
        criterion = ["", f"REML criterion at convergence: {fit.reml_crit:.1f}"]
    else:
        criterion = [""] + info_lines(fit, 4)
    sections = {
        "title": header[:n_title],
        "call": header[n_title:],
        "criterion": criterion,
        "residuals": ["", "Scaled residuals: ", residual_quantiles(_scaled_residuals(fit))],
        "random": ["", "Random effects:", fit.varcorr().format(digits=4, variance=True), ngrps_line(fit), ""],
        "fixed": ["Fixed effects:", coef_table(fit)] if len(fit.beta) else [],
        "correlation": (["", "Correlation of Fixed Effects:", correlation_table(fit)] if len(fit.beta) > 1
                        else []),
        "notes": _notes(fit),
    }
    return sections


def fit_summary(fit) -> Summary:
    """lme4's ``summary(merMod)`` text for lmer and glmer fits."""
    return Summary(summary_sections(fit))


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


# --------------------------------------------------------------------------------------------
# arm's display()
# --------------------------------------------------------------------------------------------


def _display_call(fit) -> str:
    family = getattr(fit, "family", None)
    data = getattr(fit, "data_name", "data")
    if family is None:
        reml = "" if getattr(fit, "reml", True) else ", REML = FALSE"
        return f"lmer(formula = {fit.formula}, data = {data}{reml})"
    return f"glmer(formula = {fit.formula}, data = {data}, family = {getattr(family, 'r_call', family.name)})"


def _display_coefs(fit, digits: int, detail: bool) -> list[str]:
    est = np.asarray(fit.beta, dtype=float)
    if est.size == 0:
        return []
    se = np.sqrt(np.diag(np.asarray(fit.vcov_array)))
    stat = est / se
    if fit.use_scale:
        header, cols = ["coef.est", "coef.se", "t value"], [est, se, stat]
    else:
        header, cols = ["coef.est", "coef.se", "z value", "Pr(>|z|)"], [est, se, stat, 2 * norm.sf(np.abs(stat))]
    if not detail:
        header, cols = header[:2], cols[:2]
    M = np.column_stack(cols)
    if not detail and est.size == 1:
        # arm's quirk: coefs[, 1:2] of a one-row matrix drops to a named vector (no row name)
        return named_row(header, fround(M.ravel(), digits))
    flat = fround(M.ravel(), digits)  # one format() over the whole matrix: common width
    cells = [flat[i * M.shape[1]:(i + 1) * M.shape[1]] for i in range(M.shape[0])]
    return char_matrix(list(fit.fixef_names), header, cells)


def _display_error_terms(fit, digits: int) -> list[str]:
    """arm's ``as.matrix.VarCorr`` without its Variance column: Groups, Name, Std.Dev., Corr..."""
    vc = fit.varcorr()
    sc = fit.sigma if fit.use_scale else 1.0
    groups, names, sds = [], [], []
    for t in vc.terms:
        for i, name in enumerate(t.coef_names):
            groups.append(t.label if i == 0 else "")
            names.append(name)
        sds.extend(t.sd)
    groups.append("Residual")
    names.append("")
    sds.append(sc)
    sd_txt = fround(sds, digits)
    header = ["Groups", "Name", "Std.Dev."]
    rows = [[g, n, s] for g, n, s in zip(groups, names, sd_txt)]
    maxlen = max(len(t.coef_names) for t in vc.terms) if vc.terms else 1
    if maxlen > 1:
        corr_rows = []
        for t in vc.terms:
            k = len(t.coef_names)
            cc = np.asarray(fround(t.corr.ravel(), digits), dtype=object).reshape(k, k)
            for i in range(k):
                corr_rows.append([cc[i, j] if j < i else "" for j in range(k)] + [""] * (maxlen - k))
        corr_rows.append([""] * maxlen)
        header += ["Corr"] + [""] * (maxlen - 1)
        rows = [r + c for r, c in zip(rows, corr_rows)]
    return char_matrix([""] * len(rows), header, rows)


def display_text(fit, deviance: float, digits: int = 2, detail: bool = False) -> Text:
    """arm's ``display()`` text (see :func:`mixedpy.arm.display` for the layout), given the
    deviance arm prints, ``deviance(refitML(fit))``."""
    lines = [_display_call(fit)]
    lines += _display_coefs(fit, digits, detail)
    lines += ["", "Error terms:"]
    lines += _display_error_terms(fit, digits)
    dic = 2.0 * deviance + 2.0 * float(fit.loglik)
    groups = "; ".join(f"{g}, {j}" for g, j in fit.ngrps.items())
    lines += ["---", f"number of obs: {fit.nobs}, groups: {groups}",
              "AIC = %g, DIC = %s" % (round_r(float(fit.aic), 1), format_r([round_r(dic, 1)], 7)[0].strip()),
              f"deviance = {fround([deviance], 1)[0]} "]
    return Text("\n".join(lines))


# ---------------------------------------------------------------------------------------------
# rstanarm's print(fit) and prior_summary(fit)
# ---------------------------------------------------------------------------------------------
#: the last lines of the print: where rstanarm points to ``?print.stanreg``, the Python help
STANREG_PRINT_HELP = ("* For help interpreting the printed output see help(mixedpy.bayes.Posterior.format)",
                      "* For info on the priors used see help(mixedpy.bayes.Posterior.prior_summary)")
#: the last line of the prior summary: where rstanarm points to ``?prior_summary.stanreg``
PRIOR_SUMMARY_HELP = "See help(mixedpy.bayes.Posterior.prior_summary) for more details"


def median_mad_table(names: list[str], median: np.ndarray, mad_sd: np.ndarray, digits: int) -> list[str]:
    """rstanarm's ``Median MAD_SD`` block: the two columns formatted together (R's format())."""
    vals = fround(np.concatenate([median, mad_sd]), digits)
    w = len(vals[0])
    m, s = vals[:len(median)], vals[len(median):]
    rw = max(len(n) for n in names)
    head = " " * rw + " " + "Median".ljust(w) + " " + "MAD_SD".ljust(w)
    return [head] + [n.ljust(rw) + " " + a + " " + b for n, a, b in zip(names, m, s)]


def stanreg_text(family: str, link: str, formula: str, nobs: int, coefs: tuple | None, sigma: tuple | None,
                 varcorr_text: str, ngrps: dict, digits: int, stan_function: str | None = None) -> Text:
    """rstanarm's ``print(fit, digits)``: header, the coefficients' and the auxiliary parameter's
    (``sigma``: names, medians, MAD_SDs) blocks, the error terms (VarCorr text) and the levels per
    grouping factor.  ``stan_function`` defaults to stan_lmer for gaussian [identity], else stan_glmer."""
    fam = f"{family} [{link}]"
    fn = stan_function or ("stan_lmer" if (family, link) == ("gaussian", "identity") else "stan_glmer")
    lines = [fn, f" family:       {fam}", f" formula:      {formula}", f" observations: {nobs}", "------"]
    if coefs is not None:
        lines += median_mad_table(*coefs, digits)
    if sigma is not None:
        lines += ["", "Auxiliary parameter(s):"] + median_mad_table(*sigma, digits)
    lines += ["", "Error terms:", varcorr_text]
    lines.append("Num. levels: " + " ".join(f"{g} {n}" for g, n in ngrps.items()) + " ")
    lines += ["", "------"] + list(STANREG_PRINT_HELP)
    return Text("\n".join(lines))


def prior_summary_layout(model_name: str, blocks: list[tuple[str, tuple[str, str | None]]],
                         covariance: str) -> Text:
    """rstanarm's ``prior_summary(fit)`` text from its blocks: (title, (specified, adjusted or None))
    per prior, then the covariance prior's line."""
    lines = [f"Priors for model '{model_name}' ", "------"]
    for title, (specified, adjusted) in blocks:
        lines.append(title)
        if adjusted is None:
            lines.append(f" {specified}")
        else:
            lines.extend(["  Specified prior:", f"    {specified}", "  Adjusted prior:", f"    {adjusted}"])
        lines.append("")
    lines += ["Covariance", covariance, "------", PRIOR_SUMMARY_HELP]
    return Text("\n".join(lines))
