"""Prior distributions with rstanarm's names, defaults and autoscaling.

rstanarm's ``stan_glmer`` puts independent priors on the intercept of the centered predictors
(``prior_intercept``), on each coefficient (``prior``), on the residual SD (``prior_aux``) and a
``decov`` hyperprior on each random-effects covariance matrix (Gabry & Goodrich, *Prior
distributions for rstanarm models*, rstanarm vignette; ``../shared/design/ALGORITHMS.md`` 4.2, 4.3).

Defaults (used when an argument is not given), with ``autoscale=True``:

* intercept:    normal(mean(y) if gaussian-identity else 0,  2.5 * sd(y) if gaussian else 2.5)
* coefficients: normal(0, 2.5 * [sd(y) if gaussian] / sd(x_k))      (sd(x_k) := 1 for a constant column)
* aux:          exponential(rate = 1 / sd(y)) on sigma (gaussian, any link); exponential(rate = 1),
                not autoscaled, on neg_binomial_2's reciprocal_dispersion, Gamma's shape and
                inverse.gaussian's lambda (rstanarm 2.21 ``stan_glm.fit``: only a gaussian model
                multiplies the aux prior's scale by sd(y)); binomial and Poisson have no aux
* covariance:   decov(regularization=1, concentration=1, shape=1, scale=1)

User-constructed priors have ``autoscale=False`` unless asked, as in rstanarm >= 2.19.  ``None``
means an improper flat prior (rstanarm's ``prior = NULL``).  Under the probit link every
normal/t/cauchy scale is multiplied by dnorm(0)/dlogis(0) ~= 1.596, as rstanarm does.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import special

from ..printing import Text, prior_summary_layout
from ..rformat import format_r
from ..validation import check_constant_response
from .family import AUX_NAME

_PROBIT_FACTOR = (1.0 / np.sqrt(2.0 * np.pi)) / 0.25


class Prior:
    """Base class of the priors on intercept, coefficients and sigma."""

    name = "prior"
    autoscale = False

    def logpdf(self, x: np.ndarray, loc: np.ndarray, scale: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError


@dataclass(frozen=True)
class Normal(Prior):
    """normal(location, scale): log p = -0.5 log(2 pi s^2) - (x - m)^2 / (2 s^2)."""

    location: float | np.ndarray = 0.0
    scale: float | np.ndarray = 2.5
    autoscale: bool = False
    name = "normal"

    def logpdf(self, x, loc, scale):
        z = (x - loc) / scale
        return -0.5 * z * z - np.log(scale) - 0.5 * np.log(2 * np.pi)


@dataclass(frozen=True)
class StudentT(Prior):
    """student_t(df, location, scale)."""

    df: float | np.ndarray = 1.0
    location: float | np.ndarray = 0.0
    scale: float | np.ndarray = 2.5
    autoscale: bool = False
    name = "student_t"

    def logpdf(self, x, loc, scale, df=None):
        nu = np.asarray(self.df if df is None else df, dtype=float)
        z = (x - loc) / scale
        return (special.gammaln((nu + 1) / 2) - special.gammaln(nu / 2) - 0.5 * np.log(nu * np.pi)
                - np.log(scale) - (nu + 1) / 2 * np.log1p(z * z / nu))


@dataclass(frozen=True)
class Cauchy(StudentT):
    """cauchy(location, scale) = student_t(1, location, scale)."""

    df: float = 1.0
    location: float | np.ndarray = 0.0
    scale: float | np.ndarray = 2.5
    autoscale: bool = False
    name = "cauchy"


@dataclass(frozen=True)
class Exponential(Prior):
    """exponential(rate) on sigma: log p = log(rate) - rate sigma."""

    rate: float = 1.0
    autoscale: bool = False
    name = "exponential"

    def logpdf(self, x, loc, scale):
        rate = 1.0 / scale
        return np.log(rate) - rate * x


@dataclass(frozen=True)
class Decov:
    """rstanarm's decov hyperprior on each covariance matrix Sigma_i (k x k).

    trace(Sigma_i) = k (tau_i scale_i sigma_disp)^2, tau_i ~ Gamma(shape, 1);
    the simplex pi_i ~ Dirichlet(concentration) splits the trace into variances
    (sd_m = sqrt(pi_m trace)); the correlation matrix ~ LKJ(regularization).
    sigma_disp is sigma for gaussian models and 1 for binomial/poisson.
    Each argument may be a vector recycled over terms (concentration over the
    coefficient positions of a term, as rstanarm indexes it).
    """

    regularization: float | tuple = 1.0
    concentration: float | tuple = 1.0
    shape: float | tuple = 1.0
    scale: float | tuple = 1.0
    name = "decov"

    def __post_init__(self):
        for nm in ("regularization", "concentration", "shape", "scale"):
            v = np.atleast_1d(np.asarray(getattr(self, nm), dtype=float))
            if np.any(~np.isfinite(v)) or np.any(v <= 0):
                raise ValueError(f"decov {nm} must be positive, got {getattr(self, nm)!r}")


@dataclass(frozen=True)
class Lkj:
    """lkj(regularization, scale, df): Sigma_i = diag(sd) Omega diag(sd) with Omega ~ LKJ(regularization)
    and each sd ~ half-student_t(df, 0, scale) (rstanarm's ``lkj`` of ``stan_mvmer``).  With autoscale,
    the scale is multiplied by sd(y) for a gaussian model."""

    regularization: float = 1.0
    scale: float = 10.0
    df: float = 1.0
    autoscale: bool = True
    name = "lkj"

    def __post_init__(self):
        if self.regularization <= 0 or self.scale <= 0 or self.df <= 0:
            raise ValueError("lkj regularization, scale and df must be positive")


def _check_scale(scale, what):
    s = np.asarray(scale, dtype=float)
    if np.any(~np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(f"{what} scale must be positive and finite, got {scale!r}")


def normal(location=0.0, scale=None, autoscale: bool = False) -> Normal:
    """normal(location, scale) prior (rstanarm ``normal``); scale defaults to 2.5."""
    scale = 2.5 if scale is None else scale
    _check_scale(scale, "normal")
    return Normal(location, scale, autoscale)


def student_t(df=1.0, location=0.0, scale=None, autoscale: bool = False) -> StudentT:
    """student_t(df, location, scale) prior (rstanarm ``student_t``)."""
    scale = 2.5 if scale is None else scale
    _check_scale(scale, "student_t")
    if np.any(np.asarray(df, dtype=float) <= 0):
        raise ValueError(f"student_t df must be positive, got {df!r}")
    return StudentT(df, location, scale, autoscale)


def cauchy(location=0.0, scale=None, autoscale: bool = False) -> Cauchy:
    """cauchy(location, scale) prior (rstanarm ``cauchy``)."""
    scale = 2.5 if scale is None else scale
    _check_scale(scale, "cauchy")
    return Cauchy(1.0, location, scale, autoscale)


def exponential(rate=1.0, autoscale: bool = False) -> Exponential:
    """exponential(rate) prior for sigma (rstanarm ``exponential``)."""
    if not np.isfinite(rate) or rate <= 0:
        raise ValueError(f"exponential rate must be positive, got {rate!r}")
    return Exponential(float(rate), autoscale)


def decov(regularization=1.0, concentration=1.0, shape=1.0, scale=1.0) -> Decov:
    """decov(regularization, concentration, shape, scale) covariance prior (rstanarm ``decov``)."""
    tup = lambda v: tuple(np.atleast_1d(v).tolist()) if np.ndim(v) else float(v)  # noqa: E731
    return Decov(tup(regularization), tup(concentration), tup(shape), tup(scale))


def lkj(regularization=1.0, scale=10.0, df=1.0, autoscale: bool = True) -> Lkj:
    """lkj(regularization, scale, df) covariance prior (rstanarm ``lkj``)."""
    return Lkj(float(regularization), float(scale), float(df), autoscale)


# ---------------------------------------------------------------------------------------------
@dataclass
class CoefPrior:
    """A resolved prior on a vector of coefficients: one kind for all, per-coefficient arrays."""

    kind: str                    # "normal", "student_t", "cauchy" or "flat"
    location: np.ndarray
    scale: np.ndarray
    df: np.ndarray
    specified: Prior | None = None

    @property
    def gaussian(self) -> bool:
        return self.kind in ("normal", "flat")

    def precision(self) -> np.ndarray:
        """1 / scale^2 (0 for a flat prior); used when the coefficients are integrated out."""
        if self.kind == "flat":
            return np.zeros_like(self.location)
        return 1.0 / self.scale ** 2

    def logpdf(self, x: np.ndarray) -> np.ndarray:
        """Sum of the log densities over the last axis."""
        if self.kind == "flat" or x.shape[-1] == 0:
            return np.zeros(x.shape[:-1])
        z = (x - self.location) / self.scale
        if self.kind == "normal":
            lp = -0.5 * z * z - np.log(self.scale) - 0.5 * np.log(2 * np.pi)
        else:
            nu = self.df
            lp = (special.gammaln((nu + 1) / 2) - special.gammaln(nu / 2) - 0.5 * np.log(nu * np.pi)
                  - np.log(self.scale) - (nu + 1) / 2 * np.log1p(z * z / nu))
        return lp.sum(axis=-1)


@dataclass
class AuxPrior:
    """Prior on the auxiliary parameter > 0 (sigma, neg_binomial_2's size, Gamma's shape, inverse.gaussian's
    lambda): exponential(rate), half-normal/t/cauchy(0, scale), or flat."""

    kind: str
    rate: float = 1.0
    scale: float = 1.0
    df: float = 1.0
    specified: Prior | None = None

    def logpdf(self, sigma: np.ndarray) -> np.ndarray:
        if self.kind == "flat":
            return np.zeros_like(sigma)
        if self.kind == "exponential":
            return np.log(self.rate) - self.rate * sigma
        z = sigma / self.scale
        if self.kind == "normal":
            return np.log(2.0) - 0.5 * z * z - np.log(self.scale) - 0.5 * np.log(2 * np.pi)
        nu = self.df
        return (np.log(2.0) + special.gammaln((nu + 1) / 2) - special.gammaln(nu / 2) - 0.5 * np.log(nu * np.pi)
                - np.log(self.scale) - (nu + 1) / 2 * np.log1p(z * z / nu))


@dataclass
class ResolvedPriors:
    """Priors after rstanarm's defaults and autoscaling, for one model."""

    intercept: CoefPrior | None       # on gamma (intercept of the centered predictors), None without one
    coef: CoefPrior                   # on the non-intercept coefficients
    aux: AuxPrior | None              # on the auxiliary parameter (sigma, shape, ...), None without one
    covariance: Decov | Lkj
    cov_scale: float                  # lkj's sd scale after autoscale (1 for decov)
    coef_names: list[str] = field(default_factory=list)
    family: str = "gaussian"
    intercept_default: bool = False
    coef_default: bool = False
    aux_default: bool = False
    aux_name: str | None = None       # rstanarm's name of the auxiliary parameter

    @property
    def all_gaussian(self) -> bool:
        """True when every coefficient prior is normal or flat, so they integrate out analytically."""
        return (self.intercept is None or self.intercept.gaussian) and self.coef.gaussian


def _vec(v, p: int, what: str) -> np.ndarray:
    a = np.atleast_1d(np.asarray(v, dtype=float))
    if a.size == 1:
        return np.full(p, float(a[0]))
    if a.size != p:
        raise ValueError(f"{what} has {a.size} values but there are {p} coefficients")
    return a


def _coef_prior(spec, p, autoscale_factor, probit, default) -> CoefPrior:
    if spec is None:
        return CoefPrior("flat", np.zeros(p), np.full(p, np.inf), np.ones(p), None)
    if not isinstance(spec, (Normal, StudentT)):
        raise TypeError(f"a coefficient prior must be mp.normal, mp.student_t, mp.cauchy or None, got {spec!r}")
    loc = _vec(spec.location, p, f"{spec.name} location")
    scale = _vec(spec.scale, p, f"{spec.name} scale")
    if spec.autoscale:
        scale = scale * autoscale_factor
    if probit:
        scale = scale * _PROBIT_FACTOR
    scale = np.maximum(scale, 1e-12)
    kind = "normal" if isinstance(spec, Normal) else "student_t"
    df = _vec(spec.df, p, "student_t df") if kind == "student_t" else np.ones(p)
    return CoefPrior(kind, loc, scale, df, spec)


def resolve_priors(family: str, link: str, y: np.ndarray, X: np.ndarray, fixef_names: list[str],
                   prior="default", prior_intercept="default", prior_aux="default",
                   prior_covariance=None) -> ResolvedPriors:
    """rstanarm's defaults and autoscaling (ALGORITHMS.md 4.2).

    ``y`` is the response on the scale rstanarm sees (the proportion for a binomial cbind response,
    it is only used for gaussian models).  ``X`` is the uncentered fixed-effects matrix.
    """
    if isinstance(prior, dict):  # brms-style flat spec: {"b": ..., "Intercept": ..., "sigma": ..., "cov": ...}
        spec = dict(prior)
        bad = set(spec) - {"b", "Intercept", "sigma", "cov", "sd"}
        if bad:
            raise ValueError(f"unknown prior classes {sorted(bad)}; use 'b', 'Intercept', 'sigma', 'cov'")
        prior = spec.get("b", "default")
        prior_intercept = spec.get("Intercept", prior_intercept)
        prior_aux = spec.get("sigma", prior_aux)
        prior_covariance = spec.get("cov", spec.get("sd", prior_covariance))
    gaussian = family == "gaussian"
    probit = link == "probit"
    has_int = "(Intercept)" in fixef_names
    others = [j for j, nm in enumerate(fixef_names) if nm != "(Intercept)"]
    if gaussian:
        check_constant_response(y, None, "y", "rstanarm's autoscaled priors (scale 2.5 sd(y))")
    # moments of y about one of its own values: the shift is exact (Sterbenz), so a large mean costs
    # no digits and y + a (a exactly representable) gives bit-identical prior scales
    y_ref = float(y[0]) if np.size(y) else 0.0
    y_dev = np.asarray(y, dtype=float) - y_ref
    sd_y = float(np.std(y_dev, ddof=1)) if gaussian else 1.0
    sd_x = np.std(X[:, others], axis=0, ddof=1) if others else np.zeros(0)
    sd_x = np.where(sd_x > 0, sd_x, 1.0)

    coef_default = isinstance(prior, str) and prior == "default"
    if coef_default:
        prior = Normal(0.0, 2.5, True)
    coef = _coef_prior(prior, len(others), sd_y / sd_x, probit, coef_default)

    int_default = isinstance(prior_intercept, str) and prior_intercept == "default"
    intercept = None
    if has_int:
        if int_default:
            loc = y_ref + float(np.mean(y_dev)) if gaussian and link == "identity" else 0.0
            prior_intercept = Normal(loc, 2.5, True)
        intercept = _coef_prior(prior_intercept, 1, np.array([sd_y]), probit, int_default)

    aux = None
    aux_default = isinstance(prior_aux, str) and prior_aux == "default"
    aux_name = AUX_NAME.get(family)
    if aux_name is not None:
        if aux_default:
            prior_aux = Exponential(1.0, True)
        # sd_y is 1 unless gaussian: only a gaussian model's aux prior is autoscaled
        if prior_aux is None:
            aux = AuxPrior("flat")
        elif isinstance(prior_aux, Exponential):
            rate = prior_aux.rate / (sd_y if prior_aux.autoscale else 1.0)
            aux = AuxPrior("exponential", rate=rate, specified=prior_aux)
        elif isinstance(prior_aux, (Normal, StudentT)):
            scale = float(np.atleast_1d(prior_aux.scale)[0]) * (sd_y if prior_aux.autoscale else 1.0)
            kind = "normal" if isinstance(prior_aux, Normal) else "student_t"
            aux = AuxPrior(kind, scale=scale, df=float(np.atleast_1d(getattr(prior_aux, "df", 1.0))[0]),
                           specified=prior_aux)
        else:
            raise TypeError(f"prior_aux must be mp.exponential, a half normal/student_t/cauchy or None, "
                            f"got {prior_aux!r}")
    cov = Decov() if prior_covariance is None else prior_covariance
    if not isinstance(cov, (Decov, Lkj)):
        raise TypeError(f"prior_covariance must be mp.decov(...) or mp.lkj(...), got {cov!r}")
    cov_scale = 1.0
    if isinstance(cov, Lkj):
        cov_scale = cov.scale * (sd_y if (cov.autoscale and gaussian) else 1.0)
    return ResolvedPriors(intercept, coef, aux, cov, cov_scale, [fixef_names[j] for j in others], family,
                          int_default, coef_default, aux_default, aux_name)


# ---------------------------------------------------------------------------------------------
def _fmt(x) -> str:
    """rstanarm's prior_summary numbers: a scalar with 2 significant digits, a vector with 3 in brackets."""
    a = np.atleast_1d(np.asarray(x, dtype=float))
    if a.size == 1:
        return format_r(a, 2)[0].strip()
    return "[" + ",".join(s.strip() for s in format_r(a, 3)) + "]"


def _describe(kind: str, **kw) -> str:
    return f"~ {kind}(" + ", ".join(f"{k} = {_fmt(v)}" for k, v in kw.items()) + ")"


def _coef_text(cp: CoefPrior) -> tuple[str, str | None]:
    spec = cp.specified
    if spec is None:
        return "~ flat", None
    p = cp.location.size
    sloc = _vec(spec.location, p, "location")
    sscale = _vec(spec.scale, p, "scale")
    if isinstance(spec, Normal):
        specified = _describe("normal", location=sloc, scale=sscale)
        adjusted = _describe("normal", location=cp.location, scale=cp.scale)
    else:
        kind = "cauchy" if isinstance(spec, Cauchy) else "student_t"
        extra = {} if kind == "cauchy" else {"df": cp.df}
        specified = _describe(kind, **extra, location=sloc, scale=sscale)
        adjusted = _describe(kind, **extra, location=cp.location, scale=cp.scale)
    return specified, (adjusted if not np.allclose(sscale, cp.scale) else None)


def prior_summary_text(pr: ResolvedPriors, model_name: str = "post") -> Text:
    """The text of rstanarm's ``prior_summary(fit)`` (laid out by
    :func:`mixedpy.printing.prior_summary_layout`, which ends with a pointer to the Python help
    where rstanarm points to its R help page)."""
    blocks = []
    if pr.intercept is not None:
        blocks.append(("Intercept (after predictors centered)", _coef_text(pr.intercept)))
    if pr.coef.location.size:
        blocks.append(("Coefficients", _coef_text(pr.coef)))
    if pr.aux is not None:
        a = pr.aux
        title = f"Auxiliary ({pr.aux_name or 'sigma'})"
        if a.kind == "flat":
            blocks.append((title, ("~ flat", None)))
        elif a.kind == "exponential":
            spec_rate = a.specified.rate
            blocks.append((title, (_describe("exponential", rate=spec_rate),
                           None if np.isclose(spec_rate, a.rate) else _describe("exponential", rate=a.rate))))
        else:
            spec_scale = float(np.atleast_1d(a.specified.scale)[0])
            name = "half-normal" if a.kind == "normal" else "half-student_t"
            blocks.append((title, (_describe(name, location=0.0, scale=spec_scale),
                           None if np.isclose(spec_scale, a.scale) else _describe(name, location=0.0, scale=a.scale))))
    c = pr.covariance
    if isinstance(c, Decov):
        f = lambda v: _fmt(v)  # noqa: E731
        cov = (f" ~ decov(reg. = {f(c.regularization)}, conc. = {f(c.concentration)}, "
               f"shape = {f(c.shape)}, scale = {f(c.scale)})")
    else:
        cov = f" ~ lkj(reg. = {_fmt(c.regularization)}, df = {_fmt(c.df)}, scale = {_fmt(pr.cov_scale)})"
    return prior_summary_layout(model_name, blocks, cov)
