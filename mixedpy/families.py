"""Exponential-family response models for glmer: binomial and Poisson with their links.

A family supplies what PIRLS and the Laplace objective need (McCullagh & Nelder 1989,
ch. 2; Bates et al. 2015, section 5 of the lme4 vignette "Computational methods"):

* the link ``eta = g(mu)``, its inverse and ``d mu / d eta``;
* the variance function ``V(mu)``;
* deviance residuals ``d_i`` (``sum d_i`` is lme4's conditional ``deviance()``);
* ``aic(...) = -2 * (conditional log-likelihood)``, the term of the Laplace objective;
* the starting means of R's ``family$initialize`` and a random generator for ``simulate``.

The link functions reproduce the guards of R's ``make.link`` (clamping to machine
epsilon), so fits at the extremes behave as lme4's do.  Responses are validated by
:mod:`mixedpy.validation` with errors that say what is wrong and how to fix it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special, stats

from .validation import check_binomial_response, check_poisson_response

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

    @property
    def has_dispersion(self) -> bool:
        return False

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


class Binomial(Family):
    """Binomial proportions y with prior weights w (the trials):  V(mu) = mu (1 - mu),

        d_i = 2 w_i [ y_i log(y_i / mu_i) + (1 - y_i) log((1 - y_i) / (1 - mu_i)) ],
        aic = -2 sum_i log C(m_i, m_i y_i) mu_i^{m_i y_i} (1 - mu_i)^{m_i (1 - y_i)}.
    """

    allowed_links = ("logit", "probit", "cloglog")

    def __init__(self, link: str | Link = "logit"):
        super().__init__("binomial", link if isinstance(link, Link) else Link(str(link)))

    def variance(self, mu):
        return mu * (1.0 - mu)

    def dev_resids(self, y, mu, wt):
        return 2.0 * wt * (special.xlogy(y, y / mu) + special.xlogy(1.0 - y, (1.0 - y) / (1.0 - mu)))

    def loglik_const(self, resp: Response) -> np.ndarray:
        m = np.round(resp.trials)
        k = np.round(m * resp.y)
        return special.gammaln(m + 1) - special.gammaln(k + 1) - special.gammaln(m - k + 1)

    def aic(self, resp: Response, mu, const=None) -> float:
        """-2 log-likelihood of binomial counts round(m y) out of m (R's ``binomial()$aic``)."""
        scale, k, m = self._counts(resp)
        c = self.loglik_const(resp) if const is None else const
        ll = c + special.xlogy(k, mu) + special.xlog1py(m - k, -mu)
        return float(-2.0 * np.sum(scale * ll))

    def _counts(self, resp: Response):
        """(prior weight per row, successes k, trials m) as ``aic`` counts them: the prior weights
        are weights / trials (1 for plain counts), 0 where there are no trials."""
        m = np.round(resp.trials)
        t = resp.trials
        scale = np.where(t > 0, resp.weights / np.where(t > 0, t, 1.0), 0.0)
        return scale, np.round(m * resp.y), m

    def loglik_eta(self, eta, resp: Response, const=None):
        """Per-observation log-likelihood at the linear predictor ``eta`` (any leading axes, the last
        one over observations); its sum over the last axis is ``-aic / 2`` at mu = g^{-1}(eta):

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

    def score_info(self, eta, resp: Response):
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

    def simulate(self, rng: np.random.Generator, mu: np.ndarray, resp: Response) -> np.ndarray:
        """Draw proportions rbinom(trials, mu) / trials (0 where there are no trials)."""
        m = np.round(resp.trials).astype(np.int64)
        k = rng.binomial(m, np.clip(mu, 0.0, 1.0))
        return np.divide(k, m, out=np.zeros(k.shape), where=m > 0)


class Poisson(Family):
    """Poisson counts: V(mu) = mu, d_i = 2 w_i [y_i log(y_i / mu_i) - (y_i - mu_i)],
    aic = -2 sum_i w_i log(mu_i^{y_i} e^{-mu_i} / y_i!)."""

    allowed_links = ("log", "identity", "sqrt")

    def __init__(self, link: str | Link = "log"):
        super().__init__("poisson", link if isinstance(link, Link) else Link(str(link)))

    def variance(self, mu):
        return mu

    def dev_resids(self, y, mu, wt):
        return 2.0 * wt * (special.xlogy(y, y / mu) - (y - mu))

    def loglik_const(self, resp: Response) -> np.ndarray:
        return -special.gammaln(resp.y + 1.0)

    def aic(self, resp: Response, mu, const=None) -> float:
        c = self.loglik_const(resp) if const is None else const
        return float(-2.0 * np.sum(resp.weights * (special.xlogy(resp.y, mu) - mu + c)))

    def loglik_eta(self, eta, resp: Response, const=None):
        """Per-observation log-likelihood w_i (y_i log mu_i - mu_i - log y_i!) at the linear
        predictor ``eta`` (any leading axes, the last over observations); sums to ``-aic / 2``."""
        c = self.loglik_const(resp) if const is None else const
        eta = np.asarray(eta, dtype=float)
        if self.link.name == "log":
            return resp.weights * (resp.y * eta - np.exp(np.minimum(eta, 700.0)) + c)
        mu = self.link.linkinv(eta)
        return resp.weights * (special.xlogy(resp.y, mu) - mu + c)

    def score_info(self, eta, resp: Response):
        """d l_i / d eta_i = w_i (y_i - mu_i) mu_eta_i / mu_i and the Fisher information
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
        yv = np.asarray(y, dtype=float)
        prior = np.ones(yv.size) if weights is None else np.asarray(weights, dtype=float)
        return Response(y=yv, weights=prior, trials=np.ones(yv.size), two_column=False)

    def simulate(self, rng: np.random.Generator, mu: np.ndarray, resp: Response) -> np.ndarray:
        return rng.poisson(mu).astype(float)


def binomial(link: str = "logit") -> Binomial:
    """The binomial family (links: logit, probit, cloglog)."""
    return Binomial(link)


def poisson(link: str = "log") -> Poisson:
    """The Poisson family (links: log, identity, sqrt)."""
    return Poisson(link)


def get_family(family, link: str | None = None) -> Family:
    """A family from a name ("binomial", "poisson") and optional link, or a family object."""
    if isinstance(family, Family):
        if link is not None and link != family.link.name:
            return type(family)(link)
        return family
    if callable(family) and not isinstance(family, str):
        return get_family(family(), link)
    name = str(family).lower()
    makers = {"binomial": Binomial, "poisson": Poisson}
    if name not in makers:
        hint = " (for a Gaussian response use mp.lmer)" if name == "gaussian" else ""
        raise ValueError(f"unknown family {family!r}; glmer supports 'binomial' and 'poisson'{hint}")
    return makers[name]() if link is None else makers[name](link)
