"""Tidy data frames of a fit, as R's broom.mixed: ``tidy`` (one row per estimate) and ``glance``
(one row per model).

Column names and row order follow broom.mixed 0.2.9 (``tidy.merMod``, ``glance.merMod``):

* ``effect`` is ``"fixed"``, ``"ran_pars"``, ``"ran_vals"`` or ``"ran_coefs"``;
* fixed effects: ``term, estimate, std.error, statistic`` (plus ``p.value`` = 2 Phi(-|z|) for a
  model without a scale, as broom.mixed reports for glmer);
* random-effect parameters: ``group`` is the term label (``Subject``, ``Subject.1``, then
  ``Residual``), ``term`` is ``sd__<coef>`` / ``cor__<coef1>.<coef2>`` (``var__``/``cov__`` with
  ``scales="vcov"``) and ``sd__Observation`` for the residual; within a term the rows run
  sd_1, cor_12, cor_13, ..., sd_2, cor_23, ... (the lower triangle row by row);
* conditional modes: ``group`` (grouping factor), ``level``, ``term``, ``estimate``,
  ``std.error`` (conditional SD), ordered by factor, coefficient, then level;
* ``conf.low``/``conf.high``: Wald intervals estimate +- z_{(1+conf_level)/2} std.error (NaN for
  the variance parameters, as broom.mixed's default ``conf.method = "Wald"``), or profile
  intervals (:func:`mixedpy.intervals.confint`) with ``conf_method="profile"``.

Bayesian posteriors (``bayes_lmer``/``bayes_glmer`` results) are tidied from their draws with the
same term names and the ``effect`` column, so the two tables join on ``effect, group, term``
(broom.mixed's ``tidy.stanreg`` names ran_pars ``sd_(Intercept).Subject`` and has no ``effect``
column; the merMod names are used here so that lmer and Bayesian tables line up).  Estimates are
posterior medians, ``std.error`` is the MAD_SD (1.4826 median|x - median|; rstanarm's ``se``),
random-effect SDs and correlations are computed draw by draw from the Sigma draws and summarised
the same way, and the intervals are central posterior quantile intervals (rstanarm's
``posterior_interval``).
"""
from __future__ import annotations

from functools import singledispatch

import numpy as np
import pandas as pd
from scipy.stats import norm

from .accessors import VarCorr, coef, fixef, ranef
from .bayes.posterior import mad_sd
from .intervals import confint
from .results import MixedModelFit

EFFECTS = ("fixed", "ran_pars", "ran_vals", "ran_coefs")
# broom.mixed's reorder_cols: the order columns appear in when present
COLUMN_ORDER = ["effect", "component", "group", "level", "term", "index", "estimate", "std.error",
                "statistic", "df", "p.value", "conf.low", "conf.high", "rhat", "ess"]


# --------------------------------------------------------------------------------------------
# argument checks shared by every implementation
# --------------------------------------------------------------------------------------------


def _effects(effects) -> list[str]:
    """Normalise ``effects`` to a list in broom.mixed's output order (fixed first)."""
    if effects is None:
        effects = ("ran_pars", "fixed")
    chosen = [effects] if isinstance(effects, str) else list(effects)
    bad = [e for e in chosen if e not in EFFECTS]
    if bad or not chosen:
        raise ValueError(f"effects must be one or more of {', '.join(map(repr, EFFECTS))}; got {effects!r}")
    return [e for e in EFFECTS if e in chosen]


def _check_level(conf_level: float) -> float:
    level = float(conf_level)
    if not 0.0 < level < 1.0:
        raise ValueError(f"conf_level must be strictly between 0 and 1, got {conf_level!r}")
    return level


def _check_scales(scales: str) -> str:
    if scales not in ("sdcor", "vcov"):
        raise ValueError(f"scales must be 'sdcor' or 'vcov', got {scales!r}")
    return scales


def _finish(parts: list[pd.DataFrame], drop_group: bool) -> pd.DataFrame:
    out = pd.concat([p for p in parts if len(p.columns)], ignore_index=True, sort=False) if parts \
        else pd.DataFrame()
    if drop_group and "group" in out.columns:
        out = out.drop(columns="group")
    return out[[c for c in COLUMN_ORDER if c in out.columns]]


# --------------------------------------------------------------------------------------------
# random-effect parameter rows from a VarCorr object (shared by fits and posteriors)
# --------------------------------------------------------------------------------------------


def ran_pars_rows(vc, scales: str = "sdcor") -> pd.DataFrame:
    """broom.mixed's ``ran_pars`` rows from a :class:`mixedpy.varcorr.VarCorr`.

    For each term with covariance Sigma (k x k), row by row over the lower triangle:
    ``sd__c_i`` = sqrt(Sigma_ii) then ``cor__c_i.c_j`` = Sigma_ij / (sd_i sd_j) for j > i
    (``var__``/``cov__`` with the entries of Sigma themselves); then ``sd__Observation`` = sigma
    for the residual when the model has a scale.
    """
    groups, terms, est = [], [], []
    sd_p, cor_p = ("sd__", "cor__") if scales == "sdcor" else ("var__", "cov__")
    for t in vc.terms:
        sd, cor, names = t.sd, t.corr, list(t.coef_names)
        for i, ni in enumerate(names):
            groups.append(t.label)
            terms.append(sd_p + ni)
            est.append(sd[i] if scales == "sdcor" else t.cov[i, i])
            for j in range(i + 1, len(names)):
                groups.append(t.label)
                terms.append(f"{cor_p}{ni}.{names[j]}")
                est.append(cor[i, j] if scales == "sdcor" else t.cov[i, j])
    if vc.sigma is not None:
        groups.append("Residual")
        terms.append(sd_p + "Observation")
        est.append(vc.sigma if scales == "sdcor" else vc.sigma ** 2)
    return pd.DataFrame({"effect": "ran_pars", "group": groups, "term": terms,
                         "estimate": np.asarray(est, dtype=float)})


def _long_ranef(frames: dict[str, pd.DataFrame], sds: dict[str, pd.DataFrame] | None,
                effect: str) -> pd.DataFrame:
    """Long layout of per-factor (levels x coefficients) frames, ordered factor, coefficient, level
    (R's ``as.data.frame(ranef(fit))``)."""
    parts = []
    for g, df in frames.items():
        J, k = df.shape
        part = pd.DataFrame({
            "effect": effect,
            "group": g,
            "level": np.tile(df.index.astype(str).to_numpy(), k),
            "term": np.repeat(np.asarray(df.columns, dtype=object), J),
            "estimate": df.to_numpy(dtype=float).T.ravel(),
        })
        if sds is not None:
            part["std.error"] = sds[g][df.columns].to_numpy(dtype=float).T.ravel()
        parts.append(part)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _wald(frame: pd.DataFrame, level: float) -> pd.DataFrame:
    z = norm.ppf(0.5 + level / 2)
    se = frame["std.error"].to_numpy(dtype=float) if "std.error" in frame else np.nan
    frame["conf.low"] = frame["estimate"].to_numpy(dtype=float) - z * se
    frame["conf.high"] = frame["estimate"].to_numpy(dtype=float) + z * se
    return frame


# --------------------------------------------------------------------------------------------
# the generic functions
# --------------------------------------------------------------------------------------------


@singledispatch
def tidy(x, effects=("ran_pars", "fixed"), conf_int: bool = True, conf_level: float = 0.95,
         scales: str = "sdcor", conf_method: str = "Wald", **kwargs) -> pd.DataFrame:
    """One row per estimate, as broom.mixed's ``tidy``.

    Parameters
    ----------
    x : an lmer/glmer fit or a Bayesian posterior (``bayes_lmer``/``bayes_glmer``)
    effects : "fixed", "ran_pars", "ran_vals", "ran_coefs" or a list of them (default
        ``("ran_pars", "fixed")`` as broom.mixed; rows come out fixed, ran_pars, ran_vals,
        ran_coefs)
    conf_int : add ``conf.low`` and ``conf.high``
    conf_level : coverage of the intervals
    scales : "sdcor" (SDs and correlations) or "vcov" (variances and covariances) for ran_pars
    conf_method : fits only: "Wald" (NaN for the variance parameters) or "profile"

    Returns
    -------
    DataFrame with broom.mixed's columns (see the module docstring).  When only fixed effects
    are asked for, the ``group`` column is left out, as broom.mixed does.
    """
    if hasattr(x, "draws") and hasattr(x, "posterior_predict"):
        return _tidy_posterior(x, effects=effects, conf_int=conf_int, conf_level=conf_level,
                               scales=scales, **kwargs)
    if hasattr(x, "n_sims") and hasattr(x, "ranef") and hasattr(x, "fixef") and hasattr(x, "fit"):
        return _tidy_sim(x, effects=effects, conf_int=conf_int, conf_level=conf_level)
    raise TypeError(f"tidy() does not know objects of type {type(x).__name__}; pass an lmer/glmer fit "
                    "or a Bayesian posterior")


@singledispatch
def glance(x, **kwargs) -> pd.DataFrame:
    """One row of model-level statistics, as broom.mixed's ``glance``.

    For an lmer/glmer fit: ``nobs, sigma, logLik, AIC, BIC``, then ``REMLcrit`` for a REML fit
    or ``deviance`` otherwise (lme4's ``deviance()``: the ML deviance of an LMM, the sum of the
    deviance residuals of a GLMM), and ``df.residual`` = nobs - (number of parameters).
    For a posterior: ``algorithm, pss`` (posterior sample size), ``nobs, sigma`` (posterior
    median), and with ``looic=True`` also ``elpd_loo, p_loo, looic`` from PSIS-LOO.
    """
    if hasattr(x, "draws") and hasattr(x, "posterior_predict"):
        return _glance_posterior(x, **kwargs)
    raise TypeError(f"glance() does not know objects of type {type(x).__name__}; pass an lmer/glmer fit "
                    "or a Bayesian posterior")


# --------------------------------------------------------------------------------------------
# frequentist fits
# --------------------------------------------------------------------------------------------


@tidy.register
def _(fit: MixedModelFit, effects=("ran_pars", "fixed"), conf_int: bool = True, conf_level: float = 0.95,
      scales: str = "sdcor", conf_method: str = "Wald") -> pd.DataFrame:
    chosen = _effects(effects)
    level = _check_level(conf_level)
    scales = _check_scales(scales)
    method = str(conf_method).lower()
    if method not in ("wald", "profile"):
        raise ValueError(f"conf_method must be 'Wald' or 'profile', got {conf_method!r}")
    if method == "profile" and scales != "sdcor" and conf_int:
        raise ValueError("profile intervals are on the sd/cor scale; use scales='sdcor'")
    profile = None
    if conf_int and method == "profile":
        profile = confint(fit, method="profile", level=level)

    parts = []
    if "fixed" in chosen:
        est = np.asarray(fit.beta, dtype=float)
        se = np.asarray(fit.se_fixef, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            stat = est / se
        part = pd.DataFrame({"effect": "fixed", "group": np.nan, "term": list(fit.fixef_names),
                             "estimate": est, "std.error": se, "statistic": stat})
        if getattr(fit, "family", None) is not None:
            # z tests for every GLMM (Gamma too: t value but Pr(>|z|)), as summary(glmer) and broom.mixed
            part["p.value"] = 2 * norm.sf(np.abs(stat))
        if conf_int:
            if profile is None:
                part = _wald(part, level)
            else:
                part["conf.low"] = profile.loc[list(fit.fixef_names)].iloc[:, 0].to_numpy()
                part["conf.high"] = profile.loc[list(fit.fixef_names)].iloc[:, 1].to_numpy()
        parts.append(part)
    if "ran_pars" in chosen:
        # broom.mixed gives ran_pars no std.error/statistic columns of their own
        part = ran_pars_rows(VarCorr(fit), scales)
        if conf_int:
            part["conf.low"] = np.nan
            part["conf.high"] = np.nan
            if profile is not None:
                # profile rows .sig01.. run term by term over the lower triangle column by column,
                # which for a symmetric layout is the row order used above; .sigma is last
                n_var = len(part)
                part["conf.low"] = profile.iloc[:n_var, 0].to_numpy()
                part["conf.high"] = profile.iloc[:n_var, 1].to_numpy()
        parts.append(part)
    if "ran_vals" in chosen:
        frames = ranef(fit, condvar=True)
        part = _long_ranef(frames, {g: df.attrs["condsd"] for g, df in frames.items()}, "ran_vals")
        parts.append(_wald(part, level) if conf_int else part)
    if "ran_coefs" in chosen:
        parts.append(_long_ranef(coef(fit), None, "ran_coefs"))
    return _finish(parts, drop_group=chosen == ["fixed"])


@glance.register
def _(fit: MixedModelFit) -> pd.DataFrame:
    row = {"nobs": int(fit.nobs), "sigma": float(fit.sigma) if fit.use_scale else 1.0,
           "logLik": float(fit.loglik), "AIC": float(fit.aic), "BIC": float(fit.bic)}
    if getattr(fit, "reml", False):
        row["REMLcrit"] = float(fit.reml_crit)
    else:
        row["deviance"] = float(fit.deviance)
    row["df.residual"] = int(fit.nobs - fit.df)
    return pd.DataFrame([row])


# --------------------------------------------------------------------------------------------
# Bayesian posteriors (duck-typed: anything with ``draws`` and ``posterior_predict``)
# --------------------------------------------------------------------------------------------


def _quantile_interval(a: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = np.quantile(a, [0.5 - level / 2, 0.5 + level / 2], axis=0)
    return lo, hi


def _draw_matrix(post) -> pd.DataFrame:
    """The parameter draws without bookkeeping columns (chain, iteration, draw)."""
    d = post.draws
    return d.drop(columns=[c for c in ("chain", "iteration", "draw", ".chain", ".iteration", ".draw")
                           if c in d.columns])


def _b_column(coef_name: str, factor: str, level: str) -> str:
    """rstanarm's name of a random-effect draw column (spaces in levels become underscores)."""
    return f"b[{coef_name} {factor}:{str(level).replace(' ', '_')}]"


def _posterior_ran_pars(post, draws: pd.DataFrame, scales: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows (effect, group, term) and per-draw values (S, rows) of every SD and correlation (or
    variance and covariance), computed draw by draw from the ``Sigma[...]`` columns, which come
    term by term, each as its lower triangle in column-major order (rstanarm's layout)."""
    sig_cols = [j for j, c in enumerate(draws.columns) if str(c).startswith("Sigma[")]
    A = draws.to_numpy(dtype=float)
    labels = list(getattr(post, "term_labels", [t.group_name for t in post.terms]))
    groups, names, values = [], [], []
    sd_p, cor_p = ("sd__", "cor__") if scales == "sdcor" else ("var__", "cov__")
    pos = 0
    for lab, t in zip(labels, post.terms):
        k = t.k
        r, c = np.tril_indices(k)
        order = np.lexsort((r, c))
        S = np.zeros((A.shape[0], k, k))
        cols = sig_cols[pos:pos + len(order)]
        if len(cols) != len(order):
            raise KeyError(f"posterior draws lack the Sigma[...] columns of term {lab!r}")
        S[:, r[order], c[order]] = A[:, cols]
        S[:, c[order], r[order]] = A[:, cols]
        pos += len(order)
        sd = np.sqrt(np.diagonal(S, axis1=1, axis2=2))
        cn = list(t.coef_names)
        for i in range(k):
            groups.append(lab)
            names.append(sd_p + cn[i])
            values.append(sd[:, i] if scales == "sdcor" else S[:, i, i])
            for j in range(i + 1, k):
                groups.append(lab)
                names.append(f"{cor_p}{cn[i]}.{cn[j]}")
                with np.errstate(invalid="ignore", divide="ignore"):
                    values.append(S[:, i, j] / (sd[:, i] * sd[:, j]) if scales == "sdcor" else S[:, i, j])
    if "sigma" in draws.columns:
        groups.append("Residual")
        names.append(sd_p + "Observation")
        sig = draws["sigma"].to_numpy(dtype=float)
        values.append(sig if scales == "sdcor" else sig ** 2)
    rows = pd.DataFrame({"effect": "ran_pars", "group": groups, "term": names})
    return rows, np.column_stack(values) if values else np.zeros((A.shape[0], 0))


def _tidy_posterior(post, effects=("ran_pars", "fixed"), conf_int: bool = True, conf_level: float = 0.95,
                    scales: str = "sdcor") -> pd.DataFrame:
    chosen = _effects(effects)
    level = _check_level(conf_level)
    scales = _check_scales(scales)
    draws = _draw_matrix(post)
    parts = []
    if "fixed" in chosen:
        names = list(fixef(post).index)
        a = draws[names].to_numpy(dtype=float)
        part = pd.DataFrame({"effect": "fixed", "group": np.nan, "term": names})
        parts.append(_summarise_draws(part, a, conf_int, level))
    if "ran_pars" in chosen:
        part, a = _posterior_ran_pars(post, draws, scales)
        parts.append(_summarise_draws(part, a, conf_int, level))
    if "ran_vals" in chosen:
        frames = ranef(post)
        rows = _long_ranef(frames, None, "ran_vals")
        cols = [_b_column(t, g, lev) for g, lev, t in zip(rows["group"], rows["level"], rows["term"])]
        missing = [c for c in cols if c not in draws.columns]
        if missing:
            raise KeyError(f"posterior draws lack random-effect columns such as {missing[0]!r}")
        parts.append(_summarise_draws(rows, draws[cols].to_numpy(dtype=float), conf_int, level))
    if "ran_coefs" in chosen:
        parts.append(_long_ranef(coef(post), None, "ran_coefs"))
    return _finish(parts, drop_group=chosen == ["fixed"])


def _summarise_draws(frame: pd.DataFrame, a: np.ndarray, conf_int: bool, level: float) -> pd.DataFrame:
    """Posterior columns of a tidy table: median, MAD_SD (rstanarm's se) and, when asked, the
    central quantile interval of each column of the draws ``a`` (draws x rows of ``frame``)."""
    frame["estimate"] = np.median(a, axis=0)
    frame["std.error"] = mad_sd(a)
    if conf_int:
        frame["conf.low"], frame["conf.high"] = _quantile_interval(a, level)
    return frame


def _tidy_sim(s, effects="fixed", conf_int: bool = True, conf_level: float = 0.95) -> pd.DataFrame:
    """arm ``sim()`` draws: medians, SDs of the draws and central quantile intervals for the fixed
    effects and the random effects (ran_vals); ran_pars are not drawn by sim (theta is fixed)."""
    chosen = _effects(effects)
    level = _check_level(conf_level)
    if "ran_pars" in chosen or "ran_coefs" in chosen:
        raise ValueError("sim() draws hold theta fixed, so they have no ran_pars; ran_coefs are not tidied "
                         "from draws: use effects='fixed' and/or 'ran_vals'")
    parts = []
    if "fixed" in chosen:
        a = s.fixef.to_numpy(dtype=float)
        part = pd.DataFrame({"effect": "fixed", "group": np.nan, "term": list(s.fixef.columns),
                             "estimate": np.median(a, axis=0), "std.error": a.std(axis=0, ddof=1)})
        if conf_int:
            part["conf.low"], part["conf.high"] = _quantile_interval(a, level)
        parts.append(part)
    if "ran_vals" in chosen:
        for lab, arr in s.ranef.items():
            S, J, k = arr.shape
            flat = arr.transpose(0, 2, 1).reshape(S, k * J)     # coefficient-major, then level
            part = pd.DataFrame({"effect": "ran_vals", "group": s.groups[lab],
                                 "level": np.tile(np.asarray(s.levels[lab], dtype=object), k),
                                 "term": np.repeat(np.asarray(s.coef_names[lab], dtype=object), J),
                                 "estimate": np.median(flat, axis=0), "std.error": flat.std(axis=0, ddof=1)})
            if conf_int:
                part["conf.low"], part["conf.high"] = _quantile_interval(flat, level)
            parts.append(part)
    return _finish(parts, drop_group=chosen == ["fixed"])


def _glance_posterior(post, looic: bool = False) -> pd.DataFrame:
    draws = _draw_matrix(post)
    row = {"algorithm": getattr(post, "algorithm", "sampling"), "pss": int(len(draws)),
           "nobs": int(getattr(post, "nobs", getattr(getattr(post, "design", None), "nobs", np.nan)))}
    if "sigma" in draws.columns:
        row["sigma"] = float(np.median(draws["sigma"].to_numpy(dtype=float)))
    if looic:
        res = post.loo()
        for key in ("elpd_loo", "p_loo", "looic"):
            row[key] = float(_loo_value(res, key))
    return pd.DataFrame([row])


def _loo_value(res, key: str) -> float:
    if isinstance(res, dict):
        return res[key]
    if hasattr(res, key):
        return getattr(res, key)
    return res[key]


__all__ = ["tidy", "glance", "ran_pars_rows", "mad_sd"]
