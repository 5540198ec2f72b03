"""glmer: mixedpy vs lme4 (Rscript), in one run.

    python benchmarks/bench_glmer.py [--quick]

Case: VerbAgg, ``r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)``, binomial, Laplace
(7,584 rows, 316 subjects crossed with 24 items).  Target (issue 4): no slower than lme4.
Also reported: the -2 log-likelihood difference to lme4 and the largest relative fixef difference,
and (mixedpy only) cbpp and grouseticks timings.
"""
from __future__ import annotations

import sys
import warnings

import numpy as np

import mixedpy as mp
from harness import lme4_seconds, row, time_call

warnings.simplefilter("ignore")


def main(quick: bool = False) -> None:
    print("case                         mixedpy seconds   peer seconds   ratio (mixedpy/peer)")
    va = mp.datasets.load("verbagg")
    formula = "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)"
    t, fit = time_call(lambda: mp.glmer(formula, va, family="binomial"), reps=1 if quick else 3)
    r = None if quick else lme4_seconds("verbagg", 3)
    extra = f"{fit.problem.n_evals} objective evaluations"
    if r:
        dfx = np.max(np.abs(fit.beta - np.asarray(r["fixef"])) / np.abs(np.asarray(r["fixef"])))
        extra = f"-2logLik diff {-2 * fit.loglik - r['deviance']:+.1e}, max rel fixef diff {dfx:.1e}, " + extra
    row("verbagg (1|id)+(1|item)", t, "lme4", r and r["seconds"], extra)

    cb = mp.datasets.load("cbpp")
    for nagq in (1, 25):
        t, _ = time_call(lambda: mp.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cb,
                                          family="binomial", nAGQ=nagq), reps=5)
        row(f"cbpp nAGQ={nagq}", t, "lme4", None, "mixedpy only")
    gt = mp.datasets.load("grouseticks")
    t, _ = time_call(lambda: mp.glmer("TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)", gt,
                                      family="poisson"), reps=3)
    row("grouseticks poisson", t, "lme4", None, "mixedpy only")


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
