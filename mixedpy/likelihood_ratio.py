"""``anova``: likelihood-ratio tests between nested mixed models, as lme4's ``anova.merMod``."""
from __future__ import annotations

import inspect
import warnings

import numpy as np
import pandas as pd
from scipy.stats import chi2

from .errors import DataError, MixedpyInfo


def _caller_names(objs, depth: int = 2) -> list[str | None]:
    """Names the caller gave these objects (as R's anova labels models by their symbols)."""
    frame = inspect.currentframe()
    try:
        for _ in range(depth):
            frame = frame.f_back
        scope = {**frame.f_globals, **frame.f_locals}
        out = []
        for o in objs:
            hits = [k for k, v in scope.items() if v is o and not k.startswith("_")]
            out.append(hits[0] if hits else None)
        return out
    finally:
        del frame


def type_name(obj) -> str:
    return obj.__class__.__name__


def _npar(fit) -> int:
    df = getattr(fit, "df", None)
    if df is not None:
        return int(df)
    return len(fit.beta) + len(fit.theta) + int(fit.use_scale)


def chisq_pvalue(stat, df) -> np.ndarray:
    """P(chi^2_df > stat), NaN where df <= 0 or stat is NaN (lme4's ``safe_pchisq``, lmerTest's
    ``mk_LRtab``); a negative statistic (a worse larger model) gives 1."""
    stat = np.asarray(stat, dtype=float)
    df = np.asarray(df, dtype=float)
    with np.errstate(invalid="ignore"):
        ok = (df > 0) & ~np.isnan(stat)
        return np.where(ok, chi2.sf(np.clip(np.nan_to_num(stat), 0, None), np.where(ok, df, 1)), np.nan)


def anova(*fits, refit: bool = True, names: list[str] | None = None, type=3, ddf: str = "Satterthwaite") -> pd.DataFrame:
    """lmerTest's F table of one fit, or likelihood-ratio tests between nested mixed models.

    ``anova(fit, type=3, ddf="Satterthwaite")`` with one lmer fit is lmerTest's
    ``anova(m, type=, ddf=)``: an F test per fixed-effects term (:func:`mixedpy.lmertest.anova_table`;
    type 1, 2 or 3, ddf "Satterthwaite" or "Kenward-Roger").  ``type`` and ``ddf`` are for that
    table only.

    With several fits it is lme4's ``anova.merMod``:

    REML fits are refitted by ML first (``refit=True``, lme4's default), because REML
    likelihoods of models with different fixed effects are not comparable; lme4's message
    "refitting model(s) with ML (instead of REML)" is then a :class:`~mixedpy.errors.MixedpyInfo`
    warning.  The models are
    ordered by their number of parameters and each is tested against the previous one:

        Chisq = deviance_{m-1} - deviance_m,  Df = npar_m - npar_{m-1},  p = P(chi^2_Df > Chisq).

    Returns a DataFrame with columns npar, AIC, BIC, logLik, deviance, Chisq, Df, Pr(>Chisq),
    indexed by the names the models have in the caller (or ``names``).
    """
    if len(fits) == 1:
        from .lmertest import _is_lmer, anova_table

        if not _is_lmer(fits[0]):
            raise TypeError(f"anova() of one model is lmerTest's F table, for lmer fits; got {type_name(fits[0])}"
                            " (compare glmer fits with anova(fit0, fit1))")
        return anova_table(fits[0], type=type, ddf=ddf)
    if len(fits) < 2:
        raise ValueError("anova() needs one lmer fit (an F table) or at least two fitted models to compare")
    for f in fits:
        if not hasattr(f, "loglik") or not hasattr(f, "theta"):
            raise TypeError(f"anova() compares fitted mixed models, got {type_name(f)}")
    n = {f.nobs for f in fits}
    if len(n) > 1:
        raise DataError(f"models were not all fitted to the same number of observations ({sorted(n)}); "
                        "refit them on the same rows (e.g. drop missing values first)")
    if names is None:
        found = _caller_names(fits)
        names = [nm if nm else f"model{i + 1}" for i, nm in enumerate(found)]
        if len(set(names)) < len(names):
            names = [f"model{i + 1}" for i in range(len(fits))]
    elif len(names) != len(fits):
        raise ValueError(f"{len(names)} names given for {len(fits)} models")
    fits = list(fits)
    if refit and any(getattr(f, "reml", False) for f in fits):
        warnings.warn("refitting model(s) with ML (instead of REML)", MixedpyInfo, stacklevel=2)
        fits = [f.refit(reml=False) if getattr(f, "reml", False) else f for f in fits]
    npar = np.array([_npar(f) for f in fits])
    order = np.argsort(npar, kind="stable")
    fits = [fits[i] for i in order]
    names = [names[i] for i in order]
    npar = npar[order]
    loglik = np.array([float(f.loglik) for f in fits])
    nobs = fits[0].nobs
    dev = -2 * loglik
    chisq = np.concatenate([[np.nan], dev[:-1] - dev[1:]])
    ddf = np.concatenate([[np.nan], np.diff(npar)]).astype(float)
    p = chisq_pvalue(chisq, ddf)
    return pd.DataFrame({"npar": npar, "AIC": dev + 2 * npar, "BIC": dev + np.log(nobs) * npar,
                         "logLik": loglik, "deviance": dev, "Chisq": chisq, "Df": ddf, "Pr(>Chisq)": p},
                        index=pd.Index(names))


__all__ = ["anova", "chisq_pvalue"]
