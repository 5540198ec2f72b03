"""rstanarm's family names for ``stan_glmer`` and the :mod:`mixedpy.families` objects behind them.

rstanarm 2.21 names (``family(fit)$family``), default links and the links its Stan programs accept:

============== ========== ================================ ===========================
family         default    links                            auxiliary parameter
============== ========== ================================ ===========================
binomial       logit      logit, probit                    --
poisson        log        log                              --
neg_binomial_2 log        log, identity, sqrt              reciprocal_dispersion (size)
Gamma          inverse    inverse, log, identity           shape
inverse.gaussian 1/mu^2   1/mu^2, inverse, log, identity   lambda
gaussian       identity   identity, log, inverse           sigma
============== ========== ================================ ===========================

(binomial and poisson are restricted to the links mixedpy's sampler was validated for.)  The
auxiliary parameter is in rstanarm's parameterization, the one ``loglik_eta(..., aux=)`` of the
family objects takes.
"""
from __future__ import annotations

from ..families import Binomial, Family, Gamma, Gaussian, InverseGaussian, NegativeBinomial, Poisson

#: rstanarm's family names and the :mod:`mixedpy.families` classes behind them
CLASSES = {"binomial": Binomial, "poisson": Poisson, "neg_binomial_2": NegativeBinomial, "Gamma": Gamma,
           "inverse.gaussian": InverseGaussian, "gaussian": Gaussian}
#: the families whose links the sampler accepts are fewer than the class's (validated ones only)
_SAMPLED_LINKS = {"binomial": ("logit", "probit"), "poisson": ("log",)}
DEFAULT_LINK = {name: cls.default_link for name, cls in CLASSES.items()}
LINKS = {name: _SAMPLED_LINKS.get(name, cls.allowed_links) for name, cls in CLASSES.items()}
#: the auxiliary parameter's name in rstanarm's output (None: no auxiliary parameter)
AUX_NAME = {name: cls.aux_name for name, cls in CLASSES.items()}
_ALIASES = {"gamma": "Gamma", "inverse_gaussian": "inverse.gaussian", "negative_binomial": "neg_binomial_2",
            "neg_binomial": "neg_binomial_2", "nb": "neg_binomial_2"}


def resolve_family(family, link: str | None) -> tuple[str, str]:
    """rstanarm's (family name, link) for ``family`` (a name, accepting mixedpy's spellings such as
    "gamma" and "negative_binomial", or a :mod:`mixedpy.families` object, whose link is the default)
    and ``link`` (rstanarm's default when None), checked against the links rstanarm accepts."""
    if isinstance(family, Family):
        link = family.link.name if link is None else link
        family = family.name
    name = _ALIASES.get(str(family).lower(), str(family))
    name = {k.lower(): k for k in DEFAULT_LINK}.get(name.lower(), name)
    if name not in DEFAULT_LINK:
        raise ValueError(f"family must be one of {', '.join(repr(f) for f in DEFAULT_LINK)}, got {family!r}")
    link = DEFAULT_LINK[name] if link is None else str(link)
    if link not in LINKS[name]:
        raise ValueError(f"link {link!r} is not available for {name}; use one of {LINKS[name]}")
    return name, link


def family_object(family: str, link: str) -> Family:
    """The :mod:`mixedpy.families` object whose log-likelihood the sampler uses.  The negative
    binomial's size is not fixed: every call passes it as ``aux``."""
    if family == "neg_binomial_2":
        return NegativeBinomial(1.0, link)
    return CLASSES[family](link)
