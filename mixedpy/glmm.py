"""Generalized linear mixed models on the LMM kernel: PIRLS, Laplace, adaptive quadrature.

Model (Bates et al. 2015, J. Stat. Softw. 67(1); lme4 vignette "PIRLS"):

    eta = offset + X beta + Z Lambda_theta u,    mu = g^{-1}(eta),    u ~ N(0, I_q),
    y_i | u ~ family(mu_i, prior weight w_i).

**PIRLS** (penalized iteratively reweighted least squares, lme4 ``pwrssUpdate``) finds the
conditional mode u-hat (and beta-hat when ``nAGQ = 0``).  Each iteration writes the working
weights and working response

    sqrt(W)_i = mu_eta(eta_i) sqrt(w_i / V(mu_i)),     z_i = eta_i - offset_i + (y_i - mu_i) / mu_eta(eta_i)

into :class:`~mixedpy.linalg.blocked.CrossProducts`, factors the penalized system
[[Lambda'Z'WZ Lambda + I, Lambda'Z'WX], [X'WZ Lambda, X'WX]] with the same blocked Cholesky the
LMM uses, and solves it; with beta fixed (``nAGQ >= 1``) X has no columns and X beta joins the
offset.  The penalized deviance ``pdev = sum_i d_i + ||u||^2`` must fall; otherwise the step is
halved (up to 20 times).

**Objectives** (ALGORITHMS.md 2.3-2.4), with ldL2 = log|L|^2 of the last PIRLS factor:

    Laplace:  -2 l(theta, beta) = ldL2 + ||u-hat||^2 + aic(y, mu-hat)          (nAGQ = 0, 1)
    AGQ:      -2 l(theta, beta) = sum_j D_j(u-hat) + ldL2 - 2 sum_j log M_j     (nAGQ > 1)

where, for a single scalar term, D_j(u) = u_j^2 + sum_{i in j} d_i(u) and
M_j = sum_k w_k exp(-[D_j(u-hat + z_k s) - D_j(u-hat)] / 2 - log phi(z_k)) / sqrt(2 pi) with
s_j = 1 / L_jj and (z_k, w_k) the Gauss-Hermite rule for the standard normal density
(Pinheiro & Bates 1995, J. Comput. Graph. Stat. 4(1); Liu & Pierce 1994, Biometrika 81(3)).

**Fitting** follows glmer's two stages: stage 1 optimizes theta with the nAGQ = 0 objective (u and
beta from PIRLS); stage 2 (nAGQ >= 1) optimizes (theta, beta) jointly.  A stage-1 optimum with a
variance on its bound is re-examined by a restart with those parameters back at their start values
(:func:`~mixedpy.optimize.restart_off_boundary`): the nAGQ = 0 criterion can have a singular local
optimum besides the interior one, and lme4's stage 1 (minqa's BOBYQA, n + 2 interpolation points)
and mixedpy's (NLopt's, 2n + 1) can reach different ones.  The stage-2 optimum is then
re-examined with the exact objective (PIRLS converged tightly, ldL2 at the converged weights):
where the two differ, the PIRLS-path noise in lme4's value may have stopped BOBYQA in a spurious
minimum, so the exact objective is polished from there and the result kept only if it lowers
lme4's objective (:func:`polish_noisy_optimum`).  The vcov of beta is
2 [H^{-1}]_{beta beta} from the finite-difference Hessian H of the stage-2 objective (lme4's
default ``use.hessian``), falling back to (R_X'R_X)^{-1} when H is not positive definite.
"""
from __future__ import annotations

import copy

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from .control import glmerControl
from .errors import ConvergenceWarning, FitError, MixedpyInfo
from .families import Family, Response
from .linalg.blocked import BlockedFactor, CrossProducts, NotPositiveDefinite
from .optimize import (BoundaryRestart, Convergence, OptSummary, assess, boundary_snap, finite_difference_derivs,
                       is_singular, minimize, require_finite, restart_off_boundary)
from .terms import RandomEffectsTerm, b_from_u, random_part, relative_factors

#: lme4's glmerControl defaults
TOL_PWRSS = 1e-7
MAXIT = 100
MAX_HALVINGS = 20
#: PIRLS tolerance for the final state and the finite-difference Hessian: the Hessian divides by
#: delta^2 = 1e-8, so the objective must be reproducible far below lme4's 1e-7 relative pdev change
TOL_TIGHT = 1e-12
#: PIRLS-path noise.  lme4's Laplace/AGQ value takes ldL2 from the last PIRLS factor (weights of the
#: previous mu), so it differs from the exact value (tight PIRLS, factored at the converged weights)
#: by a path-dependent term, up to ~2e-5 relative on the differential corpus; mostly it is smooth near
#: the optimum (lme4 and mixedpy then minimize the same smooth function), but its jumps can stop
#: BOBYQA in a spurious local minimum.  A polished point must lower the reported (lme4-style)
#: objective by more than POLISH_GAIN_RTOL * max(1, |objective|) -- the corpus's tolerance on the
#: objective, so that noise-sized gains never move lme4's estimates -- and since the noise at the
#: polished point is >= ~-1e-7 relative, a polish can only gain that much where the noise at the
#: optimum is as large: the trigger threshold NOISE_RTOL is the same number
POLISH_GAIN_RTOL = 1e-6
NOISE_RTOL = POLISH_GAIN_RTOL
#: the polish's BOBYQA starts with this fraction of stage 2's initial step (it only has to leave a
#: noise-sized basin around the optimum) and stops when an iteration gains less than
#: POLISH_FTOL_RTOL * max(1, |objective|) (far below the gain it is judged by)
POLISH_STEP = 0.1
POLISH_FTOL_RTOL = 1e-9
#: at most this many exact evaluations per parameter in the polish
POLISH_MAXEVAL_PER_PAR = 100


class PIRLSError(FitError):
    """PIRLS could not find the conditional modes (a non-finite first step, step-halving failed, or
    no convergence).  Inside the optimizer it marks the point as infeasible (+inf); from the start
    values it means the model cannot be fitted."""


#: what a glmer stage with no finite objective means (see optimize.require_finite)
_PIRLS_FAILS = ("PIRLS fails at every parameter value tried; check for separation or extreme predictor "
                "values.")


def _first_iteration_failure(theta: np.ndarray, what: str) -> str:
    return (f"PIRLS diverged at its first iteration at theta = {np.round(theta, 6).tolist()}: {what} the "
            "starting linear predictor. Check for extreme predictor values (rescale them), separation, or "
            "give other start values.")


class SeparationWarning(ConvergenceWarning):
    """Fitted probabilities of 0 or 1: the fixed effects separate the outcome."""


@dataclass
class PirlsState:
    """Where PIRLS stopped for one (theta, beta): the conditional mode and what the objectives need.

    ``factor`` is the blocked factor of the last iteration (weights at the previous mu, as lme4's
    stored L); ``dev_resid`` holds the squared deviance residuals d_i at ``mu``.
    """

    theta: np.ndarray
    beta: np.ndarray
    u: np.ndarray
    eta: np.ndarray
    mu: np.ndarray
    factor: BlockedFactor
    dev_resid: np.ndarray
    pdev: float
    iterations: int
    joint: bool

    @property
    def ldL2(self) -> float:
        return float(self.factor.ldL2)

    @property
    def ussq(self) -> float:
        return float(self.u @ self.u)

    @property
    def deviance(self) -> float:
        """sum_i d_i, the conditional deviance (lme4 ``deviance(glmerMod)``)."""
        return float(self.dev_resid.sum())


def gh_rule(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gauss-Hermite nodes z, weights w (summing to 1) and log phi(z) for the standard normal density
    (lme4 ``GHrule``): integral f(z) phi(z) dz ~= sum_k w_k f(z_k)."""
    if not 1 <= k <= 100:
        raise ValueError(f"nAGQ must be between 1 and 100, got {k}")
    z, w = np.polynomial.hermite_e.hermegauss(k)
    w = w / np.sqrt(2.0 * np.pi)
    if k % 2 == 1:
        z[k // 2] = 0.0  # the middle node is 0 exactly; it then contributes its weight alone
    return z, w, -0.5 * z ** 2 - 0.5 * np.log(2.0 * np.pi)


def pirls_iterations(theta, start, factor_at, step, finish, beta, tol: float, maxit: int, refactor: bool):
    """lme4's PIRLS loop (``pwrssUpdate``), for any way of forming the weighted cross-products.

    Each iteration factors the penalized system at the working weights of the current state
    (``factor_at(state, first)``), takes its solution (u, beta) -- beta held fixed when ``beta`` is
    given -- and evaluates the new state and its penalized deviance ``pdev = sum(d) + |u|^2``
    (``step(u, b) -> (state, pdev)``).  Converged when |pdev_old - pdev| < tol * pdev (lme4
    ``tolPwrss``); a step that increases pdev is halved towards the previous iterate up to
    ``MAX_HALVINGS`` times.  ``refactor`` factors once more at the converged state's weights.
    ``finish(state, u, b, factor, pdev, it)`` builds the result.  Used in memory
    (:meth:`GLMMProblem.pirls`) and with one pass over the partitions per step (mixedpy.scale).
    """
    joint = beta is None
    state = start
    u_old = b_old = None
    pdev_old = np.inf
    for it in range(1, maxit + 1):
        factor = factor_at(state, u_old is None)
        u, b = factor.coefficients()
        if not joint:
            b = beta
        state, pdev = step(u, b)
        if u_old is None and not np.isfinite(pdev):
            # no earlier iterate to halve the step towards: the start itself leads nowhere
            raise PIRLSError(_first_iteration_failure(
                theta, "the penalized deviance is not finite after one step from"))
        if abs(pdev_old - pdev) < tol * abs(pdev):
            if refactor:
                factor = factor_at(state, False)
            return finish(state, u, b, factor, pdev, it)
        if not np.isfinite(pdev) or pdev > pdev_old:
            for _ in range(MAX_HALVINGS):
                u = 0.5 * (u_old + u)
                if joint:
                    b = 0.5 * (b_old + b)
                state, pdev = step(u, b)
                if np.isfinite(pdev) and pdev <= pdev_old:
                    break
            if not np.isfinite(pdev) or pdev - pdev_old > tol * abs(pdev_old):
                raise PIRLSError(
                    f"PIRLS step-halvings failed to reduce the penalized deviance at theta = "
                    f"{np.round(theta, 6).tolist()}: the conditional modes cannot be found. Check for "
                    "separation or extreme values, rescale predictors, or try nAGQ=0 / other start values.")
        u_old, b_old, pdev_old = u, b, pdev
    raise PIRLSError(f"PIRLS did not converge in {maxit} iterations at theta = {np.round(theta, 6).tolist()}; "
                     "check for separation or extreme predictor values, or rescale predictors.")


class GLMMProblem:
    """Arrays of one GLMM and its objectives; knows nothing of formulas or DataFrames.

    Parameters
    ----------
    terms : random-effects terms in lme4's order
    X : (n, p) fixed-effects matrix
    resp : validated :class:`~mixedpy.families.Response` (y, prior weights, trials)
    family : :class:`~mixedpy.families.Family`
    offset : (n,) or None
    """

    def __init__(self, terms: list[RandomEffectsTerm], X: np.ndarray, resp: Response, family: Family,
                 offset: np.ndarray | None = None):
        self.terms = terms
        self.X = np.ascontiguousarray(X, dtype=float)
        self.n, self.p = self.X.shape
        self.X0 = np.zeros((self.n, 0))
        self.resp = resp
        self.y = resp.y
        self.wt = resp.weights
        self.family = family
        self.offset = np.zeros(self.n) if offset is None else np.asarray(offset, dtype=float)
        self.blocks = list(terms)   # RandomEffectsTerm is the kernel's TermBlock
        # the block structure depends only on the level codes: analysed once, reused by every PIRLS step
        self.structure = CrossProducts.analyse(self.blocks, [t.group_name for t in terms])
        self.lower = np.concatenate([t.theta_lower() for t in terms])
        self.n_theta = len(self.lower)
        self.aic_const = family.loglik_const(resp)
        self.scalar = len(terms) == 1 and terms[0].k == 1
        self.n_evals = 0

    def with_family(self, family: Family, resp: Response) -> "GLMMProblem":
        """The same design (X, terms and its analysed block structure) under another ``family`` and
        its validated ``resp``: glmer.nb refits one design at many NB thetas."""
        new = copy.copy(self)
        new.resp, new.y, new.wt, new.family = resp, resp.y, resp.weights, family
        new.aic_const = family.loglik_const(resp)
        new.n_evals = 0
        return new

    # -- random part ------------------------------------------------------------------
    def relative_factors(self, theta: np.ndarray) -> list[np.ndarray]:
        return relative_factors(self.terms, theta)

    def b_from_u(self, theta: np.ndarray, u: np.ndarray) -> list[np.ndarray]:
        """b = Lambda u, per term as (J_i, k_i) arrays (level-major)."""
        return b_from_u(self.terms, self.relative_factors(theta), u)

    # -- PIRLS ------------------------------------------------------------------------
    def initial_eta(self) -> np.ndarray:
        """offset + g(mustart), R's ``family$initialize`` start for the first PIRLS."""
        return self.offset + self.family.linkfun(self.family.mustart(self.resp))

    def pirls(self, theta: np.ndarray, beta: np.ndarray | None, eta_start: np.ndarray,
              tol: float = TOL_PWRSS, maxit: int = MAXIT, refactor: bool = False) -> PirlsState:
        """Conditional modes by PIRLS from the linear predictor ``eta_start``.

        ``beta=None`` solves for (u, beta) jointly (nAGQ = 0); otherwise beta is held fixed and only u
        is solved for.  Converged when |pdev_old - pdev| < tol * pdev (lme4 ``tolPwrss``).
        lme4 keeps the factor of the last iteration, whose weights come from the previous mu;
        ``refactor=True`` factors once more at the weights of the converged mu, which makes ldL2 a
        smooth function of (theta, beta) for finite differences.
        """
        theta = np.asarray(theta, dtype=float)
        T_list = self.relative_factors(theta)
        fam, y, wt = self.family, self.y, self.wt
        joint = beta is None
        X = self.X if joint else self.X0
        base = self.offset if joint else self.offset + self.X @ beta

        def factor_at(state, first: bool) -> BlockedFactor:
            eta, mu = state[0], state[1]
            mu_eta = fam.mu_eta(eta)
            sqrt_w = mu_eta * np.sqrt(wt / fam.variance(mu))
            z = eta - base + (y - mu) / mu_eta
            if first and not (np.all(np.isfinite(sqrt_w)) and np.all(np.isfinite(z))):
                raise PIRLSError(_first_iteration_failure(theta, "the working weights are not finite at"))
            return CrossProducts(self.blocks, X, z, sqrt_w, self.structure).factor(T_list)

        def step(u, b):
            eta, mu, d, pdev = self._update(T_list, base, u, b, joint)
            return (eta, mu, d), pdev

        def finish(state, u, b, factor, pdev, it):
            eta, mu, d = state
            return PirlsState(theta, np.asarray(b, float), u, eta, mu, factor, d, pdev, it, joint)

        eta0 = np.asarray(eta_start, dtype=float)
        return pirls_iterations(theta, (eta0, fam.linkinv(eta0)), factor_at, step, finish, beta, tol, maxit,
                                refactor)

    def _update(self, T_list, base, u, b, joint):
        eta = base + random_part(self.terms, b_from_u(self.terms, T_list, u))
        if joint and self.p:
            eta = eta + self.X @ b
        mu = self.family.linkinv(eta)
        d = self.family.dev_resids(self.y, mu, self.wt)
        return eta, mu, d, float(d.sum() + u @ u)

    # -- objectives -------------------------------------------------------------------
    def laplace(self, st: PirlsState) -> float:
        """ldL2 + ||u||^2 + aic(y, mu): -2 log-likelihood by the Laplace approximation."""
        return st.ldL2 + st.ussq + self.family.aic(self.resp, st.mu, self.aic_const, dev=st.deviance)

    def agq(self, st: PirlsState, nAGQ: int) -> float:
        """-2 log-likelihood by adaptive Gauss-Hermite quadrature with nAGQ nodes per level.

        One scalar term only: the integral factorises over levels, and each level's integrand is
        centred at u-hat_j and scaled by s_j = 1/L_jj (the conditional SD of u_j).  All levels are
        perturbed together, one pass over the data per node.
        """
        z, w, ldnorm = gh_rule(nAGQ)
        t = self.terms[0]
        J, codes, m = t.n_levels, t.codes, t.model_matrix[:, 0]
        s = 1.0 / st.factor.L1[:, 0, 0]
        lam = float(st.theta[0])
        devc0 = np.bincount(codes, weights=st.dev_resid, minlength=J) + st.u ** 2
        nz = z != 0.0
        zk = z[nz]
        eta_k = st.eta[None, :] + zk[:, None] * (lam * m * s[codes])[None, :]
        d_k = self.family.dev_resids(self.y[None, :], self.family.linkinv(eta_k), self.wt[None, :])
        K = zk.size
        idx = (np.arange(K)[:, None] * J + codes[None, :]).ravel()
        devc_k = np.bincount(idx, weights=d_k.ravel(), minlength=K * J).astype(float).reshape(K, J)
        devc_k += (st.u[None, :] + zk[:, None] * s[None, :]) ** 2
        terms = np.exp(-0.5 * (devc_k - devc0[None, :]) - ldnorm[nz][:, None]) * w[nz][:, None] / np.sqrt(2 * np.pi)
        mult = terms.sum(axis=0) + w[~nz].sum()
        return float(devc0.sum() + st.ldL2 - 2.0 * np.log(mult).sum())

    def objective(self, st: PirlsState, nAGQ: int) -> float:
        return self.agq(st, nAGQ) if nAGQ > 1 else self.laplace(st)

    # -- the final factor --------------------------------------------------------------
    def joint_factor(self, st: PirlsState) -> BlockedFactor:
        """The factor of the full (u, beta) system at the weights of mu-hat (sigma = 1).

        Used for (R_X'R_X)^{-1}, the conditional variances of the random effects and arm's ``sim``.
        """
        fam = self.family
        mu_eta = fam.mu_eta(st.eta)
        sqrt_w = mu_eta * np.sqrt(self.wt / fam.variance(st.mu))
        z = st.eta - self.offset + (self.y - st.mu) / mu_eta
        return CrossProducts(self.blocks, self.X, z, sqrt_w, self.structure).factor(self.relative_factors(st.theta))


# ---------------------------------------------------------------------------------------
@dataclass
class GlmmFitResult:
    """Everything :func:`fit_glmm` found (the fit object is built from it in ``glmer``)."""

    nAGQ: int
    theta: np.ndarray
    beta: np.ndarray
    state: PirlsState
    factor: BlockedFactor
    objective: float
    vcov: np.ndarray
    vcov_source: str
    opt_stage1: OptSummary
    opt_stage2: OptSummary | None
    messages: list[tuple[type, str]] = field(default_factory=list)
    convergence: Convergence | None = None
    polish: PolishRecord | None = None
    control: glmerControl | None = None   # the settings the fit used (refits reuse them)
    boundary_restart: BoundaryRestart | None = None   # stage 1's restart off the boundary, if it ran


@dataclass(frozen=True)
class PolishRecord:
    """What :func:`polish_noisy_optimum` did at the stage-2 optimum.

    ``f_reported``/``f_exact`` are the lme4-style and the exact objective at the optimizer's point
    ``x``; ``noise = f_reported - f_exact``.  When the noise exceeded the threshold (``triggered``)
    the exact objective was minimized from ``x`` to ``x_polished`` (``n_evals`` evaluations, the
    optimizer's ``status``), where the objectives are ``f_polished_reported``/``f_polished_exact``;
    ``accepted`` says whether ``x_polished`` replaced ``x`` (it lowered the reported objective by more
    than ``gain_tol``).
    """

    x: np.ndarray
    f_reported: float
    f_exact: float
    noise_tol: float
    gain_tol: float
    triggered: bool = False
    accepted: bool = False
    x_polished: np.ndarray | None = None
    f_polished_reported: float = np.nan
    f_polished_exact: float = np.nan
    n_evals: int = 0
    status: str = ""

    @property
    def noise(self) -> float:
        return self.f_reported - self.f_exact

    @property
    def noise_dominated(self) -> bool:
        """The polish was rejected although the exact objective is lower at ``x_polished`` by more than
        ``gain_tol``: the reported optimum is off the exact one by more than the tolerance."""
        return bool(self.triggered and not self.accepted and self.f_exact - self.f_polished_exact > self.gain_tol)

    @property
    def gain(self) -> float:
        """How much the polish lowered the reported objective (NaN when it did not run)."""
        return self.f_reported - self.f_polished_reported

    def describe(self) -> str:
        """One sentence for the convergence record's optimizer message."""
        if not self.triggered:
            return ""
        head = (f"PIRLS-path noise {self.noise:+.3g} in the objective at the optimum; polish of the exact "
                f"objective ({self.n_evals} evaluations)")
        if self.accepted:
            return f"{head} lowered it by {self.gain:.3g} and was kept"
        return f"{head} did not lower it (change {-self.gain:+.3g}); estimates kept"


def _parse_start(start, problem: GLMMProblem):
    theta0, beta0 = None, None
    if start is None:
        return theta0, beta0
    if isinstance(start, dict):
        bad = set(start) - {"theta", "fixef"}
        if bad:
            raise ValueError(f"start keys must be 'theta' and/or 'fixef', got {sorted(bad)}")
        theta0 = start.get("theta")
        beta0 = start.get("fixef")
    else:
        theta0 = start
    if theta0 is not None:
        theta0 = np.asarray(theta0, dtype=float).ravel()
        if theta0.size != problem.n_theta:
            raise ValueError(f"start theta has {theta0.size} values but the model has {problem.n_theta}")
    if beta0 is not None:
        beta0 = np.asarray(beta0, dtype=float).ravel()
        if beta0.size != problem.p:
            raise ValueError(f"start fixef has {beta0.size} values but the model has {problem.p} fixed effects")
    return theta0, beta0


def _stage_settings(optimizer: str, step, rhoend_factor: float, opt_ctrl: dict) -> dict:
    """:func:`minimize` settings of one glmer stage, as lme4 sets them for each optimizer (BOBYQA:
    minqa's rhobeg = ``step``, rhoend = ``rhoend_factor`` * rhobeg; Nelder-Mead: lme4's initial step
    xst = ``step`` and xt = 5e-4 xst, FtolAbs 1e-5), with the user's optCtrl on top."""
    if optimizer == "bobyqa":
        base = {"initial_step": step, "xtol_abs": rhoend_factor * step, "ftol_abs": 1e-10}
    elif optimizer == "nelder_mead":
        base = {"initial_step": step, "xtol_abs": 5e-4 * step, "ftol_abs": 1e-5}
    else:
        base = {}
    return {**base, "maxeval": 10_000, **opt_ctrl}


def fit_glmm(problem: GLMMProblem, nAGQ: int = 1, start=None, tol: float = TOL_PWRSS,
             warm_start: bool = False, calc_derivs: bool = True, use_hessian: bool = True,
             control: glmerControl | None = None) -> GlmmFitResult:
    """glmer's fit: initial PIRLS, stage 1 over theta (nAGQ = 0 objective), stage 2 over (theta, beta).

    Parameters
    ----------
    problem : the GLMM arrays
    nAGQ : 0 (stage 1 only), 1 (Laplace) or > 1 (adaptive Gauss-Hermite; one scalar term only)
    start : theta vector, or dict with "theta" and/or "fixef"
    tol : PIRLS relative tolerance on the penalized deviance during the optimization
    warm_start : start each PIRLS from the previous evaluation's linear predictor (faster) instead of
        lme4's fixed ``lp0``; both converge to the same conditional modes
    calc_derivs : finite-difference gradient and Hessian at the optimum (convergence checks, vcov)
    use_hessian : vcov from the Hessian (lme4's default) rather than from R_X
    control : :class:`~mixedpy.control.glmerControl`: the optimizer of each stage and its optCtrl,
        boundary_tol, calc_derivs, tolPwrss (PIRLS's tolerance, in place of ``tol``) and the
        convergence checks.  When None, ``glmerControl(calc_derivs=calc_derivs, tolPwrss=tol)``.
    """
    ctl = glmerControl(calc_derivs=calc_derivs, tolPwrss=tol) if control is None else control
    tol, calc_derivs = ctl.tolPwrss, ctl.calc_derivs
    opt_first, opt_second = ctl.optimizer_stages()
    opt_ctrl = ctl.opt_settings
    nAGQ = int(nAGQ)
    if nAGQ < 0:
        raise ValueError(f"nAGQ must be >= 0, got {nAGQ}")
    if nAGQ > 25:
        raise ValueError(f"nAGQ must be at most 25 (lme4's limit), got {nAGQ}")
    if nAGQ > 1 and not problem.scalar:
        raise ValueError("nAGQ > 1 is only available for models with a single, scalar random-effects term "
                         "such as (1 | g); use nAGQ=1 (Laplace) for this model")
    theta_start, beta_start = _parse_start(start, problem)
    if beta_start is not None and nAGQ == 0:
        raise ValueError("start['fixef'] cannot be used with nAGQ=0 (the fixed effects come from PIRLS)")
    p, nth = problem.p, problem.n_theta

    # initial PIRLS at the default theta from R's mustart: its linear predictor lp0 starts stage 1
    theta_init = np.concatenate([t.theta_start() for t in problem.terms])
    st0 = problem.pirls(theta_init, None, problem.initial_eta(), tol)
    # every evaluation restarts PIRLS from the same eta (lme4's lp0), so the objective -- whose ldL2
    # comes from the last PIRLS iteration -- is the same function of the parameters as lme4's
    memo = {"eta": st0.eta}

    def stage1(theta):
        problem.n_evals += 1
        try:
            st = problem.pirls(theta, None, memo["eta"], tol)
        except (PIRLSError, NotPositiveDefinite):
            return np.inf
        if warm_start:
            memo["eta"] = st.eta
        return problem.laplace(st)

    x0 = theta_init if theta_start is None else theta_start
    if np.all(x0 == 0):
        x0 = np.full_like(x0, 1e-3)  # as lme4's optwrap does for bobyqa
    rhobeg = min(0.95, 0.2 * float(np.max(np.abs(x0))))
    # lme4's stage-1 step: minqa's rhobeg for BOBYQA, Nelder_Mead's default xst = 0.02
    settings1 = _stage_settings(opt_first, rhobeg if opt_first == "bobyqa" else np.full(x0.shape, 0.02), 1e-6, opt_ctrl)
    opt1 = minimize(stage1, x0, problem.lower, optimizer=opt_first, **settings1)
    require_finite(opt1, "glmer could not fit the model in stage 1 (nAGQ = 0)", _PIRLS_FAILS)
    restart = None
    if ctl.boundary_restart:
        # the nAGQ = 0 criterion can have a singular local optimum besides the interior one, and NLopt's
        # BOBYQA (2n + 1 points) can stop there where lme4's minqa BOBYQA (n + 2 points) does not; the
        # gain must exceed the corpus's tolerance on the objective, so noise never moves lme4's estimates
        eta_opt = memo["eta"]
        opt1, restart = restart_off_boundary(stage1, opt1, theta_init, POLISH_GAIN_RTOL * max(1.0, abs(opt1.fmin)),
                                             ctl.check_conv_singular.tol, optimizer=opt_first, **settings1)
        if restart is not None and not restart.accepted:
            memo["eta"] = eta_opt  # (warm start) a rejected restart does not move the start either
    restart_msgs = ([(MixedpyInfo, f"glmer: {restart.describe('stage-1 (nAGQ = 0)')}")]
                    if restart is not None and restart.accepted else [])

    if nAGQ == 0:
        if ctl.boundary_tol > 0:
            opt1 = boundary_snap(stage1, opt1, ctl.boundary_tol)
        st = problem.pirls(opt1.x, None, memo["eta"], tol)
        factor = problem.joint_factor(st)
        singular = is_singular(st.theta, problem.lower, ctl.check_conv_singular.tol)
        conv = opt1.convergence = _with_restart_note(assess(opt1, singular, extra=restart_msgs, control=ctl), restart)
        return GlmmFitResult(0, st.theta, st.beta, st, factor, problem.laplace(st), factor.unscaled_vcov(), "RX",
                             opt1, None, list(conv.warnings), conv, control=ctl, boundary_restart=restart)
    stage1_msgs = [(ConvergenceWarning, f"stage 1 (nAGQ = 0): {m}") for m in opt1.messages] + restart_msgs

    # stage 2 restarts PIRLS from the linear predictor at the stage-1 optimum (lme4's new lp0)
    st1 = problem.pirls(opt1.x, None, memo["eta"], tol)
    beta1 = st1.beta if beta_start is None else beta_start
    se1 = np.sqrt(np.diag(problem.joint_factor(st1).unscaled_vcov()))
    memo2 = {"eta": st1.eta - problem.offset}

    def stage2(pars):
        problem.n_evals += 1
        try:
            st = problem.pirls(pars[:nth], pars[nth:], problem.offset + memo2["eta"], tol)
        except (PIRLSError, NotPositiveDefinite):
            return np.inf
        if warm_start:
            memo2["eta"] = st.eta - problem.offset
        return problem.objective(st, nAGQ)

    def stage2_exact(pars):
        # the same objective with PIRLS converged tightly and factored at the converged weights: a
        # smooth function of (theta, beta), free of the PIRLS-path noise (never moves the warm start)
        problem.n_evals += 1
        try:
            st = problem.pirls(pars[:nth], pars[nth:], problem.offset + memo2["eta"], TOL_TIGHT, refactor=True)
        except (PIRLSError, NotPositiveDefinite):
            return np.inf
        return problem.objective(st, nAGQ)

    lower2 = np.concatenate([problem.lower, np.full(p, -np.inf)])
    x2 = np.concatenate([opt1.x, beta1])
    step = 0.2 * np.concatenate([np.full(nth, 0.1), np.minimum(se1, 10.0)])
    opt2 = minimize(stage2, x2, lower2, optimizer=opt_second, **_stage_settings(opt_second, step, 1e-7, opt_ctrl))
    require_finite(opt2, "glmer could not fit the model in stage 2", _PIRLS_FAILS)
    eta_opt = memo2["eta"]
    opt2, polish = polish_noisy_optimum(stage2, stage2_exact, opt2, lower2, POLISH_STEP * step)
    if not polish.accepted:
        memo2["eta"] = eta_opt  # (warm start) a rejected polished point does not move the start either
    if ctl.boundary_tol > 0:
        opt2 = boundary_snap(stage2, opt2, ctl.boundary_tol)

    eta_opt = memo2["eta"]
    singular = is_singular(opt2.x[:nth], problem.lower, ctl.check_conv_singular.tol)
    vcov, source = None, "RX"
    if calc_derivs:
        opt2.gradient, opt2.hessian = finite_difference_derivs(stage2, opt2.x)
    memo2["eta"] = eta_opt
    st = problem.pirls(opt2.x[:nth], opt2.x[nth:], problem.offset + memo2["eta"], tol)
    objective = problem.objective(st, nAGQ)
    factor = problem.joint_factor(st)
    extra = []
    if calc_derivs and use_hessian:
        vcov = hessian_vcov(opt2.hessian, nth) if np.all(np.isfinite(opt2.hessian)) else None
        if vcov is None:
            extra.append((ConvergenceWarning,
                          "the finite-difference Hessian is not positive definite, so the fixed-effect "
                          "vcov comes from R_X (as use_hessian=False); standard errors may be unreliable "
                          "- check the fit for convergence problems or rescale predictors."))
        else:
            source = "Hessian"
    if vcov is None:
        vcov = factor.unscaled_vcov()
    if polish.noise_dominated:
        extra.append((ConvergenceWarning, (
            f"the Laplace/AGQ objective is noisy at the estimates: with the log-determinant from the last PIRLS "
            f"iteration (as lme4) it differs by {polish.noise:+.3g} from its exact value, and the exact objective is "
            f"{polish.f_exact - polish.f_polished_exact:.3g} lower at nearby estimates "
            "(fit.result.polish.x_polished) that the reported objective does not prefer; the estimates are "
            "uncertain at that level - rescale predictors or simplify the random effects.")))
    conv = assess(opt2, singular, extra=extra, control=ctl)
    note = polish.describe()
    conv = dataclasses.replace(conv, warnings=tuple(stage1_msgs) + conv.warnings,
                               optimizer_message=f"{conv.optimizer_message}; {note}" if note else
                               conv.optimizer_message)
    conv = _with_restart_note(conv, restart)
    opt2.convergence = conv
    return GlmmFitResult(nAGQ, st.theta, opt2.x[nth:].copy(), st, factor, objective, vcov, source, opt1, opt2,
                         list(conv.warnings), conv, polish, control=ctl, boundary_restart=restart)


def _with_restart_note(conv: Convergence, restart: BoundaryRestart | None) -> Convergence:
    """The convergence record with a rejected stage-1 restart told in its optimizer message (an
    accepted one is a MixedpyInfo note among the warnings)."""
    if restart is None or restart.accepted:
        return conv
    return dataclasses.replace(conv, optimizer_message=f"{conv.optimizer_message}; stage 1: {restart.describe()}")


def polish_noisy_optimum(reported, exact, opt: OptSummary, lower: np.ndarray, step,
                         noise_rtol: float = NOISE_RTOL, gain_rtol: float = POLISH_GAIN_RTOL,
                         maxeval: int | None = None,
                         ftol_rtol: float = POLISH_FTOL_RTOL) -> tuple[OptSummary, PolishRecord]:
    """Re-examine an optimum of the noisy lme4-style objective with the exact one.

    lme4's Laplace value takes ldL2 from the factor of the last PIRLS iteration, whose weights are
    those of the previous mu, so ``reported`` (f) is the exact, smooth objective (f*, ``exact``) plus
    a non-smooth term of up to ~2e-5 relative that depends on the PIRLS path.  BOBYQA on f can stop in
    a local minimum that this term creates.  Where f(x) = f*(x) to ``noise_rtol`` the term is
    negligible and x is kept: one exact evaluation is the whole cost.  Otherwise BOBYQA minimizes f*
    from x (initial step ``step``) and its result replaces x only if f there is lower than f(x) by
    more than ``gain_rtol`` * max(1, |f(x)|): the fit keeps lme4's objective, so that lme4's
    estimates are reproduced where lme4 stops at a true optimum, and the polish can only lower it.

    ``opt.fmin`` must be ``reported(opt.x)``.  Returns the (possibly updated) summary and the record.
    """
    x, f = opt.x.copy(), float(opt.fmin)
    scale = max(1.0, abs(f))
    f_exact = float(exact(x))
    record = PolishRecord(x=x, f_reported=f, f_exact=f_exact, noise_tol=noise_rtol * scale, gain_tol=gain_rtol * scale)
    opt.n_evals += 1
    if not np.isfinite(f_exact) or abs(f - f_exact) <= record.noise_tol:
        return opt, record
    step = np.broadcast_to(np.asarray(step, dtype=float), x.shape).copy()
    if maxeval is None:
        maxeval = POLISH_MAXEVAL_PER_PAR * (x.size + 1)
    pol = minimize(exact, x, lower, initial_step=step, xtol_abs=1e-7 * step, ftol_abs=ftol_rtol * scale,
                   maxeval=maxeval)
    f_pol = float(reported(pol.x)) if np.isfinite(pol.fmin) else np.inf
    accepted = bool(np.isfinite(f_pol) and f_pol < f - record.gain_tol)
    record = dataclasses.replace(record, triggered=True, accepted=accepted, x_polished=pol.x.copy(),
                                 f_polished_reported=f_pol, f_polished_exact=float(pol.fmin),
                                 n_evals=pol.n_evals, status=pol.status)
    opt.n_evals += pol.n_evals + 1
    if accepted:
        opt.x, opt.fmin = pol.x.copy(), f_pol
    return opt, record


def hessian_vcov(H: np.ndarray, n_theta: int) -> np.ndarray | None:
    """2 [H^{-1}]_{beta beta}, symmetrised, or None when it is not positive definite (lme4
    ``vcov.merMod`` with ``use.hessian``): H is the Hessian of -2 log L over (theta, beta)."""
    try:
        Hinv = np.linalg.inv(H)
    except np.linalg.LinAlgError:
        return None
    V = 2.0 * Hinv[n_theta:, n_theta:]
    V = 0.5 * (V + V.T)
    if V.size == 0:
        return V
    try:
        np.linalg.cholesky(V)
    except np.linalg.LinAlgError:
        return None
    return V


def check_separation(X: np.ndarray, names: list[str], resp: Response, mu: np.ndarray | None = None) -> list[str]:
    """Warnings for (quasi-)complete separation in a binomial model.

    Before the fit: a 0/1 column of X whose rows with value 1 all have the same outcome.
    After the fit: fitted probabilities numerically 0 or 1 (as R's glm.fit warns).
    """
    msgs = []
    has = resp.trials > 0
    if X.shape[1]:
        binary = np.all((X == 0) | (X == 1), axis=0) & ~np.all(X == 1, axis=0)
        for j in np.flatnonzero(binary):
            rows = has & (X[:, j] == 1)
            if rows.any() and (np.all(resp.y[rows] == 0) or np.all(resp.y[rows] == 1)):
                outcome = "failures" if np.all(resp.y[rows] == 0) else "successes"
                msgs.append(f"perfect separation: every observation with {names[j]} = 1 is one of the {outcome}; "
                            f"its estimate (and SE) will be very large and unreliable. Merge or drop that level, "
                            "or use a Bayesian fit with a proper prior (mp.bayes_glmer).")
    if mu is not None:
        tiny = 10 * np.finfo(float).eps
        if np.any(has & ((mu <= tiny) | (mu >= 1 - tiny))):
            msgs.append("fitted probabilities numerically 0 or 1 occurred: some predictors (or random effects) "
                        "separate the outcome perfectly, so their estimates are unreliable. Check for a predictor "
                        "that predicts the outcome exactly, or use a Bayesian fit with priors (mp.bayes_glmer).")
    return msgs
