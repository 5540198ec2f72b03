"""lmer: mixedpy vs lme4 (Rscript) vs statsmodels MixedLM, in one run.

    python benchmarks/bench_lmer.py [--quick]

Cases: sleepstudy (Days | Subject), Exam (standLRT | school), InstEval
(y ~ service + (1|s) + (1|d) + (1|dept:service), 73,421 rows).  statsmodels has no crossed random
effects apart from variance components inside one all-encompassing group, which does not finish on
InstEval in reasonable time; it is timed on a 5,000-row slice with (1|s) + (1|d), and mixedpy on
the same slice.  Targets (issue 2): InstEval at most half of lme4's time, sleepstudy no slower than
lme4, InstEval peak memory under 1 GiB.
"""
from __future__ import annotations

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
    sleep = mp.datasets.load("sleepstudy")
    t, fit = time_call(lambda: mp.lmer("Reaction ~ Days + (Days | Subject)", sleep), reps=20)
    r = lme4_seconds("sleepstudy", 20)
    row("sleepstudy", t, "lme4", r and r["seconds"], f"REML diff {fit.criterion - r['deviance']:+.1e}" if r else "")
    ts, _ = time_call(lambda: statsmodels_fit("Reaction ~ Days", sleep, "Subject", "~Days"), reps=5)
    row("sleepstudy", t, "statsmodels", ts)

    exam = mp.datasets.load("exam")
    t, fit = time_call(lambda: mp.lmer("normexam ~ standLRT + sex + (standLRT | school)", exam), reps=5)
    r = lme4_seconds("exam", 5)
    row("exam", t, "lme4", r and r["seconds"], f"REML diff {fit.criterion - r['deviance']:+.1e}" if r else "")
    ts, _ = time_call(lambda: statsmodels_fit("normexam ~ standLRT + sex", exam, "school", "~standLRT"), reps=1)
    row("exam", t, "statsmodels", ts)

    ie = mp.datasets.load("insteval")
    formula = "y ~ service + (1 | s) + (1 | d) + (1 | dept:service)"
    t, fit = time_call(lambda: mp.lmer(formula, ie), reps=1 if quick else 3)
    r = None if quick else lme4_seconds("insteval", 1)
    row("insteval", t, "lme4", r and r["seconds"],
        f"REML diff {fit.criterion - r['deviance']:+.1e}, {fit.opt.n_evals} evals" if r else f"{fit.opt.n_evals} evals")
    mem = peak_rss_mib("import mixedpy as mp\nmp.lmer('%s', mp.datasets.load('insteval'))" % formula)
    print(f"insteval peak RSS (whole Python process): {mem:.0f} MiB (target < 1024)")

    sl = ie.iloc[:5000].copy()
    sl["one"] = 1
    t, _ = time_call(lambda: mp.lmer("y ~ service + (1 | s) + (1 | d)", sl), reps=3)
    if quick:
        row("insteval 5k slice (s, d)", t, "statsmodels", None, "skipped with --quick")
    else:
        ts, _ = time_call(lambda: statsmodels_fit("y ~ service", sl, "one", None,
                                                  {"s": "0 + C(s)", "d": "0 + C(d)"}), reps=1)
        row("insteval 5k slice (s, d)", t, "statsmodels", ts)


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
