"""The pictures of a multilevel analysis, drawn with matplotlib.

``caterpillar`` (random effects with intervals, sorted), ``shrinkage`` (no-pooling against
partial-pooling estimates by group size, with the grand mean), ``trace`` (MCMC chains),
``pp_check`` (observed against posterior-predictive densities) and ``predictions`` (predictive
intervals per group).

Nothing here calls ``pyplot.show()`` or touches pyplot's global state: when no ``ax`` is passed,
a free-standing :class:`matplotlib.figure.Figure` is created, which draws on any backend
(including headless Agg) and can be saved with ``fig.savefig``.  Every function returns what it
drew on: the Axes for one-panel plots (``shrinkage``, ``pp_check``, ``predictions``) and the
Figure for multi-panel ones (``caterpillar``, ``trace``), so callers can restyle the result.
matplotlib is imported only when a plot is drawn, so ``import mixedpy`` stays light.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import gaussian_kde

from .errors import DataError

# colours: a dark ink for data, a blue for partial pooling / model, a red-orange for no pooling
INK, MODEL, RAW, GRID = "#222222", "#1f5fa8", "#d2571e", "#bbbbbb"


def _figure(figsize):
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def _axes(ax, figsize=(6.0, 4.0)):
    """The Axes to draw on: the caller's, or one on a new free-standing Figure."""
    if ax is not None:
        return ax
    return _figure(figsize).add_subplot()


# --------------------------------------------------------------------------------------------
# caterpillar
# --------------------------------------------------------------------------------------------


def _ran_vals(x, level: float) -> pd.DataFrame:
    """Per (factor, coefficient, level): estimate and interval, from a fit (conditional mode +-
    z conditional SD), a posterior (median, central quantiles) or sim() draws (same)."""
    from .tidy import tidy

    return tidy(x, effects="ran_vals", conf_int=True, conf_level=level)


def caterpillar(x, group: str | None = None, terms=None, level: float = 0.95, sort: bool = True,
                max_labels: int = 60, figsize=None):
    """Random effects of one grouping factor with their intervals, sorted: a caterpillar plot
    (lme4's ``dotplot(ranef(fit, condVar = TRUE))``).

    For a fit the interval is b_j +- z_{(1+level)/2} sd(b_j | y) with the conditional SD of
    lme4's ``condVar`` (Bates et al. 2015, sec. 5.1); for a posterior or ``sim()`` draws it is the
    central quantile interval of the draws around their median.

    Parameters
    ----------
    x : lmer/glmer fit, Bayesian posterior or :class:`mixedpy.arm.SimResult`
    group : grouping factor (default: the first)
    terms : coefficient name or list (default: all of the factor's coefficients, one panel each)
    level : interval coverage
    sort : order levels by the estimate of the first panel's coefficient (the same order is used
        in every panel so a level stays on one row)
    max_labels : label the levels on the y axis only up to this many

    Returns
    -------
    matplotlib Figure with one Axes per coefficient (``fig.axes``).
    """
    from matplotlib.ticker import MaxNLocator

    rv = _ran_vals(x, level)
    groups = list(dict.fromkeys(rv["group"]))
    group = groups[0] if group is None else group
    if group not in groups:
        raise DataError(f"no grouping factor {group!r}; the model has {', '.join(groups)}")
    rv = rv[rv["group"] == group]
    available = list(dict.fromkeys(rv["term"]))
    terms = available if terms is None else ([terms] if isinstance(terms, str) else list(terms))
    bad = [t for t in terms if t not in available]
    if bad:
        raise DataError(f"{group!r} has no random coefficient {bad[0]!r}; it has {', '.join(available)}")
    first = rv[rv["term"] == terms[0]]
    levels = first["level"].to_numpy()
    order = np.argsort(first["estimate"].to_numpy(), kind="stable") if sort else np.arange(len(levels))
    levels = levels[order]
    J = len(levels)
    fig = _figure(figsize or (3.2 * len(terms) + 0.8, min(2.0 + 0.16 * J, 14.0)))
    axes = fig.subplots(1, len(terms), sharey=True, squeeze=False)[0]
    ypos = np.arange(J)
    for ax, term in zip(axes, terms):
        part = rv[rv["term"] == term].set_index("level").loc[levels]
        est = part["estimate"].to_numpy(dtype=float)
        lo, hi = part["conf.low"].to_numpy(dtype=float), part["conf.high"].to_numpy(dtype=float)
        ax.axvline(0.0, color=GRID, lw=1, zorder=0)
        ax.hlines(ypos, lo, hi, color=MODEL, lw=1.2, label=f"{100 * level:g}% interval")
        ax.plot(est, ypos, "o", ms=3.5, color=INK, label="estimate")
        ax.set_title(f"{group}: {term}")
        ax.set_xlabel("random effect")
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))  # narrow panels: keep tick labels apart
        ax.grid(axis="x", color="#eeeeee")
    axes[0].set_yticks(ypos if J <= max_labels else [])
    if J <= max_labels:
        axes[0].set_yticklabels(levels, fontsize=7 if J > 25 else 9)
    axes[0].set_ylabel(group)
    axes[0].set_ylim(-0.8, J - 0.2)
    return fig


# --------------------------------------------------------------------------------------------
# shrinkage
# --------------------------------------------------------------------------------------------


def _pooling_table(x, group, term: str | None) -> tuple[pd.DataFrame, float | None, str]:
    """(table with n, no_pooling, partial for one coefficient; grand-mean line; scale)."""
    if isinstance(x, pd.DataFrame):
        tab = x.rename(columns={"partial_pooling": "partial"})
        need = {"n", "no_pooling", "partial"}
        if not need <= set(tab.columns):
            raise DataError(f"a pooling table needs columns {sorted(need)} (as mixedpy.pooling returns); "
                            f"it has {list(x.columns)}")
        grand = tab.attrs.get("grand_mean")
    else:
        from .pooling import pooling

        tab = pooling(x, group=group)
        grand = tab.attrs.get("grand_mean")  # GLMMs: on the probability scale; else from the fixef below
    if "term" in tab.columns:
        terms = list(dict.fromkeys(tab["term"]))
        want = term if term is not None else ("(Intercept)" if "(Intercept)" in terms else terms[0])
        if want not in terms:
            raise DataError(f"no coefficient {want!r} in the pooling table; it has {', '.join(terms)}")
        sub = tab[tab["term"] == want]
        if not isinstance(x, pd.DataFrame) and grand is None:
            names = list(x.fixef_names)
            grand = float(x.beta[names.index(want)]) if want in names else 0.0
        if grand is None and "complete" in sub.columns:
            grand = float(sub["complete"].iloc[0])
        sub.attrs.update(tab.attrs)
        tab = sub
    return tab, grand, tab.attrs.get("scale", "response")


def shrinkage(x, group: str | None = None, term: str | None = None, grand_mean: float | None = None,
              log_x: bool = True, ax=None, figsize=(6.5, 4.2)):
    """No-pooling against partial-pooling estimates by group size, with the grand mean.

    Each group is drawn twice at its size n_j: its own estimate (no pooling, open circle) and the
    multilevel estimate (partial pooling, filled), joined by a segment.  For a random-intercept
    model the partial-pooling estimate is the precision-weighted average (Gelman & Hill 2007,
    eq. 12.1)

        alpha_j = w_j ybar_j + (1 - w_j) mu,   w_j = (n_j / sigma_y^2) / (n_j / sigma_y^2 + 1 / sigma_alpha^2),

    so small groups are pulled furthest toward the grand mean mu (dashed line).

    Parameters
    ----------
    x : an lmer fit (no pooling from :func:`mixedpy.pooling`: least squares with one coefficient
        set per group), a binomial glmer fit with a random intercept (see
        :func:`mixedpy.pooling.binomial_pooling`), or a table as :func:`mixedpy.pooling` returns (columns ``term,
        n, no_pooling, partial``, with ``complete`` used for the line)
    group : grouping factor (default: the first)
    term : coefficient to show (default ``(Intercept)``)
    grand_mean : where to draw the line (default: the fit's fixed effect for ``term``, the
        table's ``complete`` estimate, or ``attrs["grand_mean"]``)
    log_x : group size on a log axis (sizes usually span orders of magnitude)

    Returns
    -------
    matplotlib Axes.
    """
    tab, mu, scale = _pooling_table(x, group, term)
    mu = mu if grand_mean is None else grand_mean
    n = tab["n"].to_numpy(dtype=float)
    raw, part = tab["no_pooling"].to_numpy(dtype=float), tab["partial"].to_numpy(dtype=float)
    ax = _axes(ax, figsize)
    # small horizontal jitter so groups of equal size stay visible, deterministic across runs
    jitter = 1.0 + 0.04 * (np.random.default_rng(0).random(n.size) - 0.5) if log_x else 1.0
    xs = n * jitter
    ax.vlines(xs, raw, part, color=GRID, lw=0.8, zorder=1)
    ax.plot(xs, raw, "o", mfc="white", mec=RAW, ms=5, label="no pooling (group's own estimate)", zorder=2)
    ax.plot(xs, part, "o", color=MODEL, ms=4, label="partial pooling (multilevel)", zorder=3)
    if mu is not None and np.isfinite(mu):
        ax.axhline(mu, color=INK, ls="--", lw=1, label="grand mean", zorder=0)
    if log_x:
        _plain_log_x(ax)
    ax.set_xlabel(("trials" if scale == "probability" else "observations") + " in group (n_j)")
    ax.set_ylabel("estimate" + (" (probability)" if scale == "probability" else ""))
    name = tab.attrs.get("group") or tab.index.name or "group"
    which = "" if term in (None, "(Intercept)") else f" ({term})"
    ax.set_title(f"Shrinkage of {name} estimates{which} toward the grand mean")
    ax.legend(fontsize=8, frameon=False)
    return ax


def _plain_log_x(ax) -> None:
    """Log x axis labelled 1, 2, 5, 10, 20, ... in plain numbers (group sizes read better that way)."""
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())


# --------------------------------------------------------------------------------------------
# MCMC: trace and posterior predictive check
# --------------------------------------------------------------------------------------------


def _chain_frame(post) -> tuple[pd.DataFrame, np.ndarray]:
    d = post.draws
    if isinstance(d.index, pd.MultiIndex) and "chain" not in d.columns:
        chain = np.asarray(d.index.get_level_values(0))
        d = d.reset_index(drop=True)
    elif "chain" in d.columns:
        chain = d["chain"].to_numpy()
    else:
        chain = np.zeros(len(d), dtype=int)
    d = d.drop(columns=[c for c in ("chain", "iteration", "draw") if c in d.columns])
    return d.reset_index(drop=True), chain


def trace(post, params=None, max_params: int = 6, figsize=None):
    """Trace plot: each parameter's draws against iteration, one line per chain.

    Well-mixed chains overlap as stationary noise around one level; a chain that wanders or sits
    apart signals non-convergence (compare the split R-hat of ``post.summary()``).

    Parameters
    ----------
    post : a Bayesian posterior (anything whose ``draws`` DataFrame has a ``chain`` column or
        a (chain, draw) MultiIndex)
    params : column names to show (default: the fixed effects, ``sigma`` and the first
        ``Sigma[...]`` entries, up to ``max_params``)

    Returns
    -------
    matplotlib Figure with one Axes per parameter.
    """
    d, chain = _chain_frame(post)
    if params is None:
        fixed = [c for c in d.columns if not c.startswith(("b[", "Sigma[", "mean_PPD", "log-posterior"))]
        params = (fixed + [c for c in d.columns if c.startswith("Sigma[")])[:max_params]
    params = [params] if isinstance(params, str) else list(params)
    bad = [p for p in params if p not in d.columns]
    if bad:
        raise DataError(f"no parameter {bad[0]!r} in the draws")
    chains = list(dict.fromkeys(chain))
    fig = _figure(figsize or (7.5, 1.6 * len(params) + 0.6))
    axes = fig.subplots(len(params), 1, sharex=True, squeeze=False)[:, 0]
    for ax, p in zip(axes, params):
        for c in chains:
            v = d.loc[chain == c, p].to_numpy(dtype=float)
            ax.plot(np.arange(v.size), v, lw=0.6, alpha=0.8, label=f"chain {c}")
        ax.set_ylabel(p, fontsize=8)
    axes[0].legend(fontsize=7, ncol=max(1, len(chains)), frameon=False, loc="upper right")
    axes[-1].set_xlabel("iteration (after warmup)")
    return fig


def _observed_response(post) -> np.ndarray:
    for attr in ("y", "response"):
        y = getattr(post, attr, None)
        if y is not None and not callable(y):
            break
    else:
        design = getattr(post, "design", None)
        if design is None:
            raise DataError("pp_check needs the observed response; the posterior has neither .y nor .design")
        y = design.y
    y = np.asarray(y, dtype=float)
    return y[:, 0] if y.ndim == 2 else y   # cbind(successes, failures): successes, as posterior_predict


def pp_check(post, ndraws: int = 50, seed=None, ax=None, figsize=(6.0, 4.0)):
    """Posterior predictive check: the density of the observed y (dark) over the densities of
    ``ndraws`` replicated data sets y_rep ~ p(y_rep | y) (light), as bayesplot's
    ``ppc_dens_overlay`` (rstanarm's ``pp_check``).  Densities are Gaussian KDEs on a common grid.

    Returns
    -------
    matplotlib Axes.
    """
    y = _observed_response(post)
    yrep = np.asarray(post.posterior_predict(draws=int(ndraws), seed=seed), dtype=float)
    if yrep.ndim != 2 or yrep.shape[1] != y.size:
        raise DataError(f"posterior_predict returned shape {yrep.shape}; expected (draws, {y.size})")
    lo, hi = np.percentile(np.concatenate([y, yrep.ravel()]), [0.5, 99.5])
    pad = 0.05 * (hi - lo if hi > lo else 1.0)
    grid = np.linspace(lo - pad, hi + pad, 256)
    ax = _axes(ax, figsize)
    for s, row in enumerate(yrep):
        if np.ptp(row) > 0:
            ax.plot(grid, gaussian_kde(row)(grid), color=MODEL, alpha=0.2, lw=0.7,
                    label="y_rep (posterior predictive)" if s == 0 else None)
    ax.plot(grid, gaussian_kde(y)(grid), color=INK, lw=2.0, label="y (observed)")
    ax.set_xlabel("y")
    ax.set_ylabel("density")
    ax.set_title("Posterior predictive check")
    ax.legend(fontsize=8, frameon=False)
    return ax


# --------------------------------------------------------------------------------------------
# predictive intervals per group
# --------------------------------------------------------------------------------------------


def predictions(draws, labels=None, observed=None, levels=(0.5, 0.95), sort: bool = False, ax=None,
                xlabel: str = "prediction", figsize=None):
    """Predictive intervals per group: median (dot), inner interval (thick) and outer interval
    (thin) of each column of ``draws``, e.g. ``arm.predictive_draws(...)`` or
    ``post.posterior_predict(newdata=...)`` with one row of newdata per group.

    Parameters
    ----------
    draws : array (n_draws, m) or DataFrame whose columns name the groups
    labels : names of the m columns (default: the DataFrame's columns or 0..m-1)
    observed : optional m values to mark (e.g. group means), drawn as crosses
    levels : (inner, outer) central-interval coverages
    sort : order rows by the median

    Returns
    -------
    matplotlib Axes.
    """
    if isinstance(draws, pd.DataFrame):
        labels = list(draws.columns) if labels is None else list(labels)
        a = draws.to_numpy(dtype=float)
    else:
        a = np.asarray(draws, dtype=float)
        if a.ndim == 1:
            a = a[:, None]
        labels = list(range(a.shape[1])) if labels is None else list(labels)
    if a.ndim != 2 or a.shape[1] != len(labels):
        raise DataError(f"draws must be (n_draws, m) with m = {len(labels)} labels; got shape {a.shape}")
    inner, outer = sorted(levels)
    if not 0 < inner < outer < 1:
        raise ValueError(f"levels must be two coverages in (0, 1), got {levels!r}")
    q = np.quantile(a, [0.5 - outer / 2, 0.5 - inner / 2, 0.5, 0.5 + inner / 2, 0.5 + outer / 2], axis=0)
    order = np.argsort(q[2], kind="stable") if sort else np.arange(a.shape[1])
    m = a.shape[1]
    ax = _axes(ax, figsize or (7.0, min(2.0 + 0.3 * m, 12.0)))
    y = np.arange(m)
    ax.hlines(y, q[0, order], q[4, order], color=MODEL, lw=1.0, label=f"{100 * outer:g}% interval")
    ax.hlines(y, q[1, order], q[3, order], color=MODEL, lw=3.5, label=f"{100 * inner:g}% interval")
    ax.plot(q[2, order], y, "o", color="white", mec=INK, ms=5, label="median")
    if observed is not None:
        obs = np.asarray(observed, dtype=float)
        if obs.shape != (m,):
            raise DataError(f"observed must have one value per group ({m}), got shape {obs.shape}")
        ax.plot(obs[order], y, "x", color=RAW, ms=6, label="observed")
    ax.set_yticks(y)
    ax.set_yticklabels([str(labels[i]) for i in order])
    ax.set_ylim(m - 0.3, -0.7)     # first group on top, as a table reads
    ax.set_xlabel(xlabel)
    ax.legend(fontsize=8, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.14 - 1.2 / (2 + m)),
              ncol=4)
    return ax


__all__ = ["caterpillar", "shrinkage", "trace", "pp_check", "predictions"]
