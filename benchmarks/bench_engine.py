"""The LMM kernel's block structures (issue 10): mixedpy vs lme4 and mixedlm on simulated data.

    python benchmarks/bench_engine.py [--reps N] [--case CASE ...] [--rows N]

Cases against lme4 (data simulated with a fixed seed, written as CSV for R):

* ``nested_slopes``: ``y ~ x + h + (h | g1) + (1 | g2) + (1 | g1:g3)`` with about 997 / 20 / 2,586
  levels and 6,000 rows.  g1:g3 nests in g1, so L's g1 block stays block-diagonal.
* ``nested_outer``: ``y ~ x + (1 | a/b)`` with 3,000 outer groups, 5 inner levels each and 20,000
  rows; L's a block stays diagonal.

For each: the whole fit (median of --reps), the number of deviance evaluations, and the time of
one evaluation of the profiled deviance at theta-hat, next to lme4's (``devFunOnly = TRUE``).
Targets: fit time at most 0.5 x lme4's on both.

With ``--case slopes_crossed`` (not run by default: lme4 needs a minute or two):

* ``slopes_crossed``: ``y ~ x + (x | b) + (1 | a)``, 200,000 rows (``--rows``), b with rows / 40
  levels (5,000) crossed with a (800 levels).  b's random slopes come first (a BlkDiag block); the
  updates from its block column are vector-valued Gram products (mixedpy.linalg.structure.GramPlan),
  and the objective never forms L[a, b].  Timed against lme4 in the same run as the cases above
  (one fit each per --reps; ratio printed).  The issue's 2,000,000-row version of this model (b with
  50,000 levels) is ``--case slopes_crossed --rows 2000000`` (lme4 then takes very long).

Large cases (each fit runs in a fresh process, so that its peak memory is its own; only with --case):

* ``slopes10m``: ``y ~ x + (x | g)``, 10,000,000 rows, 500,000 groups (20 rows each; ``--rows``
  scales both).  Target: the whole lmer fit, design included, in at most 20 s.
* ``crossed1m``: ``y ~ x + (1 | a) + (1 | b)``, 1,000,000 rows, 50,000 x 2,000 crossed levels, against
  mixedlm (PyPI, Rust) in the same run, the two alternating.  Targets: at most 0.5 x mixedlm's
  time and 1 GiB.
* ``insteval``: InstEval's lmer against mixedlm the same way (each process fits once untimed
  first).  Target: at most 0.6 x mixedlm.  Also timed as ``mixedpy-dense``: with the CHOLMOD block
  (mixedpy.linalg.cholmod, optional cvxopt) disabled by ``MIXEDPY_CHOLMOD=0``, i.e. LAPACK's dense
  Cholesky of the lecturers' block as without cvxopt.  The mixedpy lines also give the median time
  of one evaluation of the profiled deviance at theta-hat.

They print wall seconds, CPU seconds (user + system: on a loaded machine the wall time includes
waiting for a core) and the peak resident memory of the process (``getrusage``), also just after
simulating the data (what the data alone takes).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
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


def simulate_slopes_crossed(seed: int = 1, n: int = 200_000, Ja: int = 800) -> pd.DataFrame:
    """Random slopes over b (n / 40 levels) crossed with a random intercept over a (800 levels)."""
    rng = np.random.default_rng(seed)
    Jb = max(2, n // 40)
    b, a = rng.integers(0, Jb, n).astype(np.int32), rng.integers(0, Ja, n).astype(np.int32)
    x = rng.standard_normal(n)
    rb = rng.standard_normal((Jb, 2)) * [0.8, 0.4]
    y = 1 + 0.5 * x + rb[b, 0] + rb[b, 1] * x + 0.5 * rng.standard_normal(Ja)[a] + rng.standard_normal(n)
    return pd.DataFrame({"y": y, "x": x, "b": pd.Categorical.from_codes(b, [f"b{i}" for i in range(Jb)]),
                         "a": pd.Categorical.from_codes(a, [f"a{i}" for i in range(Ja)])})


SIMULATE = {"nested_slopes": simulate_nested_slopes, "nested_outer": simulate_nested_outer}
#: cases against lme4 run only when named with --case (lme4 takes minutes): formula, simulator
LME4_ON_REQUEST = {"slopes_crossed": ("y ~ x + (x | b) + (1 | a)", simulate_slopes_crossed)}

LARGE = {"slopes10m": ("y ~ x + (x | g)", 10_000_000), "crossed1m": ("y ~ x + (1 | a) + (1 | b)", 1_000_000),
         "insteval": ("y ~ service + (1 | s) + (1 | d) + (1 | dept:service)", 73_421)}
#: the large cases timed against mixedlm too
VS_MIXEDLM = ("crossed1m", "insteval")
#: the large cases also timed without the CHOLMOD block (engine "mixedpy-dense")
DENSE_VARIANT = ("insteval",)


def simulate_slopes(n: int, seed: int = 1) -> pd.DataFrame:
    """20 rows per group on average; the grouping factor a pandas Categorical (as large data come)."""
    rng = np.random.default_rng(seed)
    J = max(2, n // 20)
    g = rng.integers(0, J, n).astype(np.int32)
    x = rng.standard_normal(n)
    b = rng.standard_normal((J, 2)) * [0.8, 0.4]
    y = 1 + 0.5 * x + b[g, 0] + b[g, 1] * x + rng.standard_normal(n)
    del b
    return pd.DataFrame({"y": y, "x": x, "g": pd.Categorical.from_codes(g, [f"g{i}" for i in range(J)])})


def simulate_crossed(n: int, seed: int = 2) -> pd.DataFrame:
    """50,000 x 2,000 crossed levels at 1M rows (levels scale with n)."""
    rng = np.random.default_rng(seed)
    Ja, Jb = max(2, n // 20), max(2, n // 500)
    a, b = rng.integers(0, Ja, n).astype(np.int32), rng.integers(0, Jb, n).astype(np.int32)
    x = rng.standard_normal(n)
    y = 1 + 0.5 * x + 0.7 * rng.standard_normal(Ja)[a] + 0.4 * rng.standard_normal(Jb)[b] + rng.standard_normal(n)
    return pd.DataFrame({"y": y, "x": x, "a": pd.Categorical.from_codes(a, [f"a{i}" for i in range(Ja)]),
                         "b": pd.Categorical.from_codes(b, [f"b{i}" for i in range(Jb)])})


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def child(case: str, engine: str, rows: int) -> None:
    """One fit in this (fresh) process; prints a JSON line with its times and memory."""
    formula = LARGE[case][0]
    if case == "insteval":
        data = mp.datasets.load("insteval")
    else:
        data = (simulate_slopes if case == "slopes10m" else simulate_crossed)(rows)
    rss_data = _rss_mib()
    if engine.startswith("mixedpy"):
        mp.set_num_threads(1)
        fit_fn = lambda: mp.lmer(formula, data)   # noqa: E731
    else:
        import mixedlm
        fit_fn = lambda: mixedlm.lmer(formula, data)   # noqa: E731
    if case == "insteval":    # small enough that first-call costs (imports, BLAS start-up) would show
        fit_fn()
    c0, t0 = _cpu(), time.perf_counter()
    fit = fit_fn()
    seconds, cpu = time.perf_counter() - t0, _cpu() - c0
    out = {"engine": engine, "seconds": seconds, "cpu": cpu, "rss_data_mib": rss_data,
           "peak_rss_mib": _rss_mib()}
    if engine.startswith("mixedpy"):
        out.update(evals=fit.opt.n_evals, reml=fit.criterion, blocks=str(mp.block_description(fit)),
                   eval_ms=1000 * eval_seconds(fit.problem, fit.opt.x))
    print(json.dumps(out), flush=True)


def run_child(case: str, engine: str, rows: int) -> dict | None:
    env = dict(os.environ, MIXEDPY_CHOLMOD="0") if engine == "mixedpy-dense" else None
    proc = subprocess.run([sys.executable, __file__, "--child", case, engine, "--rows", str(rows)],
                          capture_output=True, text=True, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        print(f"  [{engine} failed: {proc.stderr.strip()[-400:]}]", file=sys.stderr)
        return None
    return json.loads(lines[-1])


def large_case(case: str, reps: int, rows: int | None) -> None:
    """A large case in fresh processes, alternating with mixedlm for crossed1m."""
    formula, default_rows = LARGE[case]
    rows = rows or default_rows
    engines = (["mixedpy"] + (["mixedpy-dense"] if case in DENSE_VARIANT else [])
               + (["mixedlm"] if case in VS_MIXEDLM else []))
    if "mixedlm" in engines:
        try:
            import mixedlm  # noqa: F401
        except ImportError:
            engines.remove("mixedlm")
    print(f"--- {case}: {formula}, {rows:,} rows; {reps} fit(s) per engine, each in a fresh process ---")
    runs = {e: [] for e in engines}
    for r in range(reps):
        for e in (engines if r % 2 == 0 else engines[::-1]):
            res = run_child(case, e, rows)
            if res is not None:
                runs[e].append(res)
                print(f"  {e:<8} {res['seconds']:8.2f} s wall  {res['cpu']:8.2f} s cpu   peak RSS "
                      f"{res['peak_rss_mib']:7.0f} MiB (data alone {res['rss_data_mib']:.0f} MiB)"
                      + (f"   {res['evals']} evals, REML {res['reml']:.6f}, one evaluation "
                         f"{res['eval_ms']:.2f} ms" if e.startswith("mixedpy") else ""), flush=True)
    med = {e: (statistics.median(x["seconds"] for x in v), statistics.median(x["cpu"] for x in v),
               max(x["peak_rss_mib"] for x in v)) for e, v in runs.items() if v}
    if "mixedpy" in med:
        t, c, m = med["mixedpy"]
        print(f"{case:<12} mixedpy median {t:.2f} s wall, {c:.2f} s cpu, peak {m / 1024:.2f} GiB")
        print(runs["mixedpy"][-1]["blocks"])
    if "mixedlm" in med:
        tp, cp, mpk = med["mixedlm"]
        print(f"{case:<12} mixedlm median {tp:.2f} s wall, {cp:.2f} s cpu, peak {mpk / 1024:.2f} GiB")
        for e in ("mixedpy", "mixedpy-dense"):
            if e in med:
                t, c, _ = med[e]
                ev = statistics.median(x["eval_ms"] for x in runs[e])
                print(f"{case:<12} ratio {e} / mixedlm {t / tp:.3g} (wall), {c / cp:.3g} (cpu);  "
                      f"{e} one evaluation {ev:.2f} ms", flush=True)


def eval_seconds(problem, theta, reps: int = 20) -> float:
    problem.objective(theta, True)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        problem.objective(theta, True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(reps: int = 3, cases=None) -> None:
    cases = list(FORMULAS) if not cases else cases
    small = [c for c in cases if c in FORMULAS or c in LME4_ON_REQUEST]
    if small:
        compare_lme4(reps, small, ARGS.rows)
    for case in cases:
        if case in LARGE:
            large_case(case, reps, ARGS.rows)


def compare_lme4(reps: int, cases, rows: int | None = None) -> None:
    """mixedpy and lme4 (Rscript, same run) on the simulated cases; ``rows`` sizes the cases of
    :data:`LME4_ON_REQUEST`."""
    print("case                         mixedpy seconds   peer seconds   ratio (mixedpy/peer)")
    mp.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            if case in LME4_ON_REQUEST:
                formula, sim = LME4_ON_REQUEST[case]
                data = sim(n=rows) if rows else sim()
            else:
                formula, data = FORMULAS[case], SIMULATE[case]()
            data.to_csv(Path(tmp) / f"{case}.csv", index=False)
            c0 = _cpu()
            t, fit = time_call(lambda: mp.lmer(formula, data), reps=reps)
            cpu = (_cpu() - c0) / reps
            per = eval_seconds(fit.problem, fit.opt.x)
            r = run_r("time_engine.R", case, tmp, str(reps))
            extra = f"{fit.opt.n_evals} evals, {cpu:.2f} s cpu, {len(data):,} rows"
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
    parser.add_argument("--case", nargs="+", choices=list(FORMULAS) + list(LME4_ON_REQUEST) + list(LARGE),
                        help="cases to run (default: the lme4 cases)")
    parser.add_argument("--rows", type=int, default=None, help="rows of a large case (default: its own)")
    parser.add_argument("--child", nargs=2, metavar=("CASE", "ENGINE"), help=argparse.SUPPRESS)
    ARGS = parser.parse_args()
    if ARGS.child:
        child(ARGS.child[0], ARGS.child[1], ARGS.rows or LARGE[ARGS.child[0]][1])
    else:
        main(ARGS.reps, ARGS.case)
    sys.exit(0)
