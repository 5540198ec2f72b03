"""Mixed models on Dask data frames: out-of-core and distributed fits from sums over partitions.

An LMM needs its data only through the cross-products of [Z | X | y] (Bates et al. 2015, eqs.
16-18), which are sums over rows.  So a fit on a ``dask.dataframe.DataFrame`` makes a level pass
(:mod:`.plan`: the levels, the row counts, a reference response value) and one cross-product pass
(:mod:`.sums`: each partition's contribution, tree-reduced by Dask); the theta optimization then
runs on the reduced system exactly as in memory and never touches the rows again.

Dask is an optional dependency (``pip install "mixedpy[dask]"``); nothing here imports it until a
Dask frame is passed.
"""
from __future__ import annotations


def is_dask_frame(data) -> bool:
    """True for a ``dask.dataframe.DataFrame`` (checked without importing dask for other data)."""
    if not type(data).__module__.startswith("dask"):
        return False
    import dask.dataframe as dd

    return isinstance(data, dd.DataFrame)
