"""Binomial successes and trials, read from a response the way R's ``binomial()$initialize`` reads it.

A binomial response comes in three forms (McCullagh & Nelder 1989, sec. 4.3; R's ``glm``):

* ``cbind(successes, failures)``, a (n, 2) array: trials = successes + failures;
* proportions y with prior ``weights`` = the trials: successes = y * weights;
* 0/1 outcomes without weights: one trial per row.

Every place that needs the counts (fits, simulation, posterior log-likelihoods and predictions) reads
them here, so the three forms mean the same everywhere.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import DataError, FormulaError
from .families import binomial_counts
from .formula.design import _eval_expr, _response_parts
from .frames import to_pandas


def cbind_response(proportions: np.ndarray, trials: np.ndarray) -> np.ndarray:
    """The (n, 2) ``cbind(successes, failures)`` response of proportions out of ``trials``."""
    return np.column_stack([proportions * trials, (1 - proportions) * trials])


def newdata_trials(design, newdata: pd.DataFrame) -> np.ndarray:
    """Trials of new rows: the sum of the ``cbind()`` response's two columns evaluated on ``newdata``,
    or one per row for a single-column response (new rows carry no prior weights)."""
    parts = _response_parts(design.response_name)
    if len(parts) != 2:
        return np.ones(len(newdata))
    frame = pd.DataFrame(to_pandas(newdata, "newdata")).reset_index(drop=True)
    try:
        return sum(np.asarray(_eval_expr(p, frame, design.env), dtype=float) for p in parts)
    except (FormulaError, ValueError, TypeError) as exc:  # a missing column, or not numeric
        raise DataError("newdata needs the columns of the cbind() response to know the number of "
                        f"trials ({exc})") from exc


__all__ = ["binomial_counts", "cbind_response", "newdata_trials"]  # binomial_counts: from families
