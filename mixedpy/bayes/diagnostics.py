"""Convergence diagnostics through arviz: rank-normalized split R-hat, bulk and tail ESS and MCSE
(Vehtari, Gelman, Simpson, Carpenter & Buerkner 2021), plus emcee's autocorrelation time.

Draw arrays are (n_sequences, n_draws): each chain's walkers, laid end to end, are one sequence.

R-hat compares independent chains, so with a single chain it is reported as NaN (not computed
from the halves of that chain: one ensemble's walkers are not independent runs) and
:func:`convergence_messages` returns a :class:`~mixedpy.errors.DiagnosticWarning` saying that
R-hat needs at least two chains.
"""
from __future__ import annotations

import logging
import warnings

import numpy as np

from ..errors import DiagnosticWarning


def _arviz():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import arviz as az
    return az


def diagnose(seqs: np.ndarray) -> dict[str, np.ndarray]:
    """R-hat, ess_bulk, ess_tail, mcse (of the mean) per parameter, and ``n_chains``.

    R-hat is NaN for every parameter when there is only one sequence (one chain): it needs at
    least two to compare.

    Parameters
    ----------
    seqs : (n_sequences, n_draws, n_params)
    """
    az = _arviz()
    log = getattr(az, "_log", None) or logging.getLogger("arviz")
    level = log.level
    log.setLevel(logging.ERROR)   # arviz logs a shape warning for a single chain; the split still works
    try:
        return _diagnose(az, seqs)
    finally:
        log.setLevel(level)


def _diagnose(az, seqs):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        P = seqs.shape[2]
        out = {k: np.full(P, np.nan) for k in ("rhat", "ess_bulk", "ess_tail", "mcse")}
        for j in range(P):
            a = seqs[:, :, j]
            if not np.all(np.isfinite(a)) or np.ptp(a) == 0:
                continue
            if seqs.shape[0] >= 2:
                out["rhat"][j] = float(az.rhat(a))
            out["ess_bulk"][j] = float(az.ess(a, method="bulk"))
            out["ess_tail"][j] = float(az.ess(a, method="tail"))
            out["mcse"][j] = float(az.mcse(a, method="mean"))
    out["n_chains"] = np.array(seqs.shape[0])
    return out


class _Message(str):
    """A diagnostic message (a str, as ``Posterior.messages`` holds them) that carries the warning
    category it should be issued with."""

    category: type

    def __new__(cls, text: str, category: type):
        obj = super().__new__(cls, text)
        obj.category = category
        return obj

    def __reduce__(self):  # str's own reduce would drop the category (posteriors pickle)
        return (_Message, (str(self), self.category))


def convergence_messages(names: list[str], diag: dict[str, np.ndarray], n_draws: int) -> list[str]:
    """Warnings with advice, as rstan gives them: R-hat > 1.01, bulk or tail ESS below
    min(400, draws / 10); with one chain, that R-hat needs at least two.

    Each message is a str carrying its warning category in ``.category``: BayesConvergenceWarning
    for R-hat and ESS, :class:`~mixedpy.errors.DiagnosticWarning` for the single chain.
    """
    from .fit import BayesConvergenceWarning

    msgs = []
    rhat = diag["rhat"]
    n_chains = int(diag.get("n_chains", 2))
    if n_chains < 2:
        msgs.append(_Message("R-hat needs at least 2 chains; with chains=1 it is reported as NaN and the "
                             "chains' mixing cannot be checked. Run chains=4 (rstanarm's default) to check "
                             "convergence.", DiagnosticWarning))
    bad = [n for n, r in zip(names, rhat) if np.isfinite(r) and r > 1.01]
    if bad:
        msgs.append(_Message(f"R-hat above 1.01 for {len(bad)} parameter(s) (e.g. {bad[0]}, R-hat "
                             f"{np.nanmax(rhat):.3f}): the chains have not mixed; run longer (larger iter) or "
                             "more chains, and check the model for weakly identified parameters",
                             BayesConvergenceWarning))
    floor = min(400, 0.1 * n_draws)
    for kind in ("ess_bulk", "ess_tail"):
        e = diag[kind]
        low = [n for n, v in zip(names, e) if np.isfinite(v) and v < floor]
        if low:
            what = "Bulk" if kind == "ess_bulk" else "Tail"
            msgs.append(_Message(f"{what} effective sample size is low ({np.nanmin(e):.0f} for {low[0]}): "
                                 f"posterior {'means and medians' if kind == 'ess_bulk' else 'quantiles'} may "
                                 "be unreliable; increase iter (or thin)", BayesConvergenceWarning))
    return msgs
