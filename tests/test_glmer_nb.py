"""Negative binomial GLMMs (issue 13): MASS's negative.binomial family, glmer at a fixed theta and
glmer_nb's estimated theta, against lme4 1.1-31 / MASS (tests/reference/gen/glmer_nb.R)."""
from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import mixedpy as mp
from mixedpy.errors import DataError
from mixedpy.families import NegativeBinomial, get_family, negative_binomial
from mixedpy.glmer_nb import theta_ml
from test_outputs import _r_lines   # R's printed lines in mixedpy's conventions

REF = Path(__file__).parent / "reference"
DTYPES = {"YEAR": str, "BROOD": str, "LOCATION": str, "g": str}
CASES = {"nb_sim_intercept": ("nb_sim", "y ~ x + (1 | g)"),
         "nb_sim_offset": ("nb_sim_offset", "y ~ x + offset(logt) + (1 | g)"),
         "nb_grouseticks_two_terms": ("grouseticks", "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)")}


def ref(name: str) -> dict:
    return json.loads((REF / "glmer_nb" / f"{name}.json").read_text())


def data(csv: str) -> pd.DataFrame:
    return pd.read_csv(REF / "data" / f"{csv}.csv", dtype=DTYPES)


_FITS: dict = {}


def nb_fit(name: str):
    if name not in _FITS:
        csv, formula = CASES[name]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", mp.ConvergenceWarning)
            _FITS[name] = mp.glmer_nb(formula, data(csv))
    return _FITS[name]


def values(d: dict) -> np.ndarray:
    return np.array(list(d.values()), dtype=float)


# ---- the family ------------------------------------------------------------------------------------
def _counts(n=40, seed=3):
    rng = np.random.default_rng(seed)
    y = rng.negative_binomial(2, 0.4, n).astype(float)
    eta = rng.normal(0.8, 0.7, n)
    return y, eta


def _nb_case(theta: float, link: str):
    """(family, counts, eta, response) with the means exp(N(0.8, 0.7)) on every link's scale."""
    y, eta = _counts()
    fam = NegativeBinomial(theta, link)
    if link != "log":
        eta = fam.linkfun(np.exp(eta))
    return fam, y, eta, fam.prepare(y, None)


@pytest.mark.parametrize("link", ["log", "sqrt", "identity"])
def test_loglik_aic_and_deviance_match_scipy(link):
    fam, y, eta, resp = _nb_case(2.5, link)
    mu = fam.linkinv(eta)
    ll = stats.nbinom.logpmf(y, 2.5, 2.5 / (2.5 + mu))
    np.testing.assert_allclose(fam.loglik_eta(eta, resp), ll, rtol=1e-11)
    assert fam.aic(resp, mu) == pytest.approx(-2 * ll.sum(), rel=1e-12)
    sat = stats.nbinom.logpmf(y, 2.5, 2.5 / (2.5 + y))
    np.testing.assert_allclose(fam.dev_resids(y, mu, resp.weights), 2 * (sat - ll), atol=1e-10)
    np.testing.assert_allclose(fam.variance(mu), stats.nbinom.var(2.5, 2.5 / (2.5 + mu)), rtol=1e-12)


@pytest.mark.parametrize("link", ["log", "sqrt"])
def test_score_and_information_are_the_eta_derivatives(link):
    fam, y, eta, resp = _nb_case(1.7, link)
    h = 1e-6
    num = (fam.loglik_eta(eta + h, resp) - fam.loglik_eta(eta - h, resp)) / (2 * h)
    score, info = fam.score_info(eta, resp)
    np.testing.assert_allclose(score, num, rtol=1e-6, atol=1e-8)
    mu, d = fam.linkinv(eta), fam.mu_eta(eta)
    np.testing.assert_allclose(info, d * d / fam.variance(mu), rtol=1e-12)   # Fisher information


def test_aux_is_the_size_per_draw():
    """rstanarm's neg_binomial_2 reciprocal_dispersion: aux replaces theta, one value per draw."""
    y, eta = _counts(10)
    fam = NegativeBinomial(2.0)
    resp = fam.prepare(y, None)
    sizes = np.array([0.5, 2.0, 9.0])
    etas = np.vstack([eta, eta, eta])
    ll = fam.loglik_eta(etas, resp, aux=sizes)
    for s, row in zip(sizes, ll):
        np.testing.assert_allclose(row, NegativeBinomial(s).loglik_eta(eta, resp), rtol=1e-12)
    sc, inf = fam.score_info(etas, resp, aux=sizes)
    np.testing.assert_allclose(sc[2], NegativeBinomial(9.0).score_info(eta, resp)[0], rtol=1e-12)
    assert np.all(np.isfinite(fam.loglik_eta(np.array([-800.0, 800.0]), fam.prepare(np.array([0.0, 3.0]), None))))


def test_mustart_and_counts_checks():
    fam = negative_binomial(3)
    resp = fam.prepare(np.array([0.0, 2.0, 5.0]), None)
    np.testing.assert_allclose(fam.mustart(resp), [1 / 6, 2.0, 5.0])   # MASS: y + (y == 0) / 6
    with pytest.raises(DataError, match="negative binomial response 'y' has 1 non-integer"):
        fam.prepare(np.array([1.0, 2.5]), None, name="y")
    with pytest.raises(DataError, match="negative binomial response 'y' has 1 negative"):
        fam.prepare(np.array([1.0, -2.0]), None, name="y")


def test_simulate_has_the_nb_mean_and_variance():
    fam = NegativeBinomial(2.0)
    mu = np.full(200_000, 3.0)
    y = fam.simulate(np.random.default_rng(5), mu)
    assert np.all(y == np.round(y)) and y.min() >= 0
    assert y.mean() == pytest.approx(3.0, rel=0.01)
    assert y.var() == pytest.approx(3.0 + 9.0 / 2.0, rel=0.02)
    # one size per draw (rstanarm's posterior_predict): aux replaces theta row by row
    y2 = fam.simulate(np.random.default_rng(6), np.full((2, 100_000), 3.0), aux=np.array([0.5, 50.0]))
    np.testing.assert_allclose(y2.var(axis=1), [3.0 + 9.0 / 0.5, 3.0 + 9.0 / 50.0], rtol=0.04)


def test_family_names_and_rs_label():
    assert get_family("nb", nb_theta=2) == get_family("negative.binomial", nb_theta=2) == NegativeBinomial(2)
    assert get_family("negative_binomial", "sqrt", nb_theta=2).link.name == "sqrt"
    assert NegativeBinomial(2) != NegativeBinomial(3)
    assert NegativeBinomial(2).r_family == "Negative Binomial(2)"       # R: format(round(theta, 4))
    assert NegativeBinomial(1.60799600353866).r_family == ref("nb_sim_intercept")["family"]
    assert NegativeBinomial(3.30339457937266).r_family == "Negative Binomial(3.3034)"
    with pytest.raises(ValueError, match="needs its size theta"):
        get_family("nb")
    with pytest.raises(ValueError, match="only to the negative binomial"):
        get_family("poisson", nb_theta=2)
    with pytest.raises(ValueError, match="positive"):
        NegativeBinomial(-1)
    with pytest.raises(ValueError, match="not available"):
        NegativeBinomial(1, "logit")


def test_theta_ml_matches_mass_at_the_poisson_fit():
    """lme4's start: MASS::theta.ml of the Poisson glmer's fitted means (est_theta)."""
    for name, (csv, formula) in CASES.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            g0 = mp.glmer(formula, data(csv), family="poisson")
        est = theta_ml(g0.problem.y, g0.fitted, g0.problem.wt, limit=20, eps=1e-4)
        assert est.theta == pytest.approx(ref(name)["nb_theta_start"], rel=1e-5), name


def test_theta_ml_on_known_means():
    rng = np.random.default_rng(2)
    mu = rng.uniform(1, 6, 4000)
    y = rng.negative_binomial(1.5, 1.5 / (1.5 + mu))
    est = theta_ml(y, mu)
    assert est.theta == pytest.approx(1.5, abs=4 * est.se) and est.warning == ""


# ---- glmer at a fixed theta -------------------------------------------------------------------------
@pytest.mark.parametrize("name,csv,formula,link", [
    ("nb_fixed_theta2", "grouseticks", "TICKS ~ YEAR + cHEIGHT + (1 | LOCATION)", "log"),
    ("nb_fixed_theta2_sqrt", "nb_sim", "y ~ x + (1 | g)", "sqrt")])
def test_glmer_with_fixed_theta_matches_lme4(name, csv, formula, link):
    r = ref(name)
    fit = mp.glmer(formula, data(csv), family="negative_binomial", link=link, nb_theta=2)
    assert fit.nb_theta == 2.0 and fit.family.link.name == link
    np.testing.assert_allclose(fit.beta, values(r["fixef"]), rtol=1e-4)
    np.testing.assert_allclose(fit.theta, r["theta"], rtol=1e-4)
    np.testing.assert_allclose(np.sqrt(np.diag(fit.vcov_array)), values(r["se_fixef"]), rtol=1e-4)
    assert fit.loglik == pytest.approx(r["logLik"], rel=1e-7)
    assert fit.df == r["df"]                    # lme4 counts theta even when it is fixed
    assert fit.aic == pytest.approx(r["AIC"], rel=1e-7)
    assert fit.deviance == pytest.approx(r["deviance_ml"], rel=1e-5)
    # lme4's header, e.g. " Family: Negative Binomial(2)  ( sqrt )", and the AIC/BIC/logLik block
    ours = [line.rstrip() for line in fit.summary().splitlines()]
    theirs = _r_lines(r["summary"].split("\n"))
    assert ours[1] == theirs[1] == f" Family: Negative Binomial(2)  ( {link} )"
    assert ours[3:6] == theirs[3:6]


def test_fixed_theta_profile_intervals_match_lme4():
    r = ref("nb_fixed_theta2")
    fit = mp.glmer("TICKS ~ YEAR + cHEIGHT + (1 | LOCATION)", data("grouseticks"),
                   family=mp.families.negative_binomial(2))
    ci = mp.confint(fit, method="profile")
    assert list(ci.index) == r["confint_profile"]["rows"]
    np.testing.assert_allclose(ci.iloc[:, 0], r["confint_profile"]["lower"], rtol=2e-3)
    np.testing.assert_allclose(ci.iloc[:, 1], r["confint_profile"]["upper"], rtol=2e-3)


# ---- glmer_nb ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["nb_sim_intercept", "nb_sim_offset"])
def test_glmer_nb_matches_lme4(name):
    fit, r = nb_fit(name), ref(name)
    assert fit.nb_theta == pytest.approx(r["nb_theta"], rel=1e-4)
    np.testing.assert_allclose(fit.beta, values(r["fixef"]), rtol=1e-4)
    np.testing.assert_allclose(fit.theta, r["theta"], rtol=1e-4)
    np.testing.assert_allclose(np.sqrt(np.diag(fit.vcov_array)), values(r["se_fixef"]), rtol=1e-4)
    assert fit.loglik == pytest.approx(r["logLik"], rel=1e-6)
    assert fit.df == r["df"] and fit.aic == pytest.approx(r["AIC"], rel=1e-6)
    assert fit.nb_search.start == pytest.approx(r["nb_theta_start"], rel=1e-5)
    assert fit.nb_search.converged and fit.converged
    assert isinstance(fit, mp.GlmerNbFit)


def test_glmer_nb_two_random_terms_matches_lme4():
    """grouseticks, (1 | BROOD) + (1 | LOCATION).  lme4's Laplace value here carries PIRLS-path noise
    of ~3e-3, so lme4's own estimates at a given theta move by up to 6e-4 relative with the optimizer
    (its glmer.nb result and a bobyqa glmer at the same theta differ that much); mixedpy minimizes the
    exact objective and attains a log-likelihood 1.8e-4 higher than lme4's.  theta is within 1e-4."""
    fit, r = nb_fit("nb_grouseticks_two_terms"), ref("nb_grouseticks_two_terms")
    assert fit.nb_theta == pytest.approx(r["nb_theta"], rel=1e-4)
    np.testing.assert_allclose(fit.beta, values(r["fixef"]), rtol=3e-4)
    np.testing.assert_allclose(fit.theta, r["theta"], rtol=3e-4)
    np.testing.assert_allclose(np.sqrt(np.diag(fit.vcov_array)), values(r["se_fixef"]), rtol=3e-4)
    assert fit.loglik == pytest.approx(r["logLik"], rel=1e-6)
    assert fit.loglik >= r["logLik"] - 1e-6


def test_summary_and_print_are_lme4s():
    fit, r = nb_fit("nb_sim_intercept"), ref("nb_sim_intercept")
    ours = [line.rstrip() for line in fit.summary().splitlines() if not line.startswith("   Data:")]
    theirs = _r_lines(r["summary"].split("\n"))
    assert " Family: Negative Binomial(1.608)  ( log )" in ours
    # the residual quartiles and the fixed-effect table carry lme4's optimizer noise in their last digit
    skip = {i for i, line in enumerate(theirs) if line.startswith(("-1.1122", "(Intercept)  ", "x    "))}
    assert [x for i, x in enumerate(ours) if i not in skip] == [x for i, x in enumerate(theirs) if i not in skip]
    printed = [line.rstrip() for line in str(fit).splitlines() if not line.startswith("   Data:")]
    assert printed[:4] == _r_lines(r["print"].split("\n"))[:4]


def test_display_matches_arm():
    fit, r = nb_fit("nb_sim_intercept"), ref("nb_sim_intercept")
    text = mp.display(fit, print_output=False)
    lines = text.split("\n")
    want = r["display"].split("\n")
    assert lines[0].endswith("family = MASS::negative.binomial(theta = %.15g))" % fit.nb_theta)
    i, j = (next(k for k, x in enumerate(t) if "coef.est" in x) for t in (lines, want))
    assert [x.rstrip() for x in lines[i:]] == [x.rstrip() for x in want[j:]]


def test_predict_response_and_wald_intervals_match_lme4():
    fit, r = nb_fit("nb_sim_intercept"), ref("nb_sim_intercept")
    nd = pd.DataFrame(r["predict"]["newdata"])
    np.testing.assert_allclose(fit.predict(nd, type="response", allow_new_levels=True), r["predict"]["response"],
                               rtol=1e-4)
    np.testing.assert_allclose(fit.fitted, r["fitted_all"], rtol=2e-4)
    ci = mp.confint(fit)
    np.testing.assert_allclose(ci.iloc[1:, 0], r["confint_wald"]["lower"][1:], rtol=1e-4)
    np.testing.assert_allclose(ci.iloc[1:, 1], r["confint_wald"]["upper"][1:], rtol=1e-4)


def test_profile_intervals_hold_theta_fixed_as_lme4():
    fit, r = nb_fit("nb_sim_intercept"), ref("nb_sim_intercept")
    ci = mp.confint(fit, method="profile")
    assert list(ci.index) == r["confint_profile"]["rows"]
    np.testing.assert_allclose(ci.iloc[:, 0], r["confint_profile"]["lower"], rtol=2e-3)
    np.testing.assert_allclose(ci.iloc[:, 1], r["confint_profile"]["upper"], rtol=2e-3)


def test_simulate_refit_and_pickle_keep_theta():
    fit = nb_fit("nb_sim_intercept")
    sims = fit.simulate(nsim=400, seed=3, re_form=None)
    assert sims.shape == (fit.nobs, 400) and np.all(sims.to_numpy() == np.round(sims.to_numpy()))
    mu = np.asarray(fit.fitted, dtype=float)
    # conditional on the modes each row is NB(mu, theta): check the pooled standardized moments
    z = (sims.to_numpy() - mu[:, None]) / np.sqrt(mu + mu ** 2 / fit.nb_theta)[:, None]
    assert abs(z.mean()) < 0.02 and z.var() == pytest.approx(1.0, abs=0.05)
    re = fit.refit(newresp=sims["sim_1"].to_numpy(), quiet=True)
    assert re.nb_theta == fit.nb_theta and re.df == fit.df
    back = pickle.loads(pickle.dumps(fit))
    assert back.nb_theta == fit.nb_theta and back.nb_search.n_evals == fit.nb_search.n_evals
    np.testing.assert_allclose(back.beta, fit.beta)


def test_glmer_nb_arguments():
    d = data("nb_sim")
    with pytest.raises(ValueError, match="not available"):
        mp.glmer_nb("y ~ x + (1 | g)", d, link="logit")
    with pytest.raises(ValueError, match="lower < upper"):
        mp.glmer_nb("y ~ x + (1 | g)", d, init_theta=2, interval=(1, 0))
    bad = d.assign(y=d["y"] + 0.5)
    with pytest.raises(DataError, match="negative binomial response"):
        mp.glmer_nb("y ~ x + (1 | g)", bad)
    # a given start theta skips the Poisson fit and reaches the same optimum
    fit = mp.glmer_nb("y ~ x + (1 | g)", d, init_theta=1.0)
    assert fit.nb_search.start == 1.0
    assert fit.nb_theta == pytest.approx(ref("nb_sim_intercept")["nb_theta"], rel=1e-4)


def test_simulate_and_predictive_draws_for_new_rows():
    """New rows need no trials: draws are rnbinom(theta, mu) at the rows' means (the defect: the
    newdata paths knew only binomial and Poisson)."""
    fit, r = nb_fit("nb_sim_intercept"), ref("nb_sim_intercept")
    nd = pd.DataFrame(r["predict"]["newdata"]).iloc[:3]          # existing levels
    sims = fit.simulate(nsim=20000, seed=4, newdata=nd, re_form=None).to_numpy()
    mu = np.asarray(fit.predict(nd, type="response"), dtype=float)
    np.testing.assert_allclose(sims.mean(axis=1), mu, rtol=0.03)
    np.testing.assert_allclose(sims.var(axis=1), mu + mu ** 2 / fit.nb_theta, rtol=0.06)
    draws = mp.predictive_draws(fit, pd.DataFrame(r["predict"]["newdata"]), n_sims=200, seed=1)
    assert draws.shape == (200, 4) and np.all(draws >= 0) and np.all(draws == np.round(draws))


def test_nagq0_theta_search():
    """nAGQ = 0 (beta from PIRLS): lme4's nAGQ = 0 deviance carries more PIRLS-path noise, so theta agrees
    to 3e-3 and the fixed effects to 2e-4; the exact optimum's log-likelihood is not below lme4's."""
    r = ref("nb_sim_nagq0")
    fit = mp.glmer_nb("y ~ x + (1 | g)", data("nb_sim"), nAGQ=0)
    assert fit.nAGQ == 0 and r["nAGQ"] == 0
    assert fit.nb_theta == pytest.approx(r["nb_theta"], rel=3e-3)
    np.testing.assert_allclose(fit.beta, values(r["fixef"]), rtol=2e-4)
    np.testing.assert_allclose(fit.theta, r["theta"], rtol=3e-3)
    np.testing.assert_allclose(np.sqrt(np.diag(fit.vcov_array)), values(r["se_fixef"]), rtol=2e-3)
    assert fit.loglik >= r["logLik"] - 1e-6


def test_nagq_above_one_is_refused():
    """lme4's AGQ deviance omits the theta-dependent saturated log-likelihood, so glmer.nb(nAGQ = 5)
    returns a meaningless theta (0.092 for these data, against 1.61 by Laplace): refused with the fix."""
    with pytest.raises(ValueError, match="saturated log-likelihood"):
        mp.glmer_nb("y ~ x + (1 | g)", data("nb_sim"), nAGQ=5)


def test_missing_rows_with_na_exclude():
    """Rows with a missing count are dropped (with a warning) and, with na_action="exclude", the
    per-row results are padded back to the data's rows, as glmer does."""
    d = data("nb_sim")
    d.loc[[3, 10], "y"] = np.nan
    with pytest.warns(mp.MissingValuesWarning):
        fit = mp.glmer_nb("y ~ x + (1 | g)", d, na_action="exclude")
    assert fit.nobs == len(d) - 2 and fit.na_action == "exclude"
    res = np.asarray(fit.residuals())
    assert res.shape == (len(d),) and np.isnan(res[[3, 10]]).all()

