"""hatvalues on InstEval from the blocked factor vs the per-row forward solves and vs lme4.

    python benchmarks/bench_influence.py [--no-r]

Model: InstEval, ``y ~ service + (1 | s) + (1 | d) + (1 | dept)`` (73,421 rows, q = 4,114), REML.
mixedpy.row_quadratic forms S^{-1} of the blocks after the first term (1,144 square) once and
gathers each row's few entries; the peer in the same run is the previous method, forward solves
L c = r_i' on blocks of rows (kept as the fallback for a large S, forced here with
``SCHUR_INVERSE_ELEMENTS = 0``), and lme4's ``hatvalues.merMod`` (``r/time_hatvalues.R``).
Only hatvalues is timed, not the fit; one BLAS thread.
"""
from __future__ import annotations

import sys
import warnings

import numpy as np

import mixedpy as mp
from harness import DATA, row, run_r, time_call
from mixedpy import row_quadratic

warnings.simplefilter("ignore")
FORMULA = "y ~ service + (1 | s) + (1 | d) + (1 | dept)"


def main() -> None:
    mp.set_num_threads(1)
    fit = mp.lmer(FORMULA, mp.datasets.load("insteval"))
    t_new, h_new = time_call(lambda: mp.hatvalues(fit), reps=3)
    limit = row_quadratic.SCHUR_INVERSE_ELEMENTS
    row_quadratic.SCHUR_INVERSE_ELEMENTS = 0
    try:
        t_old, h_old = time_call(lambda: mp.hatvalues(fit), reps=1)
    finally:
        row_quadratic.SCHUR_INVERSE_ELEMENTS = limit
    diff = np.max(np.abs(h_new.to_numpy() - h_old.to_numpy()) / h_old.to_numpy())
    print("case                         mixedpy seconds   peer seconds   ratio (mixedpy/peer)")
    row("insteval hatvalues", t_new, "row solves", t_old, f"max rel diff {diff:.1e}")
    r = None if "--no-r" in sys.argv else run_r("time_hatvalues.R", str(DATA))
    row("insteval hatvalues", t_new, "lme4", r and r["hatvalues_seconds"],
        r and f"sum {h_new.sum():.6f} vs lme4 {r['hat_sum']:.6f}" or "")


if __name__ == "__main__":
    main()
