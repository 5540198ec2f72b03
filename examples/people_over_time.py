"""People measured over weeks: conscientiousness within person (a longitudinal multilevel model).

219 weekly measurements of conscientiousness (``con``) of 91 people, some in a PD group and some
controls; three rows have no week, which leaves 216 measurements of 88 people (1 to 4 each).  Models, each adding one idea:

    con ~ 1 + (1 | id)                    how much of the variance is between people (ICC)
    con ~ week + (1 | id)                 a common trend over weeks
    con ~ week + group + (1 | id)         a person-level (level-2) covariate
    con ~ week + group + (week | id)      each person their own trend, correlated with their level

and a Bayesian comparison of no pooling (a separate intercept per person, flat priors) against
partial pooling (``con ~ week + (1 | id)``, rstanarm's priors) by PSIS-LOO (Vehtari, Gelman &
Gabry 2017): expected log predictive density of a left-out measurement.

Run:  python examples/people_over_time.py [--quick]     (writes PNGs into examples/output/)
"""
from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

import mixedpy as mp

OUT = Path(__file__).resolve().parent / "output"


def no_pooling_loglik(y: np.ndarray, X: np.ndarray, n_draws: int, rng: np.random.Generator) -> np.ndarray:
    """Pointwise log-likelihood draws (S, n) of the normal linear model y ~ N(X beta, sigma^2) under
    the flat prior p(beta, sigma^2) ~ 1/sigma^2, whose posterior is conjugate (Gelman et al. 2013,
    BDA3 sec. 14.2):

        sigma^2 | y ~ (n - p) s^2 / chi^2_{n-p},    beta | sigma, y ~ N(beta-hat, sigma^2 (X'X)^{-1}).
    """
    n, p = X.shape
    L = np.linalg.cholesky(X.T @ X)
    beta_hat = np.linalg.solve(L.T, np.linalg.solve(L, X.T @ y))
    rss = float(np.sum((y - X @ beta_hat) ** 2))
    sigma = np.sqrt(rss / rng.chisquare(n - p, n_draws))
    z = rng.standard_normal((p, n_draws))
    beta = beta_hat[:, None] + np.linalg.solve(L.T, z) * sigma[None, :]   # (p, S)
    return stats.norm.logpdf(y[None, :], (X @ beta).T, sigma[:, None])


def loo_from_loglik(ll: np.ndarray, chains: int = 1):
    """PSIS-LOO through arviz from an (S, n) pointwise log-likelihood."""
    import arviz as az

    S, n = ll.shape
    # arviz wants a posterior group next to the log-likelihood; the draw index is enough
    idata = az.from_dict(posterior={"draw_index": np.arange(S).reshape(chains, S // chains)},
                         log_likelihood={"y": ll.reshape(chains, S // chains, n)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return az.loo(idata, pointwise=True)


def person_lines_figure(people: pd.DataFrame, fit):
    """Each person's fitted line (partial pooling) over the weeks that person was measured, and
    the measurements.  A line is drawn only across its person's own data: past the last week it
    would be an extrapolation the data of that person do not support.  People measured in a
    single week get a short dash at their fitted value."""
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    co = mp.coef(fit)["id"]
    span = people.groupby("id").agg(first=("week", "min"), last=("week", "max"), group=("group", "first")).loc[co.index]
    base = co["(Intercept)"] + co["groupPD"] * (span["group"] == "PD")
    colour = np.where(span["group"] == "PD", "#1f5fa8", "#d2571e")
    x0, x1 = span["first"].to_numpy(dtype=float), span["last"].to_numpy(dtype=float)
    segments = np.stack([np.column_stack([x0, base + co["week"] * x0]),
                         np.column_stack([x1, base + co["week"] * x1])], axis=1)    # (people, 2 ends, xy)
    several = x1 > x0
    fig = Figure(figsize=(6.5, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.add_collection(LineCollection(segments[several], colors=colour[several], lw=0.8, alpha=0.6))
    if not several.all():
        ax.scatter(x0[~several], segments[~several, 0, 1], marker="_", s=60, c=colour[~several], alpha=0.8,
                   label="fitted value (one week measured)")
    ax.plot([], [], color="#1f5fa8", label="PD group")
    ax.plot([], [], color="#d2571e", label="controls")
    ax.scatter(people["week"], people["con"], s=6, color="#222222", alpha=0.4, label="measurements")
    ax.set_xlabel("week")
    ax.set_ylabel("conscientiousness")
    ax.set_title("Each person's fitted line over that person's weeks (partial pooling)")
    ax.legend(frameon=False, fontsize=8)
    return fig


def main(outdir=OUT, quick: bool = False, seed: int = 11) -> dict:
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    raw = mp.datasets.load("mlm")
    people = raw.dropna(subset=["week", "group"]).reset_index(drop=True)
    print(f"{len(raw) - len(people)} rows without a week dropped; {len(people)} measurements of "
          f"{people['id'].nunique()} people\n")

    m1 = mp.lmer("con ~ 1 + (1 | id)", people)
    m2 = mp.lmer("con ~ week + (1 | id)", people)
    m3 = mp.lmer("con ~ week + group + (1 | id)", people)
    m4 = mp.lmer("con ~ week + group + (week | id)", people)
    sh = mp.sigma_hat(m1)
    icc = sh["id"]["(Intercept)"] ** 2 / (sh["id"]["(Intercept)"] ** 2 + sh["data"] ** 2)
    print(f"intercept-only model: ICC = {icc:.3f} (share of variance between people)\n")
    for m in (m2, m3, m4):
        mp.display(m)
        print()
    print("tidy table of the random-slope model (broom.mixed layout):")
    print(mp.tidy(m4, conf_int=False).round(4).to_string(index=False), "\n")
    cor = float(mp.VarCorr(m4)["id"].pipe(lambda c: c.iloc[0, 1] / np.sqrt(c.iloc[0, 0] * c.iloc[1, 1])))

    # ---- no pooling vs partial pooling, by PSIS-LOO ---------------------------------------------
    rng = np.random.default_rng(seed)
    chains, iters = (2, 600) if quick else (4, 2000)
    ids = pd.Categorical(people["id"])
    X_np = np.column_stack([people["week"].to_numpy(dtype=float), np.eye(len(ids.categories))[ids.codes]])
    y = people["con"].to_numpy(dtype=float)
    loo_np = loo_from_loglik(no_pooling_loglik(y, X_np, chains * iters // 2, rng), chains)
    post = mp.bayes_lmer("con ~ week + (1 | id)", people, chains=chains, iter=iters, seed=seed, progress=False)
    loo_pp = post.loo()
    diff = loo_pp["elpd_loo"] - loo_np["elpd_loo"]
    se_diff = float(np.sqrt(len(y) * np.var(loo_pp["loo_i"].values - loo_np["loo_i"].values, ddof=1)))
    k_np, k_pp = loo_np["pareto_k"].values, loo_pp["pareto_k"].values
    table = pd.DataFrame({"elpd_loo": [loo_np["elpd_loo"], loo_pp["elpd_loo"]],
                          "se": [loo_np["se"], loo_pp["se"]], "p_loo": [loo_np["p_loo"], loo_pp["p_loo"]],
                          "looic": [-2 * loo_np["elpd_loo"], -2 * loo_pp["elpd_loo"]],
                          "pareto_k>0.7": [int((k_np > 0.7).sum()), int((k_pp > 0.7).sum())]},
                         index=["no pooling (id as fixed factor)", "partial pooling (1 | id)"])
    print("PSIS-LOO:")
    print(table.round(1).to_string())
    print(f"elpd difference (partial - no pooling) = {diff:.1f} (se {se_diff:.1f})")
    print("no pooling spends nearly a parameter on every person (p_loo close to the number of people) and "
          "predicts a left-out week worse.  Both models have high Pareto k values for people with one or two "
          "measurements (their intercept leans on the left-out point), so the elpd values are approximate; "
          "exact leave-one-out or K-fold refits would settle them.\n")

    # ---- pictures -----------------------------------------------------------------------------------
    fig = mp.plot.caterpillar(m4)
    fig.suptitle("Person intercepts and week slopes (con ~ week + group + (week | id)):\n"
                 "conditional modes with 95% intervals", fontsize=10)
    fig.savefig(outdir / "people_caterpillar.png", dpi=110)

    fig = person_lines_figure(people, m4)
    fig.savefig(outdir / "people_lines.png", dpi=110)

    return {
        "n_obs": len(people), "n_people": int(people["id"].nunique()), "icc": float(icc),
        "fixef": {name: mp.fixef(m).to_dict() for name, m in (("m2", m2), ("m3", m3), ("m4", m4))},
        "slope_intercept_cor": cor, "m4_singular": bool(m4.is_singular),
        "loo": table, "elpd_diff": float(diff), "elpd_diff_se": se_diff,
        "p_loo_no_pooling": float(loo_np["p_loo"]), "p_loo_partial": float(loo_pp["p_loo"]),
        "fits": (m1, m2, m3, m4), "post": post,
        "pngs": sorted(str(p) for p in outdir.glob("people_*.png")),
    }


if __name__ == "__main__":
    facts = main(quick="--quick" in sys.argv)
    print(f"PNGs written: {', '.join(os.path.basename(p) for p in facts['pngs'])}")
