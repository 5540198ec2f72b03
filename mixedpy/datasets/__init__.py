"""Bundled datasets: the lme4/mlmRev reference sets and the worked-analysis data.

``load(name)`` returns a DataFrame; grouping factors and other R factors come back as strings,
as R wrote them (quoted in the CSV), so that they are factors in formulas.  Where R's level order
is not the strings' sorted order (cbpp's ``herd`` is 1, 2, ..., 15 in R, not "1", "10", "11", ...;
see :mod:`mixedpy.datasets.levels`) the column is a pandas Categorical with R's levels, so that
ranef rows and treatment-contrast baselines are lme4's.

Sources: sleepstudy, Dyestuff, Dyestuff2, Penicillin, Pastes, cbpp, grouseticks, VerbAgg and
InstEval from R's lme4 package; Exam from mlmRev; spotify from bayesrules; mlm from the uobayes
course materials; radon from rstanarm (Gelman & Hill 2007, ch. 12); reedfrogs from rethinking;
seattle from the public King County house sales data (kc_house_data).
"""
from __future__ import annotations

import csv
from importlib import resources

import pandas as pd

from .levels import NUMERIC, R_LEVELS


def available() -> list[str]:
    """Names of the bundled datasets."""
    return sorted(p.name[:-4] for p in resources.files(__package__).joinpath("data").iterdir()
                  if p.name.endswith(".csv"))


def read_r_csv(path) -> pd.DataFrame:
    """Read a CSV written by R's ``write.csv``: quoted columns are kept as strings (factors)."""
    with open(path, newline="") as fh:
        header = next(csv.reader(fh))
        first = fh.readline()
    raw_fields = next(csv.reader([first], quoting=csv.QUOTE_NONE)) if first else []
    string_cols = [h for h, f in zip(header, raw_fields) if f.startswith('"')]
    return pd.read_csv(path, dtype={c: str for c in string_cols}, keep_default_na=True, na_values=["NA"])


def load(name: str) -> pd.DataFrame:
    """Load a bundled dataset by name (case-insensitive), e.g. ``load("sleepstudy")``."""
    key = name.lower()
    names = available()
    if key not in names:
        raise KeyError(f"no dataset {name!r}; available: {', '.join(names)}")
    with resources.as_file(resources.files(__package__).joinpath("data", f"{key}.csv")) as path:
        df = read_r_csv(path)
    for col, levels in R_LEVELS.get(key, {}).items():
        if levels == NUMERIC:
            levels = sorted(pd.unique(df[col].dropna()), key=int)
        df[col] = pd.Categorical(df[col], categories=list(levels))
    return df
