"""Radon in Minnesota homes: county means shrunk toward the state mean (Gelman & Hill 2007, ch. 12).

919 houses in 85 counties; some counties have one house, one has 116.  The multilevel model

    log_radon_i = alpha_{j[i]} + e_i,   alpha_j ~ N(mu, sigma_alpha^2),   e_i ~ N(0, sigma_y^2)

estimates each county's mean as a precision-weighted average of its own mean and the state mean,

    alpha_j = w_j ybar_j + (1 - w_j) mu,   w_j = (n_j / sigma_y^2) / (n_j / sigma_y^2 + 1 / sigma_alpha^2),

so a county with few houses borrows more from the state (Gelman & Hill eq. 12.1).

Run:  python examples/radon.py      (writes PNGs into examples/output/)
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

import mixedpy as mp

OUT = Path(__file__).resolve().parent / "output"


def shrinkage_weights(n, sigma_y: float, sigma_alpha: float) -> np.ndarray:
    """w_j = (n_j / sigma_y^2) / (n_j / sigma_y^2 + 1 / sigma_alpha^2): the weight of a group's own
    mean in its partial-pooling estimate (Gelman & Hill 2007, eq. 12.1)."""
    prec_data = np.asarray(n, dtype=float) / sigma_y ** 2
    return prec_data / (prec_data + 1.0 / sigma_alpha ** 2)


def weights_figure(n_j, sigma_y: float, sigma_alpha: float):
    """The shrinkage weight w(n) against county size, with every county on the curve and the size
    where w = 1/2.  The size axis has the ticks of ``mp.plot.shrinkage`` (plain 1, 2, 5, 10, ...),
    so the two radon pictures read alike."""
    from matplotlib.figure import Figure

    n_j = np.asarray(n_j, dtype=float)
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    grid = np.geomspace(1, n_j.max() * 1.2, 200)
    ax.plot(grid, shrinkage_weights(grid, sigma_y, sigma_alpha), color="#1f5fa8",
            label=r"$w(n)=\frac{n/\sigma_y^2}{n/\sigma_y^2+1/\sigma_\alpha^2}$")
    ax.plot(n_j, shrinkage_weights(n_j, sigma_y, sigma_alpha), "o", color="#222222", ms=4, label="counties")
    n_half = sigma_y ** 2 / sigma_alpha ** 2
    ax.axvline(n_half, color="#bbbbbb", ls="--", lw=1)
    ax.annotate(f"w = 1/2 at n = sigma_y^2/sigma_alpha^2 = {n_half:.1f}", (n_half, 0.5), xytext=(8, -20),
                textcoords="offset points", fontsize=8)
    mp.plot.group_size_axis(ax, n_j)
    ax.set_xlabel("houses in county (n_j)")
    ax.set_ylabel("weight of the county's own mean")
    ax.set_ylim(0, 1)
    ax.set_title("Shrinkage weight grows with county size")
    ax.legend(frameon=False, fontsize=9, loc="lower right")
    return fig


def main(outdir=OUT, quick: bool = False) -> dict:
    """Fit the varying-intercept model, check the weight formula against lme4's estimates, draw
    the pictures and return the facts they show."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    radon = mp.datasets.load("radon")

    fit = mp.lmer("log_radon ~ 1 + (1 | county)", radon)
    print(fit.summary(), "\n")

    # ---- the shrinkage weight, by hand, against the fitted county intercepts ----------------
    mu = float(mp.fixef(fit)["(Intercept)"])
    sigma_y = fit.sigma
    sigma_alpha = float(mp.sigma_hat(fit)["county"]["(Intercept)"])
    by_county = radon.groupby("county")["log_radon"].agg(["size", "mean"])
    alpha = mp.coef(fit)["county"]["(Intercept)"].loc[by_county.index]
    n_j, ybar = by_county["size"].to_numpy(), by_county["mean"].to_numpy()
    w = shrinkage_weights(n_j, sigma_y, sigma_alpha)
    by_hand = w * ybar + (1 - w) * mu
    formula_error = float(np.max(np.abs(by_hand - alpha.to_numpy())))

    order = np.argsort(n_j, kind="stable")
    table = by_county.assign(weight=w, partial_pooling=alpha.to_numpy()).iloc[order]
    print(f"state mean mu = {mu:.3f}, sigma_y = {sigma_y:.3f}, sigma_alpha = {sigma_alpha:.3f}")
    print(f"weight formula reproduces lme4's county intercepts to {formula_error:.1e}")
    print("smallest and largest counties:")
    print(table.head(3).round(3).to_string())
    print(table.tail(3).round(3).to_string(), "\n")

    # ---- pictures ------------------------------------------------------------------------------
    ax = mp.plot.shrinkage(fit)
    ax.set_ylabel("county mean of log radon")
    ax.figure.savefig(outdir / "radon_shrinkage.png", dpi=110)

    n_half = sigma_y ** 2 / sigma_alpha ** 2      # the size where w = 1/2
    fig = weights_figure(n_j, sigma_y, sigma_alpha)
    fig.savefig(outdir / "radon_weights.png", dpi=110)

    mp.plot.caterpillar(fit).savefig(outdir / "radon_caterpillar.png", dpi=110)

    # ---- the same with a house-level predictor (Gelman & Hill sec. 12.4) ------------------------
    fit_floor = mp.lmer("log_radon ~ floor + (1 | county)", radon)
    display_text = mp.display(fit_floor, print_output=False)
    print(display_text)

    shrink = np.abs(ybar - alpha.to_numpy())
    return {
        "mu": mu, "sigma_y": sigma_y, "sigma_alpha": sigma_alpha,
        "n_counties": int(len(n_j)),
        "formula_max_abs_error": formula_error,
        "weights_increase_with_n": bool(np.all(np.diff(w[order]) >= -1e-12)),
        "weight_smallest_county": float(w[order][0]),
        "weight_largest_county": float(w[order][-1]),
        "n_half_weight": float(n_half),
        # every county estimate lies between its own mean and the state mean
        "partial_between_raw_and_mu": bool(np.all((alpha.to_numpy() - mu) * (ybar - alpha.to_numpy()) >= -1e-12)),
        # counties with one or two houses move further than counties with 20 or more
        "mean_shift_small": float(shrink[n_j <= 2].mean()),
        "mean_shift_large": float(shrink[n_j >= 20].mean()),
        "floor_effect": float(mp.fixef(fit_floor)["floor"]),
        "display_floor": display_text,
        "fit": fit, "fit_floor": fit_floor,
        "pngs": sorted(str(p) for p in outdir.glob("radon_*.png")),
    }


if __name__ == "__main__":
    facts = main(quick="--quick" in sys.argv)
    print(f"\nPNGs written: {', '.join(os.path.basename(p) for p in facts['pngs'])}")
