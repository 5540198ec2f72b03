"""Bayesian-mode benchmark: minimum bulk ESS per second, mixedpy (emcee) vs rstanarm, same run.

The minimum is over the fixed effects, sigma and the Sigma entries (the b's excluded), bulk ESS by
arviz for mixedpy and by rstan::ess_bulk for rstanarm (both rank-normalized, Vehtari et al. 2021).
Both use 4 chains x 2000 iterations with their own defaults; wall-clock of the whole fitting call.

    python benchmarks/bench_bayes.py                 # mixedpy and rstanarm (needs Rscript + rstanarm)
    python benchmarks/bench_bayes.py --no-r          # mixedpy only
    python benchmarks/bench_bayes.py --cases sleepstudy
"""
from __future__ import annotations

import argparse
import json
import time
import warnings

import mixedpy as mp
from harness import DATA, run_r

CASES = {"sleepstudy": ("sleepstudy", "Reaction ~ Days + (Days | Subject)"),
         "exam": ("exam", "normexam ~ standLRT + (standLRT | school)")}


def run_mixedpy(case: str, seed: int = 1) -> dict:
    data_name, formula = CASES[case]
    df = mp.datasets.load(data_name)
    mp.bayes_lmer(formula, df, chains=1, iter=200, seed=0, progress=False)   # warm imports (arviz, emcee)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = mp.bayes_lmer(formula, df, chains=4, iter=2000, seed=seed, progress=False)
    secs = time.perf_counter() - t0
    s = post.summary()
    pars = [c for c in s.index if not c.startswith("b[")]
    ess = s.loc[pars, "ess_bulk"]
    return {"case": case, "formula": formula, "seconds": secs, "n_draws": post.n_draws,
            "min_ess_bulk": float(ess.min()), "min_ess_param": ess.idxmin(),
            "min_ess_per_second": float(ess.min() / secs), "max_rhat": float(s.loc[pars, "rhat"].max()),
            "thin": post.sampler_info["thin"], "nwalkers": post.sampler_info["nwalkers"]}


def run_rstanarm(case: str) -> dict | None:
    return run_r("time_rstanarm.R", case, str(DATA))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", nargs="*", default=list(CASES))
    ap.add_argument("--no-r", action="store_true")
    args = ap.parse_args()
    for case in args.cases:
        mine = run_mixedpy(case)
        print(json.dumps({"mixedpy": mine}))
        if not args.no_r:
            r = run_rstanarm(case)
            if r is not None:
                print(json.dumps({"rstanarm": r}))
                ratio = mine["min_ess_per_second"] / r["min_ess_per_second"]
                print(f"{case}: mixedpy {mine['min_ess_per_second']:.0f} ESS/s vs rstanarm "
                      f"{r['min_ess_per_second']:.1f} ESS/s -> ratio {ratio:.1f}x")


if __name__ == "__main__":
    main()
