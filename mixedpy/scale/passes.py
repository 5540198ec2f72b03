"""Map-reduce passes over the partitions of a Dask frame, counted (and shown with progress=True).

Each pass maps a function over the partitions (as pandas frames, with the partition's number, so
errors can name it) and combines the results in a tree of fan-in :data:`FAN_IN`, all as one Dask
graph; it runs on whatever scheduler is active: a ``dask.distributed.Client`` if the user made
one, else Dask's default.  Only the root of the tree comes back to the client.
"""
from __future__ import annotations

import time
import uuid

from ..errors import MixedpyError
from ..progress import progress_bar

#: partitions (or partial results) combined per task of the reduction tree
FAN_IN = 8


def in_partition(chunk, part, index: int, context):
    """``chunk(part, index, context)`` with any input error naming the partition."""
    try:
        return chunk(part, index, context)
    except MixedpyError as exc:
        if str(exc).startswith("partition "):
            raise
        raise type(exc)(f"partition {index}: {exc}") from exc


def _combine_all(combine, *parts):
    out = parts[0]
    for p in parts[1:]:
        out = combine(out, p)
    return out


def partitions(data) -> list:
    """The partitions of a Dask frame as delayed objects (a list of delayed objects, e.g. arrays
    persisted on the workers, is returned as it is)."""
    return list(data) if isinstance(data, (list, tuple)) else list(data.to_delayed())


def shared(obj, what: str):
    """``obj`` as one piece of a Dask graph that tasks take as an argument, sent to each worker once.

    With a ``dask.distributed.Client`` it is scattered to every worker: an object in the graph itself
    goes through the scheduler, whose logs keep each graph's objects (a glmer pass's coefficients:
    at 50,000 x 800 levels the scheduler's memory grew by about 5 MB a pass, 2.5 GB over 500), and
    a large one draws distributed's "large graph" warning.  Otherwise a named delayed value, which
    Dask does not traverse."""
    import dask

    try:
        from distributed import default_client

        client = default_client()
    except (ImportError, ValueError):
        return dask.delayed(obj, name=f"mixedpy-{what}-{uuid.uuid4().hex}", traverse=False)
    # in a list, so that a dict or tuple is scattered whole, not as one future per element
    return client.scatter([obj], broadcast=True, hash=False)[0]


def map_reduce(data, chunk, combine, context):
    """combine(...combine(chunk(part_0), chunk(part_1))...) over every partition, tree-reduced."""
    import dask

    ctx = shared(context, "context")     # the levels, model matrix specs, coefficients
    nodes = [dask.delayed(in_partition, pure=True)(chunk, part, i, ctx)
             for i, part in enumerate(partitions(data))]
    while len(nodes) > 1:
        nodes = [dask.delayed(_combine_all, pure=True)(combine, *nodes[k:k + FAN_IN])
                 for k in range(0, len(nodes), FAN_IN)]
    (out,) = dask.compute(nodes[0])
    return out


class Passes:
    """Counts (and times) the passes of one fit over its data; a tqdm bar over them when ``progress``."""

    def __init__(self, progress: bool | None = None, total: int | None = None, desc: str = "passes over the data"):
        self.count = 0
        self.seconds = 0.0
        self.bar = progress_bar(total, progress=progress, desc=desc, unit="pass")

    def run(self, data, chunk, combine, context, what: str):
        """One map-reduce pass (:func:`map_reduce`); ``what`` labels it on the bar."""
        self.bar.set_postfix_str(what)
        t = time.perf_counter()
        out = map_reduce(data, chunk, combine, context)
        self.seconds += time.perf_counter() - t
        self.count += 1
        self.bar.update()
        return out

    def close(self) -> None:
        self.bar.close()
