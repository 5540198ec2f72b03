"""allFit: the model refitted with every optimizer, and lme4's summary tables (issue 12, part 6).

Reference: tests/reference/gen/model_building.R, lme4 1.1-31's summary.allFit of the sleepstudy
lmer and the cbpp glmer refitted with bobyqa, Nelder_Mead, nlminbwrap and nloptwrap.  Every
optimizer of mixedpy must reach lme4's optimum (within the spread of lme4's own optimizers), with
lme4's table layout and names.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedpy as mp
from mixedpy.allfit import OPTIMIZER_NAMES

from test_lmertest import ref_frame

REF = Path(__file__).parent / "reference" / "model_building"
ROOT = Path(__file__).parent.parent
CASES = {c["name"]: c for c in json.loads((REF / "allfit_cases.json").read_text())}


def fit_case(name):
    if name == "sleepstudy":
        sleep = pd.read_csv(ROOT / "mixedpy/datasets/data/sleepstudy.csv").astype({"Subject": str})
        return mp.lmer("Reaction ~ Days + (Days | Subject)", sleep), sleep
    cbpp = pd.read_csv(ROOT / "mixedpy/datasets/data/cbpp.csv").astype({"period": str})
    return mp.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial"), cbpp


@pytest.mark.parametrize("name", list(CASES))
def test_summary_is_lme4s(name):
    ref = CASES[name]
    fit, d = fit_case(name)
    s = mp.allFit(fit, data=d).summary()
    assert list(s.which_OK.index) == list(OPTIMIZER_NAMES) and s.which_OK.all() and s.converged.all()
    lme4 = "nloptwrap.NLOPT_LN_BOBYQA"      # lme4's default optimizer
    for table, rtol in (("fixef", 1e-4), ("theta", 1e-4), ("sdcor", 1e-4)):
        mine, theirs = getattr(s, table), ref_frame(ref[table])
        assert list(mine.columns) == list(theirs.columns), table
        for opt in OPTIMIZER_NAMES:
            np.testing.assert_allclose(mine.loc[opt].to_numpy(), theirs.loc[lme4].to_numpy(), rtol=rtol,
                                       err_msg=f"{table} {opt}")
    np.testing.assert_allclose(s.llik.to_numpy(), ref["llik"][lme4], rtol=1e-8)
    assert (s.feval > 0).all() and (s.times > 0).all()
    assert all(m == [] for m in s.msgs.values())
    text = str(s)
    assert "$fixef" in text and "$sdcor" in text and "nelder_mead" in text


def test_warnings_are_collected_not_issued_and_errors_kept(monkeypatch):
    dy = pd.read_csv(ROOT / "mixedpy/datasets/data/dyestuff2.csv").astype({"Batch": str})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mp.SingularFitWarning)
        fit = mp.lmer("Yield ~ 1 + (1 | Batch)", dy)            # singular, as in lme4
    with warnings.catch_warnings():
        warnings.simplefilter("error")                          # any warning issued would fail here
        result = mp.allFit(fit, optimizers=["bobyqa", "nelder_mead"])
    assert any(issubclass(c, mp.SingularFitWarning) for c, _ in result.warnings["bobyqa"])
    assert result["nelder_mead"].is_singular
    with pytest.raises(mp.ControlError, match="no_such_optimizer"):
        mp.allFit(fit, optimizers=["bobyqa", "no_such_optimizer"])   # checked before any refit

    import mixedpy.allfit as allfit_module

    real_update = allfit_module.update

    def failing_update(f, **kwargs):
        if kwargs["control"].optimizer == "scipy":
            raise mp.FitError("simulated failure")
        return real_update(f, **kwargs)

    monkeypatch.setattr(allfit_module, "update", failing_update)
    result = mp.allFit(fit)                                     # lme4's catch.errs: the error is the result
    assert isinstance(result["scipy"], mp.FitError)
    s = result.summary()
    assert s.which_OK.to_dict() == {"bobyqa": True, "nelder_mead": True, "scipy": False}
    assert list(s.fixef.index) == ["bobyqa", "nelder_mead"]
    with pytest.raises(mp.FitError):
        mp.allFit(fit, catch_errors=False)
