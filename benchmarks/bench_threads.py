"""BLAS threads on a shared machine: mixedpy's thread control against OpenBLAS's default threads,
lme4 (Rscript) and mixedlm (Rust), idle and with one core kept busy, in one run.

    python benchmarks/bench_threads.py [--quick] [--no-r]

"default threads" is mixedpy with ``mp.set_num_threads(os.cpu_count())``, i.e. every dense block on
OpenBLAS's one-thread-per-core default, which is how every fit ran before the thread control.  The
busy core is a second Python process spinning for the whole measurement.  Cases: InstEval's first
10,000 rows and the whole of InstEval (73,421 rows), y ~ service + (1|s) + (1|d) + (1|dept:service).
"""
from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import warnings

import mixedpy as mp
from harness import lme4_seconds, row, time_call

warnings.simplefilter("ignore")
FORMULA = "y ~ service + (1 | s) + (1 | d) + (1 | dept:service)"


@contextlib.contextmanager
def busy_core(on: bool):
    """A second process keeping one core busy while the block runs."""
    if not on:
        yield
        return
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        proc.kill()
        proc.wait()


def interleaved(settings, data, reps: int):
    """Median seconds of mp.lmer under each thread setting, the settings alternating in turn and in
    reversed order every other round, so that drifts of a shared machine hit them alike."""
    times = {i: [] for i in range(len(settings))}
    fit = None
    for r in range(reps):
        order = range(len(settings)) if r % 2 == 0 else reversed(range(len(settings)))
        for i in order:
            mp.set_num_threads(settings[i])
            t, fit = time_call(lambda: mp.lmer(FORMULA, data), reps=1)
            times[i].append(t)
    mp.set_num_threads(None)
    return [statistics.median(times[i]) for i in range(len(settings))], fit


def mixedlm_seconds(data, reps: int) -> float | None:
    try:
        import mixedlm
    except ImportError:
        return None
    t, _ = time_call(lambda: mixedlm.lmer(FORMULA, data), reps=reps)
    return t


def main(quick: bool, use_r: bool) -> None:
    ie = mp.datasets.load("insteval")
    cases = [("insteval10k", ie.iloc[:10_000].copy(), 6)]
    mp.lmer(FORMULA, cases[0][1])  # warm-up: first-call costs (imports, BLAS start-up) are not timed
    if not quick:
        cases.append(("insteval", ie, 2))
    for busy in (False, True):
        print(f"--- {'one core busy' if busy else 'idle'} ---")
        for case, data, reps in cases:
            with busy_core(busy):
                (t_auto, t_default), fit = interleaved([None, os.cpu_count()], data, reps)
                r = lme4_seconds(case, min(reps, 3)) if use_r else None
                t_mixedlm = mixedlm_seconds(data, min(reps, 3))
            row(case, t_auto, "default thr", t_default)
            row(case, t_auto, "lme4", r and r["seconds"],
                f"REML diff {fit.criterion - r['deviance']:+.1e}" if r else "")
            row(case, t_auto, "mixedlm", t_mixedlm)


if __name__ == "__main__":
    main(quick="--quick" in sys.argv, use_r="--no-r" not in sys.argv)
