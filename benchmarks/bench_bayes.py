"""Bayesian-mode benchmark: minimum bulk ESS per second, mixedpy (emcee) vs rstanarm, same run.

The minimum is over the fixed effects, sigma and the Sigma entries (the b's excluded), bulk ESS by
arviz for mixedpy and by rstan::ess_bulk for rstanarm (both rank-normalized, Vehtari et al. 2021).
Both use 4 chains x 2000 iterations with their own defaults; wall-clock of the whole fitting call.

    python benchmarks/bench_bayes.py                 # mixedpy and rstanarm (needs Rscript + rstanarm)
    python benchmarks/bench_bayes.py --no-r          # mixedpy only
    python benchmarks/bench_bayes.py --cases sleepstudy
    python benchmarks/bench_bayes.py --cases cbpp classrooms   # bayes_glmer vs stan_glmer

The GLMM cases are cbpp (binomial counts, 15 herds) and "classrooms": 1,125 simulated pass/fail
students in 60 classrooms of 5/10/25/35 (one row per student, the layout of examples/classrooms.py),
written to a temporary CSV that both sides read.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import mixedpy as mp
from harness import DATA, run_r

CASES = {"sleepstudy": ("sleepstudy", "Reaction ~ Days + (Days | Subject)", None),
         "exam": ("exam", "normexam ~ standLRT + (standLRT | school)", None),
         "cbpp": ("cbpp", "cbind(incidence, size - incidence) ~ period + (1 | herd)", "binomial"),
         "classrooms": ("classrooms", "passed ~ 1 + (1 | classroom)", "binomial")}


def classrooms(seed: int = 1) -> pd.DataFrame:
    """Pass/fail of 1,125 students in 60 classrooms of 5/10/25/35, true log-odds N(0, 1)."""
    rng = np.random.default_rng(seed)
    sizes = np.repeat([5, 10, 25, 35], 15)
    codes = np.repeat(np.arange(sizes.size), sizes)
    logit = rng.normal(0.0, 1.0, sizes.size)[codes]
    return pd.DataFrame({"classroom": [f"c{j:02d}" for j in codes],
                         "passed": rng.binomial(1, 1.0 / (1.0 + np.exp(-logit)))})


def csv_folder() -> Path:
    """One temporary folder of CSVs for both sides: the bundled datasets plus the simulated classrooms."""
    csv_dir = Path(tempfile.mkdtemp(prefix="mixedpy-bench-"))
    for f in DATA.glob("*.csv"):
        shutil.copy(f, csv_dir)
    classrooms().to_csv(csv_dir / "classrooms.csv", index=False)
    return csv_dir


def load(data_name: str, csv_dir: Path) -> pd.DataFrame:
    path = csv_dir / f"{data_name}.csv"
    return mp.datasets.read_r_csv(path) if path.exists() else mp.datasets.load(data_name)


def run_mixedpy(case: str, csv_dir: Path, seed: int = 1) -> dict:
    data_name, formula, family = CASES[case]
    df = load(data_name, csv_dir)

    def fit(**kw):
        if family is None:
            return mp.bayes_lmer(formula, df, progress=False, **kw)
        return mp.bayes_glmer(formula, df, family=family, progress=False, **kw)

    fit(chains=1, iter=200, seed=0)   # warm imports (arviz, emcee)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = fit(chains=4, iter=2000, seed=seed)
    secs = time.perf_counter() - t0
    s = post.summary()
    pars = [c for c in s.index if not c.startswith("b[")]
    ess = s.loc[pars, "ess_bulk"]
    return {"case": case, "formula": formula, "seconds": secs, "n_draws": post.n_draws,
            "min_ess_bulk": float(ess.min()), "min_ess_param": ess.idxmin(),
            "min_ess_per_second": float(ess.min() / secs), "max_rhat": float(s.loc[pars, "rhat"].max()),
            "thin": post.sampler_info["thin"], "nwalkers": post.sampler_info["nwalkers"]}


def run_rstanarm(case: str, csv_dir: Path) -> dict | None:
    return run_r("time_rstanarm.R", case, str(csv_dir))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", nargs="*", default=list(CASES))
    ap.add_argument("--no-r", action="store_true")
    args = ap.parse_args()
    csv_dir = csv_folder()
    for case in args.cases:
        mine = run_mixedpy(case, csv_dir)
        print(json.dumps({"mixedpy": mine}))
        if not args.no_r:
            r = run_rstanarm(case, csv_dir)
            if r is not None:
                print(json.dumps({"rstanarm": r}))
                ratio = mine["min_ess_per_second"] / r["min_ess_per_second"]
                print(f"{case}: mixedpy {mine['min_ess_per_second']:.0f} ESS/s vs rstanarm "
                      f"{r['min_ess_per_second']:.1f} ESS/s -> ratio {ratio:.2f}x")
    shutil.rmtree(csv_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
