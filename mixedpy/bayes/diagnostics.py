"""Convergence diagnostics through arviz: rank-normalized split R-hat, bulk and tail ESS and MCSE
(Vehtari, Gelman, Simpson, Carpenter & Buerkner 2021), plus emcee's autocorrelation time.

Draw arrays are (n_sequences, n_draws): every emcee walker of every chain is one sequence.
"""
from __future__ import annotations

import logging
import warnings

import numpy as np


def _arviz():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import arviz as az
    return az


def diagnose(seqs: np.ndarray) -> dict[str, np.ndarray]:
    """R-hat, ess_bulk, ess_tail, mcse (of the mean) per parameter.

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
            out["rhat"][j] = float(az.rhat(a))
            out["ess_bulk"][j] = float(az.ess(a, method="bulk"))
            out["ess_tail"][j] = float(az.ess(a, method="tail"))
            out["mcse"][j] = float(az.mcse(a, method="mean"))
    return out


def convergence_messages(names: list[str], diag: dict[str, np.ndarray], n_draws: int) -> list[str]:
    """Warnings with advice, as rstan gives them: R-hat > 1.01, bulk or tail ESS below 100 per chain."""
    msgs = []
    rhat = diag["rhat"]
    bad = [n for n, r in zip(names, rhat) if np.isfinite(r) and r > 1.01]
    if bad:
        msgs.append(f"R-hat above 1.01 for {len(bad)} parameter(s) (e.g. {bad[0]}, R-hat "
                    f"{np.nanmax(rhat):.3f}): the chains have not mixed; run longer (larger iter) or more "
                    "chains, and check the model for weakly identified parameters")
    floor = min(400, 0.1 * n_draws)
    for kind in ("ess_bulk", "ess_tail"):
        e = diag[kind]
        low = [n for n, v in zip(names, e) if np.isfinite(v) and v < floor]
        if low:
            what = "Bulk" if kind == "ess_bulk" else "Tail"
            msgs.append(f"{what} effective sample size is low ({np.nanmin(e):.0f} for {low[0]}): posterior "
                        f"{'means and medians' if kind == 'ess_bulk' else 'quantiles'} may be unreliable; "
                        "increase iter (or thin)")
    return msgs
