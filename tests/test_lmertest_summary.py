"""lmerTest's printed summary(m, ddf=...) and the single-fit anova(m) (issue 12 items 1 and 2).

Reference text: tests/reference/gen/lmertest_summary.R (lmerTest 3.1-3, pbkrtest 0.5.2), compared
line by line in mixedpy's conventions for R's text (test_outputs.py): ASCII quotes (R's C locale)
and no trailing blanks.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedpy as mp
from mixedpy.lmertest_print import cat_fill, strwrap
from mixedpy.printing import format_pvalues
from mixedpy.results import LmerFit
from test_lmertest import case_fit, ref_frame

REF = Path(__file__).parent / "reference" / "lmertest_summary"
LT = Path(__file__).parent / "reference" / "lmertest"
ROOT = Path(__file__).parent.parent


def r_lines(name: str) -> list[str]:
    text = (REF / f"{name}.txt").read_text(encoding="utf-8")
    return [line.replace("\u2018", "'").replace("\u2019", "'").rstrip() for line in text.splitlines()]


def at_lme4_theta(fit, case: str):
    """The fit profiled at lme4's theta (the optimum differs by ~1e-5, which shows in the last
    printed digits of the residual quantiles and df), keeping its data name for the Data line."""
    theta = json.loads((LT / f"{case}.json").read_text())["theta"]
    state = fit.problem.profile(np.atleast_1d(np.asarray(theta, dtype=float)))
    return LmerFit(fit.design, fit.problem, fit.reml, fit.opt, state, [], data_name=fit.data_name)


@pytest.fixture(scope="module")
def fits():
    sleepstudy = pd.read_csv(ROOT / "mixedpy/datasets/data/sleepstudy.csv")
    sleepstudy["Subject"] = sleepstudy["Subject"].astype(str)
    repeated = pd.read_csv(LT / "repeated.csv")
    crossed = pd.read_csv(LT / "crossed.csv")
    return {"sleepstudy": at_lme4_theta(mp.lmer("Reaction ~ Days + (Days | Subject)", sleepstudy), "sleepstudy_slope"),
            "sleepstudy_ml": at_lme4_theta(mp.lmer("Reaction ~ Days + (Days | Subject)", sleepstudy, REML=False),
                                           "sleepstudy_slope_ml"),
            "repeated": at_lme4_theta(mp.lmer("y ~ week * group + (week | subject)", repeated), "repeated"),
            "crossed": at_lme4_theta(mp.lmer("y ~ A * B + (1 | subj) + (1 | item)", crossed), "crossed")}


@pytest.mark.parametrize("name", ["sleepstudy_Satterthwaite", "sleepstudy_Kenward-Roger", "sleepstudy_ml_Satterthwaite",
                                  "repeated_Satterthwaite", "repeated_Kenward-Roger", "crossed_Satterthwaite"])
def test_summary_with_ddf_is_lmertests_line_for_line(fits, name):
    model, ddf = name.rsplit("_", 1)
    ours = [line.rstrip() for line in fits[model].summary(ddf=ddf).splitlines()]
    assert ours == r_lines(name)


def test_ml_title_wraps_as_lme4s_methtit(fits):
    ours = fits["sleepstudy_ml"].summary(ddf="Satterthwaite").sections["title"]
    assert ours == r_lines("sleepstudy_ml_Satterthwaite")[:2]
    assert ours == ["Linear mixed model fit by maximum likelihood . t-tests use Satterthwaite's",
                    "  method [lmerModLmerTest]"]


def test_summary_defaults_to_satterthwaite_as_lmertest(fits):
    """issue 12: lmerTest's summary(m) (no ddf) uses Satterthwaite's df; summary(ddf="lme4") keeps
    lme4's printout (the defect: summary() printed lme4's table without df)."""
    fit = fits["sleepstudy"]
    assert [line.rstrip() for line in fit.summary().splitlines()] == r_lines("sleepstudy_Satterthwaite")
    assert fit.summary() == fit.summary(ddf="Satterthwaite")
    assert fit.summary(ddf="lme4").sections["title"] == ["Linear mixed model fit by REML ['lmerMod']"]
    assert "df" not in fit.summary(ddf="lme4").sections["fixed"][1].split()
    gm = mp.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", mp.datasets.load("cbpp"),
                  family="binomial")
    with pytest.raises(ValueError, match="lmerTest"):
        gm.summary(ddf="Satterthwaite")


def test_r_text_helpers():
    # R: strwrap("aa bb cc", width = 6) = "aa bb" "cc"; cat(c("abc", "de"), sep = "", fill = 4) = "abc\nde"
    assert strwrap("aa bb cc", 6) == ["aa bb", "cc"]
    assert cat_fill(["abc", "de"], width=4) == ["abc", "de"]


def test_correlation_names_are_abbreviated_uniquely_as_r(fits):
    """R's abbreviate() lengthens colliding abbreviations (the defect: wk:grp for both interactions)."""
    corr = "\n".join(fits["repeated"].summary().sections["correlation"]).splitlines()
    assert corr[2].split() == ["(Intr)", "week", "grouph", "groupl", "wk:grph"]
    assert [line.split()[0] for line in corr[3:]] == ["week", "grouphi", "grouplo", "week:grouph", "week:groupl"]


def test_pvalue_below_eps_has_rs_spacing():
    """format.pval: "<2e-16" next to values of at most 6 characters, "< 2e-16" next to longer ones
    (the defect: mixedpy always wrote "< 2e-16")."""
    assert format_pvalues(np.array([1e-20, 0.0629])) == ["<2e-16", "0.0629"]
    assert format_pvalues(np.array([1e-20, 3.26e-06])) == ["< 2e-16", "3.26e-06"]


def test_scaled_residuals_zapsmall_rounds_digits_as_r(fits):
    """R's zapsmall rounds to round(5 - log10(max)) decimals, 5 here, not 5 - ceiling(log10(max))
    (the defect: -2.7523 instead of lme4's -2.75233)."""
    assert "-2.75233 -0.51599  0.02225  0.59806  2.39400" in [line.rstrip() for line in
                                                             fits["repeated"].summary().splitlines()]


@pytest.mark.parametrize("type", [1, 2, 3])
@pytest.mark.parametrize("ddf", ["Satterthwaite", "Kenward-Roger"])
def test_anova_of_one_fit_is_lmertests_f_table(type, ddf):
    ref, fit = case_fit("repeated")
    want = ref_frame(ref["anova"][f"{type}_{ddf}"])
    got = mp.anova(fit, type=type, ddf=ddf)
    assert list(got.index) == list(want.index) == ["week", "group", "week:group"]
    for col, rtol in (("F value", 1e-4), ("DenDF", 1e-3), ("Pr(>F)", 1e-3)):
        np.testing.assert_allclose(got[col].to_numpy(float), want[col].to_numpy(float), rtol=rtol, err_msg=col)


def test_anova_of_several_fits_keeps_the_likelihood_ratio_test(fits):
    d = pd.read_csv(LT / "repeated.csv")
    f0 = mp.lmer("y ~ week + group + (week | subject)", d, REML=False)
    f1 = mp.lmer("y ~ week * group + (week | subject)", d, REML=False)
    tab = mp.anova(f0, f1)
    assert list(tab.columns) == ["npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "Pr(>Chisq)"]
    assert tab["Chisq"].iloc[1] == pytest.approx(2 * (f1.loglik - f0.loglik))
    gm = mp.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", mp.datasets.load("cbpp"),
                  family="binomial")
    with pytest.raises(TypeError, match="F table"):
        mp.anova(gm)
