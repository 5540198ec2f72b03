"""arm's layer over a fitted mixed model: ``display``, ``sim``, fitted and predictive draws.

Gelman & Hill (2007, *Data Analysis Using Regression and Multilevel/Hierarchical Models*,
ch. 12-16) read a multilevel fit with arm's ``display()`` and summarise its uncertainty with
``sim()``: approximate posterior draws of sigma, the fixed effects and the random effects with
theta held at its estimate.  This module reproduces arm 1.13 (``../shared/design/ALGORITHMS.md``
section 3) on top of the blocked PLS factor of :mod:`mixedpy.linalg.blocked`, vectorised over
draws, and adds what the book does by hand: predictive draws for observations in existing and
brand-new groups.

Everything here is written against attributes shared by lmer and glmer fits (``use_scale``,
``sigma``, ``beta``, ``b_list``, ``theta``, ``state.factor``, ``loglik``, ``aic``, ``deviance``,
``vcov_array``, ``nobs``, ``ngrps``), so a GLMM fit works the same way.  ``display``'s text is laid
out in :mod:`mixedpy.printing`; lme4's ``simulate`` is in :mod:`mixedpy.simulate`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from .accessors import coef, fixef, ranef, sigma_hat
from .families import single_column_response
from .newdata import model_rows, selected_terms
from .printing import Text, display_text
from .progress import interactive

# --------------------------------------------------------------------------------------------
# display()
# --------------------------------------------------------------------------------------------


def display_deviance(fit) -> float:
    """The "deviance" arm prints: ``deviance(refitML(fit))``.  For a REML LMM this is a new ML
    optimization of theta (ALGORITHMS.md 1.9), for an ML LMM its own deviance, and for a GLMM
    lme4's conditional deviance (sum of deviance residuals)."""
    if fit.use_scale and getattr(fit, "reml", False):
        return float(fit.refit(reml=False, quiet=True).deviance)  # the fit itself already warned
    return float(fit.deviance)


def display(fit, digits: int = 2, detail: bool = False, print_output: bool | None = None) -> Text:
    """arm's ``display()`` of a mixed-model fit, as :class:`~mixedpy.printing.Text`: a ``str`` that
    shows as arm's text at the prompt (``<pre>`` in Jupyter).

    ``print_output=None`` does what R's ``display()`` does with its invisible return: in a script
    the text is printed; at an interactive prompt (Python's ``-i``/REPL, IPython, Jupyter) it is
    not, because the prompt already shows the returned text and would echo it twice.
    ``True``/``False`` force either.

    Layout (arm 1.13, ALGORITHMS.md 3.2): the call; ``coef.est``/``coef.se`` (plus ``t value``,
    or ``z value`` and ``Pr(>|z|)`` without a scale, when ``detail``) formatted together with
    ``format(round(M, digits), nsmall = digits)``; the error terms (Std.Dev. and the strict lower
    triangle of each correlation matrix, and a ``Residual`` row that reads 1.00 for a GLMM); the
    number of observations and of levels per grouping factor; then

        AIC = -2 l + 2 df,  deviance = deviance(refitML(fit)),
        DIC = deviance + pD = 2 deviance + 2 l,   with pD = deviance - (-2 l),

    where l is the fit's log-likelihood (the REML one for a REML fit).  For a GLMM the deviance
    is the conditional deviance, so DIC can be negative, exactly as arm prints it.
    """
    if not hasattr(fit, "varcorr") or not hasattr(fit, "beta"):
        raise TypeError(f"display() needs a fitted lmer/glmer model, got {type(fit).__name__}")
    text = display_text(fit, display_deviance(fit), digits, detail)
    if print_output is None:
        print_output = not interactive()
    if print_output:
        print(text)  # noqa: T201 - asked for by the caller (arm's display prints)
    return text


# --------------------------------------------------------------------------------------------
# sim()
# --------------------------------------------------------------------------------------------


@dataclass
class SimResult:
    """Draws from arm's approximate posterior of a mixed model (arm's ``sim.merMod``).

    Attributes
    ----------
    fixef : DataFrame (n_sims x p), columns named as ``fixef(fit)``
    ranef : dict term label -> ndarray (n_sims, J, k); labels are made unique as VarCorr's
        (``Subject``, ``Subject.1``) because one factor can carry several terms
    sigma : ndarray (n_sims,) of residual-SD draws, or None for a model without a scale
    levels, coef_names, groups : per term label, the level labels, coefficient names and the
        grouping-factor name (the dimnames of arm's arrays)
    arm_compat : whether the draws reproduce arm 1.13's transposed-Lambda mapping
    """

    fixef: pd.DataFrame
    ranef: dict[str, np.ndarray]
    sigma: np.ndarray | None
    levels: dict[str, list[str]]
    coef_names: dict[str, list[str]]
    groups: dict[str, str]
    fit: object = field(repr=False)
    arm_compat: bool = False

    @property
    def n_sims(self) -> int:
        return len(self.fixef)

    def coef(self) -> dict[str, np.ndarray]:
        """fixef + ranef per draw, level and coefficient, per grouping factor: (n_sims, J, m) with
        columns ``coef_columns(g)`` (the columns of ``coef(fit)[g]``)."""
        out = {}
        fe = self.fixef
        for g in dict.fromkeys(self.groups.values()):
            labels = [lab for lab, grp in self.groups.items() if grp == g]
            cols = self.coef_columns(g)
            J = len(self.levels[labels[0]])
            arr = np.zeros((self.n_sims, J, len(cols)))
            for c, name in enumerate(cols):
                if name in fe.columns:
                    arr[:, :, c] = fe[name].to_numpy()[:, None]
            for lab in labels:
                for i, name in enumerate(self.coef_names[lab]):
                    arr[:, :, cols.index(name)] += self.ranef[lab][:, :, i]
            out[g] = arr
        return out

    def coef_columns(self, group: str) -> list[str]:
        """Column order of ``coef()[group]``: random-only coefficients first, then the fixed ones."""
        re_names = [n for lab, g in self.groups.items() if g == group for n in self.coef_names[lab]]
        extra = list(dict.fromkeys(n for n in re_names if n not in self.fixef.columns))
        return extra + list(self.fixef.columns)

    def fitted(self, newdata: pd.DataFrame | None = None, re_form=None, allow_new_levels: bool = False,
               type: str = "link") -> np.ndarray:
        """Draws of the linear predictor (n_sims x rows): see :func:`fitted_draws`."""
        return fitted_draws(self, newdata, re_form=re_form, allow_new_levels=allow_new_levels, type=type)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}: {v.shape}" for k, v in self.ranef.items())
        sig = "None" if self.sigma is None else f"({self.sigma.size},)"
        return f"SimResult(n_sims={self.n_sims}, fixef={self.fixef.shape}, ranef={{{shapes}}}, sigma={sig})"


def _check_fit(fit) -> None:
    needed = ("state", "beta", "b_list", "terms", "use_scale")
    missing = [a for a in needed if not hasattr(fit, a)]
    if missing:
        raise TypeError(f"sim() needs a fitted lmer/glmer model; {type(fit).__name__} lacks {missing}")


def sim(fit, n_sims: int = 100, seed=None, arm_compat: bool = False) -> SimResult:
    """arm's ``sim()``: joint draws of (sigma, beta, b) with theta fixed at its estimate.

    With the PLS system ``A = [[U'U + I, U'V], [V'U, V'V]] = L L'`` (u first, then beta;
    Bates et al. 2015, eq. 18) and the estimates (u-hat, beta-hat),

        sigma_s^2 = pwrss / chi^2_{n-p}                (LMM; scaled inverse chi-square)
        (du_s, dbeta_s) = L'^{-1} z_s,  z_s ~ N(0, sigma_s^2 I_{q+p})   (GLMM: N(0, I), no sigma)
        beta_s = beta-hat + dbeta_s,    b_s = b-hat + Lambda du_s,

    so (u, beta) | sigma ~ N(mode, sigma^2 A^{-1}) (ALGORITHMS.md 3.1; Gelman & Hill 2007,
    sec. 7.2 and 12.8).  All draws are made at once: one (q + p) x n_sims right-hand side is
    solved with the blocked factor, with no loop over draws or groups.

    Parameters
    ----------
    fit : an lmer or glmer fit
    n_sims : number of draws (arm's default is 100)
    seed : seed or ``numpy.random.Generator`` (arm itself uses R's global RNG)
    arm_compat : map the u-noise with Lambda' instead of Lambda, as arm 1.13 does.  This changes
        only correlated (vector-valued) terms: the draws then have covariance
        sigma^2 Lambda'[A^{-1}]_uu Lambda instead of the correct sigma^2 Lambda [A^{-1}]_uu Lambda'.
        (arm also ignores CHOLMOD's fill-reducing permutation; mixedpy's blocked factor has none,
        so that second quirk cannot arise and is not emulated.)

    Returns
    -------
    SimResult with ``fixef`` (n_sims x p DataFrame), ``ranef`` ({term label: (n_sims, J, k)}),
    ``sigma`` ((n_sims,) or None); ``mp.fixef``, ``mp.ranef``, ``mp.coef`` and ``mp.sigma_hat``
    work on it.
    """
    _check_fit(fit)
    n_sims = int(n_sims)
    if n_sims < 1:
        raise ValueError(f"n_sims must be a positive integer, got {n_sims}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    f = fit.state.factor
    cp = f.cp
    beta = np.asarray(fit.beta, dtype=float)
    p = beta.size
    if cp.p != p:
        raise ValueError(f"the fit's PLS factor has {cp.p} fixed-effect columns but beta has {p}; "
                         "sim() needs the joint (u, beta) factor of the final iteration")
    q = cp.q
    if fit.use_scale and getattr(fit, "family", None) is None:  # arm: no scale draws for any GLMM
        nu = fit.nobs - p
        pwrss = float(fit.state.pwrss)
        # 1/Gamma(shape nu/2, rate pwrss/2) = pwrss / chi^2_nu
        sigma = np.sqrt(pwrss / rng.chisquare(nu, n_sims))
        z = rng.standard_normal((q + p, n_sims)) * sigma[None, :]
    else:
        sigma = None
        z = rng.standard_normal((q + p, n_sims))
    x1, x2 = f.solve_upper(z[:cp.q1], z[cp.q1:])
    du = np.concatenate([x1, x2[:cp.q_rest]], axis=0)
    dbeta = x2[cp.q_rest:]
    fixef_draws = pd.DataFrame((beta[:, None] + dbeta).T, columns=list(fit.fixef_names))

    labels = list(fit.term_labels)
    ranef_draws, levels, cnames, groups = {}, {}, {}, {}
    start = 0
    for lab, t, T, b in zip(labels, fit.terms, fit.relative_factors(), fit.b_list):
        J, k = t.n_levels, t.k
        dui = du[start:start + J * k].reshape(J, k, n_sims)
        start += J * k
        M = T.T if arm_compat else T
        draws = np.asarray(b)[:, :, None] + np.einsum("ab,jbs->jas", M, dui)
        ranef_draws[lab] = np.ascontiguousarray(draws.transpose(2, 0, 1))
        levels[lab], cnames[lab], groups[lab] = list(t.levels), list(t.coef_names), t.group_name
    return SimResult(fixef=fixef_draws, ranef=ranef_draws, sigma=sigma, levels=levels, coef_names=cnames,
                     groups=groups, fit=fit, arm_compat=arm_compat)


@fixef.register
def _(s: SimResult) -> pd.DataFrame:
    return s.fixef


@ranef.register
def _(s: SimResult, condvar: bool = False) -> dict[str, np.ndarray]:
    if condvar:
        raise ValueError("condvar is not defined for sim() draws; use the spread of the draws")
    return s.ranef


@coef.register
def _(s: SimResult) -> dict[str, np.ndarray]:
    return s.coef()


@sigma_hat.register
def _(s: SimResult):
    return s.sigma


def fitted_draws(s: SimResult, newdata: pd.DataFrame | None = None, re_form=None,
                 allow_new_levels: bool = False, type: str = "link") -> np.ndarray:
    """Draws of ``X beta_s + sum_i Z_i b_{i,s} + offset`` for the fit's rows or ``newdata``.

    This is arm's ``fitted(sim, regression)`` done correctly (arm 1.13 swaps the J and k array
    dimensions, ALGORITHMS.md 3.1 quirk (e)).  New levels (with ``allow_new_levels``) contribute
    0, as in ``predict``; use :func:`predictive_draws` to draw a new group's effect instead.
    ``type="response"`` applies the inverse link (GLMM).  Returns an (n_sims, rows) array.
    """
    fit = s.fit
    rows = model_rows(fit.design, selected_terms(fit.terms, re_form), newdata, allow_new_levels)
    eta = s.fixef.to_numpy() @ rows.X.T + rows.offset[None, :]
    labels = list(fit.term_labels)
    for tr in rows.terms:
        eta += tr.effect(s.ranef[labels[tr.index]])
    if type == "response":
        return fit._linkinv(eta)
    if type != "link":
        raise ValueError(f"type must be 'link' or 'response', got {type!r}")
    return eta


def predictive_draws(fit_or_sim, newdata: pd.DataFrame, n_sims: int = 1000, seed=None, re_form=None,
                     what: str = "y", trials=None) -> np.ndarray:
    """Predictive draws for new observations in existing or brand-new groups.

    Gelman & Hill (2007, sec. 12.8, "prediction for a new group"): for each joint draw s of
    :func:`sim`,

        existing level j:  b = b_{j,s} (the simulated effect of that group)
        new level:         b ~ N(0, sigma_s^2 T T')   (GLMM: N(0, T T')), one draw per distinct
                           new level and draw, shared by its rows
        eta = x beta_s + z b + offset,  y ~ N(eta, sigma_s^2)  (GLMM: binomial(trials, mu) or
                           Poisson(mu) with mu = linkinv(eta)).

    Parameters
    ----------
    fit_or_sim : a fit (then ``sim(fit, n_sims, seed)`` is drawn first) or a :class:`SimResult`
    newdata : rows to predict; group columns may hold levels not seen in the fit
    re_form : which random effects to include (None = all, "~0" = none)
    what : "y" for observations, "mu" for the conditional mean (inverse link), "eta" for the
        linear predictor, each including the new-group draws
    trials : binomial GLMM only, number of trials per row (default 1); y draws are counts

    Returns
    -------
    ndarray (n_sims, rows).  Prior weights are not applied to the observation noise, as in
    lme4's ``simulate``.
    """
    s = fit_or_sim if isinstance(fit_or_sim, SimResult) else sim(fit_or_sim, n_sims=n_sims, seed=seed)
    fit = s.fit
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(
        None if seed is None else np.random.SeedSequence(seed).spawn(2)[1])
    if newdata is None:
        raise ValueError("predictive_draws needs newdata (use SimResult.fitted() for the fit's own rows)")
    rows = model_rows(fit.design, selected_terms(fit.terms, re_form), newdata, allow_new_levels=True)
    S = s.n_sims
    eta = s.fixef.to_numpy() @ rows.X.T + rows.offset[None, :]
    labels = list(fit.term_labels)
    Ts = fit.relative_factors()
    scale = s.sigma if s.sigma is not None else np.ones(S)
    for tr in rows.terms:
        i, M, new_id = tr.index, tr.matrix, tr.new_levels
        eta += tr.effect(s.ranef[labels[i]])      # draws (S, J, k) of the fitted levels
        if (new_id >= 0).any():
            n_new = int(new_id.max()) + 1
            T = Ts[i]
            z = rng.standard_normal((S, n_new, T.shape[0]))
            b_new = scale[:, None, None] * np.einsum("ab,snb->sna", T, z)   # N(0, sigma^2 T T')
            contrib = np.einsum("nk,snk->sn", M, b_new[:, np.clip(new_id, 0, None), :])
            eta += np.where(new_id[None, :] >= 0, contrib, 0.0)
    if what == "eta":
        return eta
    mu = fit._linkinv(eta)
    if what == "mu":
        return mu
    if what != "y":
        raise ValueError(f"what must be 'y', 'mu' or 'eta', got {what!r}")
    return _draw_response(fit, mu, scale, rng, trials)


def _draw_response(fit, mu: np.ndarray, scale: np.ndarray, rng, trials=None) -> np.ndarray:
    """Observation noise around mu (S, n): Gaussian with SD scale_s for lmer; for a GLMM the family's
    draws with phi = sigma^2 and unit prior weights (lme4's ``simulate`` of new rows), binomial ones as
    counts of successes out of ``trials`` (default 1)."""
    family = getattr(fit, "family", None)
    if family is None:
        return mu + scale[:, None] * rng.standard_normal(mu.shape)
    n = mu.shape[1]
    resp = single_column_response(np.ones(n))
    if trials is not None:
        resp = replace(resp, trials=np.broadcast_to(np.asarray(trials, dtype=np.int64), (n,)).astype(float))
    y = family.simulate(rng, mu, resp, dispersion=fit.sigma ** 2)
    if family.name == "binomial":      # simulate's binomial draws are proportions of the trials
        return np.rint(y * resp.trials)
    return y


__all__ = ["display", "sim", "SimResult", "fitted_draws", "predictive_draws", "display_deviance"]
