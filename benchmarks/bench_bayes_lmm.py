"""Bayesian LMM: the log-density batched over walkers vs one walker at a time, and bayes_lmer on a
crossed model vs rstanarm's min bulk ESS per second.

    python benchmarks/bench_bayes_lmm.py                  # log-density cost per walker, all cases
    python benchmarks/bench_bayes_lmm.py --run            # also bayes_lmer vs stan_lmer (penicillin)
    python benchmarks/bench_bayes_lmm.py --run --no-r     # bayes_lmer only
    python benchmarks/bench_bayes_lmm.py --run --no-density --cases insteval5000   # InstEval's first 5,000 rows

Log-density: ``LMMPosterior.log_prob`` on the number of walkers emcee hands it (half the ensemble,
16 x dim walkers), batched (:mod:`mixedpy.linalg.batched`) and with ``_batched = False``, the
per-walker loop over ``CrossProducts.factor`` that multi-term models used before; microseconds per
walker, best of several repetitions, interleaved in the same run, one BLAS thread.  The ratio
loop / batched is the speed-up.

Sampling: 4 chains x 2000 iterations each side, the minimum bulk ESS over the fixed effects, sigma
and the Sigma entries, per second of the whole fitting call (as bench_bayes.py).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

import mixedpy as mp
from harness import run_r
from mixedpy.bayes.lmm_posterior import LMMPosterior
from mixedpy.bayes.priors import resolve_priors
from mixedpy.formula.design import build_design
from mixedpy.threads import controls_threads

# (label, dataset, rows, formula)
DENSITY_CASES = [("InstEval 5,000 rows (1|s)+(1|d)", "insteval", 5000, "y ~ service + (1 | s) + (1 | d)"),
                 ("InstEval 20,000 rows (1|s)+(1|d)", "insteval", 20000, "y ~ service + (1 | s) + (1 | d)"),
                 ("penicillin (1|plate)+(1|sample)", "penicillin", None, "diameter ~ 1 + (1 | plate) + (1 | sample)"),
                 ("pastes (1|batch/cask)", "pastes", None, "strength ~ 1 + (1 | batch/cask)"),
                 ("sleepstudy (Days|Subject)", "sleepstudy", None, "Reaction ~ Days + (Days | Subject)"),
                 ("exam (standLRT|school)+(1|student)", "exam", None, "normexam ~ standLRT + (standLRT | school) + (1 | student)")]
# bayes_lmer vs stan_lmer: (dataset, rows, formula, grouping columns)
RUN_CASES = {"penicillin": ("penicillin", None, "diameter ~ 1 + (1 | plate) + (1 | sample)", "plate,sample"),
             "insteval5000": ("insteval", 5000, "y ~ service + (1 | s) + (1 | d)", "s,d,service")}


def _per_walker_us(post, x, reps: int, rounds: int = 7) -> dict:
    out = {"batched": np.inf, "loop": np.inf}
    for _ in range(rounds):
        for mode in out:
            post._batched = mode == "batched"
            t0 = time.perf_counter()
            for _ in range(reps):
                post.log_prob(x)
            out[mode] = min(out[mode], (time.perf_counter() - t0) / reps / len(x) * 1e6)
    post._batched = True
    return out


@controls_threads
def density_costs() -> None:
    print(f"{'case':<40} {'walkers':>7} {'batched us/walker':>18} {'loop us/walker':>15} {'speed-up':>9}")
    for label, name, rows, formula in DENSITY_CASES:
        data = mp.datasets.load(name)
        if rows is not None:
            data = data.iloc[:rows]
        d = build_design(formula, data)
        pr = resolve_priors("gaussian", "identity", d.y, d.X, d.fixef_names)
        post = LMMPosterior(d, pr)
        W = min(max(16 * post.dim, 32), 256) // 2            # emcee evaluates half the ensemble
        rng = np.random.default_rng(0)
        x = rng.normal(0, 0.3, (W, post.dim)) + np.r_[np.log(np.std(d.y) / 2), np.zeros(post.dim - 1)]
        diff = np.abs(post.log_prob(x) - (setattr(post, "_batched", False) or post.log_prob(x))).max()
        post._batched = True
        per_call = _per_walker_us(post, x, reps=1, rounds=1)["loop"] * W
        reps = max(1, int(0.2e6 / per_call))
        r = _per_walker_us(post, x, reps)
        print(f"{label:<40} {W:>7} {r['batched']:>18.1f} {r['loop']:>15.1f} {r['loop'] / r['batched']:>8.1f}x"
              f"   max |diff| {diff:.1e}", flush=True)


def run_bayes(case: str, no_r: bool) -> None:
    name, rows, formula, groups = RUN_CASES[case]
    data = mp.datasets.load(name)
    if rows is not None:
        data = data.iloc[:rows]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mp.bayes_lmer(formula, data, chains=1, iter=200, seed=0, progress=False)   # warm imports
        t0 = time.perf_counter()
        post = mp.bayes_lmer(formula, data, chains=4, iter=2000, seed=1, progress=False)
        secs = time.perf_counter() - t0
    s = post.summary()
    pars = [c for c in s.index if not c.startswith("b[")]
    ess = s.loc[pars, "ess_bulk"]
    mine = {"case": case, "formula": formula, "seconds": secs, "min_ess_bulk": float(ess.min()),
            "min_ess_param": ess.idxmin(), "min_ess_per_second": float(ess.min() / secs),
            "max_rhat": float(s.loc[pars, "rhat"].max())}
    print(json.dumps({"mixedpy": mine}), flush=True)
    if no_r:
        return
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / f"{case}.csv"
        data.to_csv(csv, index=False)
        r = run_r("time_rstanarm_lmm.R", str(csv), formula, groups)
    if r is not None:
        print(json.dumps({"rstanarm": r}))
        print(f"{case}: mixedpy {mine['min_ess_per_second']:.0f} min bulk ESS/s vs rstanarm "
              f"{r['min_ess_per_second']:.1f} -> ratio {mine['min_ess_per_second'] / r['min_ess_per_second']:.2f}x")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", action="store_true", help="also time bayes_lmer against stan_lmer")
    ap.add_argument("--no-r", action="store_true")
    ap.add_argument("--cases", nargs="*", default=["penicillin"], choices=list(RUN_CASES),
                    help="models for --run")
    ap.add_argument("--no-density", action="store_true", help="skip the log-density timings")
    args = ap.parse_args()
    mp.set_num_threads(1)
    if not args.no_density:
        density_costs()
    if args.run:
        for case in args.cases:
            run_bayes(case, args.no_r)


if __name__ == "__main__":
    main()
