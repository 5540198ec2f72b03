"""The command line: ``python -m mixedpy fit FORMULA DATA [--ml] [--family] [--bayes]``."""
from __future__ import annotations

import subprocess
import sys

import pytest

import mixedpy as mp
from mixedpy.cli import main

SLEEP = "Reaction ~ Days + (Days | Subject)"


def test_fit_prints_lme4_summary(capsys):
    assert main(["fit", SLEEP, "sleepstudy"]) == 0
    out = capsys.readouterr().out
    sleepstudy = mp.datasets.load("sleepstudy")
    fit = mp.lmer(SLEEP, sleepstudy)
    assert out.strip() == fit.summary().strip()
    assert "   Data: sleepstudy" in out  # named after the data given on the command line
    assert "REML criterion at convergence: 1743.6" in out


def test_fit_csv_file_ml_display(tmp_path, capsys):
    path = tmp_path / "sleep.csv"
    mp.datasets.load("sleepstudy").to_csv(path, index=False)
    assert main(["fit", SLEEP, str(path), "--ml", "--display"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"lmer(formula = {SLEEP}, data = sleep, REML = FALSE)"
    # arm's display of the ML fit: AIC 1763.9 and deviance = DIC = 1751.9 (ALGORITHMS.md 3.2)
    assert "AIC = 1763.9, DIC = 1751.9" in out
    assert "deviance = 1751.9" in out


def test_fit_binomial_glmer(capsys):
    if not hasattr(mp, "glmer"):
        pytest.skip("glmer is not available in this build")
    code = main(["fit", "cbind(incidence, size - incidence) ~ period + (1 | herd)", "cbpp",
                 "--family", "binomial", "--display", "--tidy"])
    out = capsys.readouterr().out
    assert code == 0
    assert "herd     (Intercept) 0.64" in out
    assert "Residual             1.00" in out
    assert "sd__(Intercept)" in out and "p.value" in out


def test_bayes_flag(capsys):
    if not hasattr(mp, "bayes_lmer"):
        pytest.skip("bayes_lmer is not available in this build")
    code = main(["fit", "diameter ~ 1 + (1 | plate)", "penicillin", "--bayes", "--chains", "2",
                 "--iter", "300", "--seed", "1"])
    out = capsys.readouterr().out
    assert code == 0
    assert "(Intercept)" in out and "sigma" in out


@pytest.mark.parametrize("argv,message", [
    (["fit", "Reaction ~ Days + (Days | Nope)", "sleepstudy"], "Nope"),
    (["fit", SLEEP, "no_such_file_or_dataset"], "neither a file nor a bundled dataset"),
    (["fit", SLEEP, "sleepstudy", "--family", "tweedie"], "--family must be"),
    (["fit", "cbind(incidence, size - incidence) ~ period + (1 | herd)", "cbpp", "--family", "binomial",
      "--ml"], "--ml applies to lmer"),
])
def test_errors_exit_2_with_reason(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_datasets_command(capsys):
    assert main(["datasets"]) == 0
    assert "sleepstudy" in capsys.readouterr().out.split()


def test_python_dash_m_entry_point():
    res = subprocess.run([sys.executable, "-m", "mixedpy", "fit", "diameter ~ 1 + (1 | plate) + (1 | sample)",
                          "penicillin"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "Number of obs: 144, groups:  plate, 24; sample, 6" in res.stdout
    bad = subprocess.run([sys.executable, "-m", "mixedpy"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "usage" in bad.stderr


def test_summary_ddf_flag(capsys):
    """lmer's summary is lmerTest's (Satterthwaite) unless --ddf asks for another table."""
    assert main(["fit", SLEEP, "sleepstudy"]) == 0
    assert capsys.readouterr().out.startswith("Linear mixed model fit by REML. t-tests use Satterthwaite's method")
    assert main(["fit", SLEEP, "sleepstudy", "--ddf", "Kenward-Roger"]) == 0
    assert "t-tests use Kenward-Roger's method" in capsys.readouterr().out
    assert main(["fit", SLEEP, "sleepstudy", "--ddf", "lme4"]) == 0
    assert capsys.readouterr().out.startswith("Linear mixed model fit by REML ['lmerMod']")


@pytest.mark.parametrize("argv, header", [
    (["--family", "negative_binomial"], " Family: Negative Binomial("),
    (["--family", "gaussian", "--link", "log"], " Family: gaussian  ( log )"),
    (["--family", "Gamma", "--link", "log"], " Family: Gamma  ( log )"),
])
def test_more_families(capsys, argv, header):
    """--family reaches glmer.nb and glmer's dispersion families (a GLMM with a log link)."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["fit", "I(TICKS + 1) ~ YEAR + (1 | BROOD)", "grouseticks", *argv])
    out = capsys.readouterr().out
    assert code == 0 and out.splitlines()[1].startswith(header), out[:300]
