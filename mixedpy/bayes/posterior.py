"""The result of ``bayes_lmer``/``bayes_glmer``: posterior draws with rstanarm's names, summaries,
rstanarm's print layout, predictions with new group levels, PSIS-LOO and arviz conversion.

Draws are stored per parameter block (beta (S, p), b per term (S, J, k), sigma (S,), Sigma per term
(S, k, k), and for neg_binomial_2, Gamma, inverse.gaussian and gaussian GLMMs the auxiliary
parameter "aux" (S,)) in (chain, walker, step) order.  For the diagnostics each chain is one sequence with its
walkers' thinned paths laid end to end (``seq_shape`` = (chains, walkers * steps)): within a walker
the autocorrelation of the thinned path is what arviz measures, a walker boundary only adds pairs of
nearly independent draws, and split R-hat compares the first and second half of the walkers of
every chain with the other chains.
"""
from __future__ import annotations

import warnings
from functools import cached_property

import numpy as np
import pandas as pd
from scipy import special, stats

from ..families import Response
from ..newdata import model_rows, selected_terms
from ..trials import binomial_counts, newdata_trials
from ..printing import HtmlPre, Text, stanreg_text
from ..varcorr import VarCorr as VarCorrTable
from ..varcorr import VarCorrTerm
from ..results import DesignBacked
from .diagnostics import _arviz, diagnose
from .family import AUX_NAME, family_object
from .priors import ResolvedPriors, prior_summary_text

_LINKS = {"identity": (lambda e: e), "logit": special.expit, "log": np.exp,
          "probit": stats.norm.cdf}


def mad_sd(a: np.ndarray, axis: int = 0) -> np.ndarray:
    """R's ``mad()``: 1.4826 median|x - median(x)| (rstanarm's MAD_SD)."""
    med = np.median(a, axis=axis, keepdims=True)
    return 1.4826 * np.median(np.abs(a - med), axis=axis)


class Posterior(HtmlPre, DesignBacked):
    """Posterior draws of a multilevel model fitted by emcee, laid out like rstanarm's stanreg."""

    def __init__(self, design, family: str, link: str, priors: ResolvedPriors, draws: dict,
                 seq_shape: tuple[int, int], chains: int, sampler_info: dict, method: str,
                 trials: np.ndarray | None = None):
        self.design = design
        self.family, self.link = family, link
        self.priors = priors
        self._d = draws
        self.seq_shape = seq_shape
        self.chains = chains
        self.sampler_info = sampler_info
        self.method = method
        # binomial trials per fitted row, read from the design (``trials``, the sampler's, may be of
        # rows it merged)
        self.trials = binomial_counts(design.y, design.weights)[1] if family == "binomial" else None
        self.messages: list[str] = []

    # ---- identification -------------------------------------------------------------------
    @property
    def use_scale(self) -> bool:
        return self.family == "gaussian"

    @property
    def aux_name(self) -> str | None:
        """rstanarm's name of the auxiliary parameter: "sigma", "reciprocal_dispersion" (the
        negative binomial's size), "shape" (Gamma), "lambda" (inverse.gaussian); None for binomial
        and Poisson."""
        return AUX_NAME[self.family]

    @property
    def aux(self) -> np.ndarray | None:
        """Draws (S,) of the auxiliary parameter (sigma for gaussian models), None without one."""
        if self.aux_name is None:
            return None
        return self._d["aux"] if "aux" in self._d else self._d["sigma"]

    @cached_property
    def _family(self):
        return family_object(self.family, self.link)

    @property
    def n_draws(self) -> int:
        return self._d["beta"].shape[0]

    # ---- draws -----------------------------------------------------------------------------
    def _b_names(self, i: int) -> list[str]:
        t = self.terms[i]
        return [f"b[{c} {t.group_name}:{str(lev).replace(' ', '_')}]" for lev in t.levels for c in t.coef_names]

    def _sigma_names(self, i: int) -> list[str]:
        t = self.terms[i]
        k = t.k
        return [f"Sigma[{t.group_name}:{t.coef_names[r]},{t.coef_names[c]}]" for c in range(k) for r in range(c, k)]

    @cached_property
    def draws(self) -> pd.DataFrame:
        """rstanarm's ``as.matrix(fit)``: fixed effects, b, sigma, Sigma entries; index (chain, draw)."""
        cols, names = [self._d["beta"]], list(self.fixef_names)
        for i, t in enumerate(self.terms):
            cols.append(self._d["b"][i].reshape(self.n_draws, -1))
            names += self._b_names(i)
        if self.aux_name is not None:
            cols.append(self.aux[:, None])
            names.append(self.aux_name)
        for i, t in enumerate(self.terms):
            r, c = np.tril_indices(t.k)
            order = np.lexsort((r, c))     # column-major lower triangle, as rstanarm names them
            cols.append(self._d["Sigma"][i][:, r[order], c[order]])
            names += self._sigma_names(i)
        n_seq, n_step = self.seq_shape
        per_chain = n_seq // self.chains * n_step
        idx = pd.MultiIndex.from_arrays([np.repeat(np.arange(1, self.chains + 1), per_chain),
                                         np.tile(np.arange(1, per_chain + 1), self.chains)],
                                        names=["chain", "draw"])
        return pd.DataFrame(np.column_stack(cols), columns=names, index=idx)

    @property
    def autocorr_time(self) -> pd.Series:
        """emcee's integrated autocorrelation time of each sampled (unconstrained) parameter, in ensemble
        steps (Goodman & Weare 2010), averaged over chains; the thinning interval was set from it."""
        return self.sampler_info["tau"]

    def as_sequences(self, a: np.ndarray) -> np.ndarray:
        """(S, ...) draws -> (chains * walkers, steps, ...) sequences for the diagnostics."""
        n_seq, n_step = self.seq_shape
        return a.reshape((n_seq, n_step) + a.shape[1:])

    # ---- summaries ---------------------------------------------------------------------------
    def summary(self, probs=(0.025, 0.975), pars: list[str] | None = None) -> pd.DataFrame:
        """mean, sd, median, mad_sd, quantiles, rhat, ess_bulk, ess_tail, mcse per parameter (arviz)."""
        D = self.draws if pars is None else self.draws[pars]
        A = D.to_numpy()
        diag = diagnose(self.as_sequences(A))
        out = pd.DataFrame({"mean": A.mean(0), "sd": A.std(0, ddof=1), "median": np.median(A, 0),
                            "mad_sd": mad_sd(A)}, index=D.columns)
        for p in probs:
            out[f"q{100 * p:g}"] = np.quantile(A, p, axis=0)
        for k in ("rhat", "ess_bulk", "ess_tail", "mcse"):
            out[k] = diag[k]
        return out

    def _median(self, a):
        return np.median(a, axis=0)

    def fixef(self) -> pd.Series:
        return pd.Series(self._median(self._d["beta"]), index=self.fixef_names, name="fixef")

    def ranef(self) -> dict[str, pd.DataFrame]:
        out: dict[str, pd.DataFrame] = {}
        for t, b in zip(self.terms, self._d["b"]):
            df = pd.DataFrame(self._median(b), index=pd.Index(t.levels, name=t.group_name), columns=t.coef_names)
            out[t.group_name] = pd.concat([out[t.group_name], df], axis=1) if t.group_name in out else df
        return out

    def coef(self) -> dict[str, pd.DataFrame]:
        fe = self.fixef()
        out = {}
        for g, re in self.ranef().items():
            extra = [c for c in re.columns if c not in fe.index]
            df = pd.DataFrame(np.tile(np.concatenate([np.zeros(len(extra)), fe.to_numpy()]), (len(re), 1)),
                              index=re.index, columns=extra + list(fe.index))
            for c in re.columns:
                df[c] = df[c] + re[c].to_numpy()
            out[g] = df
        return out

    def sigma(self, stat: str = "median") -> float:
        if not self.use_scale:
            return 1.0
        s = self._d["sigma"]
        return float(np.median(s) if stat == "median" else s.mean())

    def varcorr(self, stat: str = "median") -> VarCorrTable:
        """Variance components from the posterior medians (``stat="mean"``: rstanarm's VarCorr)."""
        f = (lambda a: np.median(a, axis=0)) if stat == "median" else (lambda a: a.mean(axis=0))
        terms = [VarCorrTerm(label=lab, group=t.group_name, coef_names=t.coef_names, cov=f(S))
                 for lab, t, S in zip(self.term_labels, self.terms, self._d["Sigma"])]
        return VarCorrTable(terms, self.sigma(stat) if self.use_scale else None)

    def prior_summary(self, model_name: str = "post") -> Text:
        """rstanarm's ``prior_summary``: the priors the model was fitted with, as text.

        Each block names a prior as it was specified and, when rstanarm's autoscaling changed it,
        the adjusted prior that was actually used: for a Gaussian model (any link) the coefficient
        scales are multiplied by sd(y)/sd(x) (the intercept's by sd(y)) and the exponential rate of
        sigma is divided by sd(y); for the other families only the 1/sd(x) factor applies, and the
        auxiliary parameter's prior (``Auxiliary (reciprocal_dispersion)``, ``(shape)``,
        ``(lambda)``) is used as specified.  The
        intercept's prior is on the intercept after the predictors are centered (rstanarm's
        parameterisation), so its location is the mean response, not the intercept at x = 0.
        ``Covariance`` gives the decov (or lkj) prior of each random-effects covariance matrix:
        the regularization of the correlation matrix (LKJ), the concentration of the Dirichlet
        prior on the shares of the total variance, and the shape and scale of the gamma prior on
        the square root of the average variance (rstanarm's ``?decov``).
        """
        return prior_summary_text(self.priors, model_name)

    def format(self, digits: int = 1) -> Text:
        """rstanarm's ``print(fit, digits)``; ``print(post)`` shows it with ``digits=1``.

        How to read it: the header names the model, family [link], formula and number of
        observations.  The coefficient table gives for each fixed effect the posterior median
        (``Median``) and the median absolute deviation of its draws scaled to be an SD
        (``MAD_SD`` = 1.4826 median|x - median(x)|), a robust posterior SD.  ``Auxiliary
        parameter(s)`` does the same for the auxiliary parameter under rstanarm's name: the
        residual SD ``sigma`` (gaussian), ``reciprocal_dispersion`` (the negative binomial's size:
        Var y = mu + mu^2 / size), ``shape`` (Gamma: Var y = mu^2 / shape) or ``lambda``
        (inverse.gaussian: Var y = mu^3 / lambda).  ``Error terms``
        are the random-effect SDs and correlations computed from the posterior means of the
        covariance matrices (and the residual SD), laid out as lme4's ``VarCorr``; ``Num.
        levels`` counts the levels of each grouping factor.  A Residual row appears for gaussian
        models only, as in rstanarm.  For intervals and the sampler's
        diagnostics (R-hat, bulk and tail ESS, MCSE) use ``post.summary()``; for the priors,
        ``post.prior_summary()``.
        """
        B = self._d["beta"]
        coefs = (self.fixef_names, np.median(B, 0), mad_sd(B)) if B.shape[1] else None
        aux = None
        if self.aux_name is not None:
            a = self.aux[:, None]
            aux = ([self.aux_name], np.median(a, 0), mad_sd(a))
        return stanreg_text(self.family, self.link, self.formula, self.nobs, coefs, aux,
                            self.varcorr("mean").format(digits=digits + 1), self.design.ngrps(), digits,
                            stan_function=self.sampler_info.get("stan_function"))

    def __repr__(self) -> str:
        return self.format()

    # ---- predictions -----------------------------------------------------------------------------
    def _draw_index(self, draws, rng) -> np.ndarray:
        S = self.n_draws
        if draws is None or draws >= S:
            return np.arange(S)
        return np.sort(rng.choice(S, size=int(draws), replace=False))

    def _new_level_effects(self, i, n_new, idx, mode, rng) -> np.ndarray:
        """b for n_new unseen levels per draw (S, n_new, k)."""
        t = self.terms[i]
        S = len(idx)
        if n_new == 0:
            return np.zeros((S, 0, t.k))
        if mode == "gaussian":
            Sig = self._d["Sigma"][i][idx]
            L = np.linalg.cholesky(Sig + 1e-12 * np.eye(t.k))
            z = rng.standard_normal((S, n_new, t.k))
            return np.einsum("sab,snb->sna", L, z)
        if mode == "uncertainty":
            pick = rng.integers(0, t.n_levels, size=(S, n_new))
            return self._d["b"][i][idx[:, None], pick]
        if mode == "rstanarm":
            return np.repeat(self._d["b_new"][i][idx][:, None, :], n_new, axis=1)
        raise ValueError(f"sample_new_levels must be 'gaussian', 'uncertainty' or 'rstanarm', got {mode!r}")

    def posterior_linpred(self, newdata: pd.DataFrame | None = None, draws: int | None = None, re_form=None,
                          allow_new_levels: bool = False, sample_new_levels: str = "gaussian", seed=None,
                          offset=None) -> np.ndarray:
        """eta^(s) = X beta^(s) + Z b^(s) + offset for every kept draw s: (draws, rows).

        New levels (allow_new_levels=True) get, per draw, ``"gaussian"``: an independent N(0, Sigma^(s))
        effect per new level; ``"uncertainty"``: the effect of a randomly chosen fitted level (brms);
        ``"rstanarm"``: one shared N(0, Sigma^(s)) draw for all new levels (rstanarm's ``_NEW_`` level).
        ``re_form="~0"`` gives population-level predictions."""
        rng = np.random.default_rng(seed)
        idx = self._draw_index(draws, rng)
        rows = model_rows(self.design, selected_terms(self.terms, re_form), newdata, allow_new_levels,
                          "effects drawn as sample_new_levels says")
        off = rows.offset if offset is None or newdata is None else np.asarray(offset, dtype=float)
        eta = self._d["beta"][idx] @ rows.X.T + off
        for tr in rows.terms:
            # each distinct new level gets its own index past the fitted ones
            codes = np.where(tr.codes >= 0, tr.codes, tr.n_fitted + tr.new_levels)
            n_new = int(tr.new_levels.max()) + 1 if len(codes) else 0
            b_all = np.concatenate([self._d["b"][tr.index][idx],
                                    self._new_level_effects(tr.index, n_new, idx, sample_new_levels, rng)], axis=1)
            eta = eta + np.einsum("nk,snk->sn", tr.matrix, b_all[:, codes])
        return eta

    def posterior_epred(self, newdata=None, draws=None, re_form=None, allow_new_levels=False,
                        sample_new_levels="gaussian", seed=None, offset=None) -> np.ndarray:
        """Expected response linkinv(eta) per draw (a probability for binomial models)."""
        eta = self.posterior_linpred(newdata, draws, re_form, allow_new_levels, sample_new_levels, seed, offset)
        if self.link in _LINKS:
            return _LINKS[self.link](eta)
        return self._family.linkinv(eta)

    def _trials(self, newdata) -> np.ndarray | None:
        if self.family != "binomial":
            return None
        return self.trials if newdata is None else newdata_trials(self.design, newdata)

    def posterior_predict(self, newdata=None, draws=None, re_form=None, allow_new_levels=False,
                          sample_new_levels="gaussian", seed=None, offset=None) -> np.ndarray:
        """Draws of new responses y_rep^(s) ~ family(linkinv(eta^(s)), sigma^(s)): (draws, rows).
        Binomial models give counts of successes out of the cbind() trials (proportions need weights);
        the families with an auxiliary parameter draw with that draw's parameter (rstanarm's
        ``.pp_neg_binomial_2``, ``.pp_Gamma``, ``.pp_inverse.gaussian``, ``.pp_gaussian``): counts
        rnbinom(size, mu), rgamma(shape, shape / mu), inverse-Gaussian(mu, lambda), N(mu, sigma),
        unweighted as rstanarm's."""
        rng = np.random.default_rng(seed)
        sub = int(rng.integers(2 ** 31))
        idx = self._draw_index(draws, np.random.default_rng(sub))
        mu = self.posterior_epred(newdata, None if draws is None else len(idx), re_form, allow_new_levels,
                                  sample_new_levels, sub, offset)
        if self.family == "binomial":
            n = self._trials(newdata)
            return rng.binomial(np.broadcast_to(n.astype(np.int64), mu.shape), np.clip(mu, 0, 1)).astype(float)
        if self.aux_name is None:
            return rng.poisson(mu).astype(float)
        return self._family.simulate(rng, mu, aux=self.aux[idx][:, None])   # unit weights, as rstanarm

    # ---- LOO and arviz ------------------------------------------------------------------------------
    @property
    def observed_response(self) -> np.ndarray:
        """The observed response on the scale of :meth:`posterior_predict`: binomial successes (of
        ``cbind()`` or of proportions times their weights), else y."""
        if self.family == "binomial":
            return binomial_counts(self.design.y, self.design.weights)[0]
        return np.asarray(self.design.y, dtype=float)

    def log_likelihood(self) -> np.ndarray:
        """Pointwise log-likelihood (S, n) at every draw (weighted as the model was)."""
        eta = self.posterior_linpred()
        y = self.design.y
        if self.aux_name is not None:
            ones = np.ones(len(y))
            resp = Response(y=np.asarray(y, dtype=float), weights=ones, trials=ones, two_column=False)
            ll = self._family.loglik_eta(eta, resp, aux=self.aux[:, None])
        elif self.family == "binomial":
            k = np.round(binomial_counts(y, self.design.weights)[0])   # proportions x weights: whole up to rounding
            n = self.trials
            ll = stats.binom.logpmf(k[None, :], n[None, :], special.expit(eta) if self.link == "logit"
                                    else _LINKS[self.link](eta))
        else:
            ll = stats.poisson.logpmf(y[None, :], np.exp(eta))
        w = self.design.weights
        return ll if w is None or self.family == "binomial" else ll * w[None, :]

    def to_inference_data(self):
        """An ``arviz.InferenceData`` with posterior (beta, sigma, Sigma and b per term), log_likelihood
        and observed_data; chains are the emcee walkers of every chain."""
        az = _arviz()
        post = {"beta": self.as_sequences(self._d["beta"])}
        dims = {"beta": ["coef"]}
        coords = {"coef": self.fixef_names, "obs": np.arange(self.nobs)}
        if self.aux_name is not None:
            post[self.aux_name] = self.as_sequences(self.aux)
        for lab, t, S, b in zip(self.term_labels, self.terms, self._d["Sigma"], self._d["b"]):
            post[f"Sigma[{lab}]"] = self.as_sequences(S)
            post[f"b[{lab}]"] = self.as_sequences(b)
            coords[f"{lab}_coef"] = t.coef_names
            coords[f"{lab}_coef_"] = t.coef_names
            coords[f"{lab}_level"] = list(t.levels)
            dims[f"Sigma[{lab}]"] = [f"{lab}_coef", f"{lab}_coef_"]
            dims[f"b[{lab}]"] = [f"{lab}_level", f"{lab}_coef"]
        y = self.observed_response
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return az.from_dict(posterior=post, log_likelihood={"y": self.as_sequences(self.log_likelihood())},
                                observed_data={"y": y}, coords=coords, dims={**dims, "y": ["obs"]})

    def loo(self):
        """PSIS-LOO (Vehtari, Gelman & Gabry 2017) through arviz: elpd_loo, p_loo, looic, Pareto k."""
        az = _arviz()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = az.loo(self.to_inference_data(), pointwise=True)
        res["looic"] = -2.0 * res["elpd_loo"]
        return res
