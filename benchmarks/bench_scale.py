"""Out-of-core benchmark: lmer/glmer on Dask frames on a 2-worker LocalCluster, one case per run.

    python benchmarks/bench_scale.py --case crossed --rows 20000000 --partitions 40       # (a)
    python benchmarks/bench_scale.py --case slope --rows 2000000 --partitions 8           # (a) slopes
    python benchmarks/bench_scale.py --case generated --rows 100000000 --partitions 200   # (b)
    python benchmarks/bench_scale.py --case glmer --rows 10000000 --partitions 20         # (c)
    python benchmarks/bench_scale.py --table                                              # the runs so far

Cases (a: 50,000 x 800 crossed levels by default):

* ``crossed``: ``y ~ x + (1|a) + (1|b)`` on parquet partitions (one file per partition, written by
  the workers to ``--dir``, default a temporary directory under /tmp, removed afterwards);
* ``slope``: ``y ~ x + (x|a) + (1|b)`` on the same kind of files;
* ``generated``: ``y ~ x + (1|a) + (1|b)`` on ``dd.from_map`` of a generator: every partition is
  made on a worker when a pass reads it (twice, the same rows each time) and the whole data never
  exists anywhere;
* ``glmer``: binomial ``yb ~ x + (1|a) + (1|b)`` on parquet partitions (one pass per PIRLS step).

Each run prints one JSON record and appends it to ``--results`` (default
/tmp/mixedpy-bench-scale.jsonl); ``--table`` prints every recorded run as a markdown table.
Reported: wall-clock of the fit and of its passes, the number of passes, microseconds per row per
pass, the client process's peak RSS (it hosts the LocalCluster's scheduler too; getrusage, so
one case per process), each worker's peak RSS (getrusage run on the workers), and the load
average before and after (``os.getloadavg``).  ``--memory`` adds the in-memory peer
(``pd.read_parquet`` then the same fit, after the cluster is closed) with its objective beside the
Dask one.  BLAS is pinned to one thread everywhere; on a shared machine compare ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import mixedpy as mp  # noqa: E402

FORMULAS = {"crossed": "y ~ x + (1 | a) + (1 | b)", "slope": "y ~ x + (x | a) + (1 | b)",
            "generated": "y ~ x + (1 | a) + (1 | b)", "glmer": "yb ~ x + (1 | a) + (1 | b)"}
RESULTS = "/tmp/mixedpy-bench-scale.jsonl"


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def make_partition(index: int, rows: int, n_a: int, n_b: int, seed: int) -> pd.DataFrame:
    """One partition's rows, from effects shared by every partition (same seed) and its own noise."""
    effects = np.random.default_rng(seed)
    a_eff, b_eff = effects.normal(0, 1.0, n_a), effects.normal(0, 0.5, n_b)
    a_slope = effects.normal(0, 0.3, n_a)
    rng = np.random.default_rng([seed, index])
    a = rng.integers(0, n_a, rows).astype(np.int32)
    b = rng.integers(0, n_b, rows).astype(np.int32)
    x = rng.normal(size=rows)
    y = 10.0 + 0.5 * x + a_eff[a] + b_eff[b] + a_slope[a] * x + rng.normal(size=rows)
    yb = (rng.random(rows) < 1.0 / (1.0 + np.exp(-(0.5 * x + a_eff[a] + b_eff[b] - 0.2)))).astype(np.int8)
    return pd.DataFrame({"y": y, "yb": yb, "x": x, "a": a, "b": b})


def write_partition(path: str, index: int, rows: int, n_a: int, n_b: int, seed: int) -> str:
    out = Path(path) / f"part-{index:05d}.parquet"
    make_partition(index, rows, n_a, n_b, seed).to_parquet(out, index=False)
    return str(out)


def fit_model(case: str, data):
    if case == "glmer":
        return mp.glmer(FORMULAS[case], data, family="binomial")
    return mp.lmer(FORMULAS[case], data)


def worker_peaks_mib(client) -> list[float]:
    return [round(v / 1024.0, 1) for v in client.run(
        lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss).values()]


def run(args) -> dict:
    import dask.dataframe as dd
    from distributed import Client, LocalCluster

    mp.set_num_threads(1)
    sizes = np.diff(np.linspace(0, args.rows, args.partitions + 1).round().astype(int)).tolist()
    levels = (args.levels_a, args.levels_b)
    rec = {"case": args.case, "formula": FORMULAS[args.case], "rows": args.rows, "partitions": args.partitions,
           "levels": list(levels), "workers": args.workers, "worker_memory": args.worker_memory,
           "load_before": [round(v, 2) for v in os.getloadavg()], "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    where = None
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      memory_limit=args.worker_memory, dashboard_address=":0") as cluster, Client(cluster) as client:
        client.run(lambda: mp.set_num_threads(1))
        if args.case == "generated":
            ddf = dd.from_map(make_partition, list(range(args.partitions)), sizes, [levels[0]] * args.partitions,
                              [levels[1]] * args.partitions, [args.seed] * args.partitions,
                              meta=make_partition(0, 0, 1, 1, args.seed))
        else:
            where = Path(args.dir or tempfile.mkdtemp(prefix="mixedpy-scale-", dir="/tmp"))
            where.mkdir(parents=True, exist_ok=True)
            t = time.perf_counter()
            client.gather(client.map(write_partition, [str(where)] * args.partitions, range(args.partitions), sizes,
                                     [levels[0]] * args.partitions, [levels[1]] * args.partitions,
                                     [args.seed] * args.partitions, pure=False))
            rec["write_seconds"] = round(time.perf_counter() - t, 2)
            ddf = dd.read_parquet(str(where / "*.parquet"))
        rec["client_before_fit_mib"] = round(peak_rss_mib(), 1)
        t = time.perf_counter()
        fit = fit_model(args.case, ddf)
        rec["fit_seconds"] = round(time.perf_counter() - t, 2)
        rec.update(passes=fit.passes, pass_seconds=round(fit.pass_seconds, 2),
                   us_per_row_pass=round(1e6 * fit.pass_seconds / (args.rows * max(fit.passes, 1)), 3),
                   evaluations=int(getattr(fit.problem, "n_evals", 0)), criterion=fit.criterion,
                   theta=fit.theta.round(6).tolist(), beta=np.asarray(fit.beta).round(6).tolist(),
                   client_peak_mib=round(peak_rss_mib(), 1), worker_peak_mib=worker_peaks_mib(client))
    if args.memory and where is not None:
        t = time.perf_counter()
        ref = fit_model(args.case, pd.read_parquet(where))
        rec["memory_seconds"] = round(time.perf_counter() - t, 2)
        rec["criterion_rel_diff"] = abs(rec["criterion"] - ref.criterion) / abs(ref.criterion)
        rec["memory_peak_mib"] = round(peak_rss_mib(), 1)
    if where is not None and args.dir is None:
        shutil.rmtree(where, ignore_errors=True)
    rec["load_after"] = [round(v, 2) for v in os.getloadavg()]
    return rec


def table(path: str) -> str:
    cols = ["case", "rows", "partitions", "fit_seconds", "passes", "pass_seconds", "us_per_row_pass",
            "evaluations", "client_peak_mib", "worker_peak_mib", "load_before", "load_after", "memory_seconds"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for line in Path(path).read_text().splitlines():
        rec = json.loads(line)
        lines.append("| " + " | ".join(str(rec.get(c, "")) for c in cols) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", choices=sorted(FORMULAS), default="crossed")
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--levels-a", type=int, default=50_000)
    ap.add_argument("--levels-b", type=int, default=800)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--worker-memory", default="3GiB")
    ap.add_argument("--memory", action="store_true", help="also fit the data in memory (parquet cases)")
    ap.add_argument("--dir", default=None, help="parquet directory (default: a temporary one under /tmp, removed)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--results", default=RESULTS, help="JSON-lines file each run appends to")
    ap.add_argument("--table", action="store_true", help="print the recorded runs as a markdown table and stop")
    args = ap.parse_args()
    if args.table:
        print(table(args.results))
        return
    rec = run(args)
    with open(args.results, "a") as f:
        f.write(json.dumps(rec) + "\n")
    json.dump(rec, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
