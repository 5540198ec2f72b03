"""Estimated marginal means and their contrasts, as R's emmeans (Lenth; ``emmeans``, ``contrast``).

The reference grid (emmeans ``ref_grid``) crosses the levels of every factor of the fixed effects
and holds each numeric covariate at its mean over the fitted rows.  The marginal mean of a level
(or of a combination of levels) of the factors in ``specs`` is the equally weighted average of the
grid's predictions over the levels of the other factors:

    emmean = L beta,   L = mean over the other factors' levels of the grid rows of X.

For an lmer fit each mean and each contrast is a 1-df t test of the row L as lmerTest's
``contest1D`` (:func:`mixedpy.lmertest.coef_table`'s rows): with Kenward-Roger's method (emmeans'
default ``lmer.df``) SE = sqrt(L Phi_A L') with pbkrtest's adjusted covariance and df from
``Lb_ddf``; with Satterthwaite's SE = sqrt(L vcov L') and lmerTest's df.  A glmer fit has
asymptotic (z) tests, df = Inf; ``type="response"`` back-transforms the means by the inverse link
(SE by the delta method, SE |d mu / d eta|; the interval is the back-transformed link interval),
and its pairwise contrasts of logit or log means become odds ratios or ratios (exp of the
difference), as emmeans prints them.

Multiplicity adjustments of :func:`contrast` (emmeans ``adjust=``): "tukey" is the studentized
range of the family of k means, p = P(Q_{k,df} > sqrt(2) |t|) (scipy's ``studentized_range``);
"holm" and "bonferroni" over the m contrasts; "none".
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .anova_contrasts import FixedTerms
from .errors import FormulaError, MixedpyError
from .formula.design import new_fixed_matrix
from .lmertest import _check_ddf, _is_lmer, _t_rows
from .threads import controls_threads

#: emmeans switches Kenward-Roger off above this many rows (``emm_options(pbkrtest.limit)``)
PBKRTEST_LIMIT = 3000
ADJUST = ("tukey", "holm", "bonferroni", "none")


@dataclass(frozen=True)
class EmmBasis:
    """What :func:`contrast` needs from :func:`emmeans`: the fit, the rows L, the method and scale."""

    fit: object
    L: np.ndarray
    labels: list[str]          # each mean's label in contrast names ("a1 b1")
    ddf: str | None            # None for the asymptotic tests of a glmer fit
    type: str


class EmmGrid(pd.DataFrame):
    """The table :func:`emmeans` returns: a DataFrame that also carries ``emm_basis`` (an
    :class:`EmmBasis`) for :func:`contrast`."""

    _metadata = ["emm_basis"]

    @property
    def _constructor(self):
        return EmmGrid


def _parse_specs(specs) -> list[str]:
    if isinstance(specs, str):
        text = specs.replace("~", " ").strip()
        parts = [p.strip() for p in text.replace("*", ":").split(":")]
    else:
        parts = [str(p).strip() for p in specs]
    parts = [p for p in parts if p]
    if not parts:
        raise ValueError(f"specs names no factor: {specs!r}")
    return parts


def _ordered(names: list[str], label: str) -> bool:
    """An ordered factor's columns are named with contr.poly's suffixes (``A.L``)."""
    return any(p == f"{label}.L" for nm in names for p in nm.split(":"))


def reference_grid(fit) -> tuple[dict[str, list], dict[str, float]]:
    """emmeans' ``ref_grid``: the levels of each factor and the mean of each numeric covariate."""
    design = fit.design
    spec = design.fixed_spec
    s = spec.structure
    ft = FixedTerms.of(design)
    used = sorted({v for t in s.terms for v in t})
    factors, covariates = {}, {}
    for v in used:
        kind, name = s.variables[v][0], s.labels[v]
        if kind != "name":
            raise FormulaError(f"emmeans needs the fixed effects to use plain columns; {name!r} is an expression "
                               "(make it a column of the data first)")
        if v in spec.levels:
            factors[name] = list(spec.levels[v])
            continue
        main = [t for t, tv in enumerate(ft.term_vars) if tv == (v,)]
        cols = ft.columns(main[0]) if main else []
        if len(cols) != 1:
            raise FormulaError(f"emmeans holds the covariate {name!r} at its mean, which needs its main effect "
                               "in the model")
        covariates[name] = float(ft.X[:, cols[0]].mean())
    return factors, covariates


def _level_label(name: str, levels: list) -> list[str]:
    """emmeans names the levels of a factor whose levels are numbers with the factor's name."""
    labs = [str(x) for x in levels]
    try:
        [float(x) for x in labs]
    except ValueError:
        return labs
    return [f"{name}{x}" for x in labs]


def _default_ddf(fit) -> str:
    weighted = fit.design.weights is not None
    if fit.reml and not weighted and fit.nobs <= PBKRTEST_LIMIT:
        return "Kenward-Roger"
    return "Satterthwaite"


@controls_threads
def emmeans(fit, specs, ddf: str | None = None, type: str = "link", level: float = 0.95) -> EmmGrid:
    """Estimated marginal means of ``specs`` (emmeans ``emmeans(fit, specs, lmer.df=, type=)``).

    specs : a factor ("group"), several ("A:B", "A*B" or ["A", "B"]).
    ddf : "Kenward-Roger" or "Satterthwaite" for an lmer fit; the default is emmeans': Kenward-Roger
        for an unweighted REML fit of at most 3,000 rows, else Satterthwaite.  Ignored for glmer
        (asymptotic df = Inf).
    type : "link" or "response" (glmer: the means on the probability / rate scale).

    Returns a DataFrame with the factor columns, then ``emmean`` (``prob``/``rate`` on the response
    scale of a binomial/Poisson fit), ``SE``, ``df`` and ``lower.CL``, ``upper.CL`` (``asymp.LCL``,
    ``asymp.UCL`` for df = Inf), one row per level combination, the first factor varying fastest.
    """
    if type not in ("link", "response"):
        raise ValueError(f"type must be 'link' or 'response', got {type!r}")
    names = _parse_specs(specs)
    factors, covariates = reference_grid(fit)
    unknown = [n for n in names if n not in factors]
    if unknown:
        raise FormulaError(f"emmeans specs {unknown} are not factors of the fixed effects "
                           f"(the factors are {list(factors) or 'none'})")
    others = [f for f in factors if f not in names]
    order = list(reversed(names)) + others
    combos = list(itertools.product(*[factors[f] for f in order]))
    grid = pd.DataFrame(combos, columns=order) if combos else pd.DataFrame(index=[0])
    for f in factors:
        grid[f] = pd.Categorical(grid[f], categories=factors[f], ordered=_ordered(fit.fixef_names, f))
    for c, m in covariates.items():
        grid[c] = m
    X = new_fixed_matrix(fit.design, grid)
    n_spec = int(np.prod([len(factors[f]) for f in names]))
    L = X.reshape(n_spec, -1, X.shape[1]).mean(axis=1)
    spec_rows = list(itertools.product(*[factors[f] for f in reversed(names)]))
    out = {f: [row[len(names) - 1 - i] for row in spec_rows] for i, f in enumerate(names)}
    labels_per = {f: dict(zip(factors[f], _level_label(f, factors[f]))) for f in names}
    labels = [" ".join(labels_per[f][out[f][r]] for f in names) for r in range(n_spec)]
    frame = pd.DataFrame({f: pd.Categorical(v, categories=factors[f]) for f, v in out.items()})

    est, se, df, method = _tests(fit, L, ddf)
    alpha = 1 - level
    if np.all(np.isinf(df)):
        crit = stats.norm.isf(alpha / 2)
        lo_name, hi_name = "asymp.LCL", "asymp.UCL"
    else:
        crit = stats.t.isf(alpha / 2, df)
        lo_name, hi_name = "lower.CL", "upper.CL"
    lo, hi = est - crit * se, est + crit * se
    value_name = "emmean"
    if type == "response" and not _is_lmer(fit):
        fam = fit.family
        value_name = {"binomial": "prob", "poisson": "rate"}.get(fam.name, "response")
        se = se * np.abs(fam.mu_eta(est))
        est, lo, hi = fam.linkinv(est), fam.linkinv(lo), fam.linkinv(hi)
    frame[value_name] = est
    frame["SE"] = se
    frame["df"] = df
    frame[lo_name] = lo
    frame[hi_name] = hi
    em = EmmGrid(frame)
    em.emm_basis = EmmBasis(fit=fit, L=L, labels=labels, ddf=method, type=type)
    return em


def _tests(fit, L: np.ndarray, ddf: str | None):
    """(estimate, SE, df, method) of the rows L on the link scale."""
    if _is_lmer(fit):
        method = _default_ddf(fit) if ddf is None else _check_ddf(ddf)
        if method == "lme4":
            raise ValueError("emmeans needs ddf='Kenward-Roger' or 'Satterthwaite' for an lmer fit")
        t = _t_rows(fit, L, method)
        return (t["Estimate"].to_numpy(), t["Std. Error"].to_numpy(), t["df"].to_numpy(), method)
    V = np.asarray(fit.vcov_array, dtype=float)
    return L @ fit.beta, np.sqrt(np.einsum("ia,ab,ib->i", L, V, L)), np.full(L.shape[0], np.inf), None


def adjust_pvalues(t: np.ndarray, df: np.ndarray, p: np.ndarray, adjust: str, n_means: int) -> np.ndarray:
    """emmeans' multiplicity adjustments of two-sided p-values (see the module docstring)."""
    m = p.size
    if adjust == "none" or m <= 1 and adjust != "tukey":
        return p
    if adjust == "tukey":
        return np.minimum(stats.studentized_range.sf(np.sqrt(2) * np.abs(t), n_means, df), 1.0)
    if adjust == "bonferroni":
        return np.minimum(p * m, 1.0)
    order = np.argsort(p)                                      # holm
    stepped = np.maximum.accumulate(np.minimum((m - np.arange(m)) * p[order], 1.0))
    out = np.empty(m)
    out[order] = stepped
    return out


@controls_threads
def contrast(em: EmmGrid, method: str = "pairwise", adjust: str | None = None) -> pd.DataFrame:
    """emmeans' ``contrast(em, "pairwise", adjust=)``: every difference of two means, first minus later.

    Columns ``contrast`` ("a1 - a2"), ``estimate``, ``SE``, ``df``, ``t.ratio`` and ``p.value``
    (``z.ratio`` when df = Inf).  adjust is "tukey" (emmeans' default for pairwise), "holm",
    "bonferroni" or "none".  On the response scale of a logit or log glmer the contrasts are ratios,
    as emmeans': ``odds.ratio`` or ``ratio`` = exp(estimate), SE = ratio * SE, ``null`` = 1 and
    names "a1 / a2".
    """
    basis = getattr(em, "emm_basis", None)
    if basis is None or len(em) != basis.L.shape[0]:
        raise MixedpyError("contrast() needs the unmodified table returned by mp.emmeans()")
    if method != "pairwise":
        raise ValueError(f"only method='pairwise' is implemented, got {method!r}")
    adjust = "tukey" if adjust is None else str(adjust).lower()
    if adjust not in ADJUST:
        raise ValueError(f"adjust must be one of {', '.join(map(repr, ADJUST))}, got {adjust!r}")
    fit, L = basis.fit, basis.L
    k = L.shape[0]
    pairs = list(itertools.combinations(range(k), 2))
    if not pairs:
        raise MixedpyError("pairwise contrasts need at least two means")
    i, j = np.array(pairs).T
    Lc = L[i] - L[j]
    est, se, df, _ = _tests(fit, Lc, basis.ddf)
    stat = est / se
    asymptotic = np.all(np.isinf(df))
    p = 2 * (stats.norm.sf(np.abs(stat)) if asymptotic else stats.t.sf(np.abs(stat), df))
    p = adjust_pvalues(stat, df, p, adjust, k)
    ratio = None
    if basis.type == "response" and not _is_lmer(fit):
        ratio = {"logit": "odds.ratio", "log": "ratio"}.get(fit.family.link.name)
    sep = " / " if ratio else " - "
    out = pd.DataFrame({"contrast": [basis.labels[a] + sep + basis.labels[b] for a, b in pairs]})
    if ratio:
        out[ratio] = np.exp(est)
        out["SE"] = np.exp(est) * se
        out["df"] = df
        out["null"] = 1.0
    else:
        out["estimate"] = est
        out["SE"] = se
        out["df"] = df
    out["z.ratio" if asymptotic else "t.ratio"] = stat
    out["p.value"] = p
    return out


__all__ = ["emmeans", "contrast", "EmmGrid", "reference_grid"]
