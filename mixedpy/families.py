"""Exponential-family response models for glmer: binomial and Poisson, and Gamma, inverse.gaussian and
gaussian (non-identity links) with a dispersion parameter, each with R's links.

A family supplies what PIRLS and the Laplace objective need (McCullagh & Nelder 1989,
ch. 2; Bates et al. 2015, section 5 of the lme4 vignette "Computational methods"):

* the link ``eta = g(mu)``, its inverse and ``d mu / d eta``;
* the variance function ``V(mu)``;
* deviance residuals ``d_i`` (``sum d_i`` is lme4's conditional ``deviance()``);
* ``aic(...) = -2 * (conditional log-likelihood)``, the term of the Laplace objective (given the
  deviance PIRLS already has, as R's ``family$aic(y, n, mu, wt, dev)``);
* the starting means of R's ``family$initialize`` and one random generator, ``simulate(rng, mu, resp,
  dispersion=, aux=)``, for lme4's ``simulate``, arm's predictive draws and rstanarm's posterior_predict;
* for the Bayesian fits, ``loglik_eta`` and ``score_info`` at a linear predictor, with rstanarm's
  auxiliary parameter ``aux`` (``aux_name``) for the families with a dispersion.

statsmodels' family objects (``sm.families.Gamma(sm.families.links.Log())``) map to these in
:func:`get_family`.

The link functions reproduce the guards of R's ``make.link`` (clamping to machine
epsilon), so fits at the extremes behave as lme4's do.  Responses are validated by
:mod:`mixedpy.validation` with errors that say what is wrong and how to fix it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special, stats

from .errors import MixedpyError
from .validation import check_binomial_response, check_poisson_response, check_positive_response

EPS = np.finfo(float).eps
_LOGIT_THRESH = 30.0
_PROBIT_THRESH = -stats.norm.ppf(EPS)


def softplus(eta):
    """log(1 + exp(eta)) without overflow, as max(eta, 0) + log1p(exp(-|eta|)) (about 4 times faster
    than ``np.logaddexp(0, eta)``)."""
    eta = np.asarray(eta, dtype=float)
    out = np.abs(eta).reshape(eta.shape or (1,))
    np.negative(out, out=out)
    np.exp(out, out=out)
    np.log1p(out, out=out)
    out += np.maximum(eta, 0.0).reshape(out.shape)
    return out.reshape(eta.shape)


# -- links ------------------------------------------------------------------------------
def binomial_counts(y, weights=None) -> tuple[np.ndarray, np.ndarray]:
    """(successes, trials) per row of a binomial response ``y`` with prior ``weights``.

    For proportions with weights the successes are y * weights, not rounded: they are whole numbers
    when the data are counts (validation warns otherwise), and callers that need integers round.
    """
    y = np.asarray(y, dtype=float)
    if y.ndim == 2:
        return y[:, 0], y[:, 0] + y[:, 1]
    trials = np.ones(y.shape[0]) if weights is None else np.asarray(weights, dtype=float)
    return y * trials, trials


@dataclass(frozen=True)
class Link:
    """A link function g with inverse and derivative of the inverse."""

    name: str

    def linkfun(self, mu):
        mu = np.asarray(mu, dtype=float)
        if self.name == "logit":
            return np.log(mu / (1.0 - mu))
        if self.name == "probit":
            return stats.norm.ppf(mu)
        if self.name == "cloglog":
            return np.log(-np.log1p(-mu))
        if self.name == "log":
            return np.log(mu)
        if self.name == "identity":
            return mu
        if self.name == "sqrt":
            return np.sqrt(mu)
        if self.name == "inverse":
            return 1.0 / mu
        if self.name == "1/mu^2":
            return 1.0 / (mu * mu)
        raise AssertionError(self.name)

    def linkinv(self, eta):
        """mu = g^{-1}(eta), clamped away from the boundary as R's make.link does."""
        eta = np.asarray(eta, dtype=float)
        if self.name == "logit":
            # 1/(1+exp(-eta)), computed without overflow; R clamps |eta| > 30 to eps / 1-eps
            mu = special.expit(eta)
            return np.where(eta < -_LOGIT_THRESH, EPS, np.where(eta > _LOGIT_THRESH, 1.0 / (1.0 + EPS), mu))
        if self.name == "probit":
            return stats.norm.cdf(np.clip(eta, -_PROBIT_THRESH, _PROBIT_THRESH))
        if self.name == "cloglog":
            return np.clip(-np.expm1(-np.exp(eta)), EPS, 1.0 - EPS)
        if self.name == "log":
            return np.maximum(np.exp(eta), EPS)
        if self.name == "identity":
            return eta
        if self.name == "sqrt":
            return eta ** 2
        if self.name == "inverse":
            return 1.0 / eta
        if self.name == "1/mu^2":
            return 1.0 / np.sqrt(eta)
        raise AssertionError(self.name)

    def mu_eta(self, eta):
        """d mu / d eta, floored at machine epsilon (R's make.link)."""
        eta = np.asarray(eta, dtype=float)
        if self.name == "logit":
            out = special.expit(eta) * special.expit(-eta)
            return np.where(np.abs(eta) > _LOGIT_THRESH, EPS, out)
        if self.name == "probit":
            return np.maximum(stats.norm.pdf(eta), EPS)
        if self.name == "cloglog":
            e = np.minimum(eta, 700.0)
            return np.maximum(np.exp(e - np.exp(e)), EPS)
        if self.name == "log":
            return np.maximum(np.exp(eta), EPS)
        if self.name == "identity":
            return np.ones_like(eta)
        if self.name == "sqrt":
            return 2.0 * eta
        if self.name == "inverse":
            return -1.0 / (eta * eta)
        if self.name == "1/mu^2":
            return -0.5 * eta ** -1.5
        raise AssertionError(self.name)

    def log_mu_pair(self, eta):
        """(log mu, log(1 - mu)) of a binomial link at eta, from eta directly and without linkinv's
        clamping, so that a log-likelihood stays exact (and finite) at extreme linear predictors."""
        eta = np.asarray(eta, dtype=float)
        if self.name == "logit":
            log_1m = -softplus(eta)
            return eta + log_1m, log_1m
        if self.name == "probit":
            return special.log_ndtr(eta), special.log_ndtr(-eta)
        if self.name == "cloglog":
            e = np.exp(np.minimum(eta, 700.0))
            return np.log(-np.expm1(-e)), -e
        raise AssertionError(f"{self.name} is not a binomial link")


# -- families ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Family:
    """Base class: a distribution name and a :class:`Link`."""

    name: str
    link: Link
    allowed_links = ()
    default_link = ""

    @classmethod
    def _link_of(cls, link: str | Link | None) -> Link:
        """The :class:`Link` for ``link`` (a name or a Link; None: the family's default link)."""
        return link if isinstance(link, Link) else Link(str(cls.default_link if link is None else link))

    def __post_init__(self):
        if self.link.name not in self.allowed_links:
            raise ValueError(f"link {self.link.name!r} is not available for family {self.name!r}; "
                             f"use one of {', '.join(self.allowed_links)}")

    # delegation, so PIRLS only talks to the family
    def linkfun(self, mu):
        return self.link.linkfun(mu)

    def linkinv(self, eta):
        return self.link.linkinv(eta)

    def mu_eta(self, eta):
        return self.link.mu_eta(eta)

    #: rstanarm's name of the auxiliary (dispersion) parameter; None for families without one
    aux_name = None

    @property
    def has_dispersion(self) -> bool:
        return False

    def aux_from_dispersion(self, phi):
        """rstanarm's auxiliary parameter for lme4's dispersion phi; None without a dispersion."""
        return None

    def aic(self, resp: "Response", mu, const=None, *, dev=None) -> float:
        """-2 sum_i l_i(mu): R's ``family$aic(y, n, mu, wt, dev)``.  ``const`` is
        :meth:`loglik_const` of ``resp`` (computed when None); ``dev``, the deviance sum_i d_i at
        ``mu``, is for callers that have it (PIRLS does): only the families with a dispersion use it,
        for the plug-in phi-hat = dev / n, and they compute it when None.  As in R it must be the
        deviance at ``mu`` (R's gaussian and inverse.gaussian formulas assume so)."""
        return float(-2.0 * np.sum(self._loglik_mu(resp, mu, const)))

    def simulate(self, rng: np.random.Generator, mu, resp: "Response | None" = None, *, dispersion=None,
                 aux=None) -> np.ndarray:
        """Random responses with means ``mu`` (any leading axes, the last over the rows of ``resp``) on the
        family's scale (binomial: proportions of the trials), as R's ``family$simulate`` and lme4's
        ``simulate``.

        ``resp`` supplies the prior weights and the binomial trials (None: unit weights and one trial per
        row, as for new rows).  The families with a dispersion draw with phi = ``dispersion`` (lme4's
        sigma^2) or from rstanarm's ``aux``; the negative binomial with size ``aux`` (default theta); both
        are a scalar or one value per leading index of ``mu``.  binomial and Poisson have no dispersion
        (lme4's sigma is 1) and ignore them."""
        mu = np.asarray(mu, dtype=float)
        resp = single_column_response(np.ones(mu.shape[-1])) if resp is None else resp
        return self._draw(rng, mu, resp, self._draw_parameter(mu, dispersion, aux))

    def _draw_parameter(self, mu, dispersion, aux):
        """The family's parameter of :meth:`simulate` besides mu (None: there is none)."""
        return None

    def __str__(self) -> str:
        return f"{self.name}({self.link.name})"


@dataclass(frozen=True)
class Response:
    """A validated response: y on the family's scale, prior weights and, for binomial, trials.

    For binomial, ``y`` is the proportion of successes and ``weights`` the prior weights
    times the trials (R's ``binomial()$initialize``); ``trials`` is the number of trials
    per row (1 for a 0/1 response), used by ``simulate`` and ``aic``.
    """

    y: np.ndarray
    weights: np.ndarray
    trials: np.ndarray
    two_column: bool


def single_column_response(y: np.ndarray, weights: np.ndarray | None = None) -> Response:
    """A one-column response ``y`` (no trials) with prior ``weights`` (ones when None, e.g. new rows)."""
    y = np.asarray(y, dtype=float)
    n = y.shape[-1]
    prior = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    return Response(y=y, weights=prior, trials=np.ones(n), two_column=False)


class Binomial(Family):
    """Binomial proportions y with prior weights w (the trials):  V(mu) = mu (1 - mu),

        d_i = 2 w_i [ y_i log(y_i / mu_i) + (1 - y_i) log((1 - y_i) / (1 - mu_i)) ],
        aic = -2 sum_i log C(m_i, m_i y_i) mu_i^{m_i y_i} (1 - mu_i)^{m_i (1 - y_i)}.
    """

    allowed_links = ("logit", "probit", "cloglog")
    default_link = "logit"

    def __init__(self, link: str | Link | None = None):
        super().__init__("binomial", self._link_of(link))

    def variance(self, mu):
        return mu * (1.0 - mu)

    def dev_resids(self, y, mu, wt):
        return 2.0 * wt * (special.xlogy(y, y / mu) + special.xlogy(1.0 - y, (1.0 - y) / (1.0 - mu)))

    def loglik_const(self, resp: Response) -> np.ndarray:
        m = np.round(resp.trials)
        k = np.round(m * resp.y)
        return special.gammaln(m + 1) - special.gammaln(k + 1) - special.gammaln(m - k + 1)

    def _loglik_mu(self, resp: Response, mu, const=None):
        """Log-likelihood of binomial counts round(m y) out of m per row at mu (R's ``binomial()$aic``)."""
        scale, k, m = self._counts(resp)
        c = self.loglik_const(resp) if const is None else const
        return scale * (c + special.xlogy(k, mu) + special.xlog1py(m - k, -mu))

    def _counts(self, resp: Response):
        """(prior weight per row, successes k, trials m) as ``aic`` counts them: the prior weights
        are weights / trials (1 for plain counts), 0 where there are no trials."""
        m = np.round(resp.trials)
        t = resp.trials
        scale = np.where(t > 0, resp.weights / np.where(t > 0, t, 1.0), 0.0)
        return scale, np.round(m * resp.y), m

    def loglik_eta(self, eta, resp: Response, const=None, aux=None):
        """Per-observation log-likelihood at the linear predictor ``eta`` (any leading axes, the last
        one over observations; ``aux`` is unused: no dispersion); its sum over the last axis is ``-aic / 2`` at mu = g^{-1}(eta):

            l_i = w_i [log C(m_i, k_i) + k_i log mu_i + (m_i - k_i) log(1 - mu_i)],

        with log mu and log(1 - mu) computed from eta (:meth:`Link.log_mu_pair`)."""
        scale, k, m = self._counts(resp)
        c = self.loglik_const(resp) if const is None else const
        if self.link.name == "logit":
            # k log mu + (m - k) log(1 - mu) = k eta - m log(1 + e^eta): one transcendental per entry
            out = softplus(eta)
            out *= -(scale * m)
            out += (scale * k) * eta
            out += scale * c
            return out
        log_mu, log_1m = self.link.log_mu_pair(eta)
        return scale * (c + k * log_mu + (m - k) * log_1m)

    def score_info(self, eta, resp: Response, aux=None):
        """d l_i / d eta_i and the Fisher information w_i m_i mu_eta_i^2 / (mu_i (1 - mu_i)) (the
        observed information for the canonical logit link), in forms that stay finite at extreme eta."""
        scale, k, m = self._counts(resp)
        eta = np.asarray(eta, dtype=float)
        if self.link.name == "logit":
            mu = special.expit(eta)
            return scale * (k - m * mu), scale * m * mu * special.expit(-eta)
        if self.link.name == "probit":
            log_phi = -0.5 * eta * eta - 0.5 * np.log(2.0 * np.pi)
            lo, hi = special.log_ndtr(eta), special.log_ndtr(-eta)
            score = k * np.exp(log_phi - lo) - (m - k) * np.exp(log_phi - hi)
            return scale * score, scale * m * np.exp(2.0 * log_phi - lo - hi)
        # cloglog: mu = 1 - exp(-e), e = exp(eta), mu_eta = e exp(-e)
        e = np.exp(np.minimum(eta, 700.0))
        em1 = np.expm1(e)
        return scale * (k * e / em1 - (m - k) * e), scale * m * e * e / em1

    def mustart(self, resp: Response):
        m = resp.trials if resp.two_column else resp.weights
        return (m * resp.y + 0.5) / (m + 1.0)

    def prepare(self, y: np.ndarray, weights: np.ndarray | None, name: str = "response") -> Response:
        """0/1 vector, proportions with ``weights`` = trials, or a (n, 2) ``cbind(successes, failures)``."""
        check_binomial_response(y, weights, name)
        prior = np.ones(y.shape[0]) if weights is None else np.asarray(weights, dtype=float)
        if y.ndim == 2:
            s, n = binomial_counts(y)
            yy = np.divide(s, n, out=np.zeros_like(s), where=n > 0)
            return Response(y=yy, weights=prior * n, trials=n, two_column=True)
        yv = np.asarray(y, dtype=float)
        return Response(y=yv, weights=prior, trials=binomial_counts(yv, prior)[1], two_column=False)

    def _draw(self, rng, mu, resp: Response, _):
        """Proportions rbinom(trials, mu) / trials (0 where there are no trials)."""
        m = np.round(resp.trials).astype(np.int64)
        k = rng.binomial(m, np.clip(mu, 0.0, 1.0))
        return np.divide(k, m, out=np.zeros(k.shape), where=m > 0)


class Poisson(Family):
    """Poisson counts: V(mu) = mu, d_i = 2 w_i [y_i log(y_i / mu_i) - (y_i - mu_i)],
    aic = -2 sum_i w_i log(mu_i^{y_i} e^{-mu_i} / y_i!)."""

    allowed_links = ("log", "identity", "sqrt")
    default_link = "log"

    def __init__(self, link: str | Link | None = None):
        super().__init__("poisson", self._link_of(link))

    def variance(self, mu):
        return mu

    def dev_resids(self, y, mu, wt):
        return 2.0 * wt * (special.xlogy(y, y / mu) - (y - mu))

    def loglik_const(self, resp: Response) -> np.ndarray:
        return -special.gammaln(resp.y + 1.0)

    def _loglik_mu(self, resp: Response, mu, const=None):
        """w_i (y_i log mu_i - mu_i - log y_i!) per row."""
        c = self.loglik_const(resp) if const is None else const
        return resp.weights * (special.xlogy(resp.y, mu) - mu + c)

    def loglik_eta(self, eta, resp: Response, const=None, aux=None):
        """Per-observation log-likelihood w_i (y_i log mu_i - mu_i - log y_i!) (``aux`` unused) at the linear
        predictor ``eta`` (any leading axes, the last over observations); sums to ``-aic / 2``."""
        c = self.loglik_const(resp) if const is None else const
        eta = np.asarray(eta, dtype=float)
        if self.link.name == "log":
            return resp.weights * (resp.y * eta - np.exp(np.minimum(eta, 700.0)) + c)
        return self._loglik_mu(resp, self.link.linkinv(eta), c)

    def score_info(self, eta, resp: Response, aux=None):
        """(``aux`` unused) d l_i / d eta_i = w_i (y_i - mu_i) mu_eta_i / mu_i and the Fisher information
        w_i mu_eta_i^2 / mu_i (the observed information for the canonical log link)."""
        eta = np.asarray(eta, dtype=float)
        if self.link.name == "log":
            mu = np.exp(np.minimum(eta, 700.0))
            return resp.weights * (resp.y - mu), resp.weights * mu
        mu, d = self.link.linkinv(eta), self.link.mu_eta(eta)
        return resp.weights * (resp.y - mu) * d / mu, resp.weights * d * d / mu

    def mustart(self, resp: Response):
        return resp.y + 0.1

    def prepare(self, y: np.ndarray, weights: np.ndarray | None, name: str = "response") -> Response:
        check_poisson_response(y, name)
        return single_column_response(y, weights)

    def _draw(self, rng, mu, resp: Response, _):
        return rng.poisson(mu).astype(float)


# -- families with a dispersion parameter (R's Gamma, inverse.gaussian, gaussian) --------------------
class DispersionFamily(Family):
    """A family whose variance is phi V(mu) / w with an unknown dispersion phi (R's ``Gamma``,
    ``inverse.gaussian`` and ``gaussian`` with any link).

    lme4 fits these with the same PIRLS as binomial and Poisson (the working weights
    mu_eta^2 w / V(mu) do not involve phi) and a Laplace objective whose aic term is R's
    ``family$aic(y, n, mu, wt, dev)``: -2 log-likelihood at the plug-in dispersion
    phi-hat = dev / sum(w) (gaussian: dev / n), plus 2.  Reported quantities use lme4's
    ``sigma()`` = sqrt((sum_i w_i (y_i - mu_i)^2 / V(mu_i) + ||u||^2) / n) (``mkMerMod``'s sigmaML,
    pwrss / n) instead.

    For the Bayesian fits the methods taking ``aux`` use rstanarm's auxiliary parameter
    (``aux_name``: Gamma shape alpha = 1/phi, inverse-Gaussian lambda = 1/phi, gaussian sigma =
    sqrt(phi)); ``aux=None`` means the plug-in phi-hat (``loglik_eta``) or phi = 1 (``score_info``,
    the PIRLS weights).  ``aux`` is a scalar, an array of eta's shape or one value per leading
    index of eta.
    """

    positive_only = False
    r_name = ""            # R's family$family
    default_link = ""

    def __init__(self, link: str | Link | None = None):
        super().__init__(self.r_name, self._link_of(link))

    @property
    def has_dispersion(self) -> bool:
        return True

    def aux_from_dispersion(self, phi):
        """rstanarm's auxiliary parameter for lme4's dispersion phi (sigma(fit)^2)."""
        return 1.0 / np.asarray(phi, dtype=float)

    def dispersion_from_aux(self, aux):
        """lme4's dispersion phi for rstanarm's auxiliary parameter (inverse of aux_from_dispersion)."""
        return 1.0 / np.asarray(aux, dtype=float)

    def _n_disp(self, resp: Response) -> float:
        """The denominator of R's plug-in dispersion dev / n: sum of the prior weights."""
        return float(np.sum(resp.weights))

    def mustart(self, resp: Response):
        return resp.y.copy()

    def aic(self, resp: Response, mu, const=None, *, dev=None) -> float:
        """R's ``family$aic``: -2 sum_i l_i(mu, phi-hat) + 2 with phi-hat = dev / n (``dev``, the
        deviance sum_i d_i at mu, is computed when None)."""
        ll = self._loglik_mu(resp, np.asarray(mu, dtype=float), self._plugin_phi(resp, mu, dev), const)
        return float(-2.0 * np.sum(ll) + 2.0)

    def _plugin_phi(self, resp: Response, mu, dev=None):
        """phi-hat = dev / n per leading index of mu (shape mu.shape[:-1] + (1,)), from the deviance
        ``dev`` (one value per leading index) when given."""
        if dev is None:
            dev = np.sum(self.dev_resids(resp.y, mu, resp.weights), axis=-1, keepdims=True)
        else:
            dev = np.asarray(dev, dtype=float)[..., None]
        return dev / self._n_disp(resp)

    def _phi(self, aux, eta):
        return self.dispersion_from_aux(_size_against(aux, eta))

    def loglik_eta(self, eta, resp: Response, const=None, aux=None):
        """Per-observation log-likelihood l_i at the linear predictor ``eta`` (any leading axes, the
        last over observations), with dispersion from ``aux``; with ``aux=None`` at the plug-in
        phi-hat = dev / n of each eta, so that the sum over the last axis is ``-(aic - 2) / 2``."""
        eta = np.asarray(eta, dtype=float)
        mu = self.link.linkinv(eta)
        phi = self._plugin_phi(resp, mu) if aux is None else self._phi(aux, eta)
        return self._loglik_mu(resp, mu, phi, const)

    def score_info(self, eta, resp: Response, aux=None):
        """d l_i / d eta_i = w_i (y_i - mu_i) mu_eta_i / (phi V(mu_i)) and the Fisher information
        w_i mu_eta_i^2 / (phi V(mu_i)); phi from ``aux`` (1 when None)."""
        eta = np.asarray(eta, dtype=float)
        mu, d = self.link.linkinv(eta), self.link.mu_eta(eta)
        wv = resp.weights / self.variance(mu)
        if aux is not None:
            wv = wv / self._phi(aux, eta)
        return wv * (resp.y - mu) * d, wv * d * d

    def prepare(self, y: np.ndarray, weights: np.ndarray | None, name: str = "response") -> Response:
        check_positive_response(y, name, self.name, self.link.name, self.positive_only)
        return single_column_response(y, weights)

    def _draw_parameter(self, mu, dispersion, aux):
        """phi: ``dispersion``, or rstanarm's ``aux`` converted, or 1."""
        if dispersion is not None and aux is not None:
            raise MixedpyError("simulate takes the dispersion or rstanarm's aux, not both")
        if aux is not None:
            return self._phi(aux, mu)
        return 1.0 if dispersion is None else dispersion


class Gamma(DispersionFamily):
    """R's ``Gamma``: V(mu) = mu^2, d_i = -2 w_i [log(y_i / mu_i) - (y_i - mu_i) / mu_i],

        l_i = w_i log dgamma(y_i; shape 1/phi, scale mu_i phi)
            = w_i [a log a - a log mu_i + (a - 1) log y_i - a y_i / mu_i - lgamma(a)],  a = 1/phi.
    """

    allowed_links = ("inverse", "log", "identity")
    aux_name, positive_only, r_name, default_link = "shape", True, "Gamma", "inverse"

    def variance(self, mu):
        return mu * mu

    def dev_resids(self, y, mu, wt):
        return -2.0 * wt * (np.log(y / mu) - (y - mu) / mu)

    def loglik_const(self, resp: Response) -> np.ndarray:
        return np.log(resp.y)

    def _loglik_mu(self, resp, mu, phi, const=None):
        logy = self.loglik_const(resp) if const is None else const
        a = 1.0 / phi
        return resp.weights * (special.xlogy(a, a) - a * np.log(mu) + (a - 1.0) * logy - a * resp.y / mu
                               - special.gammaln(a))

    def _draw(self, rng, mu, resp: Response, phi):
        """rgamma(shape = w / phi, rate = shape / mu) (lme4's ``Gamma_simfun`` as corrected after 1.1-31)."""
        shape = resp.weights / phi
        return rng.gamma(shape, mu / shape)


class InverseGaussian(DispersionFamily):
    """R's ``inverse.gaussian``: V(mu) = mu^3, d_i = w_i (y_i - mu_i)^2 / (y_i mu_i^2),

        l_i = w_i [0.5 log(lambda / (2 pi y_i^3)) - lambda (y_i - mu_i)^2 / (2 y_i mu_i^2)],  lambda = 1/phi.
    """

    allowed_links = ("1/mu^2", "inverse", "identity", "log")
    aux_name, positive_only, r_name, default_link = "lambda", True, "inverse.gaussian", "1/mu^2"

    def variance(self, mu):
        return mu ** 3

    def dev_resids(self, y, mu, wt):
        return wt * (y - mu) ** 2 / (y * mu * mu)

    def loglik_const(self, resp: Response) -> np.ndarray:
        return -0.5 * np.log(2.0 * np.pi) - 1.5 * np.log(resp.y)

    def _loglik_mu(self, resp, mu, phi, const=None):
        c = self.loglik_const(resp) if const is None else const
        d = self.dev_resids(resp.y, mu, 1.0)
        return resp.weights * (c - 0.5 * np.log(phi) - 0.5 * d / phi)

    def _draw(self, rng, mu, resp: Response, phi):
        """Inverse-Gaussian draws with mean mu and shape lambda = w / phi (Wald distribution)."""
        return rng.wald(mu, np.broadcast_to(resp.weights / phi, mu.shape))


class Gaussian(DispersionFamily):
    """R's ``gaussian`` with a non-identity link: V(mu) = 1, d_i = w_i (y_i - mu_i)^2, precision weights,

        l_i = 0.5 log(w_i / (2 pi sigma^2)) - w_i (y_i - mu_i)^2 / (2 sigma^2),  sigma^2 = phi,

    and the plug-in dispersion dev / n (n rows, not sum(w)), as R's ``gaussian()$aic``.
    """

    allowed_links = ("identity", "log", "inverse")
    aux_name, positive_only, r_name, default_link = "sigma", False, "gaussian", "identity"

    def aux_from_dispersion(self, phi):
        return np.sqrt(np.asarray(phi, dtype=float))

    def dispersion_from_aux(self, aux):
        return np.asarray(aux, dtype=float) ** 2

    def _n_disp(self, resp: Response) -> float:
        return float(resp.y.shape[-1])

    def variance(self, mu):
        return np.ones_like(np.asarray(mu, dtype=float))

    def dev_resids(self, y, mu, wt):
        return wt * (y - mu) ** 2

    def loglik_const(self, resp: Response) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return 0.5 * np.log(resp.weights) - 0.5 * np.log(2.0 * np.pi)

    def _loglik_mu(self, resp, mu, phi, const=None):
        c = self.loglik_const(resp) if const is None else const
        return c - 0.5 * np.log(phi) - 0.5 * self.dev_resids(resp.y, mu, resp.weights) / phi

    def _draw(self, rng, mu, resp: Response, phi):
        """Normal draws with mean mu and variance phi / w."""
        return mu + np.sqrt(phi / resp.weights) * rng.standard_normal(mu.shape)


def binomial(link: str = "logit") -> Binomial:
    """The binomial family (links: logit, probit, cloglog)."""
    return Binomial(link)


def poisson(link: str = "log") -> Poisson:
    """The Poisson family (links: log, identity, sqrt)."""
    return Poisson(link)


def get_family(family, link: str | None = None, nb_theta: float | None = None) -> Family:
    """A family from a name ("binomial", "poisson") and optional link, or a family object; the
    negative binomial ("negative_binomial", "negative.binomial", "nb") takes its size ``nb_theta``."""
    if nb_theta is not None or is_negative_binomial(family):
        return _nb_family(family, link, nb_theta)
    if isinstance(family, Family):
        if link is not None and link != family.link.name:
            return type(family)(link)
        return family
    if type(family).__module__.startswith("statsmodels"):
        return _from_statsmodels(family, link)
    if callable(family) and not isinstance(family, str):
        return get_family(family(), link)
    name = str(family).lower()
    if name not in FAMILY_MAKERS:
        raise ValueError(f"unknown family {family!r}; glmer supports "
                         f"{', '.join(repr(n) for n in FAMILY_NAMES)} (or a statsmodels family object)")
    return FAMILY_MAKERS[name]() if link is None else FAMILY_MAKERS[name](link)


#: glmer's family names (R's ``family$family``; "gamma" and "inverse_gaussian" also accepted)
FAMILY_NAMES = ("binomial", "poisson", "Gamma", "inverse.gaussian", "gaussian")
FAMILY_MAKERS = {"binomial": Binomial, "poisson": Poisson, "gamma": Gamma, "inverse.gaussian": InverseGaussian,
                 "inverse_gaussian": InverseGaussian, "gaussian": Gaussian}
#: statsmodels' family and link classes (``sm.families``, ``sm.families.links``) by class name
_SM_FAMILIES = {"Binomial": Binomial, "Poisson": Poisson, "Gamma": Gamma, "InverseGaussian": InverseGaussian,
                "Gaussian": Gaussian}
_SM_LINKS = {"Logit": "logit", "Probit": "probit", "CLogLog": "cloglog", "Log": "log", "Identity": "identity",
             "Sqrt": "sqrt", "InversePower": "inverse", "InverseSquared": "1/mu^2",
             "logit": "logit", "probit": "probit", "cloglog": "cloglog", "log": "log", "identity": "identity",
             "inverse_power": "inverse", "inverse_squared": "1/mu^2"}


def _from_statsmodels(family, link: str | None) -> Family:
    """The family of a statsmodels family object, e.g. ``sm.families.Gamma(sm.families.links.Log())``;
    statsmodels' NegativeBinomial(alpha) is the negative binomial with size theta = 1 / alpha."""
    fname = type(family).__name__
    lname = type(getattr(family, "link", None)).__name__
    lk = link if link is not None else _SM_LINKS.get(lname)
    if lk is None:
        raise ValueError(f"the statsmodels link {lname!r} of {fname} has no glmer equivalent; use one of "
                         f"{', '.join(sorted(set(_SM_LINKS.values())))}")
    if fname == "NegativeBinomial":
        return negative_binomial(1.0 / float(family.alpha), lk)
    if fname not in _SM_FAMILIES:
        raise ValueError(f"the statsmodels family {fname} has no glmer equivalent; use one of "
                         f"{', '.join(_SM_FAMILIES)}")
    return _SM_FAMILIES[fname](lk)


# -- negative binomial (MASS's negative.binomial(theta), lme4's glmer.nb) ---------------------------
NB_NAMES = ("negative_binomial", "negative.binomial", "nb")


def _r_format_number(x: float) -> str:
    """R's ``format(x)`` of one number (7 significant digits): fixed notation unless the scientific
    form is shorter, as R's ``formatReal`` with ``scipen = 0`` chooses."""
    from .rformat import format_r

    fixed = format_r([x], 7)[0].strip()
    mant, exp = f"{x:.6e}".split("e")
    mant = mant.rstrip("0").rstrip(".")
    sci = f"{mant}e{int(exp):+03d}"
    return fixed if len(fixed) <= len(sci) else sci


def _size_against(aux, eta: np.ndarray) -> np.ndarray:
    """The size theta as an array that broadcasts against ``eta``: a scalar, an array of eta's shape,
    or one value per leading index (shape eta.shape[:-1], e.g. (S,) for S draws of eta (S, n))."""
    th = np.asarray(aux, dtype=float)
    if th.ndim and eta.ndim > 1 and th.shape == eta.shape[:-1]:
        th = th[..., None]
    return th


@dataclass(frozen=True, init=False)
class NegativeBinomial(Family):
    """Negative binomial counts with size (shape) ``theta``, MASS's ``negative.binomial(theta)`` as
    lme4's glmer uses it (Venables & Ripley 2002, section 7.4; lme4 ``glmFamily.cpp``):

        P(y | mu) = Gamma(y + theta) / (Gamma(theta) y!) (theta / (mu + theta))^theta (mu / (mu + theta))^y,
        V(mu) = mu + mu^2 / theta,
        d_i = 2 w_i [ y_i log(y_i / mu_i) - (y_i + theta) log((y_i + theta) / (mu_i + theta)) ],
        aic = -2 sum_i w_i log P(y_i | mu_i)

    (MASS's ``aic``; lme4's C++ multiplies only its first term by the prior weights, which matters
    only for non-unit weights).  ``theta`` is fixed here; :func:`mixedpy.glmer_nb` estimates it.
    The methods taking ``aux`` use that size instead of ``theta`` (rstanarm's
    ``reciprocal_dispersion`` of ``neg_binomial_2``): a scalar or one value per leading index of eta.
    """

    theta: float = 1.0
    allowed_links = ("log", "identity", "sqrt")
    default_link = "log"
    aux_name = "reciprocal_dispersion"   # rstanarm's neg_binomial_2 size, theta

    def __init__(self, theta: float, link: str | Link | None = None):
        try:
            th = float(theta)
        except (TypeError, ValueError):
            raise ValueError(f"negative binomial theta must be a positive number, got {theta!r}") from None
        if not (np.isfinite(th) and th > 0):
            raise ValueError(f"negative binomial theta must be a positive finite number, got {theta!r}")
        object.__setattr__(self, "theta", th)
        super().__init__("negative_binomial", self._link_of(link))

    @property
    def r_family(self) -> str:
        """R's ``family$family``: ``"Negative Binomial(<format(round(theta, 4))>)"`` (lme4's header)."""
        return f"Negative Binomial({_r_format_number(round(self.theta, 4))})"

    @property
    def r_call(self) -> str:
        """The family argument of lme4's deparsed call (arm's ``display``)."""
        link = "" if self.link.name == "log" else f", link = \"{self.link.name}\""
        return f"MASS::negative.binomial(theta = {self.theta:.15g}{link})"

    def __str__(self) -> str:
        return f"{self.r_family}({self.link.name})"

    def with_theta(self, theta: float) -> "NegativeBinomial":
        """The same family with size ``theta`` (lme4's ``setNBdisp``)."""
        return NegativeBinomial(theta, self.link)

    def variance(self, mu):
        return mu + mu * mu / self.theta

    def dev_resids(self, y, mu, wt):
        th = self.theta
        return 2.0 * wt * (special.xlogy(y, y / mu) - (y + th) * np.log((y + th) / (mu + th)))

    def loglik_const(self, resp: Response) -> np.ndarray:
        """-log y!, the part of the log-likelihood free of mu and theta."""
        return -special.gammaln(resp.y + 1.0)

    def _loglik_mu(self, resp: Response, mu, const=None, th=None):
        """l_i at the means mu with size ``th`` (default theta); the aic is -2 sum_i l_i."""
        th = self.theta if th is None else th
        y = resp.y
        return resp.weights * (self._size_part(resp, th, const) + special.xlogy(th, th) + special.xlogy(y, mu)
                               - (y + th) * np.log(mu + th))

    def _size_part(self, resp: Response, th, const=None):
        """-log y_i! + lgamma(y_i + th) - lgamma(th), the part of l_i free of mu."""
        c = self.loglik_const(resp) if const is None else const
        return c + special.gammaln(resp.y + th) - special.gammaln(th)

    def loglik_eta(self, eta, resp: Response, const=None, aux=None):
        """Per-observation log-likelihood at the linear predictor ``eta`` (any leading axes, the last
        over observations) with size theta = ``aux`` (default: the family's theta); sums to
        ``-aic / 2``:

            l_i = w_i [lgamma(y_i + th) - lgamma(th) - log y_i! + th log(th / (mu_i + th))
                       + y_i log(mu_i / (mu_i + th))];

        for the log link th log(th / (mu + th)) = -th softplus(eta - log th) and
        log(mu / (mu + th)) = -softplus(log th - eta), exact at any eta."""
        eta = np.asarray(eta, dtype=float)
        th = _size_against(self.theta if aux is None else aux, eta)
        if self.link.name == "log":
            log_th = np.log(th)
            return resp.weights * (self._size_part(resp, th, const) - th * softplus(eta - log_th)
                                   - resp.y * softplus(log_th - eta))
        return self._loglik_mu(resp, self.link.linkinv(eta), const, th)

    def score_info(self, eta, resp: Response, aux=None):
        """d l_i / d eta_i = w_i (y_i - mu_i) mu_eta_i / V(mu_i) and the Fisher information
        w_i mu_eta_i^2 / V(mu_i), V(mu) = mu + mu^2 / th with th = ``aux`` (default theta).  For the
        log link these are w th (y - mu) / (mu + th) and w th mu / (mu + th), written with
        expit(eta - log th) = mu / (mu + th) so that they stay finite at any eta."""
        eta = np.asarray(eta, dtype=float)
        th = _size_against(self.theta if aux is None else aux, eta)
        w, y = resp.weights, resp.y
        if self.link.name == "log":
            p = special.expit(eta - np.log(th))          # mu / (mu + th)
            return w * (y * (1.0 - p) - th * p), w * th * p
        mu, d = self.link.linkinv(eta), self.link.mu_eta(eta)
        v = mu + mu * mu / th
        return w * (y - mu) * d / v, w * d * d / v

    def mustart(self, resp: Response):
        """MASS's ``initialize``: y + (y == 0) / 6."""
        return resp.y + (resp.y == 0) / 6.0

    def prepare(self, y: np.ndarray, weights: np.ndarray | None, name: str = "response") -> Response:
        check_poisson_response(y, name, family="negative binomial")
        return single_column_response(y, weights)

    def _draw_parameter(self, mu, dispersion, aux):
        """The size: theta or ``aux`` (rstanarm's posterior_predict); lme4's NB has no dispersion."""
        return _size_against(self.theta if aux is None else aux, mu)

    def _draw(self, rng, mu, resp: Response, size):
        """rnbinom(size, mu) (MASS's ``rnegbin``): Poisson(Gamma(size, mu / size)); unweighted, as MASS."""
        lam = rng.gamma(size, mu / size)
        return rng.poisson(lam).astype(float)


def negative_binomial(theta: float | None = None, link: str = "log") -> NegativeBinomial:
    """MASS's ``negative.binomial(theta, link)`` (links: log, identity, sqrt) with a known size theta;
    ``mp.glmer_nb`` estimates theta."""
    if theta is None:
        raise ValueError("the negative binomial family needs its size theta (as MASS::negative.binomial(theta)): "
                         "pass nb_theta=... to glmer, or use mp.glmer_nb to estimate theta")
    return NegativeBinomial(theta, link)


def is_negative_binomial(family) -> bool:
    """Whether ``family`` (a name, a family object or ``negative_binomial`` itself) is the negative binomial."""
    if isinstance(family, NegativeBinomial) or family is negative_binomial:
        return True
    return isinstance(family, str) and family.lower() in NB_NAMES


def _nb_family(family, link: str | None, nb_theta: float | None) -> NegativeBinomial:
    if not is_negative_binomial(family):
        raise ValueError(f"nb_theta applies only to the negative binomial family, not {family!r}")
    if isinstance(family, NegativeBinomial):
        return NegativeBinomial(family.theta if nb_theta is None else nb_theta, link or family.link)
    return negative_binomial(nb_theta, link or "log")
