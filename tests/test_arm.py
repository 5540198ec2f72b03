"""arm's layer: display() against arm 1.13's text, sim() against arm's moments and the closed-form
theory of ALGORITHMS.md 3.1, fitted/predictive draws, simulate(), sigma_hat / se_fixef / se_ranef."""
from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.special import gammaln

import mixedpy as mp
from conftest import load_ref, ref_data
from mixedpy.arm import SimResult, display, fitted_draws, predictive_draws, sim

LMER_CASES = ["sleepstudy_reml", "sleepstudy_ml", "sleepstudy_uncorr", "sleepstudy_intercept",
              "dyestuff_reml", "dyestuff_ml", "dyestuff2_singular", "penicillin_crossed", "pastes_nested",
              "exam_slopes", "sleepstudy_rankdef", "sleepstudy_weights_offset"]
_FITS: dict[str, mp.LmerFit] = {}


def fit_case(name: str):
    ref = load_ref(name)
    if name not in _FITS:
        data = ref_data(ref["data"])
        kw = {}
        if name == "sleepstudy_weights_offset":  # R: weights = 1 + (Days %% 3), offset = 0.5 * Days
            kw = dict(weights=data["w"], offset=data["off"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _FITS[name] = mp.lmer(ref["formula"], data, REML=ref["REML"], **kw)
    return _FITS[name], ref


def from_coef_line(text: str) -> list[str]:
    """Lines from the coefficient table on (the first lines are R's deparsed call)."""
    lines = text.split("\n")
    start = next(i for i, line in enumerate(lines) if "coef.est" in line)
    return lines[start:]


# --------------------------------------------------------------------------------------------
# display
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", LMER_CASES)
def test_display_matches_arm_line_for_line(name):
    fit, ref = fit_case(name)
    got = from_coef_line(display(fit, print_output=False))
    want = from_coef_line(ref["display"])
    assert [g.rstrip() for g in got] == [w.rstrip() for w in want]


def test_display_prints_and_returns(capsys):
    fit, _ = fit_case("sleepstudy_reml")
    text = mp.display(fit)          # a script (no interactive prompt) prints, as arm's display()
    assert capsys.readouterr().out.rstrip("\n") == text
    assert text.startswith("lmer(formula = Reaction ~ Days + (Days | Subject)")
    assert text.endswith("deviance = 1751.9 ")


def test_display_deviance_is_ml_refit_and_dic():
    """arm: deviance = deviance(refitML(fit)) and DIC = 2 deviance + 2 logLik (ALGORITHMS.md 3.2)."""
    fit, _ = fit_case("sleepstudy_reml")
    from mixedpy.arm import display_deviance

    dev = display_deviance(fit)
    assert dev == pytest.approx(1751.939344, abs=2e-5)
    assert dev != pytest.approx(fit.deviance_ml, abs=1e-3)  # not the ML deviance at the REML theta
    assert 2 * dev + 2 * fit.loglik == pytest.approx(1760.250417, abs=1e-4)


def test_display_detail_adds_t_values():
    fit, _ = fit_case("sleepstudy_reml")
    lines = from_coef_line(display(fit, detail=True, print_output=False))
    t = fit.beta / fit.se_fixef
    # format(round(M, 2), nsmall = 2) over the whole matrix: one common width (6) for every cell
    cells = [[f"{v:.2f}".rjust(6) for v in (fit.beta[i], fit.se_fixef[i], t[i])] for i in range(2)]
    assert cells[0] == ["251.41", "  6.82", " 36.84"]
    want = ["            coef.est coef.se t value",
            "(Intercept) " + cells[0][0].ljust(8) + " " + cells[0][1].ljust(7) + " " + cells[0][2].ljust(7),
            "Days        " + cells[1][0].ljust(8) + " " + cells[1][1].ljust(7) + " " + cells[1][2].ljust(7)]
    assert lines[:3] == want


def test_display_single_coefficient_quirk():
    fit, _ = fit_case("dyestuff_reml")
    lines = display(fit, print_output=False).split("\n")
    assert lines[1] == "coef.est  coef.se "
    assert lines[2] == " 1527.50    19.38 "


class _NoScaleView:
    """A fit seen as a model without a scale (the GLMM path of display/sim): the attributes a
    glmer fit has, with the numbers of an lmer fit, so the layout can be checked exactly."""

    use_scale = False
    sigma = 1.0

    def __init__(self, fit):
        self._fit = fit
        self.family = type("Fam", (), {"name": "binomial"})()

    def __getattr__(self, item):
        return getattr(self._fit, item)

    def varcorr(self):
        from mixedpy.varcorr import VarCorr, VarCorrTerm

        return VarCorr([VarCorrTerm(t.label, t.group, t.coef_names, t.cov / self._fit.sigma ** 2)
                        for t in self._fit.varcorr().terms], None)

    @property
    def deviance(self):
        return 100.0

    def _linkinv(self, eta):
        return 1 / (1 + np.exp(-eta))


def test_display_without_scale_has_z_and_unit_residual():
    fit, _ = fit_case("sleepstudy_reml")
    view = _NoScaleView(fit)
    text = display(view, detail=True, print_output=False)
    lines = from_coef_line(text)
    assert lines[0].split() == ["coef.est", "coef.se", "z", "value", "Pr(>|z|)"]
    assert lines[1].split()[-1] == "0.00"
    assert " Residual             1.00" in text
    assert f"DIC = {round(2 * 100.0 + 2 * fit.loglik, 1):g}" in text
    assert "deviance = 100.0 " in text
    assert text.startswith("glmer(")


def test_display_rejects_non_fits():
    with pytest.raises(TypeError, match="fitted lmer/glmer"):
        display(pd.DataFrame())


# --------------------------------------------------------------------------------------------
# sigma_hat, se_fixef, se_ranef, predict (arm/lme4 values)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sleepstudy_reml", "sleepstudy_uncorr", "penicillin_crossed", "pastes_nested"])
def test_sigma_hat_and_se_fixef(name):
    fit, ref = fit_case(name)
    sh = mp.sigma_hat(fit)
    assert sh["data"] == pytest.approx(ref["sigma"], rel=1e-5)
    labels = [k for k in sh if k != "data"]
    assert len(labels) == len(ref["varcorr"])
    for lab, vc in zip(labels, ref["varcorr"]):
        np.testing.assert_allclose(sh[lab].to_numpy(), vc["sd"], rtol=2e-4)
        assert list(sh[lab].index) == vc["terms"]
    np.testing.assert_allclose(mp.se_fixef(fit).to_numpy(), list(ref["se_fixef"].values()), rtol=1e-5)


def test_se_ranef_with_several_terms_on_one_factor():
    """arm's se.ranef fails when one factor carries several terms; here both columns are there."""
    fit, _ = fit_case("sleepstudy_uncorr")
    se = mp.se_ranef(fit)
    assert list(se) == ["Subject"]
    assert list(se["Subject"].columns) == ["(Intercept)", "Days"]
    pv = fit.postvar()
    np.testing.assert_allclose(se["Subject"]["Days"].to_numpy(), np.sqrt(pv[1][:, 0, 0]))


def test_se_ranef_sleepstudy_value():
    fit, _ = fit_case("sleepstudy_reml")
    se = mp.se_ranef(fit)["Subject"]
    np.testing.assert_allclose(se.loc["308"].to_numpy(), [12.0709, 2.3048], atol=2e-3)


@pytest.mark.parametrize("name", ["sleepstudy_reml", "sleepstudy_intercept", "sleepstudy_uncorr"])
def test_predict_new_levels(name):
    fit, ref = fit_case(name)
    nd = pd.DataFrame(ref["predict"]["newdata"])
    np.testing.assert_allclose(fit.predict(nd, allow_new_levels=True), ref["predict"]["with_re"], rtol=1e-6)
    np.testing.assert_allclose(fit.predict(nd, re_form="~0"), ref["predict"]["fixed_only"], rtol=1e-6)


# --------------------------------------------------------------------------------------------
# sim: against arm's moments and the closed-form theory
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sleep_sims():
    fit, _ = fit_case("sleepstudy_reml")
    return fit, sim(fit, n_sims=20000, seed=20240601)


def test_sim_shapes_names_and_accessors(sleep_sims):
    fit, s = sleep_sims
    assert isinstance(s, SimResult)
    assert s.fixef.shape == (20000, 2) and list(s.fixef.columns) == ["(Intercept)", "Days"]
    assert set(s.ranef) == {"Subject"} and s.ranef["Subject"].shape == (20000, 18, 2)
    assert s.sigma.shape == (20000,)
    assert mp.fixef(s) is s.fixef
    assert mp.ranef(s) is s.ranef
    assert mp.sigma_hat(s) is s.sigma
    c = mp.coef(s)["Subject"]
    assert s.coef_columns("Subject") == ["(Intercept)", "Days"]
    np.testing.assert_allclose(c[:, 3, 1], s.fixef["Days"].to_numpy() + s.ranef["Subject"][:, 3, 1])
    assert s.levels["Subject"][0] == "308"
    with pytest.raises(ValueError, match="condvar"):
        mp.ranef(s, condvar=True)


def test_sim_fixef_and_sigma_match_theory(sleep_sims):
    """beta_s is multivariate t_{n-p} with scale sigma_REML^2 (R_X'R_X)^{-1} = vcov (REML fit);
    sigma_s^2 = pwrss / chi^2_{n-p} (ALGORITHMS.md 3.1)."""
    fit, s = sleep_sims
    nu, S = fit.nobs - 2, s.n_sims
    sd_theory = fit.se_fixef * np.sqrt(nu / (nu - 2))
    np.testing.assert_allclose(sd_theory, [6.86326, 1.55455], rtol=1e-5)
    mean = s.fixef.mean().to_numpy()
    assert np.all(np.abs(mean - fit.beta) < 4 * sd_theory / np.sqrt(S))
    np.testing.assert_allclose(s.fixef.std().to_numpy(), sd_theory, rtol=0.03)
    pw = fit.state.pwrss
    e_sigma = np.sqrt(pw / 2) * np.exp(gammaln((nu - 1) / 2) - gammaln(nu / 2))
    sd_sigma = np.sqrt(pw / (nu - 2) - e_sigma ** 2)
    assert e_sigma == pytest.approx(25.70026, abs=1e-4) and sd_sigma == pytest.approx(1.37080, abs=1e-4)
    assert abs(s.sigma.mean() - e_sigma) < 4 * sd_sigma / np.sqrt(S)
    assert s.sigma.std() == pytest.approx(sd_sigma, rel=0.03)


def _dense_joint_cov(fit, transpose_lambda=False):
    """E[sigma^2] M A^{-1} M' for (b, beta), A the dense PLS matrix, M = blockdiag(Lambda, I)."""
    Z = sp.hstack([t.z_matrix() for t in fit.terms]).toarray()
    lam = [np.kron(np.eye(t.n_levels), T) for t, T in zip(fit.terms, fit.relative_factors())]
    Lam = np.zeros((Z.shape[1],) * 2)
    o = 0
    for blk in lam:
        Lam[o:o + blk.shape[0], o:o + blk.shape[0]] = blk
        o += blk.shape[0]
    X = fit.design.X
    U = Z @ Lam
    A = np.block([[U.T @ U + np.eye(U.shape[1]), U.T @ X], [X.T @ U, X.T @ X]])
    Lmap = Lam.T if transpose_lambda else Lam
    q, p = Lam.shape[0], X.shape[1]
    M = np.block([[Lmap, np.zeros((q, p))], [np.zeros((p, q)), np.eye(p)]])
    nu = fit.nobs - X.shape[1]
    return fit.state.pwrss / (nu - 2) * M @ np.linalg.inv(A) @ M.T


def test_sim_joint_covariance_matches_dense_theory(sleep_sims):
    fit, s = sleep_sims
    V = _dense_joint_cov(fit)
    draws = np.column_stack([s.ranef["Subject"].reshape(s.n_sims, -1), s.fixef.to_numpy()])
    emp = np.cov(draws, rowvar=False)
    sd = np.sqrt(np.diag(V))
    np.testing.assert_allclose(np.sqrt(np.diag(emp)), sd, rtol=0.04)
    corr_emp = emp / np.outer(np.sqrt(np.diag(emp)), np.sqrt(np.diag(emp)))
    corr_th = V / np.outer(sd, sd)
    assert np.max(np.abs(corr_emp - corr_th)) < 0.04
    # subject 308 (intercept, Days) sds: the correct Lambda mapping (ALGORITHMS.md 3.1)
    np.testing.assert_allclose(sd[:2], [13.174, 2.654], atol=2e-3)
    mode = np.concatenate([np.ravel(fit.b_list[0]), fit.beta])
    assert np.all(np.abs(draws.mean(0) - mode) < 4.5 * sd / np.sqrt(s.n_sims))


def test_sim_arm_compat_reproduces_transposed_lambda():
    fit, _ = fit_case("sleepstudy_reml")
    s = sim(fit, n_sims=20000, seed=7, arm_compat=True)
    V = _dense_joint_cov(fit, transpose_lambda=True)
    np.testing.assert_allclose(np.sqrt(np.diag(V))[:2], [13.062, 2.777], atol=2e-3)
    emp_sd = s.ranef["Subject"][:, 0, :].std(axis=0)
    np.testing.assert_allclose(emp_sd, np.sqrt(np.diag(V))[:2], rtol=0.03)
    # for scalar terms the quirk makes no difference: identical draws with the same seed
    fit_i, _ = fit_case("penicillin_crossed")
    a, b = sim(fit_i, 50, seed=3), sim(fit_i, 50, seed=3, arm_compat=True)
    for k in a.ranef:
        np.testing.assert_array_equal(a.ranef[k], b.ranef[k])


@pytest.mark.parametrize("name", [c for c in LMER_CASES if c != "exam_slopes"])
def test_sim_moments_match_arm(name):
    """Means and SDs over draws agree with arm's (4000 draws in R) within Monte-Carlo error."""
    fit, ref = fit_case(name)
    r = ref["sim"]
    s = sim(fit, n_sims=20000, seed=11)
    se_r = np.asarray(r["fixef_sd"]) / np.sqrt(r["n_sims"])
    diff = np.abs(s.fixef.mean().to_numpy() - r["fixef_mean"])
    assert np.all(diff < 4.5 * se_r * np.sqrt(1 + r["n_sims"] / s.n_sims)), (diff, se_r)
    np.testing.assert_allclose(s.fixef.std().to_numpy(), r["fixef_sd"], rtol=0.06)
    if "sigma_mean" in r:
        se_s = r["sigma_sd"] / np.sqrt(r["n_sims"])
        assert abs(s.sigma.mean() - r["sigma_mean"]) < 4.5 * se_s * np.sqrt(1 + r["n_sims"] / s.n_sims)
        assert s.sigma.std() == pytest.approx(r["sigma_sd"], rel=0.06)


def test_sim_uncorrelated_terms_keyed_uniquely():
    fit, _ = fit_case("sleepstudy_uncorr")
    s = sim(fit, n_sims=200, seed=1)
    assert list(s.ranef) == ["Subject", "Subject.1"]
    assert s.ranef["Subject"].shape == (200, 18, 1) and s.ranef["Subject.1"].shape == (200, 18, 1)
    assert s.groups == {"Subject": "Subject", "Subject.1": "Subject"}
    c = mp.coef(s)
    assert list(c) == ["Subject"] and c["Subject"].shape == (200, 18, 2)
    days = s.fixef["Days"].to_numpy()[:, None] + s.ranef["Subject.1"][:, :, 0]
    np.testing.assert_allclose(c["Subject"][:, :, 1], days)


def test_sim_is_vectorised_and_seeded():
    fit, _ = fit_case("sleepstudy_reml")
    sim(fit, n_sims=10, seed=0)
    t0 = time.perf_counter()
    s = sim(fit, n_sims=10_000, seed=1)
    assert time.perf_counter() - t0 < 0.5
    s2 = sim(fit, n_sims=10_000, seed=1)
    np.testing.assert_array_equal(s.fixef.to_numpy(), s2.fixef.to_numpy())
    assert not np.array_equal(s.sigma, sim(fit, n_sims=10_000, seed=2).sigma)


def test_sim_bad_input():
    fit, _ = fit_case("sleepstudy_reml")
    with pytest.raises(ValueError, match="n_sims"):
        sim(fit, n_sims=0)
    with pytest.raises(TypeError, match="sim\\(\\) needs a fitted"):
        sim(pd.DataFrame())


def test_sim_without_scale_has_no_sigma():
    fit, _ = fit_case("sleepstudy_reml")
    view = _NoScaleView(fit)
    s = sim(view, n_sims=4000, seed=5)
    assert s.sigma is None and mp.sigma_hat(s) is None
    # z ~ N(0, I): the fixef spread is sqrt(diag((R_X'R_X)^{-1})), no sigma
    np.testing.assert_allclose(s.fixef.std().to_numpy(), np.sqrt(np.diag(fit.state.factor.unscaled_vcov())),
                               rtol=0.06)


# --------------------------------------------------------------------------------------------
# fitted and predictive draws
# --------------------------------------------------------------------------------------------


def test_fitted_draws_equal_hand_computation(sleep_sims):
    fit, s = sleep_sims
    small = SimResult(fixef=s.fixef.iloc[:5], ranef={k: v[:5] for k, v in s.ranef.items()}, sigma=s.sigma[:5],
                      levels=s.levels, coef_names=s.coef_names, groups=s.groups, fit=fit)
    eta = small.fitted()
    assert eta.shape == (5, fit.nobs)
    t = fit.terms[0]
    for i in range(5):
        by_hand = fit.design.X @ small.fixef.iloc[i].to_numpy() + t.linear_predictor(small.ranef["Subject"][i])
        np.testing.assert_allclose(eta[i], by_hand, rtol=1e-12)
    # population level and new rows
    nd = pd.DataFrame({"Days": [0, 9], "Subject": ["308", "NEW"]})
    e2 = fitted_draws(small, nd, allow_new_levels=True)
    np.testing.assert_allclose(e2[:, 1], small.fixef.to_numpy() @ [1, 9])
    np.testing.assert_allclose(e2[:, 0], small.fixef["(Intercept)"] + small.ranef["Subject"][:, 0, 0])
    with pytest.raises(mp.DataError, match="new levels"):
        small.fitted(nd)


def test_fitted_draws_average_to_fitted_values(sleep_sims):
    fit, s = sleep_sims
    eta = s.fitted()
    sd = eta.std(axis=0)
    assert np.all(np.abs(eta.mean(axis=0) - fit.fitted) < 4.5 * sd / np.sqrt(s.n_sims))


def test_predictive_draws_new_group_match_theory(sleep_sims):
    """y_new = x beta_s + x'b_new + eps with b_new ~ N(0, sigma_s^2 T T'), eps ~ N(0, sigma_s^2):
    E = x beta-hat and Var = E[sigma^2] (1 + x'TT'x + x'(R_X'R_X)^{-1}x)."""
    fit, s = sleep_sims
    nd = pd.DataFrame({"Days": [0.0, 8.0], "Subject": ["NEW1", "NEW2"]})
    y = predictive_draws(s, nd, seed=3)
    assert y.shape == (s.n_sims, 2)
    T = fit.relative_factors()[0]
    K = fit.state.factor.unscaled_vcov()
    e_s2 = fit.state.pwrss / (fit.nobs - 2 - 2)
    for r, d in enumerate([0.0, 8.0]):
        x = np.array([1.0, d])
        var = e_s2 * (1 + x @ T @ T.T @ x + x @ K @ x)
        assert abs(y[:, r].mean() - x @ fit.beta) < 4.5 * np.sqrt(var / s.n_sims)
        assert y[:, r].var() == pytest.approx(var, rel=0.04)


def test_predictive_draws_share_one_effect_per_new_level(sleep_sims):
    fit, s = sleep_sims
    nd = pd.DataFrame({"Days": [3, 3, 3, 3], "Subject": ["A", "A", "B", "308"]})
    eta = predictive_draws(s, nd, seed=1, what="eta")
    np.testing.assert_allclose(eta[:, 0], eta[:, 1])         # same new level, same draw
    assert np.corrcoef(eta[:, 0], eta[:, 2])[0, 1] < 0.5     # different new levels are independent draws
    np.testing.assert_allclose(eta[:, 3], s.fitted(nd.iloc[[3]])[:, 0])  # existing level: its simulated effect
    mu = predictive_draws(s, nd, seed=1, what="mu")
    np.testing.assert_allclose(mu, eta)
    with pytest.raises(ValueError, match="what must be"):
        predictive_draws(s, nd, what="nope")


def test_predictive_draws_from_fit_with_seed():
    fit, _ = fit_case("sleepstudy_intercept")
    nd = pd.DataFrame({"Days": [2], "Subject": ["NEWZIP"]})
    a = predictive_draws(fit, nd, n_sims=500, seed=9)
    b = predictive_draws(fit, nd, n_sims=500, seed=9)
    np.testing.assert_array_equal(a, b)
    # population-level draws (re_form="~0") have no group variance: E[sigma^2] (1 + x'(R_X'R_X)^{-1}x)
    c = predictive_draws(fit, nd, n_sims=20000, seed=2, re_form="~0")[:, 0]
    x = np.array([1.0, 2.0])
    var = fit.state.pwrss / (fit.nobs - 4) * (1 + x @ fit.state.factor.unscaled_vcov() @ x)
    assert c.var() == pytest.approx(var, rel=0.04)
    g = predictive_draws(fit, nd, n_sims=20000, seed=2)[:, 0]
    T = fit.relative_factors()[0]
    assert g.var() == pytest.approx(var + fit.state.pwrss / (fit.nobs - 4) * T[0, 0] ** 2, rel=0.04)


# --------------------------------------------------------------------------------------------
# simulate (lme4 simulate.merMod)
# --------------------------------------------------------------------------------------------


def test_simulate_frame_and_seed():
    fit, _ = fit_case("sleepstudy_reml")
    y = fit.simulate(3, seed=42)
    assert list(y.columns) == ["sim_1", "sim_2", "sim_3"] and y.shape == (180, 3)
    pd.testing.assert_frame_equal(y, fit.simulate(3, seed=42))
    with pytest.raises(ValueError, match="nsim"):
        fit.simulate(0)


def test_simulate_marginal_moments():
    """re_form="~0": y = X beta + sigma (Z Lambda u + eps), so Var(y_i) = sigma^2 (1 + m_i'TT'm_i) and
    two rows of one subject covary by sigma^2 m_i'TT'm_j; re_form=None: Var = sigma^2."""
    fit, _ = fit_case("sleepstudy_reml")
    Y = fit.simulate(6000, seed=1).to_numpy()
    T = fit.relative_factors()[0]
    M = fit.terms[0].model_matrix
    s2 = fit.sigma ** 2
    rows = [0, 9]  # subject 308, Days 0 and 9
    C = s2 * (M[rows] @ T @ T.T @ M[rows].T + np.eye(2))
    emp = np.cov(Y[rows])
    np.testing.assert_allclose(emp, C, rtol=0.08)
    mean_expected = fit.design.X @ fit.beta
    assert np.all(np.abs(Y.mean(axis=1) - mean_expected) < 4.5 * np.sqrt(np.diag(C).max() / 6000))
    assert np.cov(Y[0], Y[20])[0, 1] == pytest.approx(0, abs=0.08 * s2)  # different subjects
    Yc = fit.simulate(6000, seed=2, re_form=None).to_numpy()
    np.testing.assert_allclose(Yc.mean(axis=1)[:3], fit.fitted[:3], atol=4.5 * fit.sigma / np.sqrt(6000))
    assert Yc[0].var() == pytest.approx(s2, rel=0.06)


def test_simulate_newdata_with_new_levels():
    fit, _ = fit_case("sleepstudy_reml")
    nd = pd.DataFrame({"Days": [0, 0], "Subject": ["X", "Y"]})
    Y = fit.simulate(5000, seed=4, newdata=nd)
    assert Y.shape == (2, 5000)
    T = fit.relative_factors()[0]
    var = fit.sigma ** 2 * (1 + T[0] @ T[0])
    assert Y.iloc[0].var() == pytest.approx(var, rel=0.06)
    assert abs(np.corrcoef(Y.iloc[0], Y.iloc[1])[0, 1]) < 0.06
    with pytest.raises(mp.DataError, match="new levels"):
        fit.simulate(2, newdata=nd, re_form=None)


def test_sim_sparse_kernel_path_equals_dense(monkeypatch):
    """Crossed terms with the sparse Schur complement give the same draws as the dense path."""
    from mixedpy.linalg.blocked import CrossProducts

    data = ref_data("penicillin.csv")
    dense = mp.lmer("diameter ~ 1 + (1 | plate) + (1 | sample)", data)
    monkeypatch.setattr(CrossProducts, "DENSE_LIMIT", 0)
    monkeypatch.setattr(CrossProducts, "SPARSE_DENSITY", 2.0)
    sparse = mp.lmer("diameter ~ 1 + (1 | plate) + (1 | sample)", data)
    assert sparse.state.factor.cp.sparse and not dense.state.factor.cp.sparse
    a, b = sim(dense, 300, seed=4), sim(sparse, 300, seed=4)
    np.testing.assert_allclose(a.fixef.to_numpy(), b.fixef.to_numpy(), rtol=1e-6)
    for k in a.ranef:
        np.testing.assert_allclose(a.ranef[k], b.ranef[k], rtol=1e-5, atol=1e-5)


def test_predictive_draws_missing_group_is_a_new_group(sleep_sims):
    fit, s = sleep_sims
    nd = pd.DataFrame({"Days": [1.0, 1.0], "Subject": [None, None]})
    eta = predictive_draws(s, nd, seed=2, what="eta")
    # each row with a missing group draws its own effect
    assert not np.allclose(eta[:, 0], eta[:, 1])
    T = fit.relative_factors()[0]
    x = np.array([1.0, 1.0])
    e_s2 = fit.state.pwrss / (fit.nobs - 4)
    var = e_s2 * (x @ T @ T.T @ x + x @ fit.state.factor.unscaled_vcov() @ x)
    assert eta[:, 0].var() == pytest.approx(var, rel=0.05)
