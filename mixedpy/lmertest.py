"""lmerTest's tests of the fixed effects of one fit: coefficient table, contest and F tables.

* :func:`coef_table` is ``summary(m, ddf=...)$coefficients``: t tests with Satterthwaite's
  (:mod:`mixedpy.satterthwaite`) or Kenward-Roger's (:mod:`mixedpy.kenward_roger`) df, or lme4's
  table without df; z tests for a glmer fit.
* :func:`contest` is lmerTest's ``contest``: a t test per row of L (``contest1D``) or one F test
  of the rows jointly (``contestMD``).
* :func:`anova_table` is ``anova(m, type=...)``: one ``contestMD`` F test per term, with the
  hypotheses of :mod:`mixedpy.anova_contrasts`.

The F test with Satterthwaite's df (lmerTest ``contestMD``): with L C L' = P D P' (eigenvalues
d_m > tol), F = sum_m (P'L beta)_m^2 / d_m / q and the df of the q t statistics nu_m combine as
2 E / (E - q), E = sum nu_m / (nu_m - 2) (Kuznetsova et al. 2017, eq. 9).  With Kenward-Roger the
Wald statistic uses the adjusted covariance and is scaled (pbkrtest ``KRmodcomp``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .anova_contrasts import hypotheses
from .errors import MixedpyError
from .threads import controls_threads

DDF = ("Satterthwaite", "Kenward-Roger", "lme4")
F_COLUMNS = ["Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value", "Pr(>F)"]


def _check_ddf(ddf: str) -> str:
    for d in DDF:
        if str(ddf).lower().replace("_", "-") == d.lower():
            return d
    raise ValueError(f"ddf must be one of {', '.join(map(repr, DDF))}, got {ddf!r}")


def _is_lmer(fit) -> bool:
    return bool(getattr(fit, "use_scale", False)) and hasattr(fit, "problem") and hasattr(fit.problem, "cross")


def _t_rows(fit, L: np.ndarray, ddf: str, rhs=0.0) -> pd.DataFrame:
    """lmerTest's ``contest1D`` for each row of L."""
    beta = np.asarray(fit.beta, dtype=float)
    est = L @ beta
    if ddf == "Kenward-Roger":
        from .kenward_roger import kr_adjusted

        kr = kr_adjusted(fit)
        se = np.sqrt(np.einsum("ia,ab,ib->i", L, kr.vcov_adj, L))
        df = np.array([kr.ddf(l[None, :])[0] for l in L])
    else:
        from .satterthwaite import varpar_covariance

        vp = varpar_covariance(fit)
        se = np.sqrt(np.einsum("ia,ab,ib->i", L, vp.vcov_beta, L))
        df = np.array([vp.df(l) for l in L])
    t = (est - rhs) / se
    return pd.DataFrame({"Estimate": est, "Std. Error": se, "df": df, "t value": t,
                         "Pr(>|t|)": 2 * stats.t.sf(np.abs(t), df)})


@controls_threads
def coef_table(fit, ddf: str = "Satterthwaite") -> pd.DataFrame:
    """The coefficient table of lmerTest's ``summary(m, ddf=ddf)$coefficients``.

    Columns ``Estimate``, ``Std. Error``, ``df``, ``t value``, ``Pr(>|t|)`` for an lmer fit with
    ddf "Satterthwaite" (default) or "Kenward-Roger"; ``Estimate``, ``Std. Error``, ``t value``
    with ddf "lme4" (lme4's summary); ``Estimate``, ``Std. Error``, ``z value``, ``Pr(>|z|)`` for
    a glmer fit.  Index: the fixed-effect names.
    """
    ddf = _check_ddf(ddf)
    beta = np.asarray(fit.beta, dtype=float)
    names = pd.Index(fit.fixef_names)
    se = np.sqrt(np.diag(np.asarray(fit.vcov_array, dtype=float)))
    if not _is_lmer(fit):
        z = beta / se
        return pd.DataFrame({"Estimate": beta, "Std. Error": se, "z value": z,
                             "Pr(>|z|)": 2 * stats.norm.sf(np.abs(z))}, index=names)
    if ddf == "lme4":
        return pd.DataFrame({"Estimate": beta, "Std. Error": se, "t value": beta / se}, index=names)
    out = _t_rows(fit, np.eye(len(beta)), ddf)
    out.index = names
    return out


def _f_row(fit, L: np.ndarray, ddf: str, rhs: np.ndarray | None = None, eps: float = np.sqrt(np.finfo(float).eps)) -> dict:
    """lmerTest's ``contestMD`` for the rows of L: one F test."""
    nan = dict.fromkeys(F_COLUMNS, np.nan)
    if L.shape[0] == 0:
        return nan
    beta = np.asarray(fit.beta, dtype=float)
    rhs = np.zeros(L.shape[0]) if rhs is None else np.broadcast_to(np.asarray(rhs, dtype=float), (L.shape[0],))
    if np.any(rhs != 0):
        beta = beta - np.linalg.pinv(L) @ rhs
    sigma2 = float(fit.sigma) ** 2

    def table(F, ndf, den, scale=1.0):
        ms = F * sigma2
        F = F * scale
        return {"Sum Sq": ms * ndf, "Mean Sq": ms, "NumDF": float(ndf), "DenDF": den, "F value": F,
                "Pr(>F)": float(stats.f.sf(F, ndf, den))}

    if ddf == "Kenward-Roger":
        from .kenward_roger import kr_adjusted

        kr = kr_adjusted(fit)
        q = int(np.linalg.matrix_rank(L))
        den, scale = kr.ddf(L, q=q)
        Lb = L @ beta
        wald = float(Lb @ np.linalg.solve(L @ kr.vcov_adj @ L.T, Lb))
        return table(wald / q, q, den, scale)
    from .satterthwaite import get_fstat_ddf, varpar_covariance

    vp = varpar_covariance(fit)
    if L.shape[0] == 1:     # contest1D with the model's beta and rhs, as lmerTest
        row = _t_rows(fit, L, ddf, rhs=rhs[0]).iloc[0]
        return table(row["t value"] ** 2, 1, row["df"])
    d, P = np.linalg.eigh(L @ vp.vcov_beta @ L.T)
    d, P = d[::-1], P[:, ::-1]               # decreasing, as R's eigen
    pos = d > max(eps * d[0], 0)
    q = int(pos.sum())
    if q == 0:
        return nan
    PtL = (P.T @ L)[:q]
    if q == 1:
        row = _t_rows(fit, PtL, ddf, rhs=rhs[0]).iloc[0]
        return table(row["t value"] ** 2, 1, row["df"])
    t2 = (PtL @ beta) ** 2 / d[:q]
    nu = np.array([vp.df(l) for l in PtL])
    return table(float(t2.sum() / q), q, get_fstat_ddf(nu))


@controls_threads
def contest(fit, L, ddf: str = "Satterthwaite", joint: bool | None = None, rhs=0.0) -> pd.DataFrame:
    """lmerTest's ``contest``: tests of the linear hypotheses L beta = rhs.

    A vector L gives the 1-df t test (columns ``Estimate``, ``Std. Error``, ``df``, ``t value``,
    ``Pr(>|t|)``, as ``contest1D``); a matrix gives one F test of all rows (``Sum Sq``,
    ``Mean Sq``, ``NumDF``, ``DenDF``, ``F value``, ``Pr(>F)``, as ``contestMD``), or a t test per
    row with ``joint=False``.  ddf is "Satterthwaite" or "Kenward-Roger".
    """
    ddf = _check_ddf(ddf)
    if ddf == "lme4":
        raise ValueError("contest needs ddf='Satterthwaite' or 'Kenward-Roger'")
    if not _is_lmer(fit):
        raise MixedpyError("contest with Satterthwaite or Kenward-Roger df is for lmer fits")
    arr = np.asarray(L, dtype=float)
    p = len(fit.beta)
    vector = arr.ndim == 1
    L2 = np.atleast_2d(arr)
    if L2.shape[1] != p:
        raise ValueError(f"L has {L2.shape[1]} columns but the model has {p} fixed effects")
    joint = (not vector) if joint is None else bool(joint)
    index = getattr(L, "index", None) if not vector and isinstance(L, pd.DataFrame) else None
    if not joint:
        out = _t_rows(fit, L2, ddf, rhs=np.broadcast_to(np.asarray(rhs, dtype=float), (L2.shape[0],)))
        if index is not None:
            out.index = index
        return out
    return pd.DataFrame([_f_row(fit, L2, ddf, rhs=np.asarray(rhs, dtype=float))], columns=F_COLUMNS)


@controls_threads
def anova_table(fit, type=3, ddf: str = "Satterthwaite") -> pd.DataFrame:
    """lmerTest's ``anova(m, type=type, ddf=ddf)``: an F test per fixed-effects term.

    Index: the term labels (``week``, ``group``, ``week:group``); columns ``Sum Sq``, ``Mean Sq``,
    ``NumDF``, ``DenDF``, ``F value``, ``Pr(>F)``.  type is 1, 2 or 3 ("I", "II", "III"); ddf is
    "Satterthwaite" or "Kenward-Roger".  The hypotheses are in ``table.attrs["hypotheses"]``.
    """
    ddf = _check_ddf(ddf)
    if ddf == "lme4":
        raise ValueError("anova_table needs ddf='Satterthwaite' or 'Kenward-Roger' "
                         "(lme4's anova of one fit has no df)")
    if not _is_lmer(fit):
        raise MixedpyError("F tables with Satterthwaite or Kenward-Roger df are for lmer fits")
    Ls = hypotheses(fit.design, type)
    rows = [_f_row(fit, L, ddf) for L in Ls.values()]
    out = pd.DataFrame(rows, index=pd.Index(list(Ls), dtype=object), columns=F_COLUMNS)
    out.attrs["hypotheses"] = {k: pd.DataFrame(v, columns=fit.fixef_names) for k, v in Ls.items()}
    roman = {1: "I", 2: "II", 3: "III"}[{"1": 1, "2": 2, "3": 3, "I": 1, "II": 2, "III": 3}[str(type)]]
    method = "Satterthwaite's" if ddf == "Satterthwaite" else "Kenward-Roger's"
    out.attrs["heading"] = f"Type {roman} Analysis of Variance Table with {method} method"
    return out
