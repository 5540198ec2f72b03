"""``glmer``: formula -> design -> family response -> GLMM problem -> two-stage fit -> GlmerFit.

Binomial and Poisson mixed models as lme4's ``glmer`` fits them (Bates et al. 2015; lme4's
``mkGlmerDevfun``/``optimizeGlmer``; ALGORITHMS.md section 2): the Laplace approximation
(``nAGQ=1``), adaptive Gauss-Hermite quadrature (``nAGQ>1``, one scalar random-effects term) or
the fast ``nAGQ=0`` fit in which PIRLS also estimates the fixed effects.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from .control import glmerControl, require_dask_control, resolve_control
from .families import Family, get_family
from .formula.design import ModelDesign, build_design
from .glmm import GLMMProblem, GlmmFitResult, SeparationWarning, check_separation, fit_glmm
from .linalg.blocked import BlockedFactor
from .lmer import caller_namespace, data_name
from .threads import controls_threads
from .optimize import OptSummary, emit
from .profile import GlmerProfiler, profiler
from .results import MixedModelFit
from .scale import is_dask_frame
from .trials import cbind_response
from .validation import check_bool, check_constant_response, new_response


@dataclass(frozen=True)
class GlmerState:
    """The fitted state that downstream code (``sim``, condVar) reads: the blocked factor of the full
    (u, beta) system at the final PIRLS weights, with the modes and the linear predictor."""

    factor: BlockedFactor
    u: np.ndarray
    beta: np.ndarray
    eta: np.ndarray
    mu: np.ndarray
    ldL2: float
    pirls_iterations: int


class GlmerFit(MixedModelFit):
    """A generalized linear mixed model fitted by maximum likelihood (lme4 ``glmerMod``).

    sigma is 1 (binomial and Poisson have no dispersion); ``loglik`` is minus half the minimized
    objective (Laplace or AGQ); ``deviance`` is the conditional deviance sum_i d_i, as lme4's
    ``deviance()`` for a GLMM.
    """

    use_scale = False
    reml = False

    def __init__(self, design: ModelDesign, problem: GLMMProblem, result: GlmmFitResult,
                 messages: list[str], data_name: str = "data"):
        self.design = design
        self.problem = problem
        self.family: Family = problem.family
        self.nAGQ = result.nAGQ
        self.result = result
        self.messages = messages
        self.data_name = data_name
        self.theta = np.asarray(result.theta, dtype=float)
        self.beta = np.asarray(result.beta, dtype=float)
        st = result.state
        self.u = st.u
        self.b_list = problem.b_from_u(self.theta, st.u)
        self.state = GlmerState(factor=result.factor, u=st.u, beta=self.beta, eta=st.eta, mu=st.mu,
                                ldL2=st.ldL2, pirls_iterations=st.iterations)
        self._dev_resid = st.dev_resid
        self.vcov_source = result.vcov_source

    # -- lme4's scalar summaries -----------------------------------------------------------
    @property
    def sigma(self) -> float:
        return 1.0

    @property
    def control(self):
        """The :class:`~mixedpy.control.glmerControl` the fit used (None for results made without one)."""
        return getattr(self.result, "control", None)

    @property
    def opt(self) -> OptSummary:
        return self.result.opt_stage2 if self.result.opt_stage2 is not None else self.result.opt_stage1

    @property
    def criterion(self) -> float:
        """The minimized objective, -2 log-likelihood (Laplace or AGQ)."""
        return float(self.result.objective)

    @property
    def deviance(self) -> float:
        """Conditional deviance sum_i d_i at the modes (lme4 ``deviance(glmerMod)``), not -2 logLik."""
        return float(self._dev_resid.sum())

    @property
    def deviance_ml(self) -> float:
        """Same as ``deviance`` (a GLMM is always fitted by maximum likelihood)."""
        return self.deviance

    @property
    def reml_crit(self) -> float:
        return np.nan

    @property
    def vcov_array(self) -> np.ndarray:
        """Hessian-based vcov of beta, 2 [H^{-1}]_{beta beta} (lme4's default for nAGQ >= 1), or
        (R_X'R_X)^{-1} at the final PIRLS weights for nAGQ = 0."""
        return self.result.vcov

    def refit(self, reml: bool | None = None, newresp=None, quiet: bool = False,
              calc_derivs: bool = True) -> "GlmerFit":
        """A GLMM is already a maximum-likelihood fit: ``refit(reml=False)`` returns it unchanged.
        ``newresp`` (on the family's scale: proportions for binomial, counts for Poisson, as
        ``simulate`` returns them) fits the same design to a new response (lme4's
        ``refit(object, newresp)``), starting at (theta-hat, beta-hat)."""
        if reml:
            raise ValueError("REML is not defined for generalized linear mixed models")
        if newresp is None:
            return self
        y = new_response(newresp, self.nobs)
        resp = dataclasses.replace(self.problem.resp, y=y)
        design_y = cbind_response(y, resp.trials) if resp.two_column else y
        design = dataclasses.replace(self.design, y=design_y)
        problem = GLMMProblem(design.terms, design.X, resp, self.family, design.offset)
        control = resolve_control(self.control, glmerControl, calc_derivs=calc_derivs)
        result = fit_glmm(problem, nAGQ=self.nAGQ, start={"theta": self.theta, "fixef": self.beta}, control=control)
        if not quiet:
            emit(result.messages)
        return GlmerFit(design, problem, result, [m for _, m in result.messages], data_name=self.data_name)

    # -- per-observation quantities -------------------------------------------------------
    def _linkinv(self, eta):
        return self.family.linkinv(eta)

    @property
    def trials(self) -> np.ndarray:
        """Binomial trials per row (1 for a 0/1 response); ones for Poisson."""
        return self.problem.resp.trials

    @cached_property
    def fitted(self) -> np.ndarray:
        """mu-hat, the conditional mean on the response scale (lme4 ``fitted``)."""
        return self.family.linkinv(self.linear_predictor())

    def residuals(self, type: str = "deviance") -> np.ndarray:
        """lme4's ``residuals(glmerMod, type)``: "deviance" (default), "pearson", "working" or "response"."""
        y, wt, mu = self.problem.y, self.problem.wt, self.fitted
        if type == "deviance":
            d = self.family.dev_resids(y, mu, wt)
            return np.sign(y - mu) * np.sqrt(np.maximum(d, 0.0))
        if type == "pearson":
            return (y - mu) * np.sqrt(wt) / np.sqrt(self.family.variance(mu))
        if type == "working":
            return (y - mu) / self.family.mu_eta(self.linear_predictor())
        if type == "response":
            return y - mu
        raise ValueError(f"type must be 'deviance', 'pearson', 'working' or 'response', got {type!r}")

    @property
    def resid(self) -> pd.Series:
        """Deviance residuals (lme4's ``residuals``), a Series indexed like the data's rows (statsmodels)."""
        return pd.Series(self.residuals("deviance"), index=self.design.row_index)

    # -- text ---------------------------------------------------------------------------
    @property
    def method_label(self) -> str:
        if self.nAGQ == 1:
            return "Laplace Approximation"
        return f"Adaptive Gauss-Hermite Quadrature, nAGQ = {self.nAGQ}"


profiler.register(GlmerFit, GlmerProfiler)


# ------------------------------------------------------------------------------------------
@controls_threads
def glmer(formula: str, data: pd.DataFrame, family="binomial", link: str | None = None, nAGQ: int = 1,
          weights=None, offset=None, start=None, calc_derivs: bool | None = None, optimizer=None,
          control: glmerControl | None = None) -> GlmerFit:
    """Fit a generalized linear mixed model by maximum likelihood, as lme4's ``glmer``.

    Parameters
    ----------
    formula : lme4 formula.  Binomial responses may be 0/1, ``cbind(successes, failures)``, or
        proportions with ``weights=`` the number of trials.
    data : DataFrame
    family : "binomial", "poisson" or a family object (:mod:`mixedpy.families`)
    link : "logit" (default), "probit" or "cloglog" for binomial; "log" for Poisson
    nAGQ : 1 = Laplace approximation; 0 = faster fit with beta from PIRLS; > 1 (at most 25) =
        adaptive Gauss-Hermite quadrature with that many nodes (one scalar term such as (1 | g))
    weights, offset : column names or arrays of prior weights / an offset on the link scale
    start : starting theta, or a dict with "theta" and/or "fixef"
    calc_derivs : finite-difference Hessian at the optimum (convergence checks and the vcov; default
        True); replaces ``control.calc_derivs`` when given
    optimizer : "bobyqa" (default), "nelder_mead" or "scipy" (L-BFGS-B) for both stages, or a pair
        (stage 1, stage 2) as lme4's ``glmerControl(optimizer=)``; replaces ``control.optimizer``.
        lme4's default is ("bobyqa", "Nelder_Mead"); mixedpy's BOBYQA stage 2 reaches lme4's optimum
    control : :class:`mixedpy.glmerControl` (lme4's ``glmerControl()``): optimizers and their
        ``optCtrl`` (maxeval, ftol_abs, xtol_abs), boundary_tol, calc_derivs, tolPwrss and the
        tolerances and actions of the convergence checks; settings mixedpy cannot honour raise
        ControlError

    Notes
    -----
    The model is y_i | b ~ family(g^{-1}(x_i'beta + z_i'b + offset_i)), b ~ N(0, Sigma_theta); the
    likelihood integral over b is approximated by Laplace's method at the conditional modes found by
    PIRLS, or by adaptive quadrature (Bates et al. 2015, J. Stat. Softw. 67(1); Pinheiro & Bates 1995).
    """
    fam = get_family(family, link)
    namespace = caller_namespace()
    if calc_derivs is not None:
        calc_derivs = check_bool(calc_derivs, "calc_derivs")
    ctl = resolve_control(control, glmerControl, optimizer=optimizer, calc_derivs=calc_derivs)
    if is_dask_frame(data):  # one map-reduce pass per PIRLS iteration (mixedpy.scale)
        from .scale.glmer import glmer as scale_glmer

        require_dask_control(ctl, glmerControl)
        return scale_glmer(formula, data, fam, None, nAGQ, weights, offset, start, ctl.calc_derivs, env=namespace,
                           data_name=data_name(namespace, data))
    design = build_design(formula, data, weights=weights, offset=offset, env=namespace, allow_n_levels=True,
                          drop_zero_weights=False)
    resp = fam.prepare(design.y, design.weights, name=design.response_name)
    check_constant_response(resp.y, resp.weights, design.response_name, f"a {fam.name} GLMM")
    problem = GLMMProblem(design.terms, design.X, resp, fam, design.offset)
    pre = check_separation(design.X, design.fixef_names, resp) if fam.name == "binomial" else []
    result = fit_glmm(problem, nAGQ=nAGQ, start=start, control=ctl)
    messages = list(result.messages)
    if fam.name == "binomial":
        post = check_separation(np.zeros((design.nobs, 0)), [], resp, result.state.mu)
        messages += [(SeparationWarning, m) for m in pre + post]
    emit(messages)
    return GlmerFit(design, problem, result, [m for _, m in messages], data_name=data_name(namespace, data))


# ------------------------------------------------------------------------------------------
__all__ = ["glmer", "GlmerFit", "GlmerState"]
