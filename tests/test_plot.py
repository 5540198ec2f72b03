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
    ax = mp.plot.shrinkage(fit)          # the only random coefficient is shown
    assert "(Days)" not in ax.get_title()
    hl = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert np.allclose(hl[0].get_ydata(), mp.fixef(fit)["Days"])
    raw, part = _points(ax)
    np.testing.assert_allclose(np.sort(part.get_ydata()), np.sort(mp.coef(fit)["Subject"]["Days"]))
    with pytest.raises(mp.DataError, match="no coefficient"):
        mp.plot.shrinkage(fit, term="(Intercept)")


def test_trace_one_line_per_chain():
    post = _post()
    fig = mp.plot.trace(post, params=["(Intercept)", "sigma"])
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    ax = fig.axes[0]
    assert ax.get_ylabel() == "(Intercept)"
    lines = ax.get_lines()
    assert len(lines) == 2                                   # two chains
    d = post.draws
    np.testing.assert_allclose(lines[0].get_ydata(), d.loc[1, "(Intercept)"].to_numpy())
    assert len(mp.plot.trace(post).axes) <= 6
    with pytest.raises(mp.DataError, match="no parameter"):
        mp.plot.trace(post, params="tau")


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
