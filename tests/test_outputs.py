"""Issue 14, "Printing and outputs": text results that show as text, ranef's conditional SDs in view,
predictions indexed by their rows, Python help pointers in the Bayesian print, and lme4's
optimizer/control arguments for lmer and glmer.

R's values: tests/reference/outputs/outputs.json (tests/reference/gen/outputs.R, lme4 1.1-31)."""
from __future__ import annotations

import dataclasses
import pickle
import re
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

import mixedpy as mp
from mixedpy.control import ControlError, ConvCheck
from mixedpy.errors import ConvergenceError
from mixedpy.printing import Summary, Text

from conftest import load_ref, ref_data

SLEEP = "Reaction ~ Days + (Days | Subject)"
CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"


@pytest.fixture(scope="module")
def ref():
    return load_ref("outputs", "outputs")


@pytest.fixture(scope="module")
def sleep():
    return ref_data("sleepstudy.csv")


@pytest.fixture(scope="module")
def cbpp():
    return ref_data("cbpp.csv")


@pytest.fixture(scope="module")
def fit(sleep):
    return mp.lmer(SLEEP, sleep)


@pytest.fixture(scope="module")
def gfit(cbpp):
    return mp.glmer(CBPP, cbpp, family="binomial")


def quiet(f, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f(*args, **kwargs)


def _r_lines(lines: list[str]) -> list[str]:
    """R's printed lines in mixedpy's conventions: the wrapped title joined, no Data/Control lines
    (the call's argument names differ), ASCII quotes (R's C locale), no trailing blanks."""
    out: list[str] = []
    for line in lines:
        if line.startswith(("   Data:", "Control:")):
            continue
        if line.startswith("  ") and out and out[-1].startswith("Generalized linear mixed model"):
            out[-1] += " " + line.strip()
            continue
        out.append(line.replace("\u2018", "'").replace("\u2019", "'").rstrip())
    return out


# ---- 1. text results -------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["summary_sleepstudy", "summary_cbpp"])
def test_summary_text_is_lme4s_line_for_line(which, fit, gfit, ref):
    s = (fit if which == "summary_sleepstudy" else gfit).summary(ddf="lme4")
    assert isinstance(s, Summary) and isinstance(s, str)
    ours = [line.rstrip() for line in s.splitlines() if not line.startswith("   Data:")]
    assert ours == _r_lines(ref[which])


def test_scaled_residuals_are_zapsmall_as_lme4(fit):
    """lme4 zapsmall()s the quartiles to digits + 1 before printing them with 4 digits: -3.9536, not
    -3.95357 (the defect: mixedpy printed five decimals because the median is 0.0231)."""
    s = fit.summary()
    assert "-3.9536 -0.4634  0.0231  0.4634  5.1793 " in s.splitlines()


def test_text_results_show_as_text_at_the_prompt(fit, gfit):
    for text in (fit.summary(ddf="lme4"), gfit.summary(), mp.display(fit), mp.display(gfit, detail=True)):
        assert isinstance(text, Text) and isinstance(text, str)
        assert repr(text) == str(text) == text.as_text()   # the prompt shows the text, not a literal
        assert "\n" in repr(text) and not repr(text).startswith("'")
        html = text._repr_html_()
        assert html.startswith("<pre>") and html.endswith("</pre>")
        assert "'" not in html and "<" not in html[5:-6]   # escaped
    assert "&#x27;lmerMod&#x27;" in fit.summary(ddf="lme4")._repr_html_()


def test_display_at_a_prompt_returns_without_printing(fit, capsys, monkeypatch):
    monkeypatch.setattr(sys, "ps1", ">>> ", raising=False)   # an interactive prompt
    text = mp.display(fit)
    assert capsys.readouterr().out == ""   # the prompt echoes it once; nothing is printed before
    assert text == mp.display(fit, print_output=False)
    assert text.endswith("deviance = 1751.9 ")
    monkeypatch.delattr(sys, "ps1")
    assert mp.display(fit, print_output=False) == text and capsys.readouterr().out == ""


def test_summary_sections_rebuild_the_text_and_can_be_replaced(fit):
    s = fit.summary(ddf="lme4")
    assert list(s.sections) == ["title", "call", "criterion", "residuals", "random", "fixed", "correlation",
                                "notes"]
    assert "\n".join(line for lines in s.sections.values() for line in lines) == s
    assert s.sections["title"] == ["Linear mixed model fit by REML ['lmerMod']"]
    assert s.sections["fixed"][0] == "Fixed effects:"
    # what lmerTest's summary does: a new title and coefficient table, the rest as lme4 prints it
    t = s.with_sections(title=["Linear mixed model fit by REML. t-tests use Satterthwaite's method"],
                        fixed=["Fixed effects:", "table"])
    assert t.splitlines()[0].endswith("Satterthwaite's method")
    assert t.split("Random effects:")[1].split("Fixed effects:")[0] == s.split("Random effects:")[1].split(
        "Fixed effects:")[0]
    assert "table" in t.splitlines() and "Correlation of Fixed Effects:" in t
    with pytest.raises(KeyError, match="sections are"):
        s.with_sections(coefficients=[])
    again = pickle.loads(pickle.dumps(s))
    assert isinstance(again, Summary) and again == s and again.sections == s.sections


def test_varcorr_and_fits_have_html(fit):
    assert mp.VarCorr(fit)._repr_html_() == "<pre>" + str(mp.VarCorr(fit)) + "</pre>"
    assert fit._repr_html_().startswith("<pre>Linear mixed model fit by REML [&#x27;lmerMod&#x27;]")


# ---- 2. ranef's conditional SDs ---------------------------------------------------------------------
@pytest.mark.parametrize("key,formula", [("ranef_sleepstudy", SLEEP),
                                         ("ranef_two_terms", "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)")])
def test_ranef_to_frame_is_lme4s_as_data_frame(key, formula, sleep, ref):
    r = mp.ranef(mp.lmer(formula, sleep), condvar=True)
    got, want = r.to_frame(), ref[key]
    assert list(got.columns) == ["grpvar", "term", "grp", "condval", "condsd"]
    for col in ("grpvar", "term", "grp"):
        assert got[col].tolist() == want[col]
    np.testing.assert_allclose(got["condval"], want["condval"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got["condsd"], want["condsd"], rtol=1e-5)


def test_ranef_keeps_attrs_and_shows_condsd(fit):
    r = mp.ranef(fit, condvar=True)
    assert isinstance(r, dict)
    pd.testing.assert_frame_equal(r.condsd["Subject"], r["Subject"].attrs["condsd"])
    assert r["Subject"].attrs["postVar"][0].shape == (18, 2, 2)
    pd.testing.assert_frame_equal(r.condsd["Subject"], mp.se_ranef(fit)["Subject"])
    plain = mp.ranef(fit)
    assert list(plain.to_frame().columns) == ["grpvar", "term", "grp", "condval"]
    with pytest.raises(AttributeError, match="condvar=True"):
        plain.condsd


# ---- 3. predict ------------------------------------------------------------------------------------
def test_predict_is_a_series_indexed_like_newdata(fit):
    ref = load_ref("sleepstudy_reml")
    nd = pd.DataFrame(ref["predict"]["newdata"])
    nd["Subject"] = nd["Subject"].astype(str)
    nd.index = [f"row{i}" for i in range(len(nd))][::-1]
    p = fit.predict(nd, allow_new_levels=True)
    assert isinstance(p, pd.Series) and p.index.equals(nd.index)
    np.testing.assert_allclose(p.to_numpy(), ref["predict"]["with_re"], rtol=1e-5)
    dup = pd.concat([nd.iloc[:2], nd.iloc[:2]])   # repeated labels are kept, not realigned
    np.testing.assert_allclose(fit.predict(dup, re_form="~0").to_numpy(),
                               np.tile(ref["predict"]["fixed_only"][:2], 2), rtol=1e-6)


def test_predict_without_newdata_is_indexed_like_the_rows_used(sleep):
    data = sleep.copy()
    data.index = data.index + 1000
    data.loc[1003, "Reaction"] = np.nan
    f = quiet(mp.lmer, SLEEP, data)
    p = f.predict()
    assert p.index.equals(data.index.drop(1003))
    np.testing.assert_allclose(p.to_numpy(), f.fitted)


def test_glmer_predict_series_link_and_response(gfit, cbpp):
    nd = cbpp.iloc[[5, 1, 30]]
    link = gfit.predict(nd)
    resp = gfit.predict(nd, type="response")
    assert link.index.equals(nd.index) and resp.index.equals(nd.index)
    np.testing.assert_allclose(resp, 1 / (1 + np.exp(-link)))
    gref = load_ref("cbpp_laplace")["predict"]
    gnd = pd.DataFrame(gref["newdata"]).astype(str)
    np.testing.assert_allclose(gfit.predict(gnd, allow_new_levels=True, type="response").to_numpy(),
                               gref["response"], rtol=2e-4)
    with pytest.raises(ValueError, match="type must be"):
        gfit.predict(nd, type="mu")


def test_draws_stay_arrays(fit):
    s = mp.sim(fit, n_sims=5, seed=1)
    assert isinstance(s.fitted(), np.ndarray) and s.fitted().shape == (5, fit.nobs)
    nd = pd.DataFrame({"Days": [1.0], "Subject": ["new"]})
    assert isinstance(mp.predictive_draws(fit, nd, n_sims=5, seed=1), np.ndarray)
    sims = fit.simulate(2, seed=1)     # simulate reads the linear predictor, not the Series
    assert sims.shape == (fit.nobs, 2)


# ---- 4. the Bayesian print points to Python's help ----------------------------------------------------
def test_bayes_print_points_to_python_help():
    post = mp.bayes_lmer("Reaction ~ Days + (1 | Subject)", ref_data("sleepstudy.csv"), chains=2, iter=300,
                         seed=1, progress=False)
    text = repr(post)
    assert "stanreg" not in text and "?" not in text
    tail = text.splitlines()[-2:]
    assert tail == ["* For help interpreting the printed output see help(mixedpy.bayes.Posterior.format)",
                    "* For info on the priors used see help(mixedpy.bayes.Posterior.prior_summary)"]
    # the pages exist and explain what is printed
    assert "MAD_SD" in mp.bayes.Posterior.format.__doc__ and "Error terms" in mp.bayes.Posterior.format.__doc__
    assert "Adjusted" in mp.bayes.Posterior.prior_summary.__doc__ or "adjusted" in mp.bayes.Posterior.prior_summary.__doc__
    ps = post.prior_summary()
    assert isinstance(ps, Text) and repr(ps) == ps
    assert ps.splitlines()[-1] == "See help(mixedpy.bayes.Posterior.prior_summary) for more details"
    assert isinstance(post.format(), Text) and post._repr_html_().startswith("<pre>stan_lmer")
    assert isinstance(post.summary(), pd.DataFrame)   # API.md: the per-parameter table stays a DataFrame


# ---- 5. optimizer= and control= ----------------------------------------------------------------------
@pytest.mark.parametrize("optimizer", ["bobyqa", "nloptwrap", "nelder_mead", "Nelder_Mead", "scipy"])
def test_lmer_optimizers_reach_lme4s_optimum(optimizer, sleep, ref):
    want = next(r for r in ref["lmer_optimizers"] if r["optimizer"] == "nloptwrap")
    for f in (mp.lmer(SLEEP, sleep, optimizer=optimizer),
              mp.lmer(SLEEP, sleep, control=mp.lmerControl(optimizer=optimizer))):
        assert f.reml_crit == pytest.approx(want["reml_crit"], abs=1e-6)
        np.testing.assert_allclose(f.theta, want["theta"], rtol=2e-5, atol=2e-6)
        assert f.converged


@pytest.mark.parametrize("optimizer", ["nelder_mead", ("bobyqa", "Nelder_Mead"), "scipy"])
def test_glmer_accepts_optimizer(optimizer, cbpp, ref):
    """The defect: glmer's convergence advice said optimizer='nelder_mead', which glmer rejected."""
    best = min(r["minus2loglik"] for r in ref["glmer_optimizers"])
    want = next(r for r in ref["glmer_optimizers"] if r["optimizer"] == "bobyqa")
    f = mp.glmer(CBPP, cbpp, family="binomial", optimizer=optimizer)
    assert f.criterion == pytest.approx(best, abs=1e-6)
    np.testing.assert_allclose(f.beta, want["fixef"], atol=3e-5)
    stage2 = optimizer[1] if isinstance(optimizer, tuple) else optimizer
    assert f.opt.optimizer == {"nelder_mead": "Nelder-Mead", "Nelder_Mead": "Nelder-Mead", "scipy": "L-BFGS-B"}[stage2]
    g = mp.glmer(CBPP, cbpp, family="binomial", control=mp.glmerControl(optimizer=optimizer))
    np.testing.assert_array_equal(g.beta, f.beta)


def test_controls_are_frozen_with_lme4s_defaults():
    c, g = mp.lmerControl(), mp.glmerControl()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.optimizer = "scipy"
    # lme4 1.1-31's lmerControl()/glmerControl() values
    assert (c.restart_edge, c.boundary_tol, c.calc_derivs) == (True, 1e-5, True)
    assert (c.check_conv_grad.action, c.check_conv_grad.tol) == ("warning", 0.002)
    assert (c.check_conv_singular.action, c.check_conv_singular.tol) == ("message", 1e-4)
    assert (c.check_conv_hess.action, c.check_conv_hess.tol) == ("warning", 1e-6)
    assert (g.restart_edge, g.tolPwrss, g.compDev, g.nAGQ0initStep) == (False, 1e-7, True, True)
    assert c.check_nobs_vs_nlev == "stop" and c.check_rankX == "message+drop.cols"
    assert mp.lmerControl(check_conv_grad={"tol": 1e-3}).check_conv_grad == ConvCheck("warning", 1e-3)
    assert mp.lmerControl(optCtrl={"maxfun": 50}).optCtrl == {"maxeval": 50}


@pytest.mark.parametrize("make,match", [
    (lambda: mp.lmerControl(sparseX=True), "sparseX"),
    (lambda: mp.lmerControl(check_nlev_gtr_1="ignore"), "check_nlev_gtr_1"),
    (lambda: mp.lmerControl(check_scaleX="stop"), "check_scaleX"),
    (lambda: mp.lmerControl(use_last_params=True), "use_last_params"),
    (lambda: mp.lmerControl(check_conv_grad=ConvCheck("warning", 2e-3, relTol=1e-3)), "relTol"),
    (lambda: mp.lmerControl(check_conv_hess={"action": "shout"}), "action"),
    (lambda: mp.lmerControl(optCtrl={"rhobeg": 0.1}), "rhobeg"),
    (lambda: mp.lmerControl(optimizer="optimx"), "unknown optimizer"),
    (lambda: mp.lmerControl(optimizer="scipy", optCtrl={"ftol_abs": 1e-9}), "L-BFGS-B"),
    (lambda: mp.glmerControl(restart_edge=True), "restart_edge"),
    (lambda: mp.glmerControl(nAGQ0initStep=False), "nAGQ0initStep"),
    (lambda: mp.glmerControl(optimizer=("bobyqa", "bobyqa", "bobyqa")), "pair"),
])
def test_unsupported_lme4_settings_raise(make, match):
    with pytest.raises(ControlError, match=match):
        make()


def test_control_of_the_wrong_kind_is_an_error(sleep, cbpp):
    with pytest.raises(ControlError, match="lmerControl"):
        mp.lmer(SLEEP, sleep, control=mp.glmerControl())
    with pytest.raises(ControlError, match="glmerControl"):
        mp.glmer(CBPP, cbpp, family="binomial", control=mp.lmerControl())
    with pytest.raises(TypeError):
        mp.lmerControl(calc_derivatives=False)


def _advised_optimizer(messages) -> str:
    found = [re.search(r"optimizer='(\w+)'", m) for m in messages]
    return next(f.group(1) for f in found if f)


def test_maxeval_reached_advice_names_accepted_options(sleep, cbpp):
    with pytest.warns(mp.ConvergenceWarning, match=r"optCtrl=\{'maxeval'") as rec:
        f = mp.lmer(SLEEP, sleep, control=mp.lmerControl(optCtrl={"maxeval": 5}))
    assert f.convergence.status == "maxeval" and not f.converged
    advised = _advised_optimizer([str(w.message) for w in rec])
    assert advised == "nelder_mead"
    assert quiet(mp.lmer, SLEEP, sleep, optimizer=advised).converged   # lmer takes what it advises
    with pytest.warns(mp.ConvergenceWarning) as rec:
        g = mp.glmer(CBPP, cbpp, family="binomial", control=mp.glmerControl(optCtrl={"maxeval": 3}))
    assert not g.converged
    advised = _advised_optimizer([str(w.message) for w in rec])
    assert mp.glmer(CBPP, cbpp, family="binomial", optimizer=advised).converged   # and so does glmer
    # after Nelder-Mead ran out, the advice is the other optimizer
    with pytest.warns(mp.ConvergenceWarning) as rec:
        mp.lmer(SLEEP, sleep, optimizer="nelder_mead", control=mp.lmerControl(optCtrl={"maxeval": 5}))
    assert _advised_optimizer([str(w.message) for w in rec]) == "bobyqa"


def test_convergence_check_actions(sleep):
    tight = {"tol": 1e-12}
    with pytest.warns(mp.ConvergenceWarning, match=r"max\|grad\|.*optimizer='nelder_mead'"):
        mp.lmer(SLEEP, sleep, control=mp.lmerControl(check_conv_grad=tight))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        f = mp.lmer(SLEEP, sleep, control=mp.lmerControl(check_conv_grad={**tight, "action": "ignore"}))
    assert not f.convergence.gradient.ok and f.convergence.gradient.tol == 1e-12   # recorded, not issued
    with pytest.warns(mp.MixedpyInfo, match="max|grad|"):
        mp.lmer(SLEEP, sleep, control=mp.lmerControl(check_conv_grad={**tight, "action": "message"}))
    with pytest.raises(ConvergenceError, match="max|grad|"):
        mp.lmer(SLEEP, sleep, control=mp.lmerControl(check_conv_grad={**tight, "action": "stop"}))
    f = mp.lmer(SLEEP, sleep, control=mp.lmerControl(calc_derivs=False))
    assert f.opt.gradient is None and f.convergence.gradient is None


def test_singular_check_tolerance_and_action(sleep):
    formula = "Reaction ~ Days + (1 | Subject) + (1 | Days)"   # theta (1.1979, 0): singular
    with pytest.warns(mp.SingularFitWarning):
        mp.lmer(formula, sleep)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        f = mp.lmer(formula, sleep, control=mp.lmerControl(check_conv_singular="ignore", calc_derivs=False))
    assert f.convergence.singular


def test_refit_keeps_the_control(sleep):
    f = mp.lmer(SLEEP, sleep, control=mp.lmerControl(optimizer="nelder_mead"))
    ml = f.refit(reml=False)
    assert ml.control.optimizer == "nelder_mead" and ml.opt.optimizer == "Nelder-Mead"


def test_dask_fit_rejects_control_it_cannot_use(sleep):
    dd = pytest.importorskip("dask.dataframe")
    data = dd.from_pandas(sleep, npartitions=2)
    with pytest.raises(ControlError, match="Dask"):
        mp.lmer(SLEEP, data, control=mp.lmerControl(boundary_tol=0.0))
    with pytest.raises(ControlError, match="Dask"):
        mp.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", dd.from_pandas(ref_data("cbpp.csv"),
                 npartitions=2), family="binomial", optimizer="nelder_mead")
