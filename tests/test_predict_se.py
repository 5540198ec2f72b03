"""predict(..., se_fit=True, interval=...) (issue 12 part 6).

lme4 1.1-31's predict has no se.fit (merTools is not installed), so the reference values are the
formula computed by hand in R from lme4's getME pieces (tests/reference/gen/residuals_predict.R):
sigma^2 D A^{-1} D' of the joint (b, beta) system, formed densely, as later lme4's vcov_full.  The
lmer fits are profiled at lme4's theta, the glmer fit uses tight tolerances (test_residuals.py).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import mixedpy as mp
from test_residuals import REF, TIGHT_G, at_theta, read, sleep_data

ND = pd.DataFrame({"Days": [0, 3, 9, 5, 2], "Subject": ["308", "335", "372", "999", "999"]},
                  index=["a", "b", "c", "d", "e"])
NDG = pd.DataFrame({"period": ["1", "2", "4", "3"], "herd": ["1", "5", "15", "99"]})


@pytest.fixture(scope="module")
def m():
    return at_theta(mp.lmer("Reaction ~ Days + (Days | Subject)", sleep_data()), REF["lmer"]["theta"])


@pytest.fixture(scope="module")
def g():
    return mp.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", read("cbpp.csv", ["herd", "period"]),
                    family="binomial", control=TIGHT_G)


def close(got, want, rtol=1e-4):
    np.testing.assert_allclose(np.asarray(got, dtype=float), want, rtol=rtol)


def test_conditional_se_and_intervals_are_the_joint_system_s(m):
    """Fitted levels and a new level (0 effect, population SE); the prediction interval adds sigma^2
    and, for the new level, the random-effect variance z'Sigma z."""
    P = REF["predict_lmer"]
    conf = m.predict(ND, allow_new_levels=True, interval="confidence")
    pred = m.predict(ND, allow_new_levels=True, interval="prediction", level=0.95)
    assert list(conf.columns) == ["fit", "se_fit", "lwr", "upr"] and conf.index.equals(ND.index)
    close(conf["fit"], P["fit_cond"], 1e-8)
    close(conf["se_fit"], P["se_cond"])
    close(conf["lwr"], P["lwr_conf"])
    close(conf["upr"], P["upr_conf"])
    close(pred["lwr"], P["lwr_pred"])
    close(pred["upr"], P["upr_pred"])
    se_only = m.predict(ND, allow_new_levels=True, se_fit=True)
    assert list(se_only.columns) == ["fit", "se_fit"]


def test_population_level_se_is_x_vcov_x(m):
    P = REF["predict_lmer"]
    pop = m.predict(ND, re_form="NA", interval="prediction")
    close(pop["fit"], P["fit_pop"], 1e-8)
    close(pop["se_fit"], P["se_pop"])
    X = np.column_stack([np.ones(len(ND)), ND["Days"]])
    close(pop["se_fit"], np.sqrt(np.einsum("ia,ab,ib->i", X, m.vcov_array, X)), 1e-10)
    close(pop["lwr"], P["lwr_pred_pop"])
    close(pop["upr"], P["upr_pred_pop"])


def test_se_of_the_fits_own_rows(m):
    own = m.predict(se_fit=True)
    assert own.index.equals(m.design.row_index)
    close(own["se_fit"], REF["predict_lmer"]["se_own"])
    np.testing.assert_allclose(own["fit"], m.fitted, rtol=1e-12)


def test_partial_re_form_adds_the_left_out_terms_variance():
    fit = at_theta(mp.lmer("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", sleep_data()),
                   REF["predict_partial"]["theta"])
    Q = REF["predict_partial"]
    out = fit.predict(ND.iloc[:3], re_form="~ (1 | Subject)", interval="prediction")
    close(out["fit"], Q["fit"], 1e-8)
    close(out["se_fit"], Q["se"])
    close(out["lwr"], Q["lwr_pred"])
    close(out["upr"], Q["upr_pred"])


def test_glmer_se_on_link_and_response_scales(g):
    G = REF["predict_glmer"]
    link = g.predict(NDG, allow_new_levels=True, interval="confidence")
    close(link["fit"], G["eta"], 1e-6)
    close(link["se_fit"], G["se_link"])
    close(link["lwr"], G["lwr_link"])
    close(link["upr"], G["upr_link"])
    resp = g.predict(NDG, allow_new_levels=True, type="response", interval="confidence")
    close(resp["fit"], G["mu"], 1e-6)
    close(resp["se_fit"], G["se_response"])   # delta method
    inv = g.family.linkinv
    close(resp["lwr"], inv(np.asarray(G["lwr_link"])))   # the link interval, mapped
    close(g.predict(NDG, re_form="NA", se_fit=True)["se_fit"], G["se_pop"])


def test_interval_arguments_are_checked(m, g):
    with pytest.raises(ValueError, match="'confidence' or 'prediction'"):
        m.predict(ND, allow_new_levels=True, interval="tolerance")
    with pytest.raises(ValueError, match=r"level must be in \(0, 1\)"):
        m.predict(ND, allow_new_levels=True, interval="confidence", level=95)
    with pytest.raises(ValueError, match="Gaussian model"):
        g.predict(NDG, allow_new_levels=True, interval="prediction")


def test_narrower_level_gives_a_narrower_interval(m):
    a = m.predict(ND, allow_new_levels=True, interval="confidence", level=0.5)
    b = m.predict(ND, allow_new_levels=True, interval="confidence", level=0.95)
    z = 0.6744897501960817   # qnorm(0.75)
    close(a["upr"] - a["fit"], z * b["se_fit"], 1e-12)
    assert (a["upr"] < b["upr"]).all()


def test_se_fit_of_an_na_exclude_fit_is_padded():
    df = sleep_data()
    df.loc[[3, 7], "Reaction"] = np.nan
    with pytest.warns(mp.MissingValuesWarning):
        fit = mp.lmer("Reaction ~ Days + (Days | Subject)", df, na_action="exclude")
    out = fit.predict(se_fit=True, interval="confidence")
    assert out.index.equals(df.index) and out.loc[[3, 7]].isna().all().all()
    assert out.drop(index=[3, 7]).notna().all().all()


def test_a_dask_fit_gives_the_same_residuals_and_standard_errors():
    dd = pytest.importorskip("dask.dataframe")
    sleep = sleep_data()
    f = mp.lmer("Reaction ~ Days + (Days | Subject)", dd.from_pandas(sleep, npartitions=2))
    ref = mp.lmer("Reaction ~ Days + (Days | Subject)", sleep)
    np.testing.assert_allclose(mp.residuals(f, scaled=True).compute().to_numpy(),
                               ref.residuals(scaled=True).to_numpy(), atol=1e-7)
    nd = sleep.iloc[[0, 50, 100]]
    pd.testing.assert_frame_equal(f.predict(nd, interval="prediction"), ref.predict(nd, interval="prediction"),
                                  rtol=1e-7)
    with pytest.raises(NotImplementedError, match="in-memory newdata"):
        f.predict(se_fit=True)
    with pytest.raises(ValueError, match="in-memory data"):
        mp.lmer("Reaction ~ Days + (Days | Subject)", dd.from_pandas(sleep, npartitions=2), na_action="exclude")
