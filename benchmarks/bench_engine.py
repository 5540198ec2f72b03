"""The LMM kernel's block structures (issue 10): mixedpy vs lme4 on simulated data, in one run.

    python benchmarks/bench_engine.py [--reps N]

Cases (data simulated with a fixed seed, written as CSV for R):

* ``nested_slopes``: ``y ~ x + h + (h | g1) + (1 | g2) + (1 | g1:g3)`` with about 997 / 20 / 2,586
  levels and 6,000 rows.  g1:g3 nests in g1, so L's g1 block stays block-diagonal.
* ``nested_outer``: ``y ~ x + (1 | a/b)`` with 3,000 outer groups, 5 inner levels each and 20,000
  rows; L's a block stays diagonal.

For each case: the whole fit (median of --reps), the number of deviance evaluations, and the time of
one evaluation of the profiled deviance at theta-hat, next to lme4's (``devFunOnly = TRUE``).
Targets: fit time at most 0.5 x lme4's on both.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import mixedpy as mp
from harness import row, run_r, time_call

warnings.simplefilter("ignore")

FORMULAS = {"nested_slopes": "y ~ x + h + (h | g1) + (1 | g2) + (1 | g1:g3)",
            "nested_outer": "y ~ x + (1 | a/b)"}


def simulate_nested_slopes(seed: int = 1, n: int = 6000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g1, g2, g3 = rng.integers(0, 997, n), rng.integers(0, 20, n), rng.integers(0, 3, n)
    x, h = rng.standard_normal(n), rng.standard_normal(n)
    b1 = rng.standard_normal((997, 2)) * [0.8, 0.4]
    y = (1 + 0.5 * x - 0.3 * h + b1[g1, 0] + b1[g1, 1] * h + 0.5 * rng.standard_normal(20)[g2]
         + 0.6 * rng.standard_normal(2991)[g1 * 3 + g3] + rng.standard_normal(n))
    return pd.DataFrame({"y": y, "x": x, "h": h, "g1": [f"a{v}" for v in g1], "g2": [f"b{v}" for v in g2],
                         "g3": [f"c{v}" for v in g3]})


def simulate_nested_outer(seed: int = 1, n_outer: int = 3000, per: int = 5, n: int = 20000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a, b, x = rng.integers(0, n_outer, n), rng.integers(0, per, n), rng.standard_normal(n)
    y = (2 + x + 0.7 * rng.standard_normal(n_outer)[a] + 0.5 * rng.standard_normal(n_outer * per)[a * per + b]
         + rng.standard_normal(n))
    return pd.DataFrame({"y": y, "x": x, "a": [f"a{v}" for v in a], "b": [f"b{v}" for v in b]})


SIMULATE = {"nested_slopes": simulate_nested_slopes, "nested_outer": simulate_nested_outer}


def eval_seconds(problem, theta, reps: int = 20) -> float:
    problem.objective(theta, True)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        problem.objective(theta, True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(reps: int = 3) -> None:
    print("case                         mixedpy seconds   peer seconds   ratio (mixedpy/peer)")
    with tempfile.TemporaryDirectory() as tmp:
        for case, formula in FORMULAS.items():
            data = SIMULATE[case]()
            data.to_csv(Path(tmp) / f"{case}.csv", index=False)
            t, fit = time_call(lambda: mp.lmer(formula, data), reps=reps)
            per = eval_seconds(fit.problem, fit.opt.x)
            r = run_r("time_engine.R", case, tmp, str(reps))
            extra = f"{fit.opt.n_evals} evals"
            if r:
                extra += f" (lme4 {r['feval']}), REML diff {fit.criterion - r['deviance']:+.1e}"
            row(case, t, "lme4", r and r["seconds"], extra)
            peer = r and r["eval_seconds"]
            ratio = f"ratio {per / peer:6.3g}" if peer else ""
            print(f"{case + ' one evaluation':<28} mixedpy {1000 * per:8.2f} ms  lme4 "
                  f"{'n/a' if not peer else f'{1000 * peer:8.2f} ms'}   {ratio}", flush=True)
            print(mp.block_description(fit), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="fits per case (median reported)")
    main(parser.parse_args().reps)
    sys.exit(0)
