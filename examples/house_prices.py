"""House prices by zipcode: 869 King County sales in 9 zipcodes (kc_house_data).

    price ~ (1 | zipcode)                                   zipcode means, partially pooled
    price ~ scale_sqft + (1 | zipcode)                      + house size (standardized sqft)
    price ~ scale_sqft + (scale_sqft | zipcode), ML         size effect varying by zipcode

arm's ``display()`` summarises the last fit; ``sim()`` draws the zipcode means with their
uncertainty; predictive draws give the price of a house in a zipcode we have not seen (a new
group: alpha_new ~ N(mu, sigma_zip^2), then y ~ N(alpha_new, sigma_y^2); Gelman & Hill 2007,
sec. 12.8); and the Bayesian fit (rstanarm's priors) is set beside lmer's.

Run:  python examples/house_prices.py [--quick]     (writes PNGs into examples/output/)
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

import mixedpy as mp

OUT = Path(__file__).resolve().parent / "output"


def main(outdir=OUT, quick: bool = False, seed: int = 2024) -> dict:
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    houses = mp.datasets.load("seattle")
    n_sims = 1000 if quick else 4000

    m1 = mp.lmer("price ~ (1 | zipcode)", houses)
    m2 = mp.lmer("price ~ scale_sqft + (1 | zipcode)", houses)
    m3 = mp.lmer("price ~ scale_sqft + (scale_sqft | zipcode)", houses, REML=False)
    display_text = mp.display(m3, print_output=False)
    print(display_text, "\n")

    # ---- sim(): each zipcode's mean price with its uncertainty ------------------------------
    s = mp.sim(m1, n_sims=n_sims, seed=seed)
    zip_draws = pd.DataFrame(mp.coef(s)["zipcode"][:, :, 0], columns=s.levels["zipcode"])
    means = houses.groupby("zipcode")["price"].mean().loc[zip_draws.columns]
    counts = houses.groupby("zipcode").size().loc[zip_draws.columns]
    q = zip_draws.quantile([0.025, 0.5, 0.975]).T
    q.columns = ["2.5%", "median", "97.5%"]
    q.insert(0, "n", counts)
    q.insert(1, "raw mean", means)
    print("zipcode mean price (sim(), 95% intervals):")
    print((q / [1, 1e3, 1e3, 1e3, 1e3]).round(0).rename(columns=lambda c: c if c == "n" else c + " ($k)")
          .to_string(), "\n")

    ax = mp.plot.predictions(zip_draws / 1e3, observed=means.to_numpy() / 1e3, sort=True,
                             xlabel="mean sale price ($1000s)")
    ax.set_title("Zipcode means from sim() (x = raw mean)")
    ax.figure.savefig(outdir / "house_zipcode_means.png", dpi=110)

    # ---- a new zipcode: price of one house there ----------------------------------------------
    new = pd.DataFrame({"zipcode": ["new zipcode"]})
    y_new = mp.predictive_draws(s, new, seed=seed)[:, 0]
    mu_new = mp.predictive_draws(s, new, seed=seed, what="mu")[:, 0]
    vc = mp.sigma_hat(m1)
    sd_theory = float(np.sqrt(vc["data"] ** 2 + vc["zipcode"]["(Intercept)"] ** 2))
    lo, hi = np.quantile(y_new, [0.025, 0.975])
    print(f"a house in a new zipcode: median ${np.median(y_new) / 1e3:,.0f}k, 95% interval "
          f"${lo / 1e3:,.0f}k to ${hi / 1e3:,.0f}k (sd {y_new.std() / 1e3:,.0f}k; "
          f"sqrt(sigma_y^2 + sigma_zip^2) = {sd_theory / 1e3:,.0f}k)")
    print(f"the normal model gives {100 * np.mean(y_new < 0):.0f}% of that mass to negative prices: prices are "
          "skewed, and log(price) would be the better response for predictions\n")

    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.8), layout="constrained")
    ax = fig.add_subplot()
    ax.hist(y_new / 1e3, bins=60, color="#1f5fa8", alpha=0.75, density=True, label="one house, new zipcode")
    ax.hist(mu_new / 1e3, bins=60, color="#d2571e", alpha=0.6, density=True, label="new zipcode's mean")
    ax.axvline(float(mp.fixef(m1)["(Intercept)"]) / 1e3, color="#222222", ls="--", lw=1, label="mu (all zipcodes)")
    ax.set_xlabel("price ($1000s)")
    ax.set_ylabel("density")
    ax.set_title("Predictive distribution for a new zipcode")
    ax.legend(frameon=False, fontsize=8)
    fig.savefig(outdir / "house_new_zipcode.png", dpi=110)

    # ---- Bayesian fit beside lmer ----------------------------------------------------------------
    post = mp.bayes_lmer("price ~ (1 | zipcode)", houses, chains=2 if quick else 4,
                         iter=600 if quick else 2000, seed=seed, progress=False)
    side = pd.DataFrame({"lmer": mp.coef(m1)["zipcode"]["(Intercept)"],
                         "bayes (median)": mp.coef(post)["zipcode"]["(Intercept)"]})
    side["n"] = counts.loc[side.index].to_numpy()
    side["raw mean"] = means.loc[side.index].to_numpy()
    print("zipcode intercepts, lmer and Bayesian ($1000s):")
    print((side[["n", "raw mean", "lmer", "bayes (median)"]] / [1, 1e3, 1e3, 1e3]).round(1).to_string(), "\n")
    comparison = mp.compare(m1, post)
    print(comparison.round(3).to_string(), "\n")

    rel = np.abs(side["lmer"] - side["bayes (median)"]) / side["lmer"].abs()
    zip_sd = zip_draws.std()
    return {
        "display": display_text,
        "fixef_m2": mp.fixef(m2).to_dict(), "fixef_m3": mp.fixef(m3).to_dict(),
        "sigma_zip": float(vc["zipcode"]["(Intercept)"]), "sigma_y": float(vc["data"]),
        "zip_intervals": q,
        # partially pooled means lie between the raw zipcode mean and the overall mean
        "partial_between_raw_and_mu": bool(np.all((side["lmer"] - float(mp.fixef(m1).iloc[0]))
                                                  * (side["raw mean"] - side["lmer"]) >= 0)),
        "new_zip_share_below_zero": float(np.mean(y_new < 0)),
        # a bigger sample pins the zipcode mean down more tightly
        "sim_sd_vs_n_corr": float(np.corrcoef(counts.to_numpy(), zip_sd.to_numpy())[0, 1]),
        "new_zip_sd": float(y_new.std()), "new_zip_sd_theory": sd_theory,
        "new_zip_mean_sd": float(mu_new.std()),
        "max_existing_zip_sd": float(zip_sd.max()),
        "bayes_vs_lmer_max_rel_diff": float(rel.max()),
        "comparison": comparison,
        "fits": (m1, m2, m3), "post": post,
        "pngs": sorted(str(p) for p in outdir.glob("house_*.png")),
    }


if __name__ == "__main__":
    facts = main(quick="--quick" in sys.argv)
    print(f"PNGs written: {', '.join(os.path.basename(p) for p in facts['pngs'])}")
