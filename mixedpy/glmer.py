"""``glmer``: formula -> design -> family response -> GLMM problem -> two-stage fit -> GlmerFit.

Binomial, Poisson, Gamma, inverse-Gaussian and (non-identity link) gaussian mixed models as lme4's
``glmer`` fits them (Bates et al. 2015; lme4's
``mkGlmerDevfun``/``optimizeGlmer``; ALGORITHMS.md section 2): the Laplace approximation
(``nAGQ=1``), adaptive Gauss-Hermite quadrature (``nAGQ>1``, one scalar random-effects term) or
the fast ``nAGQ=0`` fit in which PIRLS also estimates the fixed effects.
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from .control import glmerControl, require_dask_control, resolve_control
from .errors import FamilyWarning
from .families import Family, get_family, is_negative_binomial
from .formula.design import ModelDesign, build_design
from .glmm import GLMMProblem, GlmmFitResult, SeparationWarning, check_separation, fit_glmm
from .linalg.blocked import BlockedFactor
from .lmer import caller_namespace, data_name
from .residuals import carry_na_action, check_na_action, with_na_action
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

    sigma is 1 for binomial and Poisson (no dispersion) and lme4's ``sigma()`` for Gamma,
    inverse.gaussian and gaussian (see :attr:`sigma`); ``loglik`` is minus half the minimized
    objective (Laplace or AGQ); ``deviance`` is the conditional deviance sum_i d_i, as lme4's
    ``deviance()`` for a GLMM.
    """

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
    def nb_theta(self) -> float | None:
        """The negative binomial size theta (lme4's ``getME(fit, "glmer.nb.theta")``); None otherwise."""
        return getattr(self.family, "theta", None) if is_negative_binomial(self.family) else None

    @property
    def df(self) -> int:
        """logLik's df; a negative binomial's theta counts, fixed or estimated (lme4's ``npar.merMod``)."""
        return super().df + int(self.nb_theta is not None)

    @property
    def use_scale(self) -> bool:
        """Whether the family has a dispersion parameter (lme4's ``useSc``: not binomial, Poisson or
        negative binomial): it then counts in logLik's df, scales VarCorr and gets a Residual row."""
        return bool(self.family.has_dispersion)

    @cached_property
    def sigma(self) -> float:
        """lme4's ``sigma()``: 1 without a dispersion; otherwise ``mkMerMod``'s sigmaML,

            sigma^2 = (sum_i w_i (y_i - mu_i)^2 / V(mu_i) + ||u||^2) / n,

        the penalized weighted residual sum of squares over n at the final PIRLS state."""
        if not self.use_scale:
            return 1.0
        st = self.result.state
        wrss = float(np.sum(self.problem.wt * (self.problem.y - st.mu) ** 2 / self.family.variance(st.mu)))
        return float(np.sqrt((wrss + st.ussq) / self.nobs))

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
        sigma^2 (R_X'R_X)^{-1} at the final PIRLS weights for nAGQ = 0 (lme4 ``vcov.merMod``)."""
        if self.vcov_source == "RX" and self.use_scale:
            return self.sigma ** 2 * self.result.vcov
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
        return carry_na_action(self, GlmerFit(design, problem, result, [m for _, m in result.messages],
                                              data_name=self.data_name))

    # -- per-observation quantities -------------------------------------------------------
    def _linkinv(self, eta):
        return self.family.linkinv(eta)

    @property
    def trials(self) -> np.ndarray:
        """Binomial trials per row (1 for a 0/1 response); ones for Poisson."""
        return self.problem.resp.trials

    # fitted (mu-hat), residuals(type, scaled) and resid (deviance residuals) are MixedModelFit's
    # (mixedpy.residuals), Series indexed like the data's rows

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
          control: glmerControl | None = None, nb_theta: float | None = None, na_action: str = "omit") -> GlmerFit:
    """Fit a generalized linear mixed model by maximum likelihood, as lme4's ``glmer``.

    Parameters
    ----------
    formula : lme4 formula.  Binomial responses may be 0/1, ``cbind(successes, failures)``, or
        proportions with ``weights=`` the number of trials.
    data : DataFrame
    family : "binomial", "poisson", "Gamma", "inverse.gaussian", "gaussian", a family object
        (:mod:`mixedpy.families`) or a statsmodels family object (``sm.families.Gamma(sm.families.links.Log())``).
        gaussian with the identity link is a linear mixed model: as lme4, glmer warns and fits it with
        lmer (REML)
    link : binomial: "logit" (default), "probit", "cloglog"; poisson: "log" (default), "identity",
        "sqrt"; Gamma: "inverse" (default), "log", "identity"; inverse.gaussian: "1/mu^2" (default),
        "inverse", "identity", "log"; gaussian: "identity" (default), "log", "inverse";
        negative_binomial: "log" (default), "identity", "sqrt"
    nb_theta : the size theta of family="negative_binomial" (MASS's ``negative.binomial(theta)``),
        held fixed; :func:`mixedpy.glmer_nb` estimates it
    na_action : "omit" (default) or "exclude" (R's na.exclude: fitted, resid, residuals() and predict()
        without newdata padded with NaN to the data's rows), as :func:`mixedpy.lmer`
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
    fam = get_family(family, link, nb_theta=nb_theta)
    namespace = caller_namespace()
    check_na_action(na_action, dask=is_dask_frame(data))
    if fam.name == "gaussian" and fam.link.name == "identity":
        return with_na_action(_lmer_shortcut(formula, data, weights, offset, start, calc_derivs, optimizer, namespace),
                              na_action, data)
    if calc_derivs is not None:
        calc_derivs = check_bool(calc_derivs, "calc_derivs")
    ctl = resolve_control(control, glmerControl, optimizer=optimizer, calc_derivs=calc_derivs)
    if is_dask_frame(data):  # one map-reduce pass per PIRLS iteration (mixedpy.scale)
        from .scale.glmer import glmer as scale_glmer

        require_dask_control(ctl, glmerControl)
        if fam.has_dispersion:
            raise NotImplementedError(f"glmer on a Dask frame supports families without a dispersion (binomial, "
                                      f"poisson), not {fam.name}: fit an in-memory pandas DataFrame")
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
    return with_na_action(GlmerFit(design, problem, result, [m for _, m in messages],
                                   data_name=data_name(namespace, data)), na_action, data)


def _lmer_shortcut(formula, data, weights, offset, start, calc_derivs, optimizer, namespace):
    """lme4's glmer with family = gaussian(identity): a deprecation warning, then lmer (REML) on the
    same formula, data, weights, offset and start."""
    from .lmer import fit_problem, lmm_problem

    warnings.warn("calling glmer() with family=gaussian (identity link) as a shortcut to lmer() is deprecated; "
                  "please call mp.lmer() directly", FamilyWarning, stacklevel=4)
    if is_dask_frame(data):
        raise ValueError("glmer with family='gaussian' and the identity link is a linear mixed model: call mp.lmer")
    design = build_design(formula, data, weights=weights, offset=offset, env=namespace)
    return fit_problem(design, lmm_problem(design), reml=True, start=start, optimizer=optimizer,
                       calc_derivs=calc_derivs, data_name=data_name(namespace, data))


# ------------------------------------------------------------------------------------------
__all__ = ["glmer", "GlmerFit", "GlmerState"]
