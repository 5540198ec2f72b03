"""bayes_glmer (pseudo-marginal emcee on the blocked kernel) vs rstanarm's stan_glmer, same run.

    python benchmarks/bench_bayes_glmm.py                       # cbpp, classrooms, verbagg
    python benchmarks/bench_bayes_glmm.py --cases cbpp --no-r
    python benchmarks/bench_bayes_glmm.py --cases verbagg --r-verbagg   # also time stan_glmer on VerbAgg

Targets (issue 10): min bulk ESS/s at least 2x rstanarm's on cbpp and on the 1,125-student
classrooms case (both 4 chains x 2000 iterations, each side's defaults); VerbAgg
``r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)`` (7,584 rows, 316 x 24 crossed levels),
4 chains x 1000 iterations, in under 10 minutes and 2 GiB.  The minimum is over the fixed effects
and the Sigma entries (the b's excluded); bulk ESS by arviz / rstan::ess_bulk.  Each mixedpy fit
runs in a fresh process (peak RSS is that process's), with one BLAS thread; CPU seconds are
reported beside wall-clock seconds because the 2-core machine is shared.  stan_glmer on VerbAgg
takes long, so it runs only with ``--r-verbagg``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from bench_bayes import CASES as LMM_CASES
from bench_bayes import csv_folder
from harness import HERE, run_r

CASES = {"cbpp": LMM_CASES["cbpp"] + (2000,),
         "classrooms": LMM_CASES["classrooms"] + (2000,),
         "verbagg": ("verbagg", "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)", "binomial", 1000)}

_CHILD = r'''
import json, resource, sys, time, warnings
sys.path.insert(0, {here!r})
import mixedpy as mp
from bench_bayes import load
from pathlib import Path
data_name, formula, family, iters, csv_dir = {args!r}
df = load(data_name, Path(csv_dir))
mp.set_num_threads(1)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    mp.bayes_glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", load("cbpp", Path(csv_dir)),
                   chains=1, iter=60, seed=0, progress=False)        # warm imports (arviz, emcee)
    t0, c0 = time.perf_counter(), time.process_time()
    post = mp.bayes_glmer(formula, df, family=family, chains=4, iter=iters, seed=1, progress=False)
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
s = post.summary()
pars = [c for c in s.index if not c.startswith("b[")]
ess = s.loc[pars, "ess_bulk"]
print(json.dumps({{"formula": formula, "iter": iters, "seconds": secs, "cpu_seconds": cpu,
                  "n_draws": post.n_draws, "min_ess_bulk": float(ess.min()), "min_ess_param": ess.idxmin(),
                  "min_ess_per_second": float(ess.min() / secs), "max_rhat": float(s.loc[pars, "rhat"].max()),
                  "thin": post.sampler_info["thin"], "nwalkers": post.sampler_info["nwalkers"],
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
'''


def run_mixedpy(case: str, csv_dir: Path) -> dict:
    """One bayes_glmer fit in a fresh Python process (so its peak RSS is the fit's)."""
    data_name, formula, family, iters = CASES[case]
    code = _CHILD.format(here=str(HERE), args=(data_name, formula, family, iters, str(csv_dir)))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {"case": case, **json.loads(proc.stdout.strip().splitlines()[-1])}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", nargs="*", default=list(CASES))
    ap.add_argument("--no-r", action="store_true")
    ap.add_argument("--r-verbagg", action="store_true", help="also run stan_glmer on VerbAgg (slow)")
    args = ap.parse_args()
    csv_dir = csv_folder()
    for case in args.cases:
        mine = run_mixedpy(case, csv_dir)
        print(json.dumps({"mixedpy": mine}), flush=True)
        line = (f"{case}: mixedpy {mine['seconds']:.1f} s ({mine['cpu_seconds']:.1f} s CPU), min bulk ESS "
                f"{mine['min_ess_bulk']:.0f} -> {mine['min_ess_per_second']:.0f} ESS/s, "
                f"peak RSS {mine['peak_rss_mib']:.0f} MiB")
        r = None
        if not args.no_r and (case != "verbagg" or args.r_verbagg):
            r = run_r("time_rstanarm.R", case, str(csv_dir), str(mine["iter"]), timeout=7200)
        if r is not None:
            print(json.dumps({"rstanarm": r}), flush=True)
            line += (f"; rstanarm {r['seconds']:.1f} s, {r['min_ess_per_second']:.1f} ESS/s -> ratio "
                     f"{mine['min_ess_per_second'] / r['min_ess_per_second']:.2f}x")
        print(line, flush=True)
    shutil.rmtree(csv_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
