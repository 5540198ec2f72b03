"""Song popularity by artist: complete, no and partial pooling (Bayes Rules! ch. 15-16).

350 Spotify songs by 44 artists, 2 to 40 songs each.  Three ways to estimate an artist's typical
popularity:

* complete pooling: one mean for all songs, ignoring artists;
* no pooling: each artist's own sample mean, ignoring the other artists;
* partial pooling: ``popularity ~ (1 | artist)``, song i by artist j
      y_ij = mu + b_j + e_ij,   b_j ~ N(0, sigma_mu^2),   e_ij ~ N(0, sigma_y^2),
  whose artist estimates mu + b_j sit between the two, nearer the artist's mean when the artist
  has many songs.

Then the variance split (between-artist share sigma_mu^2 / (sigma_mu^2 + sigma_y^2)) and the
popularity of a next song by an existing artist (Frank Ocean) and by a brand-new one, from lmer +
``sim()`` and from the Bayesian model.

Run:  python examples/artists.py [--quick]     (writes PNGs into examples/output/)
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

import mixedpy as mp

OUT = Path(__file__).resolve().parent / "output"


def main(outdir=OUT, quick: bool = False, seed: int = 84735) -> dict:
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    songs = mp.datasets.load("spotify")

    # ---- three pooling levels -------------------------------------------------------------------
    complete = float(songs["popularity"].mean())
    per_artist = songs.groupby("artist")["popularity"].agg(["size", "mean"])
    fit = mp.lmer("popularity ~ (1 | artist)", songs)
    mp.display(fit)
    partial = mp.coef(fit)["artist"]["(Intercept)"].loc[per_artist.index]
    mu = float(mp.fixef(fit)["(Intercept)"])
    table = per_artist.assign(partial_pooling=partial.to_numpy()).rename(
        columns={"size": "songs", "mean": "no_pooling"})
    print(f"\ncomplete pooling: every artist {complete:.1f}; multilevel grand mean mu = {mu:.1f}")
    print(table.sort_values("songs").iloc[[0, 1, 2, -3, -2, -1]].round(1).to_string())

    # ---- within vs between variance ---------------------------------------------------------------
    sh = mp.sigma_hat(fit)
    sigma_y, sigma_mu = float(sh["data"]), float(sh["artist"]["(Intercept)"])
    between = sigma_mu ** 2 / (sigma_mu ** 2 + sigma_y ** 2)
    print(f"\nsigma_mu (between artists) = {sigma_mu:.2f}, sigma_y (songs within an artist) = {sigma_y:.2f}")
    print(f"share of variance between artists {between:.3f}, within artists {1 - between:.3f}")
    # two songs by one artist are correlated with correlation equal to the between share
    print(f"(so two songs by the same artist have popularity correlation {between:.2f})\n")

    # ---- predictions: next song by Frank Ocean and by a new artist ---------------------------------
    n_sims = 2000 if quick else 4000
    new_rows = pd.DataFrame({"artist": ["Frank Ocean", "Mohsen Beats (new)"]})
    s = mp.sim(fit, n_sims=n_sims, seed=seed)
    y_lmer = mp.predictive_draws(s, new_rows, seed=seed)
    post = mp.bayes_lmer("popularity ~ (1 | artist)", songs, chains=2 if quick else 4,
                         iter=600 if quick else 2000, seed=seed, progress=False)
    print(post, "\n")
    y_bayes = post.posterior_predict(newdata=new_rows, allow_new_levels=True, seed=seed)
    labels = list(new_rows["artist"])
    summary = pd.DataFrame(
        [[lab, how, *np.quantile(d[:, j], [0.025, 0.5, 0.975])] for how, d in (("lmer + sim", y_lmer),
                                                                             ("Bayesian", y_bayes))
         for j, lab in enumerate(labels)],
        columns=["artist", "method", "2.5%", "median", "97.5%"])
    print("popularity of the next song:")
    print(summary.round(1).to_string(index=False), "\n")

    # ---- pictures ---------------------------------------------------------------------------------
    ax = mp.plot.shrinkage(fit)
    ax.set_ylabel("artist's mean popularity")
    ax.figure.savefig(outdir / "artists_shrinkage.png", dpi=110)

    m = min(len(y_lmer), len(y_bayes))   # the two methods keep different numbers of draws
    both = pd.DataFrame({f"{lab} - {how}": d[:m, j] for how, d in (("lmer+sim", y_lmer), ("Bayes", y_bayes))
                         for j, lab in enumerate(labels)})
    ax = mp.plot.predictions(both, xlabel="popularity of the next song")
    ax.set_title("Next song: existing vs new artist")
    ax.figure.savefig(outdir / "artists_predictions.png", dpi=110)
    mp.plot.caterpillar(post).savefig(outdir / "artists_caterpillar_bayes.png", dpi=110)
    mp.plot.trace(post).savefig(outdir / "artists_trace.png", dpi=110)
    ax = mp.plot.pp_check(post, ndraws=40, seed=seed)
    ax.set_xlabel("popularity")
    ax.figure.savefig(outdir / "artists_pp_check.png", dpi=110)

    def width(d):
        return float(np.subtract(*np.quantile(d, [0.975, 0.025])))

    no_pool = table["no_pooling"].to_numpy()
    return {
        "complete_pooling": complete, "mu": mu, "sigma_y": sigma_y, "sigma_mu": sigma_mu,
        "between_share": between, "within_share": 1 - between,
        # partial-pooling estimates lie between the artist's mean and the grand mean ...
        "partial_between": bool(np.all((partial.to_numpy() - mu) * (no_pool - partial.to_numpy()) >= 0)),
        # ... and artists with few songs are pulled more (fraction of the way moved toward mu)
        "pull_small": float(np.mean(((no_pool - partial.to_numpy()) / (no_pool - mu))[table["songs"] <= 3])),
        "pull_large": float(np.mean(((no_pool - partial.to_numpy()) / (no_pool - mu))[table["songs"] >= 20])),
        "frank_ocean_median": {"lmer": float(np.median(y_lmer[:, 0])), "bayes": float(np.median(y_bayes[:, 0]))},
        "new_artist_median": {"lmer": float(np.median(y_lmer[:, 1])), "bayes": float(np.median(y_bayes[:, 1]))},
        "width_existing": {"lmer": float(width(y_lmer[:, 0])), "bayes": float(width(y_bayes[:, 0]))},
        "width_new": {"lmer": float(width(y_lmer[:, 1])), "bayes": float(width(y_bayes[:, 1]))},
        "predictions": summary, "fit": fit, "post": post,
        "pngs": sorted(str(p) for p in outdir.glob("artists_*.png")),
    }


if __name__ == "__main__":
    facts = main(quick="--quick" in sys.argv)
    print(f"PNGs written: {', '.join(os.path.basename(p) for p in facts['pngs'])}")
