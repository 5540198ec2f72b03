"""The pictures of a multilevel analysis, drawn with matplotlib.

``caterpillar`` (random effects with intervals, sorted), ``shrinkage`` (no-pooling against
partial-pooling estimates by group size, with the grand mean), ``trace`` (MCMC chains),
``pp_check`` (observed against posterior-predictive densities) and ``predictions`` (predictive
intervals per group).

Nothing here calls ``pyplot.show()`` or touches pyplot's global state: when no ``ax`` is passed,
a free-standing :class:`matplotlib.figure.Figure` is created, which draws on any backend
(including headless Agg) and can be saved with ``fig.savefig``.  Every function returns what it
drew on: the Axes for one-panel plots (``pp_check``, ``predictions``, ``shrinkage`` of one
coefficient) and the Figure for multi-panel ones (``caterpillar``, ``trace``, ``shrinkage`` of a
random-slope model), so callers can restyle the result.  ``group_size_axis`` gives any plot
against group size the same plain-number ticks as ``shrinkage``.
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


def _estimate_kind(x) -> tuple[str, str]:
    """What the dots of a caterpillar plot are, in words (as tidy's dispatch tells the objects apart)."""
    if hasattr(x, "draws") and hasattr(x, "posterior_predict"):
        return "Posterior medians", "central intervals"
    if hasattr(x, "n_sims") and hasattr(x, "fit"):
        return "Medians of sim() draws", "central intervals"
    return "Conditional modes", "intervals"


def _label_positions(J: int, max_labels: int, extremes: int) -> np.ndarray:
    """Rows whose level is named on the y axis: all of them up to ``max_labels``, else the
    ``extremes`` lowest and highest rows (in a sorted plot: the smallest and largest effects)."""
    if J <= max_labels:
        return np.arange(J)
    k = min(extremes, J // 2)
    return np.unique(np.r_[np.arange(k), np.arange(J - k, J)])


def caterpillar(x, group: str | None = None, terms=None, level: float = 0.95, sort: bool = True,
                max_labels: int = 60, extremes: int = 5, figsize=None):
    """Random effects with their intervals, sorted: a caterpillar plot (lme4's
    ``dotplot(ranef(fit, condVar = TRUE))``), one panel per grouping factor and coefficient.

    For a fit the interval is b_j +- z_{(1+level)/2} sd(b_j | y) with the conditional SD of
    lme4's ``condVar`` (Bates et al. 2015, sec. 5.1); for a posterior or ``sim()`` draws it is the
    central quantile interval of the draws around their median.  The figure's title states which
    and at what level.

    Parameters
    ----------
    x : lmer/glmer fit, Bayesian posterior or :class:`mixedpy.arm.SimResult`
    group : grouping factor, or a list of them (default: every factor, one row of panels each)
    terms : coefficient name or list (default: all of each factor's coefficients, one panel each)
    level : interval coverage
    sort : order each factor's levels by the estimate of its first coefficient (the same order in
        every panel of that factor, so a level stays on one row)
    max_labels : name every level on the y axis up to this many levels; beyond, name only the
        ``extremes`` lowest and highest rows (the most extreme effects when sorted)
    extremes : how many levels to name at each end when there are more than ``max_labels``

    Returns
    -------
    matplotlib Figure with one Axes per (factor, coefficient) panel (``fig.axes``), factors in
    model order.
    """
    from matplotlib.ticker import MaxNLocator

    if not 0 < level < 1:
        raise ValueError(f"level must be a coverage in (0, 1), got {level!r}")
    rv = _ran_vals(x, level)
    groups = list(dict.fromkeys(rv["group"]))
    wanted = groups if group is None else ([group] if isinstance(group, str) else list(group))
    bad = [g for g in wanted if g not in groups]
    if bad:
        raise DataError(f"no grouping factor {bad[0]!r}; the model has {', '.join(groups)}")
    panels = []                                       # (factor, [terms], levels in row order)
    for g in wanted:
        part = rv[rv["group"] == g]
        available = list(dict.fromkeys(part["term"]))
        if terms is None:
            use = available
        else:
            asked = [terms] if isinstance(terms, str) else list(terms)
            use = [t for t in asked if t in available]
        if use:
            first = part[part["term"] == use[0]]
            levels = first["level"].to_numpy()
            if sort:
                levels = levels[np.argsort(first["estimate"].to_numpy(dtype=float), kind="stable")]
            panels.append((g, use, levels))
    if terms is not None:
        asked = [terms] if isinstance(terms, str) else list(terms)
        drawn = {t for _, use, _ in panels for t in use}
        missing = [t for t in asked if t not in drawn]
        if missing:
            have = sorted(set(rv.loc[rv["group"].isin(wanted), "term"]))
            raise DataError(f"no random coefficient {missing[0]!r} in {', '.join(wanted)}; "
                            f"the coefficients are {', '.join(have)}")
    ncol = max(len(use) for _, use, _ in panels)
    heights = [len(levels) + 4 for _, _, levels in panels]     # title and axis take ~4 rows
    row_in = [min(0.16 * h, 14.0 / len(panels)) for h in heights]
    fig = _figure(figsize or (3.2 * ncol + 1.2, min(sum(row_in) + 0.9, 16.0)))
    grid = fig.add_gridspec(len(panels), ncol, height_ratios=row_in)
    dots, spans = _estimate_kind(x)
    for r, (g, use, levels) in enumerate(panels):
        J = len(levels)
        ypos = np.arange(J)
        part = rv[rv["group"] == g]
        first_ax = None
        for c, term in enumerate(use):
            ax = fig.add_subplot(grid[r, c], sharey=first_ax)
            first_ax = first_ax or ax
            cell = part[part["term"] == term].set_index("level").loc[levels]
            est = cell["estimate"].to_numpy(dtype=float)
            lo, hi = cell["conf.low"].to_numpy(dtype=float), cell["conf.high"].to_numpy(dtype=float)
            ax.axvline(0.0, color=GRID, lw=1, zorder=0)
            ax.hlines(ypos, lo, hi, color=MODEL, lw=1.2 if J <= 60 else 0.8)
            ax.plot(est, ypos, "o", ms=3.5 if J <= 60 else 2.0, color=INK)
            ax.set_title(f"{g}: {term}", fontsize=10)
            ax.set_xlabel(f"random effect, {100 * level:g}% interval", fontsize=8)
            ax.xaxis.set_major_locator(MaxNLocator(nbins=4))  # narrow panels: keep tick labels apart
            ax.grid(axis="x", color="#eeeeee")
            if c > 0:
                ax.tick_params(axis="y", labelleft=False)
        shown = _label_positions(J, max_labels, extremes)
        first_ax.set_yticks(shown)
        first_ax.set_yticklabels([str(v) for v in levels[shown]], fontsize=7 if len(shown) > 25 else 9)
        note = "" if len(shown) == J else f" ({J} levels; {len(shown) // 2} at each end named)"
        first_ax.set_ylabel(g + note, fontsize=9)
        first_ax.set_ylim(-0.8, J - 0.2)
    fig.suptitle(f"{dots} with {100 * level:g}% {spans}", fontsize=10)
    return fig


# --------------------------------------------------------------------------------------------
# shrinkage
# --------------------------------------------------------------------------------------------


def _pooling_source(x, group) -> tuple[pd.DataFrame, str]:
    """The pooling table (columns term, n, no_pooling, partial; one row per level and
    coefficient) and the scale its estimates are on."""
    if isinstance(x, pd.DataFrame):
        tab = x.rename(columns={"partial_pooling": "partial"})
        need = {"n", "no_pooling", "partial"}
        if not need <= set(tab.columns):
            raise DataError(f"a pooling table needs columns {sorted(need)} (as mixedpy.pooling returns); "
                            f"it has {list(x.columns)}")
    else:
        from .pooling import pooling

        tab = pooling(x, group=group)
    if "term" not in tab.columns:
        tab = tab.assign(term="(Intercept)")
    return tab, tab.attrs.get("scale", "response")


def _grand_line(x, tab: pd.DataFrame, sub: pd.DataFrame, term: str) -> float | None:
    """Where the reference line of one coefficient goes: the table's ``grand_mean`` (GLMMs, on
    the probability scale), the fit's fixed effect for the coefficient (0 when the coefficient
    has none, as the random effect then varies around 0), or a table's ``complete`` estimate."""
    if "grand_mean" in tab.attrs:
        return tab.attrs["grand_mean"]
    if not isinstance(x, pd.DataFrame):
        names = list(x.fixef_names)
        return float(x.beta[names.index(term)]) if term in names else 0.0
    if "complete" in sub.columns:
        return float(sub["complete"].iloc[0])
    return None


def _size_positions(n: np.ndarray, log_x: bool) -> tuple[np.ndarray, tuple[float, float]]:
    """x positions for groups of sizes n and the axis limits.

    Groups of equal size are spread evenly over a band of +-1.5% of the axis span (at most a
    quarter of the gap to the next size), in a fixed shuffled order, so they stay apart without
    leaving their column; the axis spans at least 0.6 decades (log) or half the largest size
    (linear), so balanced designs, where all groups share one size, stay one narrow column
    instead of being stretched across the whole axis."""
    u = np.log10(n) if log_x else n.astype(float)
    lo, hi = float(u.min()), float(u.max())
    span = max(hi - lo, 0.6 if log_x else max(0.5 * abs(hi), 1.0))
    distinct, inverse, counts = np.unique(u, return_inverse=True, return_counts=True)
    gap = float(np.min(np.diff(distinct))) if distinct.size > 1 else np.inf
    half = min(0.015 * span, 0.25 * gap)
    offset = np.zeros(u.size)
    rng = np.random.default_rng(0)
    for k in np.flatnonzero(counts > 1):     # a few distinct sizes, not one pass per group
        members = np.flatnonzero(inverse == k)
        offset[rng.permutation(members)] = np.linspace(-half, half, members.size)
    mid, pad = (lo + hi) / 2, span / 2 + 0.06 * span
    lims = (mid - pad, mid + pad)
    if log_x:
        return 10 ** (u + offset), (10 ** lims[0], 10 ** lims[1])
    return u + offset, lims


def group_size_axis(ax, sizes=None, log_x: bool = True, max_ticks: int = 8) -> None:
    """Label an x axis of group sizes in plain numbers: ticks at the observed sizes when there
    are at most ``max_ticks`` distinct ones (e.g. 5, 10, 25, 35 students), else at 1, 2, 5, 10,
    20, ...  (log) or integer steps (linear).  The one tick style of mixedpy's group-size axes."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, MaxNLocator, NullFormatter, NullLocator

    if log_x:
        ax.set_xscale("log")
    distinct = np.unique(np.asarray(sizes, dtype=float)) if sizes is not None else np.array([])
    if 0 < distinct.size <= max_ticks:
        ax.xaxis.set_major_locator(FixedLocator(distinct))
        ax.xaxis.set_minor_locator(NullLocator())
    elif log_x:
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _draw_shrinkage(ax, sub: pd.DataFrame, mu, scale: str, log_x: bool, name: str, term: str,
                    legend: bool = True) -> None:
    n = sub["n"].to_numpy(dtype=float)
    raw, part = sub["no_pooling"].to_numpy(dtype=float), sub["partial"].to_numpy(dtype=float)
    xs, lims = _size_positions(n, log_x)
    ax.vlines(xs, raw, part, color=GRID, lw=0.8, zorder=1)
    ax.plot(xs, raw, "o", mfc="white", mec=RAW, ms=5, label="no pooling (group's own estimate)", zorder=2)
    ax.plot(xs, part, "o", color=MODEL, ms=4, label="partial pooling (multilevel)", zorder=3)
    intercept = term == "(Intercept)"
    if mu is not None and np.isfinite(mu):
        ax.axhline(mu, color=INK, ls="--", lw=1, zorder=0,
                   label="grand mean" if intercept else f"population {term} (fixed effect)")
    group_size_axis(ax, n, log_x)
    ax.set_xlim(*lims)
    ax.set_xlabel(("trials" if scale == "probability" else "observations") + " in group (n_j)")
    ax.set_ylabel(("estimate" if intercept else f"coefficient of {term}")
                  + (" (probability)" if scale == "probability" else ""))
    what = "estimates" if intercept else f"{term} coefficients"
    # two lines: one line overruns a panel of a two-coefficient figure
    ax.set_title(f"Shrinkage of {name} {what}\ntoward the {'grand mean' if intercept else 'fixed effect'}",
                 fontsize=10)
    if legend:
        ax.legend(fontsize=8, frameon=False)


def shrinkage(x, group: str | None = None, term=None, grand_mean=None, log_x: bool = True, ax=None,
              figsize=None):
    """No-pooling against partial-pooling estimates by group size, with the grand mean.

    Each group is drawn twice at its size n_j: its own estimate (no pooling, open circle) and the
    multilevel estimate (partial pooling, filled), joined by a segment.  For a random-intercept
    model the partial-pooling estimate is the precision-weighted average (Gelman & Hill 2007,
    eq. 12.1)

        alpha_j = w_j ybar_j + (1 - w_j) mu,   w_j = (n_j / sigma_y^2) / (n_j / sigma_y^2 + 1 / sigma_alpha^2),

    so small groups are pulled furthest toward the grand mean mu (dashed line).  A model with
    several random coefficients per group (``(Days | Subject)``) gets one panel per coefficient,
    each with its own fixed effect as the line; ``term=`` picks one.

    Parameters
    ----------
    x : an lmer fit (no pooling from :func:`mixedpy.pooling`: least squares with one coefficient
        set per group), a binomial glmer fit with a random intercept (see
        :func:`mixedpy.pooling.binomial_pooling`), or a table as :func:`mixedpy.pooling` returns (columns ``term,
        n, no_pooling, partial``, with ``complete`` used for the line)
    group : grouping factor (default: the first)
    term : coefficient, or list of them, to show (default: every random coefficient of ``group``)
    grand_mean : where to draw the line: a number (one coefficient) or a dict by coefficient
        (default: the fit's fixed effect for the coefficient, the table's ``complete`` estimate,
        or ``attrs["grand_mean"]``)
    log_x : group size on a log axis (sizes usually span orders of magnitude)
    ax : an Axes to draw one coefficient on, or a sequence of Axes, one per coefficient

    Returns
    -------
    matplotlib Axes when one coefficient is drawn; else the Figure, one Axes per coefficient
    (``fig.axes``, in the model's order).
    """
    tab, scale = _pooling_source(x, group)
    available = list(dict.fromkeys(tab["term"]))
    terms = available if term is None else ([term] if isinstance(term, str) else list(term))
    bad = [t for t in terms if t not in available]
    if bad:
        raise DataError(f"no coefficient {bad[0]!r} in the pooling table; it has {', '.join(available)}")
    name = tab.attrs.get("group") or tab.index.name or "group"
    if ax is not None:
        axes = list(ax) if isinstance(ax, (list, tuple, np.ndarray)) else [ax]
        if len(axes) != len(terms):
            raise DataError(f"{name} has {len(terms)} random coefficients ({', '.join(terms)}) and "
                            f"{len(axes)} Axes were given; pass term= to choose one, or one Axes per coefficient")
        fig = None
    else:
        fig = _figure(figsize or ((6.5, 4.2) if len(terms) == 1 else (5.0 * len(terms), 4.2)))
        axes = list(fig.subplots(1, len(terms), squeeze=False)[0])
    for a, t in zip(axes, terms):
        sub = tab[tab["term"] == t]
        if isinstance(grand_mean, dict):
            mu = grand_mean.get(t, _grand_line(x, tab, sub, t))
        elif grand_mean is not None:
            if len(terms) > 1:
                raise DataError("grand_mean for several coefficients must be a dict by coefficient")
            mu = grand_mean
        else:
            mu = _grand_line(x, tab, sub, t)
        _draw_shrinkage(a, sub, mu, scale, log_x, name, t, legend=len(terms) == 1)
    if len(terms) == 1:
        return axes[0]
    fig = axes[0].figure
    # one legend below the panels (a legend inside would sit on the points of some panel)
    handles = {}
    for a in axes:
        for h, lab in zip(*a.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles), fontsize=8, frameon=False, ncol=len(handles),
               loc="outside lower center")
    return fig


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
    fig = _figure(figsize or (7.5, 1.7 * len(params) + 0.8))
    axes = fig.subplots(len(params), 1, sharex=True, squeeze=False)[:, 0]
    for ax, p in zip(axes, params):
        for c in chains:
            v = d.loc[chain == c, p].to_numpy(dtype=float)
            ax.plot(np.arange(v.size), v, lw=0.6, alpha=0.8, label=f"chain {c}")
        # the name goes above the panel, not along the y axis: covariance names such as
        # Sigma[Subject:Days,(Intercept)] are taller than a panel and ran into their neighbours
        ax.set_title(p, fontsize=9, loc="left")
    fig.legend(*axes[0].get_legend_handles_labels(), fontsize=8, ncol=max(1, len(chains)), frameon=False,
               loc="outside upper right")
    axes[-1].set_xlabel("iteration (after warmup)")
    return fig


def _observed_response(post) -> np.ndarray:
    for attr in ("y", "response"):
        y = getattr(post, attr, None)
        if y is not None and not callable(y):
            y = np.asarray(y, dtype=float)
            return y[:, 0] if y.ndim == 2 else y   # cbind(successes, failures): successes
    if getattr(post, "design", None) is None:
        raise DataError("pp_check needs the observed response; the posterior has neither .y nor .design")
    return post.observed_response   # on posterior_predict's scale (successes for binomial)


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


__all__ = ["caterpillar", "shrinkage", "trace", "pp_check", "predictions", "group_size_axis"]
