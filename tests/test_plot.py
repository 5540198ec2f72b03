"""mp.plot on a headless canvas: each function returns its Axes/Figure and draws the elements it
promises (points, intervals, reference lines), with values taken from the fit."""
from __future__ import annotations

import os
import subprocess
import sys
from functools import lru_cache

import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from scipy.integrate import trapezoid
from scipy.stats import norm

import mixedpy as mp


@lru_cache(maxsize=None)
def _sleep():
    return mp.lmer("Reaction ~ Days + (Days | Subject)", mp.datasets.load("sleepstudy"))


@lru_cache(maxsize=None)
def _radon():
    return mp.lmer("log_radon ~ 1 + (1 | county)", mp.datasets.load("radon"))


@lru_cache(maxsize=None)
def _post():
    return mp.bayes_lmer("Reaction ~ Days + (1 | Subject)", mp.datasets.load("sleepstudy"), chains=2, iter=300,
                         seed=3, progress=False)


def _points(ax: Axes, marker="o"):
    """(x, y) of the marker-only Line2D artists of an Axes."""
    return [ln for ln in ax.get_lines() if ln.get_marker() == marker and ln.get_linestyle() in ("None", "")]


def test_never_touches_pyplot():
    """Plots draw on free-standing Figures: pyplot (and with it a GUI backend) is never imported,
    and nothing can open a window."""
    code = ("import sys, mixedpy as mp\n"
            "fit = mp.lmer('log_radon ~ 1 + (1 | county)', mp.datasets.load('radon'))\n"
            "fig = mp.plot.caterpillar(fit); ax = mp.plot.shrinkage(fit)\n"
            "ax2 = mp.plot.predictions([[0.0, 1.0], [1.0, 2.0], [2.0, 3.0]])\n"
            "fig.canvas.draw(); ax.figure.canvas.draw()\n"
            "print('pyplot' if 'matplotlib.pyplot' in sys.modules else 'clean', type(fig.canvas).__name__)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "MPLBACKEND": "", "DISPLAY": ""})
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["clean", "FigureCanvasBase"]


def test_caterpillar_sorted_intervals_from_condvar():
    fit = _sleep()
    fig = mp.plot.caterpillar(fit, level=0.9)
    assert len(fig.axes) == 2
    ax0, ax1 = fig.axes
    assert ax0.get_title() == "Subject: (Intercept)" and ax1.get_title() == "Subject: Days"
    re = mp.ranef(fit, condvar=True)["Subject"]
    sd = re.attrs["condsd"]
    (pts,) = _points(ax0)
    x, y = pts.get_data()
    assert len(x) == 18 and np.all(np.diff(x) >= 0)                  # sorted
    np.testing.assert_allclose(np.sort(x), np.sort(re["(Intercept)"].to_numpy()))
    labels = [t.get_text() for t in ax0.get_yticklabels()]
    assert labels[0] == re["(Intercept)"].idxmin() and labels[-1] == re["(Intercept)"].idxmax()
    # interval half-widths are z_{0.95} * conditional SD
    seg = [c for c in ax0.collections if isinstance(c, LineCollection)][0].get_segments()
    half = np.array([(s[1, 0] - s[0, 0]) / 2 for s in seg])
    np.testing.assert_allclose(half, norm.ppf(0.95) * sd.loc[labels, "(Intercept)"].to_numpy())
    # the Days panel keeps the intercept order, so each subject stays on one row
    (pts1,) = _points(ax1)
    np.testing.assert_allclose(pts1.get_data()[0], re.loc[labels, "Days"].to_numpy())
    # a zero reference line
    assert any(np.allclose(ln.get_xdata(), 0) for ln in ax0.get_lines() if ln.get_linestyle() == "-")


def test_caterpillar_choices_and_errors():
    fig = mp.plot.caterpillar(_sleep(), terms="Days", sort=False)
    assert len(fig.axes) == 1
    with pytest.raises(mp.DataError, match="no grouping factor"):
        mp.plot.caterpillar(_sleep(), group="Plate")
    with pytest.raises(mp.DataError, match="no random coefficient"):
        mp.plot.caterpillar(_sleep(), terms="Hours")


def test_caterpillar_states_its_interval():
    fig = mp.plot.caterpillar(_sleep(), level=0.9)
    assert fig.get_suptitle() == "Conditional modes with 90% intervals"
    assert all("90% interval" in ax.get_xlabel() for ax in fig.axes)
    assert mp.plot.caterpillar(_post(), level=0.8).get_suptitle() == "Posterior medians with 80% central intervals"
    with pytest.raises(ValueError, match="level"):
        mp.plot.caterpillar(_sleep(), level=95)


def test_caterpillar_draws_every_grouping_factor():
    """Crossed (penicillin: plate, sample) and nested (pastes: cask within batch) factors each get a
    panel of their own, with their own levels labelled and their own sort order."""
    pen = mp.datasets.load("penicillin")
    fit = mp.lmer("diameter ~ 1 + (1 | plate) + (1 | sample)", pen)
    fig = mp.plot.caterpillar(fit)
    assert [ax.get_title() for ax in fig.axes] == ["plate: (Intercept)", "sample: (Intercept)"]
    re = mp.ranef(fit)
    for ax, g in zip(fig.axes, ["plate", "sample"]):
        (pts,) = _points(ax)
        x = pts.get_data()[0]
        assert len(x) == len(re[g]) and np.all(np.diff(x) >= 0)
        labels = [t.get_text() for t in ax.get_yticklabels()]
        np.testing.assert_allclose(x, re[g].loc[labels, "(Intercept)"].to_numpy())   # label i names row i
        assert ax.get_ylabel() == g
    fig = mp.plot.caterpillar(fit, group="sample")
    assert len(fig.axes) == 1 and fig.axes[0].get_title() == "sample: (Intercept)"
    pastes = mp.lmer("strength ~ 1 + (1 | batch/cask)", mp.datasets.load("pastes"))
    fig = mp.plot.caterpillar(pastes)
    assert sorted(ax.get_title() for ax in fig.axes) == ["batch: (Intercept)", "cask:batch: (Intercept)"]
    assert sorted(len(_points(ax)[0].get_xdata()) for ax in fig.axes) == [10, 30]
    # a term asked for in one factor only is drawn there (a made-up Batch: its variance is ~0)
    with pytest.warns(mp.SingularFitWarning):
        both = mp.lmer("Reaction ~ Days + (Days | Subject) + (1 | Batch)",
                       mp.datasets.load("sleepstudy").assign(Batch=lambda d: (d["Days"] % 3).astype(str)))
    fig = mp.plot.caterpillar(both)
    assert [ax.get_title() for ax in fig.axes] == ["Subject: (Intercept)", "Subject: Days", "Batch: (Intercept)"]
    fig = mp.plot.caterpillar(both, terms="Days")
    assert [ax.get_title() for ax in fig.axes] == ["Subject: Days"]


def test_caterpillar_names_the_extremes_of_many_levels():
    """85 counties are more than max_labels: the 5 lowest and 5 highest are named, at their rows,
    and the axis says so."""
    fit = _radon()
    fig = mp.plot.caterpillar(fit)
    ax = fig.axes[0]
    ticks = ax.get_yticks()
    labels = [t.get_text() for t in ax.get_yticklabels()]
    re = mp.ranef(fit)["county"]["(Intercept)"].sort_values(kind="stable")
    assert labels == list(re.index[:5]) + list(re.index[-5:])
    np.testing.assert_array_equal(ticks, np.r_[0:5, 80:85])
    (pts,) = _points(ax)
    np.testing.assert_allclose(pts.get_data()[0][ticks.astype(int)], re.loc[labels].to_numpy())
    assert "85 levels" in ax.get_ylabel()
    fig = mp.plot.caterpillar(fit, max_labels=100)
    assert len(fig.axes[0].get_yticklabels()) == 85
    fig = mp.plot.caterpillar(fit, extremes=2)
    assert len(fig.axes[0].get_yticklabels()) == 4


def test_caterpillar_of_posterior_and_sim():
    post = _post()
    fig = mp.plot.caterpillar(post)
    (pts,) = _points(fig.axes[0])
    np.testing.assert_allclose(np.sort(pts.get_data()[0]), np.sort(mp.ranef(post)["Subject"]["(Intercept)"]))
    fig = mp.plot.caterpillar(mp.sim(_sleep(), 200, seed=1))
    assert len(fig.axes) == 2


def test_shrinkage_elements():
    fit = _radon()
    ax = mp.plot.shrinkage(fit)
    assert isinstance(ax, Axes)
    assert ax.get_xscale() == "log"
    pts = _points(ax)
    assert len(pts) == 2
    raw, part = pts
    assert len(raw.get_xdata()) == len(part.get_xdata()) == 85
    radon = mp.datasets.load("radon")
    means = radon.groupby("county")["log_radon"].mean()
    np.testing.assert_allclose(np.sort(raw.get_ydata()), np.sort(means.to_numpy()), atol=1e-10)
    mu = mp.fixef(fit).iloc[0]
    hl = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert len(hl) == 1 and np.allclose(hl[0].get_ydata(), mu)
    # each group's partial-pooling point lies between its raw mean and the grand mean
    assert np.all((part.get_ydata() - mu) * (raw.get_ydata() - part.get_ydata()) >= -1e-12)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("no pooling" in t for t in legend) and any("partial pooling" in t for t in legend)


def test_shrinkage_from_pooling_table_and_glmm():
    tab = mp.pooling(_radon())
    ax = mp.plot.shrinkage(tab, log_x=False)
    assert ax.get_xscale() == "linear"
    hl = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert np.allclose(hl[0].get_ydata(), tab["complete"].iloc[0])
    cbpp = mp.datasets.load("cbpp")
    gm = mp.glmer("cbind(incidence, size - incidence) ~ 1 + (1 | herd)", cbpp, family="binomial")
    ax = mp.plot.shrinkage(gm)
    raw, part = _points(ax)
    by_herd = cbpp.groupby("herd")[["incidence", "size"]].sum()
    np.testing.assert_allclose(np.sort(raw.get_ydata()), np.sort((by_herd["incidence"] / by_herd["size"]).to_numpy()))
    assert "probability" in ax.get_ylabel()
    with pytest.raises(mp.DataError, match="intercept-only"):
        mp.plot.shrinkage(mp.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp,
                                   family="binomial"))
    with pytest.raises(mp.DataError, match="pooling table needs"):
        mp.plot.shrinkage(pd.DataFrame({"n": [1, 2]}))


def test_shrinkage_of_a_slope():
    fit = mp.lmer("Reaction ~ Days + (0 + Days | Subject)", mp.datasets.load("sleepstudy"))
    ax = mp.plot.shrinkage(fit)          # the only random coefficient is shown, and named
    assert isinstance(ax, Axes) and "Days" in ax.get_title() and "Days" in ax.get_ylabel()
    hl = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert np.allclose(hl[0].get_ydata(), mp.fixef(fit)["Days"])
    raw, part = _points(ax)
    np.testing.assert_allclose(np.sort(part.get_ydata()), np.sort(mp.coef(fit)["Subject"]["Days"]))
    with pytest.raises(mp.DataError, match="no coefficient"):
        mp.plot.shrinkage(fit, term="(Intercept)")


def test_shrinkage_of_a_slope_model_shows_every_coefficient():
    """(Days | Subject): one panel per coefficient, never silently only the intercept."""
    fit = _sleep()
    fig = mp.plot.shrinkage(fit)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    co, fe = mp.coef(fit)["Subject"], mp.fixef(fit)
    for ax, term in zip(fig.axes, ["(Intercept)", "Days"]):
        raw, part = _points(ax)
        np.testing.assert_allclose(np.sort(part.get_ydata()), np.sort(co[term].to_numpy()), rtol=1e-8)
        hl = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
        assert len(hl) == 1 and np.allclose(hl[0].get_ydata(), fe[term])
    assert "Days" in fig.axes[1].get_title() and "Days" not in fig.axes[0].get_title()
    # one legend for the figure, naming both reference lines
    (legend,) = fig.legends
    texts = [t.get_text() for t in legend.get_texts()]
    assert "grand mean" in texts and any("Days" in t and "fixed effect" in t for t in texts)
    # the choice of one coefficient
    ax = mp.plot.shrinkage(fit, term="Days")
    assert isinstance(ax, Axes) and "Days" in ax.get_title()
    with pytest.raises(mp.DataError, match="pass term="):
        mp.plot.shrinkage(fit, ax=Figure().add_subplot())
    two = Figure().subplots(1, 2)
    assert mp.plot.shrinkage(fit, ax=two) is two[0].figure
    with pytest.raises(mp.DataError, match="dict by coefficient"):
        mp.plot.shrinkage(fit, grand_mean=250.0)
    fig = mp.plot.shrinkage(fit, grand_mean={"Days": 0.0})
    assert np.allclose([ln for ln in fig.axes[1].get_lines() if ln.get_linestyle() == "--"][0].get_ydata(), 0.0)


def _drawn(fig):
    """Render on Agg (tick labels are filled in at draw time) without pyplot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()
    return fig


def _xtick_labels(ax):
    lo, hi = sorted(ax.get_xlim())
    return [t.get_text() for t, v in zip(ax.get_xticklabels(), ax.get_xticks()) if lo <= v <= hi]


def test_shrinkage_balanced_groups_jitter_stays_small():
    """All 18 subjects have 10 observations: they stay one narrow column at n = 10 (within 2.5%), on an
    axis that spans at least a factor of 3, labelled 10 only."""
    fit = mp.lmer("Reaction ~ Days + (1 | Subject)", mp.datasets.load("sleepstudy"))
    ax = mp.plot.shrinkage(fit)
    raw, part = _points(ax)
    x = raw.get_xdata()
    assert np.all(np.abs(x / 10 - 1) < 0.025) and np.ptp(x) > 0       # apart, but not far
    lo, hi = ax.get_xlim()
    assert hi / lo > 3 and lo < 10 < hi
    _drawn(ax.figure)
    assert _xtick_labels(ax) == ["10"]
    # on a linear axis too
    ax = mp.plot.shrinkage(fit, log_x=False)
    x = _points(ax)[0].get_xdata()
    lo, hi = ax.get_xlim()
    assert np.ptp(x) < 0.05 * (hi - lo)


def test_shrinkage_ticks_at_the_observed_sizes():
    """Few distinct group sizes (reedfrogs' tanks of 10, 25 and 35 tadpoles) are the ticks, in
    plain numbers; many sizes (radon) get 1, 2, 5, 10, ... without decimals."""
    frogs = mp.datasets.load("reedfrogs")
    gm = mp.glmer("cbind(surv, density - surv) ~ 1 + (1 | tank)", frogs, family="binomial")
    ax = _drawn(mp.plot.shrinkage(gm).figure).axes[0]
    assert _xtick_labels(ax) == ["10", "25", "35"]
    x = _points(ax)[0].get_xdata()
    for size in (10, 25, 35):              # each tank stays near its own size
        near = x[np.abs(x / size - 1) < 0.1]
        assert near.size == 16
    ax = _drawn(mp.plot.shrinkage(_radon()).figure).axes[0]
    assert _xtick_labels(ax) == ["1", "2", "5", "10", "20", "50", "100"]


def test_trace_one_line_per_chain():
    post = _post()
    fig = mp.plot.trace(post, params=["(Intercept)", "sigma"])
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    ax = fig.axes[0]
    assert ax.get_title(loc="left") == "(Intercept)"
    lines = ax.get_lines()
    assert len(lines) == 2                                   # two chains
    d = post.draws
    np.testing.assert_allclose(lines[0].get_ydata(), d.loc[1, "(Intercept)"].to_numpy())
    assert len(mp.plot.trace(post).axes) <= 6
    with pytest.raises(mp.DataError, match="no parameter"):
        mp.plot.trace(post, params="tau")


def _in_view(lims, label, coord=1) -> bool:
    """Whether a tick label is drawn: matplotlib keeps labels for ticks outside the view too."""
    lo, hi = sorted(lims)
    return lo <= label.get_position()[coord] <= hi


def _overlaps(boxes) -> list[tuple[int, int]]:
    return [(i, j) for i in range(len(boxes)) for j in range(i + 1, len(boxes))
            if boxes[i].width > 0 and boxes[j].width > 0 and boxes[i].overlaps(boxes[j])]


def test_trace_labels_of_a_slope_model_do_not_overlap():
    """Covariance names such as Sigma[Subject:Days,(Intercept)] are longer than a panel is tall: as
    y labels they ran into each other.  Every label (panel names, tick labels, legend) is drawn
    apart from every other."""
    from types import SimpleNamespace

    rng = np.random.default_rng(0)
    cols = ["(Intercept)", "Days", "sigma", "Sigma[Subject:(Intercept),(Intercept)]",
            "Sigma[Subject:Days,(Intercept)]", "Sigma[Subject:Days,Days]"]
    draws = pd.DataFrame(rng.normal(size=(400, 6)) * [10, 1, 1, 300, 50, 20] + [250, 10, 25, 600, 10, 35],
                         columns=cols)
    draws.index = pd.MultiIndex.from_product([[1, 2], range(1, 201)], names=["chain", "draw"])
    fig = _drawn(mp.plot.trace(SimpleNamespace(draws=draws)))
    assert len(fig.axes) == 6
    renderer = fig.canvas.get_renderer()
    assert [ax.get_title(loc="left") for ax in fig.axes] == cols
    texts = [ax._left_title for ax in fig.axes] + [ax.yaxis.label for ax in fig.axes]
    texts += [t for ax in fig.axes for t in ax.get_yticklabels() if t.get_text() and _in_view(ax.get_ylim(), t)]
    last = fig.axes[-1]
    texts += [t for t in last.get_xticklabels() if t.get_text() and _in_view(last.get_xlim(), t, 0)]
    texts += [last.xaxis.label]
    boxes = [t.get_window_extent(renderer) for t in texts] + [fig.legends[0].get_window_extent(renderer)]
    assert _overlaps(boxes) == []
    # each name fits inside the figure
    width = fig.bbox.width
    assert all(0 <= b.x0 and b.x1 <= width for b in boxes if b.width > 0)
    # the draws, one line per chain
    np.testing.assert_allclose(fig.axes[4].get_lines()[1].get_ydata(), draws.loc[2, cols[4]].to_numpy())


def test_pp_check_overlays_replicates():
    post = _post()
    ax = mp.plot.pp_check(post, ndraws=20, seed=1)
    lines = ax.get_lines()
    assert len(lines) == 21                                   # 20 replicated densities + observed
    obs = lines[-1]
    assert obs.get_linewidth() > lines[0].get_linewidth()
    x, dens = obs.get_data()
    assert trapezoid(dens, x) == pytest.approx(1.0, abs=0.03)  # a density over the data's range


def test_predictions_intervals_and_order():
    rng = np.random.default_rng(0)
    draws = pd.DataFrame({"a": rng.normal(0, 1, 4000), "b": rng.normal(5, 2, 4000)})
    ax = mp.plot.predictions(draws, observed=[0.1, 4.0], levels=(0.5, 0.9))
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    segs = [c.get_segments() for c in ax.collections if isinstance(c, LineCollection)]
    outer, inner = segs
    np.testing.assert_allclose(outer[1][:, 0], np.quantile(draws["b"], [0.05, 0.95]))
    np.testing.assert_allclose(inner[0][:, 0], np.quantile(draws["a"], [0.25, 0.75]))
    assert len(_points(ax, "x")) == 1
    ax = mp.plot.predictions(draws.to_numpy()[:, ::-1], labels=["b", "a"], sort=True)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    with pytest.raises(mp.DataError):
        mp.plot.predictions(np.zeros((10, 3)), labels=["x"])
    with pytest.raises(ValueError, match="levels"):
        mp.plot.predictions(draws, levels=(0.5, 1.5))


def test_draws_on_a_given_axes():
    fig = Figure()
    ax = fig.add_subplot()
    assert mp.plot.shrinkage(_radon(), ax=ax) is ax
