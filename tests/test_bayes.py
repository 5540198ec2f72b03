"""Bayesian mode (bayes_lmer / bayes_glmer): priors, kernels against dense NumPy, exact conditional
draws, the rstanarm sleepstudy reference, output layout, predictions, errors."""
from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import mixedpy as mp
from mixedpy.bayes.covariance import CovariancePrior, cholesky_to_cpc, cpc_to_cholesky
from mixedpy.bayes.lmm_posterior import LMMPosterior
from mixedpy.bayes.posterior import Posterior
from mixedpy.bayes.priors import Decov, prior_summary_text, resolve_priors
from mixedpy.formula.design import build_design

from conftest import load_ref, ref_data

SLEEP = "Reaction ~ Days + (Days | Subject)"


def _priors(ref_name, family="gaussian"):
    ref = load_ref(ref_name, "rstanarm")
    d = build_design(ref["formula"], ref_data(ref["data"]))
    y = d.y if d.y.ndim == 1 else d.y[:, 0] / d.y.sum(axis=1)
    return resolve_priors(family, {"gaussian": "identity", "binomial": "logit"}[family], y, d.X,
                          d.fixef_names), ref


# ---- priors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,family", [("bayes_sleepstudy_slopes", "gaussian"), ("bayes_exam_slopes", "gaussian"),
                                         ("bayes_dyestuff", "gaussian"), ("bayes_cbpp", "binomial")])
def test_prior_summary_matches_rstanarm(name, family):
    pr, ref = _priors(name, family)
    got, want = prior_summary_text(pr, "fit").splitlines(), ref["prior_summary"].splitlines()
    # rstanarm's text line for line, except that its last line points to R's help page
    assert got[:-1] == want[:-1]
    assert want[-1] == "See help('prior_summary.stanreg') for more details"
    assert got[-1] == "See help(mixedpy.bayes.Posterior.prior_summary) for more details"


def test_default_autoscaling_sleepstudy():
    pr, _ = _priors("bayes_sleepstudy_slopes")
    df = ref_data("sleepstudy.csv")
    sd_y = df.Reaction.std()
    assert pr.intercept.location[0] == pytest.approx(df.Reaction.mean())
    assert pr.intercept.scale[0] == pytest.approx(2.5 * sd_y)
    assert pr.coef.scale[0] == pytest.approx(2.5 * sd_y / df.Days.std())
    assert pr.aux.rate == pytest.approx(1 / sd_y)


def test_user_priors_not_autoscaled_and_dict_spec():
    df = ref_data("sleepstudy.csv")
    d = build_design(SLEEP, df)
    pr = resolve_priors("gaussian", "identity", d.y, d.X, d.fixef_names, prior=mp.normal(0, 10),
                        prior_intercept=mp.student_t(3, 250, 50), prior_aux=mp.exponential(0.1))
    assert pr.coef.scale[0] == 10 and pr.intercept.kind == "student_t" and pr.aux.rate == 0.1
    assert not pr.all_gaussian
    pr2 = resolve_priors("gaussian", "identity", d.y, d.X, d.fixef_names,
                         prior={"b": mp.normal(0, 10), "sigma": mp.exponential(0.1)})
    assert pr2.coef.scale[0] == 10 and pr2.aux.rate == 0.1 and pr2.intercept.scale[0] > 100


def test_prior_errors():
    with pytest.raises(ValueError, match="scale"):
        mp.normal(0, -1)
    with pytest.raises(ValueError, match="rate"):
        mp.exponential(0)
    with pytest.raises(ValueError, match="decov"):
        mp.decov(shape=0)
    df = ref_data("sleepstudy.csv")
    d = build_design(SLEEP, df)
    with pytest.raises(TypeError, match="prior_covariance"):
        resolve_priors("gaussian", "identity", d.y, d.X, d.fixef_names, prior_covariance=mp.normal())
    with pytest.raises(ValueError, match="unknown prior classes"):
        resolve_priors("gaussian", "identity", d.y, d.X, d.fixef_names, prior={"beta": mp.normal()})


# ---- covariance parameterization ---------------------------------------------------------------
def test_cpc_roundtrip_and_unit_rows():
    rng = np.random.default_rng(0)
    y = rng.standard_normal((5, 6))
    L, _ = cpc_to_cholesky(y, 4)
    assert np.allclose(np.sum(L ** 2, axis=2), 1.0)
    for w in range(5):
        assert np.allclose(cholesky_to_cpc(L[w]), y[w], atol=1e-8)


@pytest.mark.parametrize("eta", [1.0, 2.5])
def test_lkj_density_with_jacobian_k3(eta):
    """The density on the unconstrained scale equals LKJ(Omega | eta) |d Omega / d y| up to a constant."""
    ct = CovariancePrior(3, Decov(regularization=eta), 0)
    rng = np.random.default_rng(1)
    diffs = []
    for _ in range(6):
        yv = 0.7 * rng.standard_normal(3)
        x = np.concatenate([[0.0, 0.0, 0.0], yv])[None]
        L, lp = ct.transform(x, np.ones(1))
        lp_corr = lp[0] - ct.transform(np.concatenate([[0.0, 0.0, 0.0], np.zeros(3)])[None], np.ones(1))[1][0]

        def omega(v):
            Lo, _ = cpc_to_cholesky(v[None], 3)
            O = Lo[0] @ Lo[0].T
            return np.array([O[1, 0], O[2, 0], O[2, 1]])

        J = np.empty((3, 3))
        for j in range(3):
            e = np.zeros(3)
            e[j] = 1e-6
            J[:, j] = (omega(yv + e) - omega(yv - e)) / 2e-6
        Lo, _ = cpc_to_cholesky(yv[None], 3)
        O = Lo[0] @ Lo[0].T
        target = (eta - 1) * np.log(np.linalg.det(O)) + np.log(abs(np.linalg.det(J)))
        diffs.append(lp_corr - target)
    assert np.ptp(diffs) < 1e-5


def test_decov_k2_correlation_prior_is_uniform():
    """With regularization 1 the k = 2 correlation is uniform: density in y = atanh(r) is (1 - r^2)/2."""
    ct = CovariancePrior(2, Decov(), 0)
    ys = np.linspace(-2, 2, 9)
    x = np.column_stack([np.zeros(9), np.zeros(9), ys])
    _, lp = ct.transform(x, np.ones(9))
    r = np.tanh(ys)
    assert np.ptp(lp - np.log1p(-r ** 2)) < 1e-10


# ---- the LMM kernel against dense NumPy ---------------------------------------------------------------
def _dense_marginal(post, x):
    sigma, chols, lp, beta = post.unpack(x[None])
    V = sigma[0] ** 2 * np.eye(post.n)
    for t, L in zip(post.terms, chols):
        Z = t.z_matrix().toarray()
        V += Z @ np.kron(np.eye(t.n_levels), L[0] @ L[0].T) @ Z.T
    if beta is None:
        V += post.Xc @ np.diag(1 / post.prior_prec) @ post.Xc.T
        return stats.multivariate_normal(post.Xc @ post.prior_loc, V).logpdf(post.y) + lp[0]
    return stats.multivariate_normal(post.Xc @ beta[0], V).logpdf(post.y) + lp[0]


@pytest.mark.parametrize("formula,data", [(SLEEP, "sleepstudy.csv"),
                                          ("diameter ~ 1 + (1 | plate) + (1 | sample)", "penicillin.csv"),
                                          ("Yield ~ 1 + (1 | Batch)", "dyestuff.csv")])
def test_log_prob_matches_dense_marginal(formula, data):
    d = build_design(formula, ref_data(data))
    pr = resolve_priors("gaussian", "identity", d.y, d.X, d.fixef_names)
    post = LMMPosterior(d, pr)
    rng = np.random.default_rng(3)
    xs = rng.normal(0, 0.5, (4, post.dim)) + np.r_[np.log(np.std(d.y) / 2), np.zeros(post.dim - 1)]
    lp = post.log_prob(xs)
    dense = np.array([_dense_marginal(post, x) for x in xs])
    assert np.allclose(lp, dense, rtol=0, atol=1e-7)
    if post._batched:
        post._batched = False
        assert np.allclose(post.log_prob(xs), lp, atol=1e-8)


def test_log_prob_with_sampled_beta_matches_dense():
    d = build_design(SLEEP, ref_data("sleepstudy.csv"))
    pr = resolve_priors("gaussian", "identity", d.y, d.X, d.fixef_names, prior=mp.student_t(4, 0, 10))
    post = LMMPosterior(d, pr)
    assert not post.integrate_beta and post.dim == 6
    x = np.array([np.log(25.0), 0.0, 0.3, 0.1, 300.0, 10.0])
    dense = _dense_marginal(post, x) + pr.coef.logpdf(np.array([[10.0]]))[0] + pr.intercept.logpdf(np.array([[300.0]]))[0]
    assert post.log_prob(x[None])[0] == pytest.approx(dense, abs=1e-7)


@pytest.mark.parametrize("formula,data", [(SLEEP, "sleepstudy.csv"),
                                          ("diameter ~ 1 + (1 | plate) + (1 | sample)", "penicillin.csv")])
def test_conditional_draws_match_dense_gaussian(formula, data):
    """For fixed (sigma, Sigma) the draws of (beta, b) follow the dense Gaussian posterior."""
    d = build_design(formula, ref_data(data))
    pr = resolve_priors("gaussian", "identity", d.y, d.X, d.fixef_names)
    post = LMMPosterior(d, pr)
    x = np.r_[np.log(np.std(d.y) / 2), 0.1 * np.ones(post.dim - 1)]
    S = 4000
    dr = post.draw(np.tile(x, (S, 1)), np.random.default_rng(5))
    sigma, chols, _, _ = post.unpack(x[None])
    Z = np.hstack([t.z_matrix().toarray() for t in post.terms])
    G = np.zeros((Z.shape[1], Z.shape[1]))
    off = 0
    for t, L in zip(post.terms, chols):
        G[off:off + t.n_coefs, off:off + t.n_coefs] = np.kron(np.eye(t.n_levels), L[0] @ L[0].T)
        off += t.n_coefs
    # beta's prior is on the coefficients of the centered X, so work with the centered design
    A = np.hstack([post.Xc, Z])
    P = A.T @ A / sigma[0] ** 2 + np.block([[np.diag(post.prior_prec), np.zeros((post.p, Z.shape[1]))],
                                             [np.zeros((Z.shape[1], post.p)), np.linalg.inv(G)]])
    mean = np.linalg.solve(P, A.T @ post.y / sigma[0] ** 2 + np.r_[post.prior_prec * post.prior_loc,
                                                                     np.zeros(Z.shape[1])])
    cov = np.linalg.inv(P)
    beta_c = post.centering.to_centered(dr["beta"])
    sample = np.hstack([beta_c] + [b.reshape(S, -1) for b in dr["b"]])
    se = np.sqrt(np.diag(cov) / S)
    assert np.all(np.abs(sample.mean(0) - mean) < 4.5 * se)
    assert np.allclose(sample.std(0), np.sqrt(np.diag(cov)), rtol=0.08)


# ---- one sleepstudy posterior shared by the output tests --------------------------------------
@pytest.fixture(scope="module")
def sleep_post():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mp.bayes_lmer(SLEEP, ref_data("sleepstudy.csv"), seed=2024, progress=False)


def test_sleepstudy_agrees_with_rstanarm(sleep_post):
    ref = load_ref("bayes_sleepstudy_slopes", "rstanarm")
    s = sleep_post.summary()
    assert s["rhat"].max() < 1.01
    for k, r in ref["params"].items():
        sd_r = r["sd"][0]
        mcse = np.sqrt(s.loc[k, "sd"] ** 2 / s.loc[k, "ess_bulk"] + sd_r ** 2 / r["n_eff"])
        assert abs(s.loc[k, "mean"] - r["mean"]) < 4 * mcse, k
        tol = 0.10 if not k.startswith("Sigma") else 0.12
        assert abs(s.loc[k, "sd"] / sd_r - 1) < tol, k


def test_draws_columns_like_rstanarm(sleep_post):
    ref = load_ref("bayes_sleepstudy_slopes", "rstanarm")
    D = sleep_post.draws
    assert list(D.columns) == list(ref["params"].keys())
    assert D.index.names == ["chain", "draw"] and D.index.get_level_values("chain").nunique() == 4
    assert len(D) >= 4000


def test_summary_columns(sleep_post):
    s = sleep_post.summary(probs=(0.1, 0.9))
    assert list(s.columns) == ["mean", "sd", "median", "mad_sd", "q10", "q90", "rhat", "ess_bulk", "ess_tail",
                               "mcse"]
    d = sleep_post.draws["Days"]
    assert s.loc["Days", "mad_sd"] == pytest.approx(1.4826 * np.median(np.abs(d - d.median())))


def _layout_tokens(text: str) -> list[str]:
    """Each line with numbers as '#' and runs of blanks as one: the layout without the widths that
    the realised draws decide."""
    return [re.sub(r"\s+", " ", re.sub(r"-?\d+\.\d+", "#", line)).strip() for line in text.splitlines()]


def _estimate_tables(text: str, header: str) -> list[list[list[int]]]:
    """For each table under ``header``, the right edges of the numbers in its rows (R right-aligns them)."""
    lines = text.splitlines()
    tables = []
    for start in [i + 1 for i, line in enumerate(lines) if line.split() == header.split()]:
        rows = []
        for line in lines[start:]:
            if not re.search(r"\d", line):
                break
            rows.append([m.end() for m in re.finditer(r"-?\d+\.\d+", line)])
        tables.append(rows)
    return tables


def test_print_layout_like_rstanarm(sleep_post):
    ref = load_ref("bayes_sleepstudy_slopes", "rstanarm")
    text = sleep_post.format(digits=4)
    got, want = _layout_tokens(text), _layout_tokens(ref["print"])
    # rstanarm's layout line for line, except the two closing pointers to R's help pages
    assert got[:-2] == want[:-2]
    assert want[-2:] == ["* For help interpreting the printed output see ?print.stanreg",
                         "* For info on the priors used see ?prior_summary.stanreg"]
    assert got[-2:] == ["* For help interpreting the printed output see help(mixedpy.bayes.Posterior.format)",
                        "* For info on the priors used see help(mixedpy.bayes.Posterior.prior_summary)"]
    # numbers right-aligned in columns in both estimate tables, as rstanarm prints them
    for printed in (ref["print"], text):
        tables = _estimate_tables(printed, "Median MAD_SD")
        assert [len(rows) for rows in tables] == [2, 1]       # coefficients, then sigma
        for rows in tables:
            assert all(len(r) == 2 and r == rows[0] for r in rows), printed
    assert "Median MAD_SD" in repr(sleep_post)


def test_accessors_are_posterior_medians(sleep_post):
    D = sleep_post.draws
    assert mp.fixef(sleep_post)["Days"] == pytest.approx(D["Days"].median())
    re_ = mp.ranef(sleep_post)["Subject"]
    assert re_.loc["308", "Days"] == pytest.approx(D["b[Days Subject:308]"].median())
    cf = mp.coef(sleep_post)["Subject"]
    assert cf.loc["308", "Days"] == pytest.approx(re_.loc["308", "Days"] + mp.fixef(sleep_post)["Days"])
    vc = mp.VarCorr(sleep_post)
    assert vc["Subject"].loc["Days", "Days"] == pytest.approx(D["Sigma[Subject:Days,Days]"].median())
    sh = mp.sigma_hat(sleep_post)
    assert sh["data"] == pytest.approx(D["sigma"].median())
    assert "decov" in sleep_post.prior_summary()
    tau = sleep_post.autocorr_time
    assert list(tau.index) == ["log_sigma", "Subject:log_tau", "Subject:alr_pi[0]", "Subject:atanh_cpc[0]"]
    assert np.all(tau > 0)


def test_predictions(sleep_post):
    post = sleep_post
    S = post.n_draws
    lp = post.posterior_linpred()
    assert lp.shape == (S, 180)
    D = post.draws
    s0 = D.iloc[0]
    expect = s0["(Intercept)"] + s0["b[(Intercept) Subject:308]"] + 3 * (s0["Days"] + s0["b[Days Subject:308]"])
    df = ref_data("sleepstudy.csv")
    row = np.flatnonzero((df.Subject.astype(str) == "308").to_numpy() & (df.Days == 3).to_numpy())[0]
    assert lp[0, row] == pytest.approx(expect)
    pop = post.posterior_linpred(re_form="~0")
    assert np.allclose(pop[:, 0], D["(Intercept)"].to_numpy())
    new = pd.DataFrame({"Days": [2.0, 2.0], "Subject": ["new1", "new2"]})
    with pytest.raises(mp.DataError, match="new levels"):
        post.posterior_linpred(newdata=new)
    g = post.posterior_linpred(newdata=new, allow_new_levels=True, seed=1)
    assert g.shape == (S, 2) and not np.allclose(g[:, 0], g[:, 1])
    # new levels drawn from N(0, Sigma): the spread of the intercept matches the Sigma draws
    spread = np.var(g[:, 0] - pop[:, 0] - 2 * D["Days"].to_numpy())
    assert spread == pytest.approx(np.mean(D["Sigma[Subject:(Intercept),(Intercept)]"] + 4 * D["Sigma[Subject:Days,(Intercept)]"]
                                           + 4 * D["Sigma[Subject:Days,Days]"]), rel=0.15)
    shared = post.posterior_linpred(newdata=new, allow_new_levels=True, sample_new_levels="rstanarm")
    assert np.allclose(shared[:, 0], shared[:, 1])
    unc = post.posterior_linpred(newdata=new, allow_new_levels=True, sample_new_levels="uncertainty", draws=50,
                                 seed=3)
    assert unc.shape == (50, 2)
    yrep = post.posterior_predict(seed=1)
    assert yrep.shape == (S, 180)
    assert np.std(yrep - lp) == pytest.approx(D["sigma"].mean(), rel=0.05)
    assert np.array_equal(post.posterior_predict(seed=7, draws=10), post.posterior_predict(seed=7, draws=10))


def test_loo_and_inference_data(sleep_post):
    loo = sleep_post.loo()
    assert loo["looic"] == pytest.approx(-2 * loo["elpd_loo"])
    assert 1700 < loo["looic"] < 1800 and 10 < loo["p_loo"] < 60
    idata = sleep_post.to_inference_data()
    assert "posterior" in idata.groups() and "log_likelihood" in idata.groups()
    assert idata.posterior["beta"].shape[-1] == 2


def test_compare_table(sleep_post):
    fit = mp.lmer(SLEEP, ref_data("sleepstudy.csv"))
    tab = mp.compare(fit, sleep_post)
    assert tab.loc["Days", "lmer"] == pytest.approx(10.467286, rel=1e-6)
    assert tab.loc["sd_Subject__(Intercept)", "lmer"] == pytest.approx(24.740658, rel=1e-5)
    assert tab.loc["Days", "median"] == pytest.approx(sleep_post.draws["Days"].median())
    vpc = tab.loc["vpc_Subject"]
    assert 0 < vpc["q2.5"] < vpc["median"] < vpc["q97.5"] < 1
    assert vpc["lmer"] == pytest.approx(24.740658 ** 2 / (24.740658 ** 2 + 25.591796 ** 2), rel=1e-5)


# ---- behaviour -------------------------------------------------------------------------------------
def test_seed_reproducible_and_small_run():
    df = ref_data("dyestuff.csv")
    kw = dict(chains=2, iter=200, seed=9, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = mp.bayes_lmer("Yield ~ 1 + (1 | Batch)", df, **kw)
        b = mp.bayes_lmer("Yield ~ 1 + (1 | Batch)", df, **kw)
    assert isinstance(a, Posterior)
    assert np.array_equal(a.draws.to_numpy(), b.draws.to_numpy())
    assert list(a.draws.columns)[:2] == ["(Intercept)", "b[(Intercept) Batch:A]"]


def test_errors():
    df = ref_data("sleepstudy.csv")
    with pytest.raises(ValueError, match="warmup"):
        mp.bayes_lmer(SLEEP, df, iter=100, warmup=100)
    with pytest.raises(ValueError, match="chains"):
        mp.bayes_lmer(SLEEP, df, chains=0)
    cb = ref_data("cbpp.csv")
    with pytest.raises(mp.DataError, match="single numeric response"):
        mp.bayes_lmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cb)
    with pytest.raises(ValueError, match="family"):
        mp.bayes_glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cb, family="beta")
    with pytest.raises(ValueError, match="link"):
        mp.bayes_glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cb, link="log")
    with pytest.raises(TypeError, match="Posterior"):
        mp.compare(mp.lmer(SLEEP, df), object())


def test_glmm_small_run_shapes():
    cb = ref_data("cbpp.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = mp.bayes_glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cb, family="binomial",
                              chains=2, iter=128, seed=1, progress=False)
    assert list(post.draws.columns)[:5] == ["(Intercept)", "period2", "period3", "period4", "b[(Intercept) herd:1]"]
    assert "sigma" not in post.draws.columns
    assert post.posterior_epred().max() <= 1
    yrep = post.posterior_predict(seed=1)
    assert np.all(yrep <= post.trials) and np.all(yrep == np.round(yrep))
    assert "binomial [logit]" in repr(post)


@pytest.mark.parametrize("formula, data", [
    ("cbind(incidence, size - incidence) ~ period + (1 | herd)", "cbpp"),
    ("TICKS ~ YEAR + (1 | BROOD)", "grouseticks"),
])
def test_scalar_term_algebra_matches_dense(formula, data):
    """The arrowhead (one scalar term) Laplace algebra against the dense [Z Lambda | X] one:
    same modes, log-determinants, Newton steps, proposal draws and Laplace target."""
    from mixedpy.bayes.glmm_posterior import GLMMPosterior
    from mixedpy.bayes.priors import resolve_priors

    family = "binomial" if data == "cbpp" else "poisson"
    design = build_design(formula, mp.datasets.load(data), allow_n_levels=True)
    model = GLMMPosterior(design, family, "logit" if family == "binomial" else "log", None)
    priors = resolve_priors(family, model.link, model.y_for_priors, design.X, design.fixef_names,
                            "default", "default", None, None)
    model.set_priors(priors)
    assert model._scalar_term
    x = np.array([[-0.6], [0.1], [0.7]])
    chols, _ = model._unpack(x)
    fast = model._design(chols)
    model._scalar_term = False
    dense = model._design(chols)
    model._scalar_term = True
    rng = np.random.default_rng(0)
    V = rng.normal(size=(3, 5, model.d))
    np.testing.assert_allclose(fast.linpred(V), dense.linpred(V), rtol=1e-10, atol=1e-10)
    info = rng.uniform(0.1, 2.0, size=(3, model.n))
    score = rng.normal(size=(3, model.n))
    np.testing.assert_allclose(fast.gradient(score), dense.gradient(score), rtol=1e-10, atol=1e-10)
    ff, fd = fast.factor(info, model.P0), dense.factor(info, model.P0)
    np.testing.assert_allclose(ff.half_logdet, fd.half_logdet, rtol=1e-10)
    g = rng.normal(size=(3, model.d))
    np.testing.assert_allclose(ff.solve(g), fd.solve(g), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ff.solve_upper(V), fd.solve_upper(V), rtol=1e-8, atol=1e-10)
    v_fast, _ = model._mode(fast, 3)
    v_dense, _ = model._mode(dense, 3)
    np.testing.assert_allclose(v_fast, v_dense, rtol=1e-6, atol=1e-8)
    lp_fast = model.laplace_log_prob(x)
    model._scalar_term = False
    np.testing.assert_allclose(lp_fast, model.laplace_log_prob(x), rtol=1e-9)


def test_identical_binomial_rows_collapse_exactly(monkeypatch):
    """Pass/fail rows sharing level, covariates and offset merge into one row of sums; the target is
    unchanged (the binomial log-constants are kept)."""
    from mixedpy.bayes.glmm_posterior import GLMMPosterior
    from mixedpy.bayes.priors import resolve_priors

    rng = np.random.default_rng(3)
    codes = np.repeat(np.arange(12), rng.integers(3, 9, 12))
    df = pd.DataFrame({"y": rng.integers(0, 2, codes.size), "g": codes, "x": codes % 2})

    def model(collapse: bool):
        if not collapse:
            monkeypatch.setattr(GLMMPosterior, "_collapse_identical_rows", lambda self: None)
        design = build_design("y ~ x + (1 | g)", df, allow_n_levels=True)
        m = GLMMPosterior(design, "binomial", "logit", None)
        m.set_priors(resolve_priors("binomial", "logit", m.y_for_priors, design.X, design.fixef_names,
                                    "default", "default", None, None))
        monkeypatch.undo()
        return m

    merged, full = model(True), model(False)
    assert merged.n == 12 and full.n == codes.size
    x = np.array([[-1.0], [0.0], [0.8]])
    np.testing.assert_allclose(merged.laplace_log_prob(x), full.laplace_log_prob(x), rtol=1e-10)
