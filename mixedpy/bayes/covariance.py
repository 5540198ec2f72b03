"""Unconstrained parameterization of each random-effects covariance matrix, vectorised over walkers.

rstanarm's decov prior (Stan program ``make_theta_L``; ALGORITHMS.md 4.3) for a term with k
coefficients:

    tau ~ Gamma(shape, 1),          s = tau * scale * sigma_disp,      trace(Sigma) = k s^2
    pi ~ Dirichlet(concentration),  sd_m = sqrt(pi_m * trace(Sigma))
    Omega ~ LKJ(regularization),    Sigma = diag(sd) Omega diag(sd)

rstanarm builds Omega by the onion method from (rho, z_T); any construction with the LKJ law gives
the same posterior, so we use Stan's canonical partial correlations (CPC, z = tanh(y)) with the
LKJ density written for the Cholesky factor (Lewandowski, Kurowicka & Joe 2009; Stan Reference
Manual, "Cholesky factors of correlation matrices"):

    log p(L_Omega) = sum_{i=2..k} (k - i + 2 eta - 2) log L_ii.

The unconstrained vector per term is (log tau, alr(pi) [k-1], atanh(CPC) [k(k-1)/2]); the simplex
uses the additive log-ratio map, whose Jacobian is prod_m pi_m, so the Dirichlet density on the
unconstrained scale is sum_m alpha_m log pi_m + log B(alpha)^{-1}.  ``lkj`` replaces (tau, pi) by
k log-SDs with half-student_t priors.  Every log density includes the Jacobian of its transform.
"""
from __future__ import annotations

import numpy as np
from scipy import special

from .priors import Decov, Lkj


def _recycle(v, i: int) -> float:
    a = np.atleast_1d(np.asarray(v, dtype=float))
    return float(a[i % a.size])


def cpc_to_cholesky(y: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Cholesky factor of a correlation matrix from unconstrained CPCs.

    Parameters
    ----------
    y : (W, k(k-1)/2) unconstrained values, ordered row-wise over the strict lower triangle
    k : dimension

    Returns
    -------
    L : (W, k, k) lower-triangular, rows of unit length
    logjac : (W,) log |d vech(L) / d y|
    """
    W = y.shape[0]
    L = np.zeros((W, k, k))
    L[:, 0, 0] = 1.0
    logjac = np.zeros(W)
    pos = 0
    for i in range(1, k):           # loops over the k x k entries only (k is small)
        ssq = np.zeros(W)
        for j in range(i):
            z = np.tanh(y[:, pos])
            pos += 1
            rem = 1.0 - ssq
            L[:, i, j] = z * np.sqrt(rem)
            # d tanh = 1 - z^2; scaling by sqrt(remaining length) adds 0.5 log(rem)
            logjac += np.log1p(-z * z) + 0.5 * np.log(rem)
            ssq = ssq + L[:, i, j] ** 2
        L[:, i, i] = np.sqrt(np.maximum(1.0 - ssq, 0.0))
    return L, logjac


def cholesky_to_cpc(L: np.ndarray) -> np.ndarray:
    """Inverse of :func:`cpc_to_cholesky` for one (k, k) factor."""
    k = L.shape[0]
    out = []
    for i in range(1, k):
        ssq = 0.0
        for j in range(i):
            rem = max(1.0 - ssq, 1e-12)
            z = np.clip(L[i, j] / np.sqrt(rem), -0.999999, 0.999999)
            out.append(np.arctanh(z))
            ssq += L[i, j] ** 2
    return np.asarray(out)


class CovariancePrior:
    """The prior on the covariance matrix Sigma of one random-effects term, over unconstrained
    parameters: ``transform`` maps them to chol(Sigma) with log prior + log Jacobian.  It is not a
    term of its own: the term is :class:`mixedpy.terms.RandomEffectsTerm`, and this object only
    parameterizes that term's Sigma under rstanarm's decov or lkj prior.

    Parameters
    ----------
    k : number of coefficients of the term
    prior : Decov or Lkj
    index : position of the term (vector-valued decov arguments are recycled over terms)
    cov_scale : lkj's SD scale after autoscaling
    """

    def __init__(self, k: int, prior: Decov | Lkj, index: int, cov_scale: float = 1.0):
        self.k = k
        self.prior = prior
        self.n_cpc = k * (k - 1) // 2
        if isinstance(prior, Decov):
            self.eta = _recycle(prior.regularization, index)
            self.shape = _recycle(prior.shape, index)
            self.scale = _recycle(prior.scale, index)
            conc = np.atleast_1d(np.asarray(prior.concentration, dtype=float))
            self.alpha = np.array([conc[m % conc.size] for m in range(k)])
            self.n_scale = 1 if k == 1 else k   # log tau (+ k-1 simplex coordinates)
        else:
            self.eta = prior.regularization
            self.sd_scale, self.sd_df = cov_scale, prior.df
            self.n_scale = k
        self.dim = self.n_scale + (self.n_cpc if k > 1 else 0)
        self.names = self._names()

    def _names(self) -> list[str]:
        if isinstance(self.prior, Decov):
            nm = ["log_tau"] + [f"alr_pi[{m}]" for m in range(self.k - 1)]
        else:
            nm = [f"log_sd[{m}]" for m in range(self.k)]
        return nm + [f"atanh_cpc[{m}]" for m in range(self.n_cpc)]

    # ------------------------------------------------------------------------------------
    def _sd_decov(self, x: np.ndarray, disp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        log_tau = x[:, 0]
        tau = np.exp(log_tau)
        # Gamma(shape, 1) density of tau times the Jacobian tau of the log map
        lp = self.shape * log_tau - tau - special.gammaln(self.shape)
        s = tau * self.scale * disp
        if self.k == 1:
            return s[:, None], lp
        logits = np.concatenate([x[:, 1:self.k], np.zeros((x.shape[0], 1))], axis=1)
        mx = logits.max(axis=1, keepdims=True)
        log_pi = logits - (mx + np.log(np.exp(logits - mx).sum(axis=1, keepdims=True)))
        a = self.alpha
        lp = lp + log_pi @ a + special.gammaln(a.sum()) - special.gammaln(a).sum()
        sd = s[:, None] * np.sqrt(self.k * np.exp(log_pi))
        return sd, lp

    def _sd_lkj(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        log_sd = x[:, :self.k]
        sd = np.exp(log_sd)
        nu, sc = self.sd_df, self.sd_scale
        z = sd / sc
        lp = (np.log(2.0) + special.gammaln((nu + 1) / 2) - special.gammaln(nu / 2) - 0.5 * np.log(nu * np.pi)
              - np.log(sc) - (nu + 1) / 2 * np.log1p(z * z / nu)) + log_sd
        return sd, lp.sum(axis=1)

    def transform(self, x: np.ndarray, disp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cholesky factors of Sigma (W, k, k) and log prior + log Jacobian (W,).

        ``disp`` (W,) is sigma_disp: sigma for gaussian models, ones otherwise.
        """
        if isinstance(self.prior, Decov):
            sd, lp = self._sd_decov(x, disp)
        else:
            sd, lp = self._sd_lkj(x)
        if self.k == 1:
            return sd[:, :, None], lp
        Lo, logjac = cpc_to_cholesky(x[:, self.n_scale:], self.k)
        i = np.arange(1, self.k)
        lp = lp + logjac + ((self.k - i - 1 + 2 * self.eta - 2)[None, :] * np.log(Lo[:, i, i])).sum(axis=1)
        return sd[:, :, None] * Lo, lp

    def inverse(self, Sigma: np.ndarray, disp: float) -> np.ndarray:
        """Unconstrained parameters of one covariance matrix (used for starting values)."""
        k = self.k
        sd = np.sqrt(np.maximum(np.diag(Sigma), 1e-8 * max(np.trace(Sigma), 1e-12) + 1e-300))
        if isinstance(self.prior, Decov):
            s = np.sqrt(np.sum(sd ** 2) / k)
            head = [np.log(s / (self.scale * disp))]
            if k > 1:
                log_pi = 2 * np.log(sd) - np.log(np.sum(sd ** 2))
                head += list(log_pi[:-1] - log_pi[-1])
        else:
            head = list(np.log(sd))
        if k == 1:
            return np.asarray(head)
        C = Sigma / np.outer(sd, sd)
        C = np.clip(C, -0.95, 0.95)
        np.fill_diagonal(C, 1.0)
        try:
            Lo = np.linalg.cholesky(C)
        except np.linalg.LinAlgError:
            Lo = np.eye(k)
        return np.concatenate([head, cholesky_to_cpc(Lo)])
