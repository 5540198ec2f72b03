"""``bayes_lmer`` and ``bayes_glmer``: formula -> design -> rstanarm priors -> emcee -> Posterior.

What is exact and what is approximate
-------------------------------------
* Gaussian LMMs: the random effects (and the coefficients when their priors are normal or flat)
  are integrated out analytically with lme4's blocked PLS factor, emcee samples only
  (log sigma, covariance parameters [, coefficients under t/cauchy priors]), and beta and b are
  drawn exactly from their Gaussian conditionals for every kept draw.  The target is exactly
  rstanarm's posterior; the only error is Monte-Carlo error.
* GLMMs (binomial, Poisson, neg_binomial_2, Gamma, inverse.gaussian, gaussian with any link):
  pseudo-marginal emcee (Andrieu & Roberts 2009).  emcee samples the covariance parameters (and the
  log of the auxiliary parameter: size, shape, lambda or sigma); for each proposal the likelihood of (y | Sigma) is estimated *unbiasedly* by
  importance sampling of (beta, u) from a Student-t approximation centred at the Laplace mode, and one
  importance draw is kept with probability proportional to its weight.  The chain's stationary law is
  the exact joint posterior of (Sigma, beta, b); the Laplace approximation only affects efficiency.
"""
from __future__ import annotations

import warnings

import numpy as np

from ..covstruct import require_unstructured
from ..errors import DiagnosticWarning
from ..formula.bars import parse_formula
from ..formula.design import build_design
from ..lmer import caller_namespace, fit_problem
from ..lmm import LMMProblem
from ..scale import is_dask_frame
from ..threads import controls_threads
from .diagnostics import convergence_messages, diagnose
from .family import AUX_NAME, resolve_family
from .lmm_posterior import LMMPosterior
from .mode import polish_mode
from .posterior import Posterior
from .priors import resolve_priors
from .sampler import find_mode, run_ensemble
from ..validation import check_constant_response, check_single_response

class BayesConvergenceWarning(DiagnosticWarning):
    """R-hat or effective sample size indicate an unreliable posterior sample."""


def _check_run_args(chains, iter, warmup):
    """Validated (chains, iter, warmup); warmup defaults to iter // 2 as in rstan."""
    if int(chains) < 1:
        raise ValueError(f"chains must be at least 1, got {chains}")
    if int(iter) < 2:
        raise ValueError(f"iter must be at least 2, got {iter}")
    warmup = int(iter) // 2 if warmup is None else int(warmup)
    if not 0 <= warmup < int(iter):
        raise ValueError(f"warmup must be in [0, iter), got {warmup} with iter={iter}")
    return int(chains), int(iter), warmup


def _new_level_draws(Sigmas, rng):
    out = []
    for S in Sigmas:
        L = np.linalg.cholesky(S + 1e-12 * np.eye(S.shape[-1]))
        out.append(np.einsum("sab,sb->sa", L, rng.standard_normal(S.shape[:2])))
    return out


def _finish(design, family, link, priors, draws, out, chains, method, rng, trials=None, extra=None,
            param_names=None):
    draws["b_new"] = _new_level_draws(draws["Sigma"], rng)
    import pandas as pd

    tau = pd.Series(out.tau, index=param_names, name="autocorr_time")
    n_seq = out.chains
    info = {"seconds": out.seconds, "thin": out.thin, "warmup_steps": out.warmup_steps,
            "nwalkers": out.x.shape[2], "acceptance": out.acceptance, "tau": tau, **(extra or {})}
    post = Posterior(design, family, link, priors, draws, (n_seq, out.x.shape[1] * out.x.shape[2]), chains, info, method, trials)
    pars = [c for c in post.draws.columns if not c.startswith("b[")]
    diag = diagnose(post.as_sequences(post.draws[pars].to_numpy()))
    post.messages = convergence_messages(pars, diag, post.n_draws)
    for m in post.messages:
        warnings.warn(m, getattr(m, "category", BayesConvergenceWarning), stacklevel=3)
    return post


@controls_threads
def bayes_lmer(formula: str, data, prior="default", prior_intercept="default", prior_aux="default",
               prior_covariance=None, chains: int = 4, iter: int = 2000, warmup: int | None = None,
               seed=None, progress: bool | None = None, weights=None, offset=None, nwalkers: int | None = None,
               thin: int | None = None) -> Posterior:
    """Bayesian linear mixed model with rstanarm's priors (``stan_lmer``), sampled with emcee.

    Parameters
    ----------
    formula : lme4 formula, e.g. ``"Reaction ~ Days + (Days | Subject)"``
    data : DataFrame, or a ``dask.dataframe.DataFrame``: then two passes over its partitions form the
        cross-products (and the moments the autoscaled priors need) and the sampler runs on those
        sums alone (:mod:`mixedpy.scale.bayes`; ``weights``/``offset`` are column names)
    prior, prior_intercept, prior_aux : mp.normal / mp.student_t / mp.cauchy (coefficients and the
        intercept of the centered predictors), mp.exponential (sigma); ``"default"`` gives rstanarm's
        autoscaled defaults, ``None`` a flat prior.  ``prior`` may also be a brms-style dict
        ``{"b": ..., "Intercept": ..., "sigma": ..., "cov": ...}``.
    prior_covariance : mp.decov(...) (default decov(1, 1, 1, 1)) or mp.lkj(...)
    chains, iter, warmup : independent emcee ensembles; kept draws per chain = iter - warmup
        (rounded up to a multiple of the walkers), warmup defaults to iter // 2
    seed : seed of numpy's SeedSequence (reproducible runs)
    progress : tqdm progress bar over the sampling steps: True always, False never, None (default)
        only in an interactive session and once sampling has run 2 s (see :mod:`mixedpy.progress`)
    weights, offset : as in lmer; weights multiply each observation's log-likelihood (rstanarm)
    nwalkers, thin : emcee walkers per chain (default 4 x dim, at least 12) and thinning interval
        (default: emcee's autocorrelation time from a pilot run)

    Notes
    -----
    The model is y ~ N(X beta + Z b, sigma^2), b_i ~ N(0, Sigma_i), Sigma_i ~ decov (Sigma contains
    sigma^2, as rstanarm).  b and beta are integrated out exactly (see :mod:`mixedpy.bayes.lmm_posterior`).
    """
    warmup_given = warmup is not None
    chains, iter, warmup = _check_run_args(chains, iter, warmup)
    require_unstructured(parse_formula(formula).bars, "bayes_lmer")
    if is_dask_frame(data):   # the same sampler on the partitions' sums (mixedpy.scale.bayes)
        from ..scale.bayes import bayes_lmer as scale_bayes_lmer

        return scale_bayes_lmer(formula, data, prior=prior, prior_intercept=prior_intercept, prior_aux=prior_aux,
                                prior_covariance=prior_covariance, chains=chains, iter=iter, warmup=warmup,
                                warmup_given=warmup_given, seed=seed, progress=progress, weights=weights,
                                offset=offset, nwalkers=nwalkers, thin=thin, env=caller_namespace())
    design = build_design(formula, data, weights=weights, offset=offset, env=caller_namespace())
    check_single_response(design.y, design.response_name, "bayes_lmer", "use bayes_glmer with family='binomial'")
    # rstanarm's priors scale by sd(y): a constant response has none (ZeroDivisionError otherwise)
    check_constant_response(design.y, design.weights, design.response_name, "bayes_lmer")
    priors = resolve_priors("gaussian", "identity", design.y, design.X, design.fixef_names, prior,
                            prior_intercept, prior_aux, prior_covariance)
    fit = fit_problem(design, LMMProblem(design.terms, design.X, design.y, design.weights, design.offset),
                      reml=True, calc_derivs=False, quiet=True)
    return sample_lmm(LMMPosterior(design, priors), fit, chains=chains, iter=iter, warmup=warmup,
                      warmup_given=warmup_given, nwalkers=nwalkers, thin=thin, seed=seed, progress=progress)


def sample_lmm(model: LMMPosterior, fit, *, chains: int, iter: int, warmup: int, warmup_given: bool,
               nwalkers: int | None, thin: int | None, seed, progress: bool | None) -> Posterior:
    """bayes_lmer after the data: the mode from the REML fit ``fit``, emcee, the exact conditional
    draws of beta and b, and the Posterior (for rows in memory and for a Dask frame's sums alike).
    The mode is polished so that the chains do not depend on the rounding of the data's sums
    (:mod:`mixedpy.bayes.mode`): the same rows in another order or partitioning give the same draws."""
    mode, cov = polish_mode(model.log_prob, *find_mode(model.log_prob, model.start(fit)))
    out = run_ensemble(model.log_prob, mode, cov, chains=chains, iter=iter, warmup=warmup, nwalkers=nwalkers,
                       thin=thin, seed=seed, progress=progress, warmup_given=warmup_given)
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(chains + 1)[-1])
    draws = model.draw(out.flat(out.x), rng)
    return _finish(model.design, "gaussian", "identity", model.priors, draws, out, chains,
                   "emcee on (sigma, Sigma); beta and b integrated out and drawn exactly", rng,
                   param_names=model.param_names)


@controls_threads
def bayes_glmer(formula: str, data, family: str = "binomial", link: str | None = None, prior="default",
                prior_intercept="default", prior_covariance=None, chains: int = 4, iter: int = 2000,
                warmup: int | None = None, seed=None, progress: bool | None = None, weights=None, offset=None,
                nwalkers: int | None = None, thin: int | None = None, n_importance: int = 16,
                prior_aux="default") -> Posterior:
    """Bayesian GLMM with rstanarm's priors (``stan_glmer``).

    ``family`` is one of rstanarm's "binomial", "poisson", "neg_binomial_2", "Gamma",
    "inverse.gaussian" or "gaussian" ("gamma", "inverse_gaussian" and "negative_binomial" are
    accepted too, or a family object such as ``mp.families.Gamma("log")``), ``link`` one of the
    links rstanarm accepts for it (default: rstanarm's, :mod:`mixedpy.bayes.family`).  The last four have an auxiliary parameter, named as rstanarm
    does (reciprocal_dispersion = the negative binomial's size, shape, lambda, sigma), with the
    prior ``prior_aux`` (default exponential(1); for gaussian autoscaled to rate 1 / sd(y)).

    Sampled by pseudo-marginal emcee over the covariance parameters (and the log of the auxiliary
    parameter) with an importance-sampling estimate of the likelihood from the Laplace
    approximation (``n_importance`` draws per evaluation).  The posterior is exact (see
    :mod:`mixedpy.bayes.glmm_posterior`); other arguments as ``bayes_lmer``, which is the faster,
    analytically integrated sampler for the gaussian family with the identity link.
    """
    from .glmm_posterior import GLMMPosterior

    warmup_given = warmup is not None
    chains, iter, warmup = _check_run_args(chains, iter, warmup)
    require_unstructured(parse_formula(formula).bars, "bayes_glmer")
    family, link = resolve_family(family, link)
    if AUX_NAME[family] is None and not (isinstance(prior_aux, str) and prior_aux == "default"):
        raise ValueError(f"the {family} family has no auxiliary parameter: prior_aux does not apply")
    design = build_design(formula, data, weights=weights, offset=offset, env=caller_namespace(),
                          allow_n_levels=True, drop_zero_weights=False)
    if "(Intercept)" not in design.fixef_names and (
            (family != "gaussian" and link == "identity") or (family, link) == ("Gamma", "inverse")):
        # rstanarm's check (stan_glm.fit): mu must stay positive, which its sampler needs an intercept for
        raise ValueError(f"to use {family} with the {link} link the model must have an intercept (as rstanarm)")
    model = GLMMPosterior(design, family, link, None, n_importance)
    priors = resolve_priors(family, link, model.y_for_priors, design.X, design.fixef_names, prior,
                            prior_intercept, prior_aux, prior_covariance)
    model.set_priors(priors)
    mode, cov = find_mode(model.laplace_log_prob, model.start())
    model.warm_start(mode)
    model.rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(chains + 2)[-1])
    out = run_ensemble(model.log_prob, mode, cov, chains=chains, iter=iter, warmup=warmup, nwalkers=nwalkers,
                       thin=thin, seed=seed, progress=progress, blob_dim=model.blob_dim,
                       warmup_given=warmup_given)
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(chains + 1)[-1])
    draws = model.draw(out.flat(out.x), out.flat(out.blobs))
    sampled = "Sigma" if AUX_NAME[family] is None else f"({AUX_NAME[family]}, Sigma)"
    return _finish(design, family, link, priors, draws, out, chains,
                   f"pseudo-marginal emcee on {sampled} with Laplace importance sampling of (beta, b)", rng,
                   trials=model.trials, extra={"importance_draws": n_importance, "stan_function": "stan_glmer"},
                   param_names=model.param_names)
