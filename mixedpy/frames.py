"""Data frames from other libraries (polars, pyarrow, anything that speaks the interchange
protocol) as pandas DataFrames, so a fit, a prediction or a posterior can take them where a pandas
DataFrame is expected.  Results always come back as pandas.

The formula machinery works on pandas (R's ``model.frame`` semantics: factors, missing values,
row labels), so a foreign frame is converted once, where the data enters (the fit's data in
:func:`mixedpy.validation.as_data_frame`, new rows in :mod:`mixedpy.newdata` and friends).  The
routes, tried in order:

1. the object's own ``to_pandas()`` (polars and narwhals DataFrames, pyarrow Tables and
   RecordBatches): the library knows its types best (polars ``Categorical``/``Enum`` become pandas
   categoricals, nulls become NaN);
2. the Arrow PyCapsule stream (``__arrow_c_stream__``), read by pyarrow;
3. the dataframe interchange protocol (``__dataframe__``), read by
   ``pandas.api.interchange.from_dataframe``.

A frame without a row index (polars, pyarrow) gets pandas' default 0..n-1 index, which then labels
the rows of ``predict``'s Series.  Dask DataFrames are left alone: the fitting functions send them
to the out-of-core path (:mod:`mixedpy.scale`) before anything is converted.
"""
from __future__ import annotations

import pandas as pd

from .errors import DataError


def _lazy_hint(data) -> str | None:
    """A frame that has not been computed yet (polars LazyFrame, narwhals LazyFrame): say how to
    materialise it rather than pulling a possibly large query into memory behind the caller's back."""
    kind = type(data).__name__
    if "Lazy" in kind and hasattr(data, "collect"):
        return f"a {type(data).__module__.split('.')[0]} {kind} is a query, not data: call .collect() first"
    return None


def to_pandas(data, what: str = "data"):
    """``data`` as a pandas DataFrame when it is another library's data frame; anything else
    (pandas objects, dicts, arrays, dask frames) is returned unchanged for the caller's own checks.

    Raises :class:`~mixedpy.errors.DataError` when a frame offers a conversion that fails, or is a
    lazy query.
    """
    if isinstance(data, (pd.DataFrame, pd.Series)) or data is None:
        return data
    from .scale import is_dask_frame   # late: mixedpy.scale imports the validation that imports us

    if is_dask_frame(data):
        return data
    hint = _lazy_hint(data)
    if hint:
        raise DataError(f"{what}: {hint}")
    name = f"{type(data).__module__.split('.')[0]}.{type(data).__name__}"
    try:
        if callable(getattr(data, "to_pandas", None)):
            out = data.to_pandas()
        elif hasattr(data, "__arrow_c_stream__"):
            import pyarrow as pa

            out = pa.table(data).to_pandas()
        elif hasattr(data, "__dataframe__"):
            from pandas.api.interchange import from_dataframe

            out = from_dataframe(data)
        else:
            return data
    except ImportError as exc:
        raise DataError(f"{what} is a {name}; converting it to pandas needs {exc.name or 'pyarrow'} "
                        f"(pip install pyarrow), or pass data.to_pandas()") from exc
    except Exception as exc:
        raise DataError(f"{what} is a {name} that could not be converted to a pandas DataFrame "
                        f"({type(exc).__name__}: {exc}); pass a pandas DataFrame instead") from exc
    if not isinstance(out, pd.DataFrame):
        raise DataError(f"{what} is a {name} whose conversion gave a {type(out).__name__}, not a "
                        "pandas DataFrame; pass a pandas DataFrame instead")
    return out


__all__ = ["to_pandas"]
