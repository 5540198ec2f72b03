"""Shared test helpers: reference values made by R (tests/reference) and a cache of fitted models."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import pandas as pd
import pytest

from mixedpy.datasets import read_r_csv

REF = Path(__file__).parent / "reference"


@lru_cache(maxsize=None)
def load_ref(name: str, kind: str = "lme4") -> dict:
    """A reference fit written by tests/reference/gen or ../shared/reference (copied here)."""
    return json.loads((REF / kind / f"{name}.json").read_text())


def ref_data(csv_name: str) -> pd.DataFrame:
    """A reference dataset: tests/reference/data first, then the bundled datasets."""
    path = REF / "data" / csv_name
    if path.exists():
        return read_r_csv(path)
    from mixedpy import datasets

    return datasets.load(csv_name.removesuffix(".csv"))


@lru_cache(maxsize=None)
def _cached_lmer(name: str):
    import mixedpy as mp

    ref = load_ref(name)
    return mp.lmer(ref["formula"], ref_data(ref["data"]), REML=ref["REML"])


@pytest.fixture
def lmer_ref():
    """``lmer_ref(name) -> (fit, ref)``: the lmer fit of a reference case (fitted once per session)."""
    return lambda name: (_cached_lmer(name), load_ref(name))


def dense_u(design, prob, theta):
    """U = Z Lambda as a dense matrix, columns in the kernel's order (for kernel-vs-dense tests)."""
    import numpy as np

    n = design.nobs
    cols = []
    for t, T in zip(design.terms, prob.relative_factors(theta)):
        Z = np.zeros((n, t.n_coefs))
        for c in range(t.k):
            Z[np.arange(n), t.codes * t.k + c] = t.model_matrix[:, c]
        cols.append(Z @ np.kron(np.eye(t.n_levels), T))
    return np.hstack(cols)
