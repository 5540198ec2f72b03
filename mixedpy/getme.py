"""lme4's ``getME(fit, name)`` and ``model.matrix(fit, type=)``: the pieces of a fitted model.

The random-effects matrices follow lme4 (Bates et al. 2015, section 2.2): Z = [Z_1 ... Z_m] with
the columns of term i level-major (for each level, its k_i coefficients), Lambda the block
diagonal of I_{J_i} (x) T_i, b = Lambda u.  They are returned as ``scipy.sparse`` CSC matrices
(lme4's ``dgCMatrix``) in lme4's term and column order.  ``devcomp`` is lme4's list of the
deviance components (``cmp``) and dimensions (``dims``) with lme4's names and order.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .errors import MixedpyError
from .residuals import is_glmm as _is_glmm


def z_matrix(fit) -> sp.csc_matrix:
    """Z (n x q), lme4's ``getME(fit, "Z")``."""
    return sp.hstack([t.z_matrix() for t in fit.terms], format="csc")


def lambda_matrix(fit) -> sp.csc_matrix:
    """Lambda (q x q, lower triangular), lme4's ``t(getME(fit, "Lambdat"))``."""
    return sp.block_diag([sp.kron(sp.identity(t.n_levels), sp.csr_matrix(T)) for t, T in
                          zip(fit.terms, fit.relative_factors())], format="csc")


def fixed_matrix(fit) -> pd.DataFrame:
    """X with lme4's column names, indexed like the data's rows the fit used."""
    d = fit.design
    return pd.DataFrame(np.asarray(d.X, dtype=float), index=d.row_index, columns=list(d.fixef_names))


def model_matrix(fit, type: str = "fixed"):
    """lme4's ``model.matrix(fit, type=)``: the fixed-effects matrix X as a DataFrame (columns
    named as lme4 names them), or with ``type="random"`` the sparse Z (:func:`z_matrix`)."""
    if type == "fixed":
        return fixed_matrix(fit)
    if type == "random":
        return z_matrix(fit)
    raise ValueError(f"type must be 'fixed' or 'random', got {type!r}")


def _flist(fit) -> pd.DataFrame:
    """One categorical column per grouping factor (lme4's ``flist``), in term order."""
    cols = {}
    for t in fit.terms:
        if t.group_name not in cols:
            cols[t.group_name] = pd.Categorical.from_codes(t.codes, categories=list(t.levels))
    return pd.DataFrame(cols, index=fit.design.row_index)


def _response(fit) -> np.ndarray:
    return np.asarray(fit.problem.y if _is_glmm(fit) else fit.design.y, dtype=float)


def devcomp(fit) -> dict:
    """lme4's ``getME(fit, "devcomp")``: ``{"cmp": {...}, "dims": {...}}`` with lme4's entries.

    cmp: ldL2 (log|L|^2), ldRX2 (log|R_X|^2), wrss (weighted residual sum of squares; for a GLMM
    the sum of squared Pearson residuals), ussq (|u|^2), pwrss (wrss + ussq), drsum (GLMM: the sum
    of deviance residuals), REML (the REML criterion of a REML fit), dev (-2 logLik of an ML fit or
    GLMM), sigmaML, sigmaREML, and tolPwrss for a GLMM; NaN where lme4 has NA.
    dims: N, n, p, nmp, q, nth, (nAGQ, compDev for a GLMM), useSc, reTrms, spFe, REML (p for a
    REML fit, else 0), GLMM, NLMM.
    """
    n, p = fit.design.X.shape
    q = sum(t.width for t in fit.terms)
    nan = float("nan")
    glmm = _is_glmm(fit)
    if glmm:
        u = np.asarray(fit.u, dtype=float)
        ussq = float(u @ u)
        wrss = float((fit.residuals("pearson") ** 2).sum())
        ctl = fit.control
        cmp = {"ldL2": float(fit.state.ldL2), "ldRX2": float(fit.state.factor.ldRX2), "wrss": wrss, "ussq": ussq,
               "pwrss": wrss + ussq, "drsum": float(fit.deviance), "REML": nan, "dev": float(fit.criterion),
               "sigmaML": nan, "sigmaREML": nan, "tolPwrss": float(ctl.tolPwrss) if ctl is not None else 1e-7}
    else:
        st = fit.state
        cmp = {"ldL2": float(st.ldL2), "ldRX2": float(st.ldRX2), "wrss": float(st.wrss), "ussq": float(st.ussq),
               "pwrss": float(st.pwrss), "drsum": nan, "REML": float(st.reml_crit) if fit.reml else nan,
               "dev": nan if fit.reml else float(st.deviance_ml), "sigmaML": float(st.sigma_ml),
               "sigmaREML": float(st.sigma_reml)}
    dims = {"N": n, "n": n, "p": p, "nmp": n - p, "q": q, "nth": len(fit.theta)}
    if glmm:
        dims.update(nAGQ=int(fit.nAGQ), compDev=1)
    dims.update(useSc=int(bool(fit.use_scale)), reTrms=len(fit.terms), spFe=0,
                REML=p if getattr(fit, "reml", False) else 0, GLMM=int(glmm), NLMM=0)
    return {"cmp": cmp, "dims": dims}


def _nb_theta(fit) -> float:
    """lme4's ``getME(fit, "glmer.nb.theta")``: the negative binomial size, NA (NaN) otherwise."""
    theta = getattr(fit, "nb_theta", None)
    return float("nan") if theta is None else float(theta)


def _gp(fit) -> np.ndarray:
    return np.concatenate([[0], np.cumsum([t.width for t in fit.terms])]).astype(int)


_EXTRACTORS = {
    "X": fixed_matrix,
    "Z": z_matrix,
    "Zt": lambda f: z_matrix(f).T.tocsc(),
    "Lambda": lambda_matrix,
    "Lambdat": lambda f: lambda_matrix(f).T.tocsc(),
    "theta": lambda f: pd.Series(np.asarray(f.theta, dtype=float), index=f.theta_names),
    "lower": lambda f: pd.Series(np.asarray(f.lower, dtype=float), index=f.theta_names),
    "beta": lambda f: np.asarray(f.beta, dtype=float).copy(),
    "fixef": lambda f: pd.Series(np.asarray(f.beta, dtype=float), index=list(f.fixef_names)),
    "u": lambda f: np.asarray(f.u, dtype=float).copy(),
    "b": lambda f: np.concatenate([np.asarray(b, dtype=float).ravel() for b in f.b_list]),
    "flist": _flist,
    "cnms": lambda f: {lab: list(t.coef_names) for lab, t in zip(f.term_labels, f.terms)},
    "devcomp": devcomp,
    "glmer.nb.theta": _nb_theta,
    "y": _response,
    "mu": lambda f: np.asarray(f.fitted, dtype=float).copy(),
    "offset": lambda f: np.asarray(f.design.offset, dtype=float).copy(),
    "sigma": lambda f: float(f.sigma),
    "Gp": _gp,
    "Tlist": lambda f: dict(zip(f.term_labels, f.relative_factors())),
    "REML": lambda f: len(f.beta) if getattr(f, "reml", False) else 0,
    "is_REML": lambda f: bool(getattr(f, "reml", False)),
    "n_rtrms": lambda f: len(f.terms),
    "n_rfacs": lambda f: len({t.group_name for t in f.terms}),
    "N": lambda f: int(f.nobs),
    "n": lambda f: int(f.nobs),
    "p": lambda f: len(f.beta),
    "q": lambda f: int(sum(t.width for t in f.terms)),
    "m": lambda f: len(f.theta),
}

#: the names :func:`getME` knows (lme4's, a subset)
GETME_NAMES = tuple(_EXTRACTORS)


def getME(fit, name):  # noqa: N802 - lme4's name
    """lme4's ``getME(fit, name)``: one piece of a fitted model by lme4's name, or a dict of
    several for a list of names.

    X (DataFrame), Z, Zt, Lambda, Lambdat (``scipy.sparse`` CSC, lme4's column order), theta and
    lower (Series named as lme4: ``Subject.(Intercept)``, ``Subject.Days.(Intercept)``, ...), beta,
    u, b (arrays), fixef (Series), flist (DataFrame of the grouping factors), cnms (dict: term ->
    coefficient names; repeated factors are ``g``, ``g.1`` as in VarCorr), devcomp (dict, see
    :func:`devcomp`), glmer.nb.theta (the negative binomial theta; NaN for other fits, lme4's NA),
    and y, mu, offset, sigma, Gp, Tlist, REML, is_REML, n_rtrms, n_rfacs, N, n, p, q, m.
    """
    if isinstance(name, (list, tuple)):
        return {nm: getME(fit, nm) for nm in name}
    if name not in _EXTRACTORS:
        raise MixedpyError(f"getME: unknown name {name!r}; valid names are {', '.join(GETME_NAMES)}")
    if not hasattr(fit, "terms") or not hasattr(fit, "theta"):
        raise TypeError(f"getME needs a fitted lmer/glmer model, got {type(fit).__name__}")
    return _EXTRACTORS[name](fit)


__all__ = ["getME", "model_matrix", "devcomp", "z_matrix", "lambda_matrix", "GETME_NAMES"]
