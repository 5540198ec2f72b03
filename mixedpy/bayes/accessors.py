"""lme4/arm accessors for posteriors: posterior medians, registered on the singledispatch generics."""
from __future__ import annotations

import pandas as pd

from ..accessors import VarCorr, coef, fixef, ranef, sigma_hat
from .posterior import Posterior


@fixef.register
def _(post: Posterior) -> pd.Series:
    return post.fixef()


@ranef.register
def _(post: Posterior, condvar: bool = False):
    return post.ranef()


@coef.register
def _(post: Posterior):
    return post.coef()


@VarCorr.register
def _(post: Posterior):
    return post.varcorr("median")


@sigma_hat.register
def _(post: Posterior):
    vc = post.varcorr("median")
    out: dict = {"data": post.sigma("median")}
    for t in vc.terms:
        out[t.label] = pd.Series(t.sd, index=t.coef_names)
    return out
