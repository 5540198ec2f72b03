"""lmer: mixedpy vs lme4 (Rscript) vs statsmodels MixedLM, in one run.

    python benchmarks/bench_lmer.py [--quick]

Cases: sleepstudy (Days | Subject), Exam (standLRT | school), InstEval
(y ~ service + (1|s) + (1|d) + (1|dept:service), 73,421 rows).  statsmodels has no crossed random
effects apart from variance components inside one all-encompassing group, which does not finish on
InstEval in reasonable time; it is timed (in a subprocess, stopped after 15 minutes) on a 5,000-row
slice with (1|s) + (1|d), and mixedpy on the same slice.  Targets (issue 2): InstEval at most half of lme4's time, sleepstudy no slower than
lme4, InstEval peak memory under 1 GiB.
"""
from __future__ import annotations

import subprocess
import sys
import warnings

import statsmodels.formula.api as smf

import mixedpy as mp
from harness import lme4_seconds, peak_rss_mib, row, time_call

warnings.simplefilter("ignore")


def statsmodels_fit(formula, data, groups, re_formula=None, vc=None):
    model = smf.mixedlm(formula, data, groups=groups, re_formula=re_formula, vc_formula=vc)
    return model.fit(reml=True)


def main(quick: bool = False) -> None:
    print("case                         mixedpy seconds   peer seconds   ratio (mixedpy/peer)")
    # (case, lme4 formula, statsmodels fixed part, groups, re_formula, repetitions mixedpy/statsmodels)
    small = [("sleepstudy", "Reaction ~ Days + (Days | Subject)", "Reaction ~ Days", "Subject", "~Days", 20, 5),
             ("exam", "normexam ~ standLRT + sex + (standLRT | school)", "normexam ~ standLRT + sex", "school",
              "~standLRT", 5, 1)]
    for case, formula, fixed, groups, re_formula, reps, sm_reps in small:
        data = mp.datasets.load(case)
        t, fit = time_call(lambda: mp.lmer(formula, data), reps=reps)
        r = lme4_seconds(case, reps)
        row(case, t, "lme4", r and r["seconds"], f"REML diff {fit.criterion - r['deviance']:+.1e}" if r else "")
        ts, _ = time_call(lambda: statsmodels_fit(fixed, data, groups, re_formula), reps=sm_reps)
        row(case, t, "statsmodels", ts)

    ie = mp.datasets.load("insteval")
    formula = "y ~ service + (1 | s) + (1 | d) + (1 | dept:service)"
    t, fit = time_call(lambda: mp.lmer(formula, ie), reps=1 if quick else 3)
    r = None if quick else lme4_seconds("insteval", 1)
    row("insteval", t, "lme4", r and r["seconds"],
        f"REML diff {fit.criterion - r['deviance']:+.1e}, {fit.opt.n_evals} evals" if r else f"{fit.opt.n_evals} evals")
    mem = peak_rss_mib("import mixedpy as mp\nmp.lmer('%s', mp.datasets.load('insteval'))" % formula)
    print(f"insteval peak RSS (whole Python process): {mem:.0f} MiB (target < 1024)")

    sl = ie.iloc[:SLICE_ROWS].copy()
    t, _ = time_call(lambda: mp.lmer("y ~ service + (1 | s) + (1 | d)", sl), reps=3)
    label = f"insteval {SLICE_ROWS} rows (s, d)"
    if quick:
        row(label, t, "statsmodels", None, "skipped with --quick")
    else:
        ts = statsmodels_crossed_seconds(SLICE_ROWS, STATSMODELS_TIMEOUT)
        row(label, t, "statsmodels", ts, "" if ts else f"statsmodels did not finish in {STATSMODELS_TIMEOUT} s")


SLICE_ROWS = 5000
STATSMODELS_TIMEOUT = 900


def statsmodels_crossed_seconds(rows: int, timeout: float) -> float | None:
    """statsmodels' crossed fit (variance components in one all-encompassing group) in a separate
    process, so a fit that takes too long can be stopped; None when it does not finish in time."""
    code = f"""
import time, warnings
warnings.simplefilter("ignore")
import statsmodels.formula.api as smf
import mixedpy as mp
sl = mp.datasets.load("insteval").iloc[:{rows}].assign(one=1)
t0 = time.perf_counter()
smf.mixedlm("y ~ service", sl, groups="one", vc_formula={{"s": "0 + C(s)", "d": "0 + C(d)"}}).fit(reml=True)
print(time.perf_counter() - t0)
"""
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    return float(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else None


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
