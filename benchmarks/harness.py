"""Shared benchmark plumbing: time a call, time the same model in R (lme4/rstanarm via Rscript),
and print one row per comparison with the ratio mixedpy / peer (below 1 means mixedpy is faster).

Benchmarks measure; they never assert.  R is optional: without Rscript the R columns say so.
"""
from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "mixedpy" / "datasets" / "data"


def time_call(fn, reps: int = 3) -> tuple[float, object]:
    """Median wall-clock seconds of ``fn()`` over ``reps`` runs, and the last result."""
    times, out = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def run_r(script: str, *args: str, timeout: float = 1800) -> dict | None:
    """Run ``benchmarks/r/<script>`` with Rscript; the last stdout line is JSON.  None without R."""
    if shutil.which("Rscript") is None:
        return None
    proc = subprocess.run(["Rscript", str(HERE / "r" / script), *args], capture_output=True, text=True,
                          timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        print(f"  [R failed: {proc.stderr.strip()[-300:]}]", file=sys.stderr)
        return None
    return json.loads(lines[-1])


def lme4_seconds(case: str, reps: int | None = None) -> dict | None:
    args = [case, str(DATA)] + ([str(reps)] if reps else [])
    return run_r("time_lme4.R", *args)


def peak_rss_mib(code: str) -> float:
    """Peak resident memory (MiB) of a fresh Python process running ``code``."""
    probe = (code + "\nimport resource, sys\n"
             "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return float(proc.stderr.strip().splitlines()[-1])


def row(label: str, ours: float, peer_name: str, peer: float | None, extra: str = "") -> str:
    if peer is None:
        line = f"{label:<28} mixedpy {ours:8.3f} s   {peer_name:<12} {'n/a':>8}          {extra}"
    else:
        line = (f"{label:<28} mixedpy {ours:8.3f} s   {peer_name:<12} {peer:8.3f} s   "
                f"ratio {ours / peer:6.3g}   {extra}")
    print(line, flush=True)
    return line
