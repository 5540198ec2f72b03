"""Influence diagnostics: lme4's ``hatvalues``, ``cooks.distance`` and ``influence.merMod``.

* :func:`hatvalues`: the diagonal of the hat matrix of the penalized least-squares fit (lme4's
  ``hatvalues.merMod``), h_i = w_i r_i A^{-1} r_i' with r_i = [z_i'Lambda, x_i'] and A the joint
  (u, beta) system of :mod:`mixedpy.predict_se` (w_i are the prior weights; lme4 warns that for a
  GLMM, whose A carries the PIRLS weights, this "may not make sense"), from the blocked factor by
  :mod:`mixedpy.row_quadratic` (InstEval's 73k rows in about a second).
* :func:`cooks_distance`: the one-step version of lme4's ``cooks.distance.merMod``,
  D_i = (r_i / (1 - h_i))^2 h_i / (sigma^2 p) with r_i the Pearson residual and p = rank(X).
* :func:`influence`: case deletion, lme4's ``influence.merMod`` (lme4 >= 1.1-30): the model is
  fitted again without each deleted unit (each row, or each level of ``groups``), starting at theta-hat
  (and beta-hat for glmer), with the same criterion.  :class:`Influence` holds the estimates of each
  refit, and gives ``dfbeta`` (refit - full fit, fixed effects or variance components), ``dfbetas``
  (dfbeta / the refit's standard errors) and ``cooks_distance``: lme4's
  D_i = dfbeta_i' V^{-1} dfbeta_i (n - p) / (n p), V the full fit's vcov and n the number of
  deleted units.

The refits are one per deleted unit (the loop is inherent); each reuses the fit's arrays with the
unit's rows left out, so no formula is parsed again.
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .covstruct import vech_indices
from .errors import DataError, DiagnosticWarning
from .newdata import model_rows
from .progress import progress_bar
from .residuals import data_rows, is_glmm, residual_values
from .row_quadratic import unscaled_quadratic


def _quadratic_own_rows(fit) -> np.ndarray:
    return unscaled_quadratic(fit, model_rows(fit.design, list(range(len(fit.terms)))))


def _prior_weights(fit) -> np.ndarray:
    if is_glmm(fit):
        return np.asarray(fit.problem.resp.weights, dtype=float)
    w = fit.design.weights
    return np.ones(fit.nobs) if w is None else np.asarray(w, dtype=float)


def _hat(fit) -> np.ndarray:
    if is_glmm(fit):
        warnings.warn("the hat matrix may not make sense for GLMMs (lme4's warning): A carries the PIRLS "
                      "weights and h_i the prior weights", DiagnosticWarning, stacklevel=3)
    return _prior_weights(fit) * _quadratic_own_rows(fit)


def hatvalues(fit) -> pd.Series:
    """lme4's ``hatvalues(fit)``: the leverages h_i of the rows (module docstring)."""
    return data_rows(fit, _hat(fit))


def cooks_distance(fit) -> pd.Series:
    """lme4's ``cooks.distance(fit)`` (no refits): (r_i / (1 - h_i))^2 h_i / (sigma^2 p), NaN where
    h_i = 1.  For the case-deletion version use ``influence(fit).cooks_distance()``."""
    h = _hat(fit)
    r = residual_values(fit, "pearson")
    with np.errstate(divide="ignore", invalid="ignore"):
        d = (r / (1.0 - h)) ** 2 * h / (fit.sigma ** 2 * len(fit.beta))
    return data_rows(fit, np.where(np.isinf(d), np.nan, d))


# ---- case deletion --------------------------------------------------------------------------------
def var_cov_names(fit) -> list[str]:
    """lme4's names of the variance components in ``influence``: sigma^2, then per term v[a] on the
    diagonal and C[b,a] below it, column by column, prefixed "label:" when there are several terms."""
    vc = fit.varcorr()
    several = len(vc.terms) > 1
    out = ["sigma^2"]
    for t in vc.terms:
        names = t.coef_names
        for r, c in zip(*vech_indices(len(names))):
            nm = f"v[{names[r]}]" if r == c else f"C[{names[r]},{names[c]}]"
            out.append(f"{t.label}:{nm}" if several else nm)
    return out


def var_cov_values(fit) -> np.ndarray:
    """sigma^2 (1 for binomial and Poisson) and each term's covariance, lower triangle by columns."""
    parts = [np.array([fit.sigma ** 2])]
    for t in fit.varcorr().terms:
        parts.append(t.cov[vech_indices(t.cov.shape[0])])
    return np.concatenate(parts)


def _units(fit, groups, data) -> tuple[str, np.ndarray, np.ndarray]:
    """(name, labels of the deleted units in order of first appearance, unit of each fitted row)."""
    design = fit.design
    if groups is None:
        return "case", np.asarray(design.row_index, dtype=object), np.arange(fit.nobs)
    cols = [groups] if isinstance(groups, str) else list(groups)
    name = ".".join(cols)
    term = next((t for t in fit.terms if list(t.group_columns) == cols), None)
    if term is not None and data is None:
        keys = np.asarray(term.levels, dtype=object)[term.codes]
    else:
        if data is None:
            raise DataError(f"groups={groups!r} is not a grouping factor of the model: pass data= (the data the "
                            "model was fitted to) so that its column(s) can be read")
        missing = [c for c in cols if c not in data.columns]
        if missing:
            raise DataError(f"data has no column(s) {', '.join(map(repr, missing))} for groups")
        sub = data.loc[design.row_index, cols].astype(str)
        keys = sub.iloc[:, 0].to_numpy(dtype=object)
        for c in cols[1:]:
            keys = keys + "." + sub[c].to_numpy(dtype=object)
    labels, first = np.unique(keys, return_index=True)
    order = np.argsort(first, kind="stable")
    code_sorted = np.searchsorted(labels, keys)
    rank = np.empty(len(labels), dtype=np.int64)
    rank[order] = np.arange(len(labels))
    return name, labels[order], rank[code_sorted]


def subset_design(design, keep: np.ndarray):
    """The design on the rows ``keep`` (a boolean mask): arrays subset, each term's levels reduced to
    those still present (as lme4 refits on a subset of the data)."""
    terms = []
    for t in design.terms:
        codes = t.codes[keep]
        present = np.unique(codes)
        new_codes = np.searchsorted(present, codes)
        terms.append(dataclasses.replace(t, codes=new_codes, model_matrix=t.model_matrix[keep],
                                         levels=[t.levels[j] for j in present]))
    X = design.X[keep]
    if X.shape[1] and np.linalg.matrix_rank(X) < X.shape[1]:
        raise DataError("leaving out a deleted unit makes the fixed-effects matrix rank deficient (a "
                        "coefficient is estimated from that unit alone); influence needs every refit to "
                        "have the same fixed effects")
    return dataclasses.replace(
        design, y=design.y[keep], X=X, terms=terms, offset=design.offset[keep],
        weights=None if design.weights is None else design.weights[keep], row_index=design.row_index[keep])


def _refit_without(fit, keep: np.ndarray):
    """The fit's model on the rows ``keep``, started at the fit's estimates; warnings kept quiet."""
    design = subset_design(fit.design, keep)
    if is_glmm(fit):
        from .glmer import GlmerFit
        from .glmm import GLMMProblem, fit_glmm

        resp = fit.problem.resp
        resp = dataclasses.replace(resp, **{f.name: getattr(resp, f.name)[keep] for f in dataclasses.fields(resp)
                                            if isinstance(getattr(resp, f.name), np.ndarray)})
        problem = GLMMProblem(design.terms, design.X, resp, fit.family, design.offset)
        start = {"theta": fit.theta} if fit.nAGQ == 0 else {"theta": fit.theta, "fixef": fit.beta}
        result = fit_glmm(problem, nAGQ=fit.nAGQ, start=start, control=fit.control)
        return GlmerFit(design, problem, result, [m for _, m in result.messages], data_name=fit.data_name)
    from .lmer import fit_problem, lmm_problem

    return fit_problem(design, lmm_problem(design), reml=fit.reml, start=fit.theta, quiet=True,
                       data_name=fit.data_name, control=fit.control)


@dataclass(frozen=True)
class Influence:
    """lme4's ``influence.merMod`` result: the full fit's estimates and those of each refit without
    one deleted unit (rows of the frames: the deleted units, in order of first appearance)."""

    groups: str                       # "case" or the grouping column(s)
    fixed: pd.Series                  # fixed.effects
    fixed_deleted: pd.DataFrame       # fixed.effects[-groups]
    var_cov: pd.Series                # var.cov.comps
    var_cov_deleted: pd.DataFrame     # var.cov.comps[-groups]
    vcov: pd.DataFrame                # the full fit's vcov
    vcov_deleted: np.ndarray          # (units, p, p) vcov[-groups]
    converged: pd.Series
    function_evals: pd.Series

    @property
    def deleted(self) -> pd.Index:
        return self.fixed_deleted.index

    def dfbeta(self, which: str = "fixed") -> pd.DataFrame:
        """lme4's ``dfbeta(inf, which)``: refit minus full fit, for the fixed effects ("fixed") or
        the variance components ("var.cov")."""
        if which == "fixed":
            return self.fixed_deleted - self.fixed
        if which in ("var.cov", "var_cov"):
            return self.var_cov_deleted - self.var_cov
        raise ValueError(f"which must be 'fixed' or 'var.cov', got {which!r}")

    def dfbetas(self) -> pd.DataFrame:
        """lme4's ``dfbetas(inf)``: dfbeta scaled by each refit's standard errors."""
        se = np.sqrt(np.diagonal(self.vcov_deleted, axis1=1, axis2=2))
        return self.dfbeta() / se

    def cooks_distance(self) -> pd.Series:
        """lme4's ``cooks.distance(inf)``: dfbeta_i' V^{-1} dfbeta_i (n - p) / (n p) (module docstring)."""
        db = self.dfbeta().to_numpy()
        n, p = db.shape
        Vinv = np.linalg.inv(self.vcov.to_numpy())
        d = np.einsum("ia,ab,ib->i", db, Vinv, db) * (n - p) / (n * p)
        return pd.Series(d, index=self.deleted, name="cooks_distance")


def influence(fit, groups=None, data: pd.DataFrame | None = None, progress: bool | None = None) -> Influence:
    """lme4's ``influence(fit, groups)``: refits without each row (``groups=None``, lme4's ".case")
    or without each level of ``groups`` (a grouping factor of the model, or with ``data`` any
    column or list of columns), started at the estimates.  Shows a progress bar as
    :mod:`mixedpy.progress` decides.  See the module docstring for the statistics."""
    name, labels, unit = _units(fit, groups, data)
    index = pd.Index(labels, name=name)
    m = len(labels)
    p = len(fit.beta)
    vc_names = var_cov_names(fit)
    fixed_del = np.empty((m, p))
    vc_del = np.empty((m, len(vc_names)))
    vcov_del = np.empty((m, p, p))
    converged = np.empty(m, dtype=bool)
    evals = np.empty(m, dtype=np.int64)
    with progress_bar(m, progress=progress, desc=f"influence: refits without each {name}", unit="refit") as bar:
        for i in range(m):   # one refit per deleted unit
            refit = _refit_without(fit, unit != i)
            fixed_del[i], vc_del[i], vcov_del[i] = refit.beta, var_cov_values(refit), refit.vcov_array
            converged[i], evals[i] = refit.converged, refit.opt.n_evals
            bar.update(1)
    names = list(fit.fixef_names)
    return Influence(groups=name, fixed=pd.Series(fit.beta, index=names),
                     fixed_deleted=pd.DataFrame(fixed_del, index=index, columns=names),
                     var_cov=pd.Series(var_cov_values(fit), index=vc_names),
                     var_cov_deleted=pd.DataFrame(vc_del, index=index, columns=vc_names),
                     vcov=fit.vcov, vcov_deleted=vcov_del,
                     converged=pd.Series(converged, index=index), function_evals=pd.Series(evals, index=index))


__all__ = ["influence", "Influence", "hatvalues", "cooks_distance", "subset_design"]
