"""Complete, no and partial pooling side by side, per group (Gelman & Hill 2007, sec. 12.2-12.3).

For a grouping factor g with a random-effects term (coefficients c = intercept, slopes):

* **complete pooling** ignores the groups: ordinary (weighted) least squares of the
  fixed-effects formula, ``y = X beta + offset + e``; every group gets the same coefficient
  beta_c (0 for a coefficient that has no fixed effect);
* **no pooling** gives every group its own coefficients: least squares with the columns of X
  not in the term kept common and the term's columns replaced by one set per level,
  ``y = X_o gamma + Z_g a + offset + e``; a group's estimate is a_{j,c} with its standard error
  from sigma-hat^2 (A'WA)^{-1} (NaN where the group's data cannot identify it);
* **partial pooling** is the mixed model's ``coef(fit)[g]`` (fixef + conditional mode) with
  the conditional SD of the random effect (arm ``se.ranef``) as its standard error.

The normal equations of the no-pooling fit are solved blockwise (the Z_g'WZ_g part is
block-diagonal), so no dense n x J matrix is formed and no loop runs over groups.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from .errors import DataError
from .families import binomial_counts


def _batched_pinv(D: np.ndarray, rtol: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    """Pseudo-inverses of symmetric PSD blocks (J, k, k) and the rank of each block."""
    w, V = np.linalg.eigh(D)
    top = np.maximum(w.max(axis=1, keepdims=True), 0.0)
    keep = w > rtol * np.maximum(top, 1e-300)
    inv_w = np.where(keep, 1.0 / np.where(keep, w, 1.0), 0.0)
    return np.einsum("jab,jb,jcb->jac", V, inv_w, V), keep.sum(axis=1)


def no_pooling(y, X_common, term, weights=None, offset=None) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-level least-squares coefficients of one term, other columns shared.

    Solves [[Z'WZ, Z'WX],[X'WZ, X'WX]] (a; gamma) = (Z'Wr; X'Wr), r = y - offset, by eliminating
    the block-diagonal Z'WZ (blocks D_j = sum_{i in j} w_i m_i m_i'):

        S = X'WX - B' D^+ B,   gamma = S^{-1} (X'Wr - B' D^+ Z'Wr),   a = D^+ (Z'Wr - B gamma),
        Cov(a_j) = sigma^2 (D_j^+ + D_j^+ B_j S^{-1} B_j' D_j^+),  sigma^2 = RSS / (n - rank).

    Returns (a (J, k) with NaN where a block is rank deficient, se (J, k), sigma).
    """
    y = np.asarray(y, float)
    n = y.size
    w = np.ones(n) if weights is None else np.asarray(weights, float)
    r = y - (0.0 if offset is None else np.asarray(offset, float))
    M, codes, J, k = term.model_matrix, term.codes, term.n_levels, term.k
    Xo = np.asarray(X_common, float).reshape(n, -1)
    p = Xo.shape[1]
    Mw = M * w[:, None]
    D = np.zeros((J, k, k))
    for a in range(k):  # k is the (small) number of coefficients of the term
        for b in range(a, k):
            D[:, a, b] = D[:, b, a] = np.bincount(codes, weights=Mw[:, a] * M[:, b], minlength=J)
    Zr = np.stack([np.bincount(codes, weights=Mw[:, a] * r, minlength=J) for a in range(k)], axis=1)  # (J,k)
    B = np.zeros((J, k, p))
    for a in range(k):
        for c in range(p):
            B[:, a, c] = np.bincount(codes, weights=Mw[:, a] * Xo[:, c], minlength=J)
    Dp, rank = _batched_pinv(D)
    DpB = np.einsum("jab,jbc->jac", Dp, B)
    S = Xo.T @ (Xo * w[:, None]) - np.einsum("jab,jac->bc", B, DpB)
    rhs = Xo.T @ (w * r) - np.einsum("jab,ja->b", DpB, Zr)
    if p:
        S_inv = np.linalg.pinv(S)
        gamma = S_inv @ rhs
    else:
        S_inv, gamma = np.zeros((0, 0)), np.zeros(0)
    a_hat = np.einsum("jab,jb->ja", Dp, Zr - np.einsum("jac,c->ja", B, gamma))
    fitted = Xo @ gamma + np.einsum("nk,nk->n", M, a_hat[codes])
    rss = float(np.sum(w * (r - fitted) ** 2))
    dof = n - int(rank.sum()) - (np.linalg.matrix_rank(S) if p else 0)
    sigma = np.sqrt(rss / dof) if dof > 0 else np.nan
    cov = Dp + np.einsum("jac,cd,jbd->jab", DpB, S_inv, DpB)
    se = sigma * np.sqrt(np.clip(np.diagonal(cov, axis1=1, axis2=2), 0, None))
    bad = rank < k
    a_hat[bad] = np.nan
    se[bad] = np.nan
    return a_hat, se, sigma


def pooling(formula_or_fit, data: pd.DataFrame | None = None, group: str | None = None, **lmer_args) -> pd.DataFrame:
    """Complete-, no- and partial-pooling estimates per level of one grouping factor.

    Parameters
    ----------
    formula_or_fit : an lmer fit, or an lme4 formula (then ``lmer(formula, data, **lmer_args)``)
    data : the data, when a formula is given
    group : the grouping factor (default: the first random-effects term's); only the terms of
        this factor are used for the no-pooling fit, other random terms are ignored there

    Returns
    -------
    DataFrame indexed by level (named after the factor), one row per level and coefficient, with
    columns ``term`` (coefficient name), ``n`` (observations in the level), ``complete``,
    ``no_pooling``, ``se_no_pooling``, ``partial``, ``se_partial``.  Plot ``no_pooling`` and
    ``partial`` against ``n`` with ``complete`` as a reference line to show the shrinkage.
    """
    from .lmer import lmer
    from .results import LmerFit

    if isinstance(formula_or_fit, str):
        if data is None:
            raise ValueError("pooling(formula, data, group): data is needed when a formula is given")
        fit = lmer(formula_or_fit, data, **lmer_args)
    else:
        fit = formula_or_fit
    if getattr(fit, "family", None) is not None and getattr(fit.family, "name", None) == "binomial":
        return binomial_pooling(fit, group)
    if not isinstance(fit, LmerFit):
        raise TypeError(f"pooling() needs an lmer fit or a formula (Gaussian models), or a binomial glmer fit "
                        f"with a random intercept; got {type(fit).__name__}")
    d = fit.design
    groups = [t.group_name for t in fit.terms]
    group = groups[0] if group is None else group
    if group not in groups:
        raise DataError(f"{group!r} is not a grouping factor of the model; the factors are {sorted(set(groups))}")
    idx = [i for i, t in enumerate(fit.terms) if t.group_name == group]
    if len(idx) > 1:
        # several terms on one factor, e.g. (x || g): merge them into one term for the no-pooling fit
        base = fit.terms[idx[0]]
        M = np.column_stack([fit.terms[i].model_matrix for i in idx])
        names = [c for i in idx for c in fit.terms[i].coef_names]
        term = dataclasses.replace(base, model_matrix=M, coef_names=names)
    else:
        term = fit.terms[idx[0]]
    names = term.coef_names
    fixef_names = list(d.fixef_names)
    common = [j for j, nm in enumerate(fixef_names) if nm not in names]
    y, w, off = d.y, d.weights, d.offset

    # complete pooling: (weighted) least squares of the fixed-effects formula
    ww = np.ones(d.nobs) if w is None else w
    sw = np.sqrt(ww)
    beta_cp, *_ = np.linalg.lstsq(d.X * sw[:, None], (y - off) * sw, rcond=None)
    complete = np.array([beta_cp[fixef_names.index(c)] if c in fixef_names else 0.0 for c in names])

    a_np, se_np, _ = no_pooling(y, d.X[:, common], term, w, off)

    coefs = fit.coef_frames()[group]
    condsd = fit.ranef_frames(condvar=True)[group].attrs["condsd"]
    counts = np.bincount(term.codes, minlength=term.n_levels)
    frames = []
    for c, name in enumerate(names):
        frames.append(pd.DataFrame({
            "term": name, "n": counts, "complete": complete[c], "no_pooling": a_np[:, c],
            "se_no_pooling": se_np[:, c], "partial": coefs[name].to_numpy(),
            "se_partial": condsd[name].to_numpy()}, index=pd.Index(term.levels, name=group)))
    return pd.concat(frames)


__all__ = ["pooling", "no_pooling"]


def _intercept_term(fit, group: str | None):
    cands = [i for i, t in enumerate(fit.terms) if "(Intercept)" in t.coef_names
             and (group is None or t.group_name == group)]
    if not cands:
        which = f" for {group!r}" if group else ""
        raise DataError(f"shrinkage needs a random intercept{which}; the model's terms are "
                        + ", ".join(f"({' + '.join(t.coef_names)} | {t.group_name})" for t in fit.terms))
    return cands[0]


def binomial_pooling(fit, group: str | None = None) -> pd.DataFrame:
    """No-pooling and partial-pooling probabilities per level for a binomial GLMM with a random
    intercept, ``cbind(s, f) ~ 1 + (1 | g)`` (McElreath 2020, sec. 13.1; Gelman & Hill 2007,
    sec. 14.1):

        no pooling:       p_j = sum of successes / sum of trials in group j
        partial pooling:  invlogit(beta_0 + b_j)            grand mean: invlogit(beta_0)

    Returns a DataFrame indexed by level with columns ``term, n`` (trials), ``no_pooling,
    partial`` and ``attrs["grand_mean"]``, ``attrs["scale"] = "probability"``.
    """
    i = _intercept_term(fit, group)
    t = fit.terms[i]
    codes, J = t.codes, t.n_levels
    beta0 = float(fit.beta[list(fit.fixef_names).index("(Intercept)")]) if "(Intercept)" in fit.fixef_names else 0.0
    b0 = np.asarray(fit.b_list[i])[:, list(t.coef_names).index("(Intercept)")]
    eta_other = np.asarray(fit.linear_predictor()) - beta0 - b0[codes]
    if np.ptp(eta_other) > 1e-8:
        raise DataError("shrinkage for a GLMM is drawn on the probability scale and needs an "
                        "intercept-only model such as cbind(s, f) ~ 1 + (1 | g)")
    succ, trials = binomial_counts(fit.design.y, fit.design.weights)
    n = np.bincount(codes, weights=trials, minlength=J)
    out = pd.DataFrame({"term": "(Intercept)", "n": n,
                        "no_pooling": np.bincount(codes, weights=succ, minlength=J) / n,
                        "partial": fit._linkinv(beta0 + b0)}, index=pd.Index(list(t.levels), name=t.group_name))
    out.attrs.update(grand_mean=float(fit._linkinv(np.array([beta0]))[0]), group=t.group_name,
                     scale="probability")
    return out
