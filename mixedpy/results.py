"""Fitted mixed models: one object, built once by its constructor; accessors are free functions.

``MixedModelFit`` holds what lmer and glmer fits share (theta, beta, b, the terms, predict);
``LmerFit`` adds the LMM-specific quantities (sigma, REML criterion, vcov from R_X).
"""
from __future__ import annotations

import dataclasses
from functools import cached_property

import numpy as np
import pandas as pd

from .formula.design import ModelDesign
from .intervals import confint
from .lmm import LMMProblem, Profiled
from .lmm_optimize import optimize_lmm
from .newdata import model_rows, selected_terms
from .optimize import OptSummary, is_singular
from .predict_se import prediction_frame, prediction_rows
from .printing import HtmlPre, Summary, fit_brief, fit_summary
from .profile import LmerProfiler, profiler
from .residuals import carry_na_action, data_rows, residuals
from .simulate import simulate
from .statsmodels_api import StatsmodelsResults
from .terms import relative_factors
from .validation import check_bool, new_response
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


class Ranef(dict):
    """lme4's ``ranef(fit)``: {grouping factor: DataFrame of conditional modes (levels x
    coefficients)}.  With ``condvar=True`` each frame also carries ``.attrs["condsd"]`` (the
    conditional SDs, same shape) and ``.attrs["postVar"]`` (the (J, k, k) conditional covariances,
    one array per term); :attr:`condsd` and :meth:`to_frame` show them."""

    @property
    def condsd(self) -> dict[str, pd.DataFrame]:
        """Conditional SDs per grouping factor (frames shaped as the modes); needs ``condvar=True``."""
        if any("condsd" not in df.attrs for df in self.values()):
            raise AttributeError("the conditional SDs were not computed: call ranef(fit, condvar=True)")
        return {g: df.attrs["condsd"] for g, df in self.items()}

    def to_frame(self) -> pd.DataFrame:
        """R's ``as.data.frame(ranef(fit, condVar = TRUE))``: one row per factor, term and level
        (factor by factor, term by term, levels in order) with columns grpvar, term, grp, condval,
        and condsd when the conditional SDs were computed (``condvar=True``)."""
        parts = []
        for g, df in self.items():
            J, k = df.shape
            part = {"grpvar": np.full(J * k, g, dtype=object),
                    "term": np.repeat(np.asarray(df.columns, dtype=object), J),
                    "grp": np.tile(np.asarray(df.index, dtype=object), k),
                    "condval": df.to_numpy().T.ravel()}
            if "condsd" in df.attrs:
                part["condsd"] = df.attrs["condsd"].to_numpy().T.ravel()
            parts.append(pd.DataFrame(part))
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
            columns=["grpvar", "term", "grp", "condval"])


class MixedModelFit(StatsmodelsResults, HtmlPre, DesignBacked):
    """What every frequentist mixed-model fit has.  Subclasses set theta, beta, b_list, sigma and
    ``criterion`` (-2 log-likelihood, or the REML criterion)."""

    theta: np.ndarray
    beta: np.ndarray
    b_list: list[np.ndarray]
    use_scale: bool = True
    opt: OptSummary           # the optimization record
    state: object             # the fitted state; ``state.factor`` is the final BlockedFactor
    messages: list[str]       # convergence messages
    #: the data's row labels when per-row results are padded to every row of the data (R's
    #: na.exclude), None when they cover the rows used (na.omit); see mixedpy.residuals
    data_index: pd.Index | None = None

    @property
    def na_action(self) -> str:
        """How per-row results are laid out, as R's na.omit / na.exclude: "exclude" (every row of the
        data, NaN where the fit left a row out) when the fit keeps ``data_index``, else "omit"."""
        return "omit" if self.data_index is None else "exclude"

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
        """The residual variance sigma^2 for Gaussian models (statsmodels' ``scale``), 1 where the
        family has no dispersion."""
        return self.sigma ** 2 if self.use_scale else 1.0

    def varcorr(self) -> VarCorr:
        s2 = self.scale
        terms = [VarCorrTerm(label=lab, group=t.group_name, coef_names=t.coef_names, cov=s2 * T @ T.T,
                             structure=t.covstruct.name)
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
        s2 = self.scale
        return [s2 * np.einsum("ab,jbc,dc->jad", T, B, T) for T, B in zip(self.relative_factors(), blocks)]

    def ranef_frames(self, condvar: bool = False) -> Ranef:
        """Conditional modes per grouping factor; terms sharing a factor are column-bound."""
        out = Ranef()
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
    def linear_predictor(self, newdata: pd.DataFrame | None = None, re_form=None,
                         allow_new_levels: bool = False) -> np.ndarray:
        """eta = X beta + offset + sum over chosen terms of Z b (new levels contribute 0)."""
        rows = model_rows(self.design, selected_terms(self.terms, re_form), newdata, allow_new_levels)
        return rows.linear_predictor(self.beta, self.b_list)

    def predict(self, newdata: pd.DataFrame | None = None, re_form=None, allow_new_levels: bool = False,
                type: str = "link", se_fit: bool = False, interval: str | None = None,
                level: float = 0.95):
        """lme4 ``predict``: re_form=None uses every random effect, "~0"/"NA" none, or a formula of
        bar terms; new levels get random effects 0 when allow_new_levels, an error otherwise.

        Returns a Series indexed like ``newdata`` (when newdata is None, like the data's rows as
        ``na_action`` lays them out), as lme4's predictions are named by the rows;
        ``type="response"`` applies the inverse link.  Draws (``mp.sim(fit).fitted``,
        ``mp.predictive_draws``) stay arrays.

        ``se_fit=True`` or ``interval="confidence"``/``"prediction"`` returns a DataFrame with
        columns ``fit`` and ``se_fit`` (and ``lwr``, ``upr`` at ``level``): the conditional standard
        errors sigma ||L^{-1} [Lambda'z_i; x_i]|| of the joint (b, beta) system, as later lme4's
        ``predict(se.fit = TRUE)``; see :mod:`mixedpy.predict_se` for the formulas and the choice of
        the prediction interval's variance.
        """
        if type not in ("link", "response"):
            raise ValueError(f"type must be 'link' or 'response', got {type!r}")
        if se_fit or interval is not None:
            return prediction_frame(self, newdata, re_form, allow_new_levels, type, interval, level)
        eta = self.linear_predictor(newdata, re_form, allow_new_levels)
        if type == "response":
            eta = self._linkinv(eta)
        if not isinstance(eta, np.ndarray):   # already a (Dask) Series indexed by the rows
            return eta
        return prediction_rows(self, eta, newdata)

    def _linkinv(self, eta):
        return eta

    # -- residuals and fitted values (mixedpy.residuals) -----------------------------------------
    @cached_property
    def fitted(self) -> pd.Series:
        """The conditional mean mu-hat on the response scale (lme4 ``fitted``), a Series indexed
        like the data's rows as ``na_action`` lays them out."""
        return data_rows(self, self._linkinv(self.linear_predictor()))

    def residuals(self, type: str | None = None, scaled: bool = False) -> pd.Series:
        """lme4's ``residuals(fit, type, scaled)``: ``type`` "response" (lmer's default),
        "pearson", "deviance" (glmer's default) or "working"; ``scaled`` divides by sigma.
        Same as :func:`mixedpy.residuals`."""
        return residuals(self, type, scaled)

    @property
    def resid(self) -> pd.Series:
        """lme4's default residuals (response for lmer, deviance for glmer), a Series indexed like
        the data's rows (statsmodels' ``resid``)."""
        return self.residuals()

    # -- text --------------------------------------------------------------------------------
    def summary(self, ddf: str | None = None) -> Summary:
        """The printed summary: a :class:`~mixedpy.printing.Summary`, a ``str`` of R's text that
        shows as that text at the prompt (``<pre>`` in Jupyter) and keeps its sections.

        For an lmer fit the default (``ddf=None``) is lmerTest's ``summary(m)``, which uses
        Satterthwaite's df: lmerTest's title and a coefficient block with df, ``Pr(>|t|)`` and
        significance stars (:func:`mixedpy.lmertest.coef_table`); the other sections are lme4's.
        ``ddf="Kenward-Roger"`` uses Kenward-Roger's df, and ``ddf="lme4"`` gives lme4's own
        printout (no df or p-values).  A glmer fit's summary is lme4's, with z tests.
        """
        from .lmertest import _check_ddf, _is_lmer

        if ddf is None:
            ddf = "Satterthwaite" if _is_lmer(self) else "lme4"
        ddf = _check_ddf(ddf)
        if ddf == "lme4":
            return fit_summary(self)
        if not _is_lmer(self):
            raise ValueError(f"summary(ddf={ddf!r}) is lmerTest's, for lmer fits; a glmer fit's summary has "
                             "z tests (no ddf)")
        from .lmertest_print import lmertest_summary

        return lmertest_summary(self, ddf)

    def __repr__(self) -> str:
        return fit_brief(self)

    # -- simulation and intervals (implemented in simulate.py and intervals.py) -------------
    def simulate(self, nsim: int = 1, seed=None, newdata: pd.DataFrame | None = None, re_form="~0",
                 allow_new_levels: bool = False) -> pd.DataFrame:
        """New responses from the fitted model, as lme4's ``simulate`` (see :func:`mixedpy.simulate.simulate`)."""
        return simulate(self, nsim=nsim, seed=seed, newdata=newdata, re_form=re_form,
                        allow_new_levels=allow_new_levels)

    def confint(self, method: str = "Wald", level: float = 0.95, parm=None, nsim: int = 500, seed=None,
                boot_type: str = "perc", progress: bool | None = None) -> pd.DataFrame:
        """Wald, profile or parametric-bootstrap intervals, as lme4's ``confint``
        (see :func:`mixedpy.intervals.confint`)."""
        return confint(self, method=method, level=level, parm=parm, nsim=nsim, seed=seed,
                       boot_type=boot_type, progress=progress)


class LmerFit(MixedModelFit):
    """A linear mixed model fitted by REML or ML (lme4 ``lmerMod``)."""

    def __init__(self, design: ModelDesign, problem: LMMProblem, reml: bool, opt: OptSummary,
                 state: Profiled, messages: list[str], data_name: str = "data", control=None):
        self.control = control  # the lmerControl it was fitted with (refits reuse it); None = defaults
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

    def refit(self, reml: bool | None = None, newresp=None, **kwargs) -> "LmerFit":
        """The same model fitted again: ``refit(reml=False)`` is lme4's ``refitML``; ``newresp`` fits
        the same design to a new response vector (lme4's ``refit(object, newresp)``), starting at
        theta-hat.  ``quiet=True`` keeps the refit's messages in ``messages`` instead of warning."""
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
                self._quiet_ml_refit = self._fitted_again(design, problem, False, start, kwargs)
            return self._quiet_ml_refit
        return self._fitted_again(design, problem, reml, start, kwargs)

    def _fitted_again(self, design: ModelDesign, problem: LMMProblem, reml: bool, start, options: dict) -> "LmerFit":
        control = getattr(self, "control", None)   # fits pickled before control existed have none
        opt, state, messages = optimize_lmm(problem, reml, start=start, formula=design.formula, control=control,
                                            **options)
        return carry_na_action(self, LmerFit(design, problem, reml, opt, state, messages, self.data_name,
                                             control=control))


profiler.register(LmerFit, LmerProfiler)

