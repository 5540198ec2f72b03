"""Fitted mixed models: one object, built once by its constructor; accessors are free functions.

``MixedModelFit`` holds what lmer and glmer fits share (theta, beta, b, the terms, predict);
``LmerFit`` adds the LMM-specific quantities (sigma, REML criterion, vcov from R_X).
"""
from __future__ import annotations

import dataclasses
from functools import cached_property

import numpy as np
import pandas as pd

from .errors import DataError
from .formula.bars import BarTerm, strip_bars
from .formula.design import ModelDesign, new_fixed_matrix, new_offset, new_term_matrix, newdata_group_keys
from .validation import check_bool, check_new_group_values, new_response
from .lmm import LMMProblem, Profiled
from .terms import relative_factors
from .optimize import OptSummary, is_singular
from .varcorr import VarCorr, VarCorrTerm, unique_labels


class DesignBacked:
    """Identification shared by every result built on a :class:`ModelDesign` (fits and posteriors)."""

    design: ModelDesign

    @property
    def terms(self):
        return self.design.terms

    @property
    def formula(self) -> str:
        return self.design.formula

    @property
    def nobs(self) -> int:
        return self.design.nobs

    @property
    def fixef_names(self) -> list[str]:
        return self.design.fixef_names

    @property
    def term_labels(self) -> list[str]:
        """Unique labels of the terms (Subject, Subject.1), as lme4's VarCorr names them."""
        return unique_labels([t.group_name for t in self.terms])


class MixedModelFit(DesignBacked):
    """What every frequentist mixed-model fit has.  Subclasses set theta, beta, b_list, sigma and
    ``criterion`` (-2 log-likelihood, or the REML criterion)."""

    theta: np.ndarray
    beta: np.ndarray
    b_list: list[np.ndarray]
    use_scale: bool = True
    opt: OptSummary           # the optimization record
    state: object             # the fitted state; ``state.factor`` is the final BlockedFactor
    messages: list[str]       # convergence messages

    @property
    def ngrps(self) -> dict[str, int]:
        return self.design.ngrps()

    @property
    def theta_names(self) -> list[str]:
        return [n for t in self.terms for n in t.theta_names()]

    @property
    def lower(self) -> np.ndarray:
        return np.concatenate([t.theta_lower() for t in self.terms])

    @property
    def is_singular(self) -> bool:
        return is_singular(self.theta, self.lower)

    @property
    def loglik(self) -> float:
        """-criterion/2; for a REML fit this is the REML log-likelihood, as lme4's logLik."""
        return -0.5 * self.criterion

    @property
    def df(self) -> int:
        """Parameters counted by logLik: fixed effects, theta, and sigma when there is a scale."""
        return len(self.beta) + len(self.theta) + int(self.use_scale)

    @property
    def aic(self) -> float:
        return -2 * self.loglik + 2 * self.df

    @property
    def bic(self) -> float:
        return -2 * self.loglik + np.log(self.nobs) * self.df

    def relative_factors(self) -> list[np.ndarray]:
        return relative_factors(self.terms, self.theta)

    # -- variance components --------------------------------------------------------------
    @property
    def scale(self) -> float:
        """sigma for Gaussian models, 1 where the family has no dispersion."""
        return self.sigma if self.use_scale else 1.0

    def varcorr(self) -> VarCorr:
        s2 = self.scale ** 2
        terms = [VarCorrTerm(label=lab, group=t.group_name, coef_names=t.coef_names, cov=s2 * T @ T.T)
                 for lab, t, T in zip(self.term_labels, self.terms, self.relative_factors())]
        return VarCorr(terms, self.sigma if self.use_scale else None)

    # -- fixed and random effects --------------------------------------------------------
    @property
    def vcov(self) -> pd.DataFrame:
        return pd.DataFrame(self.vcov_array, index=self.fixef_names, columns=self.fixef_names)

    @property
    def se_fixef(self) -> np.ndarray:
        return np.sqrt(np.diag(self.vcov_array))

    @property
    def convergence(self):
        """The structured convergence record (:class:`mixedpy.optimize.Convergence`): the
        optimizer's status code, the gradient and Hessian checks and the warnings with categories."""
        return self.opt.convergence

    @property
    def converged(self) -> bool:
        """The optimizer reached a tolerance and neither the gradient nor the Hessian check failed
        (from ``convergence``'s status code and checks, never from message text)."""
        return bool(self.convergence.converged)

    def _u_precision_inverse_blocks(self) -> list[np.ndarray]:
        """Diagonal blocks of (Lambda'Z'WZ Lambda + I)^{-1} from the fit's final factor."""
        return self.state.factor.u_precision_inverse_blocks()

    def postvar(self) -> list[np.ndarray]:
        """Conditional covariance of b per term and level, (J, k, k): sigma^2 T (A^{-1})_jj T'
        (lme4 ``condVar``; given beta-hat and theta-hat, ALGORITHMS.md 1.6)."""
        blocks = self._u_precision_inverse_blocks()
        s2 = self.scale ** 2
        return [s2 * np.einsum("ab,jbc,dc->jad", T, B, T) for T, B in zip(self.relative_factors(), blocks)]

    def ranef_frames(self, condvar: bool = False) -> dict[str, pd.DataFrame]:
        """Conditional modes per grouping factor; terms sharing a factor are column-bound."""
        out: dict[str, pd.DataFrame] = {}
        pv = self.postvar() if condvar else None
        for i, (t, b) in enumerate(zip(self.terms, self.b_list)):
            df = pd.DataFrame(b, index=pd.Index(t.levels, name=t.group_name), columns=t.coef_names)
            sd = None
            if condvar:
                sd = pd.DataFrame(np.sqrt(np.diagonal(pv[i], axis1=1, axis2=2)), index=df.index,
                                  columns=t.coef_names)
            if t.group_name in out:
                prev = out[t.group_name]
                merged = pd.concat([prev, df], axis=1)
                if condvar:
                    merged.attrs["condsd"] = pd.concat([prev.attrs["condsd"], sd], axis=1)
                    merged.attrs["postVar"] = prev.attrs["postVar"] + [pv[i]]
                out[t.group_name] = merged
            else:
                if condvar:
                    df.attrs["condsd"] = sd
                    df.attrs["postVar"] = [pv[i]]
                out[t.group_name] = df
        return out

    def coef_frames(self) -> dict[str, pd.DataFrame]:
        """fixef + ranef per level (lme4 ``coef``); random-only coefficients get fixef 0."""
        fe = pd.Series(self.beta, index=self.fixef_names)
        out = {}
        for g, re in self.ranef_frames().items():
            extra = [c for c in re.columns if c not in fe.index]
            cols = extra + list(fe.index)
            df = pd.DataFrame(np.tile(np.concatenate([np.zeros(len(extra)), fe.to_numpy()]), (len(re), 1)),
                              index=re.index, columns=cols)
            for c in re.columns:
                df[c] = df[c] + re[c].to_numpy()
            out[g] = df
        return out

    # -- prediction ------------------------------------------------------------------------
    def _selected_terms(self, re_form) -> list[int]:
        if re_form is None:
            return list(range(len(self.terms)))
        if isinstance(re_form, float) and np.isnan(re_form):
            return []
        text = str(re_form).strip()
        if text in ("~0", "~ 0", "NA", "~ -1", "~-1", "0"):
            return []
        wanted: list[BarTerm] = strip_bars(text)
        chosen = []
        for bar in wanted:
            hits = [i for i, t in enumerate(self.terms)
                    if t.group_name == bar.group_name and t.expr.replace(" ", "") == bar.expr.replace(" ", "")]
            if not hits:
                hits = [i for i, t in enumerate(self.terms) if t.group_name == bar.group_name]
            if not hits:
                raise DataError(f"re_form term ({bar.expr} | {bar.group_name}) is not in the model")
            chosen += [h for h in hits if h not in chosen]
        return chosen

    def _new_codes(self, term, newdata: pd.DataFrame, allow_new_levels: bool) -> np.ndarray:
        """Level index of each newdata row in the fitted term, -1 for new or missing levels."""
        keys, missing = newdata_group_keys(term, newdata)
        lookup = pd.Index(term.levels)
        codes = lookup.get_indexer(keys)
        codes[missing] = -1
        check_new_group_values(term.group_name, keys, codes, missing, allow_new_levels)
        return codes

    def linear_predictor(self, newdata: pd.DataFrame | None = None, re_form=None,
                         allow_new_levels: bool = False) -> np.ndarray:
        """eta = X beta + offset + sum over chosen terms of Z b (new levels contribute 0)."""
        chosen = self._selected_terms(re_form)
        if newdata is None:
            eta = self.design.X @ self.beta + self.design.offset
            for i in chosen:
                eta = eta + self.terms[i].linear_predictor(self.b_list[i])
            return eta
        newdata = pd.DataFrame(newdata).reset_index(drop=True)
        eta = new_fixed_matrix(self.design, newdata) @ self.beta + new_offset(self.design, newdata)
        for i in chosen:
            t = self.terms[i]
            codes = self._new_codes(t, newdata, allow_new_levels)
            M = new_term_matrix(t, newdata)
            b = self.b_list[i]
            contrib = np.einsum("nk,nk->n", M, b[np.clip(codes, 0, None)])
            eta = eta + np.where(codes >= 0, contrib, 0.0)
        return eta

    def predict(self, newdata: pd.DataFrame | None = None, re_form=None, allow_new_levels: bool = False,
                type: str = "link") -> np.ndarray:
        """lme4 ``predict``: re_form=None uses every random effect, "~0"/"NA" none, or a formula of
        bar terms; new levels get random effects 0 when allow_new_levels, an error otherwise."""
        eta = self.linear_predictor(newdata, re_form, allow_new_levels)
        if type == "response":
            return self._linkinv(eta)
        if type != "link":
            raise ValueError(f"type must be 'link' or 'response', got {type!r}")
        return eta

    def _linkinv(self, eta):
        return eta

    # -- text --------------------------------------------------------------------------------
    def summary(self) -> str:
        """lme4's ``summary()`` text."""
        from .printing import fit_summary

        return fit_summary(self)

    def __repr__(self) -> str:
        from .printing import fit_brief

        return fit_brief(self)

    # -- simulation and intervals (implemented in arm.py and inference.py) ----------------
    def simulate(self, nsim: int = 1, seed=None, newdata: pd.DataFrame | None = None, re_form="~0",
                 allow_new_levels: bool = False) -> pd.DataFrame:
        """New responses from the fitted model, as lme4's ``simulate`` (see :func:`mixedpy.arm.simulate`)."""
        from .arm import simulate

        return simulate(self, nsim=nsim, seed=seed, newdata=newdata, re_form=re_form,
                        allow_new_levels=allow_new_levels)

    def confint(self, method: str = "Wald", level: float = 0.95, parm=None, nsim: int = 500, seed=None,
                boot_type: str = "perc", progress: bool = False) -> pd.DataFrame:
        """Wald, profile or parametric-bootstrap intervals, as lme4's ``confint``
        (see :func:`mixedpy.inference.confint`)."""
        from .inference import confint

        return confint(self, method=method, level=level, parm=parm, nsim=nsim, seed=seed,
                       boot_type=boot_type, progress=progress)


class LmerFit(MixedModelFit):
    """A linear mixed model fitted by REML or ML (lme4 ``lmerMod``)."""

    def __init__(self, design: ModelDesign, problem: LMMProblem, reml: bool, opt: OptSummary,
                 state: Profiled, messages: list[str], data_name: str = "data"):
        self.design = design
        self.problem = problem
        self.reml = bool(reml)
        self.opt = opt
        self.state = state
        self.messages = messages
        self.data_name = data_name
        self.theta = state.theta
        self.beta = state.beta
        self.u = state.u
        self.b_list = problem.b_from_u(state.theta, state.u)

    @property
    def sigma(self) -> float:
        return float(self.state.sigma_reml if self.reml else self.state.sigma_ml)

    @property
    def reml_crit(self) -> float:
        return float(self.state.reml_crit) if self.reml else np.nan

    @property
    def criterion(self) -> float:
        """The minimized objective: REML criterion or ML deviance (= -2 logLik)."""
        return float(self.state.reml_crit if self.reml else self.state.deviance_ml)

    @property
    def deviance(self) -> float:
        """-2 logLik at the estimates: the ML deviance of an ML fit, the REML criterion of a REML
        fit (lme4's ``deviance()``; see ``deviance_ml`` for the ML deviance at the REML estimates)."""
        return self.criterion

    @property
    def deviance_ml(self) -> float:
        """ML deviance at these estimates (lme4 ``deviance(fit, REML = FALSE)``)."""
        return float(self.state.deviance_ml)

    @cached_property
    def vcov_array(self) -> np.ndarray:
        """sigma^2 (R_X'R_X)^{-1} (lme4 ``vcov.merMod``)."""
        return self.sigma ** 2 * self.state.factor.unscaled_vcov()

    @cached_property
    def fitted(self) -> np.ndarray:
        return self.linear_predictor()

    @property
    def resid(self) -> np.ndarray:
        return self.design.y - self.fitted

    def refit(self, reml: bool | None = None, newresp=None, **kwargs) -> "LmerFit":
        """The same model fitted again: ``refit(reml=False)`` is lme4's ``refitML``; ``newresp`` fits
        the same design to a new response vector (lme4's ``refit(object, newresp)``), starting at
        theta-hat.  ``quiet=True`` keeps the refit's messages in ``messages`` instead of warning."""
        from .lmer import fit_problem

        reml = self.reml if reml is None else check_bool(reml, "reml")
        # the quiet ML refit of a REML fit (display's deviance, profiles) is made once: fits never change
        cacheable = not reml and kwargs == {"quiet": True} and newresp is None
        start = kwargs.pop("start", self.theta)
        design, problem = self.design, self.problem
        if newresp is not None:
            y = new_response(newresp, self.nobs)
            design = dataclasses.replace(design, y=y)
            problem = LMMProblem(design.terms, design.X, y, design.weights, design.offset)
        elif reml == self.reml and not set(kwargs) - {"quiet"}:
            return self
        elif cacheable:
            if getattr(self, "_quiet_ml_refit", None) is None:
                self._quiet_ml_refit = fit_problem(design, problem, reml=False, start=start,
                                                   data_name=self.data_name, **kwargs)
            return self._quiet_ml_refit
        return fit_problem(design, problem, reml=reml, start=start, data_name=self.data_name, **kwargs)

