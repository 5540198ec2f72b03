"""lme4's ``allFit``: the model refitted with every optimizer, and ``summary(allFit(m))``.

Fits that agree across optimizers are trustworthy even when one of them warned about
convergence (Bolker, lme4's ``?convergence``).  Each refit is ``update(fit, control=...)`` with
the optimizer replaced (for glmer, in both stages), as lme4's ``allFit`` makes it; warnings are
collected per optimizer and not issued, and an error is kept as the optimizer's result (lme4's
``catch.errs = TRUE``).  The optimizers are those of :mod:`mixedpy.control`: BOBYQA (lme4's
default ``nloptwrap``), scipy's bounded Nelder-Mead and scipy's L-BFGS-B.
"""
from __future__ import annotations

import dataclasses
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .control import OPTIMIZERS, glmerControl, lmerControl
from .model_building import model_data, update

#: mixedpy's optimizers, each once, in the order lme4's users know them
OPTIMIZER_NAMES = tuple(dict.fromkeys(OPTIMIZERS.values()))


def _control(fit, optimizer: str):
    ctl = getattr(fit, "control", None)
    if ctl is None:
        ctl = glmerControl() if hasattr(fit, "nAGQ") else lmerControl()
    return dataclasses.replace(ctl, optimizer=optimizer)


@dataclass
class AllFitSummary:
    """lme4's ``summary(allFit(m))``: one row per optimizer in every table.

    which_OK (Series: the refit ran without error), msgs (dict: the convergence messages of
    each fit, lme4's ``optinfo$conv$lme4$messages``), fixef (DataFrame), llik (Series of
    log-likelihoods), sdcor (DataFrame of the SDs, correlations and sigma in
    ``as.data.frame(VarCorr(m))`` order, with lme4's column names: the theta names, then
    ``sigma``), theta (DataFrame), times (Series of seconds), feval (Series of objective
    evaluations), plus converged (Series: ``fit.converged``) and warnings (dict: the
    (category, message) pairs each refit raised).
    """

    which_OK: pd.Series  # noqa: N815 - lme4's name
    msgs: dict
    fixef: pd.DataFrame
    llik: pd.Series
    sdcor: pd.DataFrame
    theta: pd.DataFrame
    times: pd.Series
    feval: pd.Series
    converged: pd.Series
    warnings: dict = field(default_factory=dict)

    def __str__(self) -> str:
        parts = []
        for name in ("which_OK", "converged", "fixef", "llik", "sdcor", "theta", "times", "feval"):
            value = getattr(self, name)
            parts.append(f"${name}\n{value.to_string()}")
        msgs = "\n".join(f"{k}: {'; '.join(v) if v else 'none'}" for k, v in self.msgs.items())
        parts.insert(1, f"$msgs\n{msgs}")
        return "\n\n".join(parts)

    __repr__ = __str__


class AllFit(dict):
    """lme4's ``allFit`` result: {optimizer: fit (or the exception its refit raised)}, with the
    warnings and the time of each refit; :meth:`summary` compares them."""

    def __init__(self, fits: dict, warnings_: dict, times: dict):
        super().__init__(fits)
        self.warnings = warnings_
        self.times = times

    def summary(self) -> AllFitSummary:
        ok = {k: not isinstance(v, BaseException) for k, v in self.items()}
        good = {k: v for k, v in self.items() if ok[k]}
        index = pd.Index(list(good), dtype=object)
        first = next(iter(good.values()), None)

        def table(fn, columns):
            return pd.DataFrame([np.asarray(fn(f), dtype=float) for f in good.values()], index=index, columns=columns)

        if first is None:
            empty = pd.DataFrame(index=index)
            fixef = sdcor = theta = empty
        else:
            fixef = table(lambda f: f.beta, list(first.fixef_names))
            theta = table(lambda f: f.theta, list(first.theta_names))
            sd_names = list(first.theta_names) + (["sigma"] if first.use_scale else [])
            sdcor = table(lambda f: f.varcorr().to_frame()["sdcor"].to_numpy(), sd_names)
        return AllFitSummary(
            which_OK=pd.Series(ok, dtype=bool),
            msgs={k: list(getattr(f, "messages", [])) for k, f in good.items()},
            fixef=fixef, llik=pd.Series({k: float(f.loglik) for k, f in good.items()}, index=index, dtype=float),
            sdcor=sdcor, theta=theta,
            times=pd.Series({k: self.times[k] for k in self}, dtype=float),
            feval=pd.Series({k: float(f.opt.n_evals) for k, f in good.items()}, index=index, dtype=float),
            converged=pd.Series({k: bool(f.converged) for k, f in good.items()}, index=index, dtype=bool),
            warnings={k: list(self.warnings[k]) for k in self})


def allFit(fit, optimizers=None, *, data=None, catch_errors: bool = True) -> AllFit:  # noqa: N802 - lme4's name
    """lme4's ``allFit(m)``: ``fit`` refitted with each optimizer (default: all of mixedpy's,
    :data:`OPTIMIZER_NAMES`); ``.summary()`` gives lme4's comparison tables.

    The refits need the data: ``data=`` or, as in R, the object named ``fit.data_name`` where
    allFit is called.  Warnings are collected per optimizer in ``result.warnings``; with
    ``catch_errors`` (lme4's ``catch.errs``) a refit that raises keeps the exception as its result.
    """
    data = model_data(fit, data)
    names = OPTIMIZER_NAMES if optimizers is None else tuple(optimizers)
    controls = {name: _control(fit, name) for name in names}    # an unknown name is the caller's error
    fits, caught, times = {}, {}, {}
    for name, control in controls.items():
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            try:
                fits[name] = update(fit, data=data, control=control)
            except Exception as exc:  # noqa: BLE001 - lme4's catch.errs keeps any error as the result
                if not catch_errors:
                    raise
                fits[name] = exc
        times[name] = time.perf_counter() - start
        caught[name] = [(w.category, str(w.message)) for w in record]
    return AllFit(fits, caught, times)


__all__ = ["allFit", "AllFit", "AllFitSummary", "OPTIMIZER_NAMES"]
