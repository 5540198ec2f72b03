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
``vcov_array``, ``nobs``, ``ngrps``), so a GLMM fit works the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import norm

from .accessors import coef, fixef, ranef, sigma_hat
from .formula.design import new_fixed_matrix, new_offset, new_term_matrix, newdata_group_keys
from .rformat import format_r, fround, round_r

# --------------------------------------------------------------------------------------------
# display()
# --------------------------------------------------------------------------------------------


def _print_char_matrix(rownames: list[str], header: list[str], cells: list[list[str]]) -> list[str]:
    """R's ``print(<character matrix>, quote = FALSE)``: every column (row names included)
    left-justified to its widest entry and separated by one space."""
    cols = list(zip(*cells)) if cells else [[] for _ in header]
    wr = max((len(r) for r in rownames), default=0)
    widths = [max([len(h)] + [len(c) for c in col]) for h, col in zip(header, cols)]
    lines = [" " * wr + "".join(" " + h.ljust(w) for h, w in zip(header, widths))]
    for r, row in zip(rownames, cells):
        lines.append(r.ljust(wr) + "".join(" " + c.ljust(w) for c, w in zip(row, widths)))
    return lines


def _print_named_vector(names: list[str], values: list[str]) -> list[str]:
    """R's ``print(<named character vector>, quote = FALSE)``: one common width, right-justified."""
    w = max(len(s) for s in names + values)
    return ["".join(s.rjust(w) + " " for s in names), "".join(s.rjust(w) + " " for s in values)]


def _call_line(fit) -> str:
    family = getattr(fit, "family", None)
    data = getattr(fit, "data_name", "data")
    if family is None:
        reml = "" if getattr(fit, "reml", True) else ", REML = FALSE"
        return f"lmer(formula = {fit.formula}, data = {data}{reml})"
    return f"glmer(formula = {fit.formula}, data = {data}, family = {family.name})"


def _coef_lines(fit, digits: int, detail: bool) -> list[str]:
    est = np.asarray(fit.beta, dtype=float)
    if est.size == 0:
        return []
    se = np.sqrt(np.diag(np.asarray(fit.vcov_array)))
    stat = est / se
    if fit.use_scale:
        header, cols = ["coef.est", "coef.se", "t value"], [est, se, stat]
    else:
        header, cols = ["coef.est", "coef.se", "z value", "Pr(>|z|)"], [est, se, stat, 2 * norm.sf(np.abs(stat))]
    if not detail:
        header, cols = header[:2], cols[:2]
    M = np.column_stack(cols)
    if not detail and est.size == 1:
        # arm's quirk: coefs[, 1:2] of a one-row matrix drops to a named vector (no row name)
        return _print_named_vector(header, fround(M.ravel(), digits))
    flat = fround(M.ravel(), digits)  # one format() over the whole matrix: common width
    cells = [flat[i * M.shape[1]:(i + 1) * M.shape[1]] for i in range(M.shape[0])]
    return _print_char_matrix(list(fit.fixef_names), header, cells)


def _error_term_lines(fit, digits: int) -> list[str]:
    """arm's ``as.matrix.VarCorr`` without its Variance column: Groups, Name, Std.Dev., Corr..."""
    vc = fit.varcorr()
    sc = fit.sigma if fit.use_scale else 1.0
    groups, names, sds = [], [], []
    for t in vc.terms:
        for i, name in enumerate(t.coef_names):
            groups.append(t.label if i == 0 else "")
            names.append(name)
        sds.extend(t.sd)
    groups.append("Residual")
    names.append("")
    sds.append(sc)
    sd_txt = fround(sds, digits)
    header = ["Groups", "Name", "Std.Dev."]
    rows = [[g, n, s] for g, n, s in zip(groups, names, sd_txt)]
    maxlen = max(len(t.coef_names) for t in vc.terms) if vc.terms else 1
    if maxlen > 1:
        corr_rows = []
        for t in vc.terms:
            k = len(t.coef_names)
            cc = np.asarray(fround(t.corr.ravel(), digits), dtype=object).reshape(k, k)
            for i in range(k):
                corr_rows.append([cc[i, j] if j < i else "" for j in range(k)] + [""] * (maxlen - k))
        corr_rows.append([""] * maxlen)
        header += ["Corr"] + [""] * (maxlen - 1)
        rows = [r + c for r, c in zip(rows, corr_rows)]
    return _print_char_matrix([""] * len(rows), header, rows)


def display_deviance(fit) -> float:
    """The "deviance" arm prints: ``deviance(refitML(fit))``.  For a REML LMM this is a new ML
    optimization of theta (ALGORITHMS.md 1.9), for an ML LMM its own deviance, and for a GLMM
    lme4's conditional deviance (sum of deviance residuals)."""
    if fit.use_scale and getattr(fit, "reml", False):
        return float(fit.refit(reml=False, quiet=True).deviance)  # the fit itself already warned
    return float(fit.deviance)


def display(fit, digits: int = 2, detail: bool = False, print_output: bool = True) -> str:
    """arm's ``display()`` of a mixed-model fit; returns the text and prints it.

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
    lines = [_call_line(fit)]
    lines += _coef_lines(fit, digits, detail)
    lines += ["", "Error terms:"]
    lines += _error_term_lines(fit, digits)
    dev = display_deviance(fit)
    loglik = float(fit.loglik)
    dic = 2.0 * dev + 2.0 * loglik
    groups = "; ".join(f"{g}, {j}" for g, j in fit.ngrps.items())
    lines += ["---", f"number of obs: {fit.nobs}, groups: {groups}",
              "AIC = %g, DIC = %s" % (round_r(float(fit.aic), 1), format_r([round_r(dic, 1)], 7)[0].strip()),
              f"deviance = {fround([dev], 1)[0]} "]
    text = "\n".join(lines)
    if print_output:
        print(text)
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
    if fit.use_scale:
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


# --------------------------------------------------------------------------------------------
# rows of new data: fixed part and per-term level codes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rows:
    X: np.ndarray                 # (n, p)
    offset: np.ndarray            # (n,)
    terms: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]  # (term index, codes, M, new-level id)


def _rows(fit, newdata: pd.DataFrame | None, re_form, allow_new_levels: bool) -> _Rows:
    """X, offset and, for each chosen term, level codes (-1 = new level), the term's model matrix
    and an id per distinct new level (-1 for existing levels; a missing group is its own level)."""
    chosen = fit._selected_terms(re_form)
    d = fit.design
    if newdata is None:
        terms = [(i, fit.terms[i].codes, fit.terms[i].model_matrix, np.full(d.nobs, -1)) for i in chosen]
        return _Rows(d.X, d.offset, terms)
    frame = pd.DataFrame(newdata).reset_index(drop=True)
    X = new_fixed_matrix(d, frame)
    off = new_offset(d, frame)
    terms = []
    for i in chosen:
        t = fit.terms[i]
        codes = fit._new_codes(t, frame, allow_new_levels)
        keys, missing = newdata_group_keys(t, frame)
        new = codes < 0
        new_id = np.full(len(frame), -1)
        if new.any():
            keyed = np.where(missing, np.char.add("\0row", np.arange(len(frame)).astype(str)), keys.astype(str))
            _, inv = np.unique(keyed[new], return_inverse=True)
            new_id[new] = inv
        terms.append((i, codes, new_term_matrix(t, frame), new_id))
    return _Rows(X, off, terms)


def _linkinv(fit, eta: np.ndarray) -> np.ndarray:
    return fit._linkinv(eta)


def fitted_draws(s: SimResult, newdata: pd.DataFrame | None = None, re_form=None,
                 allow_new_levels: bool = False, type: str = "link") -> np.ndarray:
    """Draws of ``X beta_s + sum_i Z_i b_{i,s} + offset`` for the fit's rows or ``newdata``.

    This is arm's ``fitted(sim, regression)`` done correctly (arm 1.13 swaps the J and k array
    dimensions, ALGORITHMS.md 3.1 quirk (e)).  New levels (with ``allow_new_levels``) contribute
    0, as in ``predict``; use :func:`predictive_draws` to draw a new group's effect instead.
    ``type="response"`` applies the inverse link (GLMM).  Returns an (n_sims, rows) array.
    """
    fit = s.fit
    rows = _rows(fit, newdata, re_form, allow_new_levels)
    eta = s.fixef.to_numpy() @ rows.X.T + rows.offset[None, :]
    labels = list(fit.term_labels)
    for i, codes, M, _ in rows.terms:
        b = s.ranef[labels[i]]
        contrib = np.einsum("nk,snk->sn", M, b[:, np.clip(codes, 0, None), :])
        eta += np.where(codes[None, :] >= 0, contrib, 0.0)
    if type == "response":
        return _linkinv(fit, eta)
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
    rows = _rows(fit, newdata, re_form, allow_new_levels=True)
    S = s.n_sims
    eta = s.fixef.to_numpy() @ rows.X.T + rows.offset[None, :]
    labels = list(fit.term_labels)
    Ts = fit.relative_factors()
    scale = s.sigma if s.sigma is not None else np.ones(S)
    for i, codes, M, new_id in rows.terms:
        b = s.ranef[labels[i]]                      # (S, J, k)
        old = codes >= 0
        eta += np.where(old[None, :], np.einsum("nk,snk->sn", M, b[:, np.clip(codes, 0, None), :]), 0.0)
        if (new_id >= 0).any():
            n_new = int(new_id.max()) + 1
            T = Ts[i]
            z = rng.standard_normal((S, n_new, T.shape[0]))
            b_new = scale[:, None, None] * np.einsum("ab,snb->sna", T, z)   # N(0, sigma^2 T T')
            contrib = np.einsum("nk,snk->sn", M, b_new[:, np.clip(new_id, 0, None), :])
            eta += np.where(new_id[None, :] >= 0, contrib, 0.0)
    if what == "eta":
        return eta
    mu = _linkinv(fit, eta)
    if what == "mu":
        return mu
    if what != "y":
        raise ValueError(f"what must be 'y', 'mu' or 'eta', got {what!r}")
    return _draw_response(fit, mu, scale, rng, trials)


def _draw_response(fit, mu: np.ndarray, scale: np.ndarray, rng, trials=None) -> np.ndarray:
    """Observation noise around mu (S, n): Gaussian with SD scale_s, or the GLMM family."""
    if fit.use_scale and getattr(fit, "family", None) is None:
        return mu + scale[:, None] * rng.standard_normal(mu.shape)
    name = getattr(getattr(fit, "family", None), "name", "gaussian")
    if name == "binomial":
        size = np.ones(mu.shape[1], dtype=np.int64) if trials is None else np.broadcast_to(
            np.asarray(trials, dtype=np.int64), (mu.shape[1],))
        return rng.binomial(size[None, :], np.clip(mu, 0.0, 1.0))
    if name == "poisson":
        return rng.poisson(mu)
    if name == "gaussian":
        return mu + scale[:, None] * rng.standard_normal(mu.shape)
    raise ValueError(f"predictive draws are implemented for gaussian, binomial and poisson models, not {name!r}")


# --------------------------------------------------------------------------------------------
# simulate()  (lme4 simulate.merMod)
# --------------------------------------------------------------------------------------------


def simulate(fit, nsim: int = 1, seed=None, newdata: pd.DataFrame | None = None, re_form="~0",
             allow_new_levels: bool = False) -> pd.DataFrame:
    """New responses from the fitted model, as lme4's ``simulate.merMod`` (ALGORITHMS.md 1.8).

        eta0 = predict(newdata, re_form)                      (beta-hat, offset, chosen b-hat)
        u ~ N(0, I) for the terms not in re_form,  r = Z_c Lambda_c u
        LMM:  y = eta0 + sigma-hat (r + eps),  eps ~ N(0, I)   (prior weights ignored, as lme4)
        GLMM: y ~ family(linkinv(eta0 + r))

    ``re_form="~0"`` (the default, lme4's ``use.u = FALSE``) simulates new random effects for
    every term; ``re_form=None`` conditions on all the conditional modes.  For newdata, the
    simulated terms use newdata's own levels, so new levels need no ``allow_new_levels``.
    Returns a DataFrame with columns ``sim_1 .. sim_nsim``.  Binomial responses come back on the
    family's scale, the proportion of successes out of each row's trials (lme4 returns a
    (successes, failures) matrix per simulation for a ``cbind`` response; multiply by the trials
    to get counts).  That is the scale ``fit.refit(newresp=...)`` takes.
    """
    nsim = int(nsim)
    if nsim < 1:
        raise ValueError(f"nsim must be a positive integer, got {nsim}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    eta0 = fit.predict(newdata, re_form=re_form, allow_new_levels=allow_new_levels, type="link")
    chosen = set(fit._selected_terms(re_form))
    Ts = fit.relative_factors()
    if newdata is not None:
        frame = pd.DataFrame(newdata).reset_index(drop=True)
    n = eta0.size
    r = np.zeros((n, nsim))
    for i, t in enumerate(fit.terms):
        if i in chosen:
            continue
        if newdata is None:
            codes, M, J = t.codes, t.model_matrix, t.n_levels
        else:
            keys, missing = newdata_group_keys(t, frame)
            _, codes = np.unique(keys, return_inverse=True)
            codes = np.where(missing, -1, codes)
            J = int(codes.max()) + 1 if (codes >= 0).any() else 0
            M = new_term_matrix(t, frame)
        # one block of q_c x nsim standard normals, drawn before the residual noise (lme4's order)
        u = rng.standard_normal((J, t.k, nsim))
        b = np.einsum("ab,jbs->jas", Ts[i], u)
        contrib = np.einsum("nk,nks->ns", M, b[np.clip(codes, 0, None)])
        r += np.where((codes >= 0)[:, None], contrib, 0.0)
    if fit.use_scale and getattr(fit, "family", None) is None:
        y = eta0[:, None] + fit.sigma * (r + rng.standard_normal((n, nsim)))
    else:
        y = _simulate_family(fit, eta0[:, None] + r, rng, newdata is None)
    index = fit.design.row_index if newdata is None else pd.DataFrame(newdata).index
    return pd.DataFrame(y, index=index, columns=[f"sim_{j + 1}" for j in range(nsim)])


def _simulate_family(fit, eta: np.ndarray, rng, own_rows: bool) -> np.ndarray:
    mu = fit._linkinv(eta)
    family = fit.family
    resp = getattr(getattr(fit, "problem", None), "resp", None)
    if own_rows and resp is not None and hasattr(family, "simulate"):
        # the family's own generator knows the trials of a binomial response (lme4's rbinom/weights)
        return np.asarray(family.simulate(rng, mu.T, resp), dtype=float).T
    name = family.name
    if name == "poisson":
        return rng.poisson(mu).astype(float)
    if name == "binomial":
        y = fit.design.y
        if own_rows and y.ndim == 2:
            size = y.sum(axis=1).astype(np.int64)
            return rng.binomial(size[:, None], mu).astype(float)   # successes, as cbind's first column
        w = fit.design.weights if own_rows and fit.design.weights is not None else np.ones(eta.shape[0])
        size = np.rint(w).astype(np.int64)
        return rng.binomial(size[:, None], mu) / size[:, None]
    raise ValueError(f"simulate() is implemented for gaussian, binomial and poisson models, not {name!r}")


__all__ = ["display", "sim", "SimResult", "fitted_draws", "predictive_draws", "simulate", "display_deviance"]
