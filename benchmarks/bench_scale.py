"""Out-of-core benchmark: lmer on a parquet dataset through Dask, against the in-memory fit.

    python benchmarks/bench_scale.py                               # 2M rows, 8 partitions
    python benchmarks/bench_scale.py --rows 20000000 --partitions 40 --slope
    python benchmarks/bench_scale.py --rows 100000000 --partitions 200 --no-memory

The data are ``y ~ x + (1|a) + (1|b)`` with a: 50,000 and b: 800 levels (crossed; ``--slope`` adds
``y ~ x + (x|b) + (1|a)``, ``--glmer`` a binomial ``yb ~ x + (1|a) + (1|b)``), generated partition by partition on the workers and written as one
parquet file per partition, so no process ever holds the whole data except the in-memory peer.
The Dask fit runs on a LocalCluster of ``--workers`` single-threaded worker processes; reported:
wall-clock, the passes over the data, the client's and each worker's peak RSS, and the in-memory
fit (``pd.read_parquet`` then ``mp.lmer``) on the same files with its objective beside the Dask one.
BLAS is pinned to one thread everywhere (OMP/OPENBLAS env before the workers start, and
``mp.set_num_threads(1)``); on a shared machine compare the ratio, not the seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import mixedpy as mp  # noqa: E402

FORMULAS = {"crossed": "y ~ x + (1 | a) + (1 | b)", "slope": "y ~ x + (x | b) + (1 | a)",
            "glmer": "yb ~ x + (1 | a) + (1 | b)"}


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def write_partition(path: str, index: int, rows: int, n_a: int, n_b: int, seed: int) -> str:
    """One partition's rows, from effects shared by every partition (same seed) and its own noise."""
    effects = np.random.default_rng(seed)
    a_eff, b_eff = effects.normal(0, 1.0, n_a), effects.normal(0, 0.5, n_b)
    b_slope = effects.normal(0, 0.3, n_b)
    rng = np.random.default_rng([seed, index])
    a = rng.integers(0, n_a, rows).astype(np.int32)
    b = rng.integers(0, n_b, rows).astype(np.int32)
    x = rng.normal(size=rows)
    y = 10.0 + 0.5 * x + a_eff[a] + b_eff[b] + b_slope[b] * x + rng.normal(size=rows)
    yb = (rng.random(rows) < 1.0 / (1.0 + np.exp(-(0.5 * x + a_eff[a] + b_eff[b] - 0.2)))).astype(np.int8)
    out = Path(path) / f"part-{index:05d}.parquet"
    pd.DataFrame({"y": y, "yb": yb, "x": x, "a": a, "b": b}).to_parquet(out, index=False)
    return str(out)


def fit_model(name: str, data):
    if name == "glmer":
        return mp.glmer(FORMULAS[name], data, family="binomial")
    return mp.lmer(FORMULAS[name], data)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--levels-a", type=int, default=50_000)
    ap.add_argument("--levels-b", type=int, default=800)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--worker-memory", default="3GiB")
    ap.add_argument("--slope", action="store_true", help="also fit the random-slope model")
    ap.add_argument("--glmer", action="store_true", help="also fit the binomial GLMM (one pass per PIRLS step)")
    ap.add_argument("--no-memory", action="store_true", help="skip the in-memory peer fit")
    ap.add_argument("--dir", default=None, help="parquet directory (default: a temporary one, removed)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    import dask.dataframe as dd
    from distributed import Client, LocalCluster

    mp.set_num_threads(1)
    where = Path(args.dir or tempfile.mkdtemp(prefix="mixedpy-scale-"))
    where.mkdir(parents=True, exist_ok=True)
    sizes = np.diff(np.linspace(0, args.rows, args.partitions + 1).round().astype(int))
    result = {"rows": args.rows, "partitions": args.partitions, "levels": [args.levels_a, args.levels_b],
              "workers": args.workers, "fits": {}}
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      memory_limit=args.worker_memory, dashboard_address=":0") as cluster, Client(cluster) as client:
        t = time.perf_counter()
        futures = client.map(write_partition, [str(where)] * args.partitions, range(args.partitions),
                             sizes.tolist(), [args.levels_a] * args.partitions, [args.levels_b] * args.partitions,
                             [args.seed] * args.partitions, pure=False)
        client.gather(futures)
        result["write_seconds"] = round(time.perf_counter() - t, 2)
        client.run(lambda: mp.set_num_threads(1))
        ddf = dd.read_parquet(str(where / "*.parquet"))
        models = ["crossed"] + (["slope"] if args.slope else []) + (["glmer"] if args.glmer else [])
        for name in models:
            t = time.perf_counter()
            fit = fit_model(name, ddf)
            result["fits"][name] = {"formula": FORMULAS[name], "dask_seconds": round(time.perf_counter() - t, 2),
                                    "passes": fit.passes, "pass_seconds": round(fit.pass_seconds, 2),
                                    "criterion": fit.criterion,
                                    "theta": fit.theta.round(6).tolist(), "beta": fit.beta.round(6).tolist()}
        result["client_peak_mib"] = round(peak_rss_mib(), 1)
        result["worker_peak_mib"] = [round(v / 1024.0, 1) for v in client.run(
            lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss).values()]
    if not args.no_memory:
        t = time.perf_counter()
        df = pd.read_parquet(where)
        result["memory_read_seconds"] = round(time.perf_counter() - t, 2)
        for name, entry in result["fits"].items():
            t = time.perf_counter()
            ref = fit_model(name, df)
            entry["memory_seconds"] = round(time.perf_counter() - t, 2)
            entry["criterion_rel_diff"] = abs(entry["criterion"] - ref.criterion) / abs(ref.criterion)
        result["memory_peak_mib"] = round(peak_rss_mib(), 1)
    if args.dir is None:
        shutil.rmtree(where, ignore_errors=True)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
