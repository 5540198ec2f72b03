"""Classrooms of different sizes: partial pooling wins where classes are small (McElreath 2020,
sec. 13.2, with classrooms for ponds).

60 classrooms, 15 each of 5, 10, 25 and 35 students.  Each classroom has a true log-odds of a
student passing, alpha_j ~ N(alpha_bar = 1.5, sigma = 1.5); each student passes with probability
invlogit(alpha_j).  From the simulated passes we estimate every classroom's pass probability:

* no pooling: the classroom's own pass rate s_j / n_j;
* partial pooling: ``passed ~ 1 + (1 | classroom)`` by glmer (Laplace) and by the Bayesian
  model (rstanarm's priors), p_j = invlogit(beta_0 + b_j).

Because the truth is known, the estimation error |p_est - p_true| can be compared by class size:
small classes have noisy raw rates, and borrowing strength from the other classes pays off most
there.  Finally the same model on real data: tadpole survival in 48 tanks (reedfrogs).

Run:  python examples/classrooms.py [--quick]     (writes PNGs into examples/output/)
"""
from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit

import mixedpy as mp

OUT = Path(__file__).resolve().parent / "output"
SIZES = (5, 10, 25, 35)


def simulate_classrooms(rng: np.random.Generator, per_size: int = 15, alpha_bar: float = 1.5,
                        sigma: float = 1.5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per student (``classroom``, ``size``, ``passed`` 0/1) and one per classroom (true
    log-odds and probability).  Students are rows so that the grouping factor has fewer levels
    than observations, as lme4 requires of lmer-style designs."""
    sizes = np.repeat(SIZES, per_size)
    J = sizes.size
    true_a = rng.normal(alpha_bar, sigma, J)
    classes = pd.DataFrame({"classroom": [f"c{j + 1:02d}" for j in range(J)], "size": sizes,
                            "true_logit": true_a, "true_p": expit(true_a)})
    codes = np.repeat(np.arange(J), sizes)
    students = pd.DataFrame({"classroom": classes["classroom"].to_numpy()[codes], "size": sizes[codes],
                             "passed": rng.binomial(1, classes["true_p"].to_numpy()[codes])})
    return students, classes


def aggregate(students: pd.DataFrame) -> pd.DataFrame:
    """Counts of passes and failures per classroom: one ``cbind(passed, failed)`` row per classroom
    (a GLMM may have as many groups as rows, as lme4's glmer allows)."""
    agg = students.groupby("classroom", as_index=False).agg(passed=("passed", "sum"), n=("passed", "size"))
    agg["failed"] = agg["n"] - agg["passed"]
    return agg


MODEL = "cbind(passed, failed) ~ 1 + (1 | classroom)"


def estimates(students: pd.DataFrame, classes: pd.DataFrame):
    """No-pooling and glmer partial-pooling estimates of each classroom's pass probability, and
    the glmer fit."""
    rate = students.groupby("classroom")["passed"].mean()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # a tiny sigma in one replicate is not the point here
        fit = mp.glmer(MODEL, aggregate(students), family="binomial")
    partial = expit(mp.coef(fit)["classroom"]["(Intercept)"])
    out = classes.set_index("classroom")[["size", "true_p"]].copy()
    out["no_pooling"] = rate.loc[out.index]
    out["glmer"] = partial.loc[out.index].to_numpy()
    return out, fit


def error_by_size(est: pd.DataFrame, columns) -> pd.DataFrame:
    """Mean absolute error |p_est - p_true| per class size."""
    err = pd.DataFrame({c: (est[c] - est["true_p"]).abs() for c in columns})
    err["size"] = est["size"].to_numpy()
    return err.groupby("size").mean()


def main(outdir=OUT, quick: bool = False, seed: int = 5005) -> dict:
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    # ---- one simulated school: no pooling, glmer, Bayesian ---------------------------------------
    students, classes = simulate_classrooms(rng)
    est, fit = estimates(students, classes)
    print(fit.summary(), "\n")
    with warnings.catch_warnings():
        if quick:   # short chains in quick mode: R-hat warnings are expected there
            warnings.simplefilter("ignore")
        post = mp.bayes_glmer(MODEL, aggregate(students), family="binomial", chains=2 if quick else 4,
                              iter=400 if quick else 1000, seed=seed, progress=False)
    est["bayes"] = expit(mp.coef(post)["classroom"]["(Intercept)"]).loc[est.index].to_numpy()
    one = error_by_size(est, ["no_pooling", "glmer", "bayes"])
    print("mean |estimate - truth| of the pass probability, by class size (one simulated school):")
    print(one.round(3).to_string(), "\n")
    sd_true = float(np.std(classes["true_logit"], ddof=1))
    print(f"glmer: alpha_bar = {mp.fixef(fit).iloc[0]:.2f} (truth 1.5), sigma = "
          f"{mp.sigma_hat(fit)['classroom'].iloc[0]:.2f} (truth 1.5; sd of the 60 drawn log-odds {sd_true:.2f})")
    print(f"Bayes: alpha_bar = {mp.fixef(post).iloc[0]:.2f}\n")

    # ---- many simulated schools: the average error (glmer only, it is fast) ------------------------
    n_rep = 8 if quick else 50
    reps = [error_by_size(estimates(*simulate_classrooms(rng))[0], ["no_pooling", "glmer"]) for _ in range(n_rep)]
    avg = sum(reps) / n_rep
    print(f"average over {n_rep} simulated schools:")
    print(avg.round(3).to_string(), "\n")

    # ---- pictures --------------------------------------------------------------------------------
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(est))
    ax.plot(x, (est["no_pooling"] - est["true_p"]).abs(), "o", mfc="white", mec="#d2571e", ms=5,
            label="no pooling")
    ax.plot(x, (est["glmer"] - est["true_p"]).abs(), "o", color="#1f5fa8", ms=4, label="partial pooling (glmer)")
    for i, n in enumerate(SIZES):
        lo, hi = 15 * i, 15 * (i + 1)
        ax.hlines(one.loc[n, "no_pooling"], lo, hi - 1, color="#d2571e", lw=1.5)
        ax.hlines(one.loc[n, "glmer"], lo, hi - 1, color="#1f5fa8", lw=1.5, ls="--")
        ax.axvline(hi - 0.5, color="#dddddd", lw=1)
    ax.set_xticks([7 + 15 * i for i in range(4)])
    ax.set_xticklabels([f"{n} students" for n in SIZES])
    ax.set_ylabel("|estimated - true| pass probability")
    ax.set_title("Estimation error per classroom (lines: mean per class size)")
    ax.legend(frameon=False, fontsize=8)
    fig.savefig(outdir / "classrooms_error.png", dpi=110)

    ax = mp.plot.shrinkage(fit)
    ax.plot(est["size"] * 1.06, est["true_p"], "x", color="#222222", ms=5, label="truth")
    ax.legend(fontsize=8, frameon=False)
    ax.figure.savefig(outdir / "classrooms_shrinkage.png", dpi=110)

    # ---- real data: tadpoles in tanks (reedfrogs), one row per tank ---------------------------------
    frogs = mp.datasets.load("reedfrogs")
    frog_fit = mp.glmer("cbind(surv, density - surv) ~ 1 + (1 | tank)", frogs, family="binomial")
    ax = mp.plot.shrinkage(frog_fit)
    ax.set_title("Tadpole survival per tank: raw rates shrink toward the mean")
    ax.figure.savefig(outdir / "classrooms_reedfrogs.png", dpi=110)
    print(f"reedfrogs: mean survival log-odds {mp.fixef(frog_fit).iloc[0]:.3f}, tank sd "
          f"{mp.sigma_hat(frog_fit)['tank'].iloc[0]:.3f}")

    small = [n for n in SIZES if n <= 10]
    return {
        "one_school": one, "average": avg, "n_rep": n_rep,
        # averaged over simulated schools, partial pooling has the lower error where classes are small
        "partial_beats_no_pooling_small": bool((avg.loc[small, "glmer"] < avg.loc[small, "no_pooling"]).all()),
        "advantage_by_size": (avg["no_pooling"] - avg["glmer"]).to_dict(),
        "glmer_alpha_bar": float(mp.fixef(fit).iloc[0]),
        "glmer_sigma": float(mp.sigma_hat(fit)["classroom"].iloc[0]),
        "bayes_alpha_bar": float(mp.fixef(post).iloc[0]),
        "bayes_vs_glmer_max_abs_diff": float((est["bayes"] - est["glmer"]).abs().max()),
        "estimates": est, "fit": fit, "post": post, "frog_fit": frog_fit,
        "pngs": sorted(str(p) for p in outdir.glob("classrooms_*.png")),
    }


if __name__ == "__main__":
    facts = main(quick="--quick" in sys.argv)
    print(f"PNGs written: {', '.join(os.path.basename(p) for p in facts['pngs'])}")
