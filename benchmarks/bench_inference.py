"""Small-sample inference: mixedpy's Satterthwaite and Kenward-Roger tables vs lmerTest/pbkrtest.

    python benchmarks/bench_inference.py

Model: InstEval, ``y ~ service + (1 | s) + (1 | d) + (1 | dept:service)`` (73,421 rows,
q = 4,128 random effects), REML.  Issue 12 asks for both tables from the blocked factor, never an
n x n matrix, so that they scale to InstEval in seconds.

* Satterthwaite, full InstEval: mixedpy vs lmerTest (``summary(m, ddf="Satterthwaite")``).
* Kenward-Roger, InstEval's first 2,000 rows: mixedpy vs lmerTest/pbkrtest, which forms n x n
  matrices (emmeans switches KR off above 3,000 rows).  Full InstEval: mixedpy only.

Only the table is timed, not the lmer fit; the largest relative df difference to R is printed.
"""
from __future__ import annotations

import warnings

import numpy as np

import mixedpy as mp
from harness import DATA, row, run_r, time_call

warnings.simplefilter("ignore")
FORMULA = "y ~ service + (1 | s) + (1 | d) + (1 | dept:service)"


def _fresh_table(fit, ddf: str):
    """coef_table with the per-fit caches emptied, so each rep does the whole computation."""
    from mixedpy import kenward_roger, satterthwaite
    satterthwaite._cache.clear()
    kenward_roger._cache.clear()
    return mp.coef_table(fit, ddf=ddf)


def _df_diff(table, r_df) -> str:
    if r_df is None or r_df == "NA":
        return ""
    got, want = table["df"].to_numpy(), np.asarray(r_df, dtype=float)
    return f"max rel df diff {np.max(np.abs(got - want) / want):.1e}"


def main() -> None:
    mp.set_num_threads(1)
    print("case                         mixedpy seconds   peer seconds   ratio (mixedpy/peer)")
    data = mp.datasets.load("insteval")
    for case, d in (("insteval", data), ("insteval2000", data.head(2000))):
        fit = mp.lmer(FORMULA, d)
        r = run_r("time_lmertest.R", case, str(DATA))
        t_s, tab = time_call(lambda: _fresh_table(fit, "Satterthwaite"), reps=3)
        row(f"{case} Satterthwaite", t_s, "lmerTest", r and r["satterthwaite_seconds"],
            _df_diff(tab, r and r["df_satterthwaite"]))
        t_kr, tab = time_call(lambda: _fresh_table(fit, "Kenward-Roger"), reps=1 if case == "insteval" else 3)
        kr_peer = r and r["kr_seconds"]
        row(f"{case} Kenward-Roger", t_kr, "pbkrtest", kr_peer if kr_peer not in (None, "NA") else None,
            _df_diff(tab, r and r["df_kr"]) or "pbkrtest forms n x n matrices: not run at this size")


if __name__ == "__main__":
    main()
