"""Classrooms of different sizes: on average, partial pooling wins where classes are small
(McElreath 2020, sec. 13.2, with classrooms for ponds).

60 classrooms, 15 each of 5, 10, 25 and 35 students.  Each classroom has a true log-odds of a
student passing, alpha_j ~ N(alpha_bar = 1.5, sigma = 1.5); each student passes with probability
invlogit(alpha_j).  From the simulated passes we estimate every classroom's pass probability:

* no pooling: the classroom's own pass rate s_j / n_j;
* partial pooling: ``passed ~ 1 + (1 | classroom)`` by glmer (Laplace) and by the Bayesian
  model (rstanarm's priors), p_j = invlogit(beta_0 + b_j).

Because the truth is known, the estimation error |p_est - p_true| can be compared by class size:
small classes have noisy raw rates, and borrowing strength from the other classes pays off most
there.  That is a statement about the expected error: averaged over many simulated schools,
partial pooling errs less for the small classes, and it does so in most single schools, but not
in every one (the first school of this script is such an exception at 5 students), so the error
plot draws every simulated school and their average.  Finally the same model on real data:
tadpole survival in 48 tanks (reedfrogs).

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


def error_figure(reps):
    """The mean error per class size of every simulated school, no pooling against glmer.

    Each school is a pair of dots joined by a grey segment (its mean |p_est - p_true| over the 15
    classrooms of that size), the thick ticks are the averages over schools, and the count above
    each size says in how many schools partial pooling erred less.  The claim of this script is
    about that average: a single school is one draw and can go either way, so the picture shows
    all of them."""
    from matplotlib.figure import Figure

    no_pool = np.column_stack([r.loc[list(SIZES), "no_pooling"].to_numpy() for r in reps])   # (size, school)
    partial = np.column_stack([r.loc[list(SIZES), "glmer"].to_numpy() for r in reps])
    n_rep = no_pool.shape[1]
    fig = Figure(figsize=(7.5, 4.2), layout="constrained")
    ax = fig.add_subplot()
    jitter = np.linspace(-0.06, 0.06, n_rep)
    for i in range(len(SIZES)):
        xl, xr = i - 0.17 + jitter, i + 0.17 + jitter
        ax.plot(np.vstack([xl, xr]), np.vstack([no_pool[i], partial[i]]), color="#cccccc", lw=0.7, zorder=1)
        ax.plot(xl, no_pool[i], "o", mfc="white", mec="#d2571e", ms=4.5, zorder=2,
                label="no pooling, one school" if i == 0 else None)
        ax.plot(xr, partial[i], "o", color="#1f5fa8", ms=4, zorder=2,
                label="partial pooling (glmer), one school" if i == 0 else None)
        ax.hlines(no_pool[i].mean(), i - 0.32, i - 0.02, color="#d2571e", lw=2.5, zorder=3,
                  label="average over the schools" if i == 0 else None)
        ax.hlines(partial[i].mean(), i + 0.02, i + 0.32, color="#1f5fa8", lw=2.5, zorder=3)
        wins = int(np.sum(partial[i] < no_pool[i]))
        ax.annotate(f"partial pooling lower\nin {wins} of {n_rep} schools", (i, 1.0), xycoords=("data", "axes fraction"),
                    xytext=(0, -4), textcoords="offset points", ha="center", va="top", fontsize=7.5)
    ax.set_xticks(range(len(SIZES)))
    ax.set_xticklabels([f"{n} students" for n in SIZES])
    ax.set_ylim(0, max(no_pool.max(), partial.max()) * 1.3)
    ax.set_ylabel("mean |estimated - true| pass probability")
    ax.set_title(f"Estimation error by class size in {n_rep} simulated schools")
    ax.legend(frameon=False, fontsize=8, loc="lower left")
    return fig


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
    print(one.round(3).to_string())
    lower = [n for n in SIZES if one.loc[n, "glmer"] < one.loc[n, "no_pooling"]]
    print(f"in this school partial pooling erred less at class sizes {', '.join(map(str, lower)) or 'none'}; one school is one "
          "draw, the claim is about the average over schools below (drawn in classrooms_error.png)\n")
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
    error_figure(reps).savefig(outdir / "classrooms_error.png", dpi=110)

    ax = mp.plot.shrinkage(fit)
    ax.plot(est["size"] * 1.06, est["true_p"], "x", color="#222222", ms=5, label="truth (beside its class size)")
    ax.legend(fontsize=8, frameon=False, loc="lower right")
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
        # the share of simulated schools in which partial pooling erred less, per class size
        "share_partial_lower": {n: float(np.mean([r.loc[n, "glmer"] < r.loc[n, "no_pooling"] for r in reps]))
                                for n in SIZES},
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
