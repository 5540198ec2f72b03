"""How many BLAS threads the numerical kernel may use.

OpenBLAS starts one thread per core.  The kernel's dense blocks are small for most mixed models,
and on a shared machine those threads oversubscribe the cores: on a 2-core machine a 173 x 173
Cholesky factor took 0.83 ms with two OpenBLAS threads and 0.11 ms with one (idle), and 71 ms
against 0.19 ms with the other core busy.  So every fit runs with one BLAS thread by default, and a
dense block of at least :data:`PARALLEL_MIN_SIZE` rows may use more threads, up to the cores that
are not already busy (from the 1-minute load average) and never more than the caller allowed
when the fit started.

``set_num_threads(n)`` fixes the count for every block instead; ``set_num_threads(None)`` returns
to the automatic choice.  threadpoolctl does the switching: a cached controller makes one switch
cost about 10 microseconds, so the kernel can choose per factorization.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import os

from threadpoolctl import ThreadpoolController

#: dense blocks below this many rows always use one BLAS thread (measured crossover on 2 cores:
#: 500 rows gain 15% from a second idle thread, 173 rows lose a factor 8)
PARALLEL_MIN_SIZE = 800

_setting: int | None = None
_controller: ThreadpoolController | None = None
#: the BLAS thread count the caller had when the outermost fit started (None outside fits)
_caller_cap: contextvars.ContextVar[int | None] = contextvars.ContextVar("mixedpy_blas_cap", default=None)


def set_num_threads(n: int | None) -> None:
    """Use ``n`` BLAS threads in every kernel operation (``None``: choose by block size and load).

    >>> import mixedpy as mp
    >>> mp.set_num_threads(1)      # e.g. when running many fits in parallel processes
    >>> mp.set_num_threads(None)   # back to the automatic choice
    """
    global _setting
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"set_num_threads takes a positive whole number or None, got {n!r}")
    _setting = n


def get_num_threads() -> int | None:
    """The count fixed by :func:`set_num_threads`, or None for the automatic choice."""
    return _setting


def _blas():
    global _controller
    if _controller is None:
        _controller = ThreadpoolController()
    return _controller.select(user_api="blas")


def _current_threads() -> int:
    counts = [lib.num_threads for lib in _blas().lib_controllers]
    return max(counts) if counts else 1


def idle_cores() -> int:
    """Cores available to this process that the load average does not already count as busy."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        available = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    return max(1, min(available, int(available - load + 0.5)))


def threads_for_block(size: int) -> int:
    """BLAS threads for a dense operation on a block with ``size`` rows."""
    if _setting is not None:
        return _setting
    if size < PARALLEL_MIN_SIZE:
        return 1
    cap = _caller_cap.get()
    cap = _current_threads() if cap is None else cap
    return max(1, min(cap, idle_cores()))


@contextlib.contextmanager
def blas_threads(n: int):
    """Run the block with ``n`` BLAS threads, restoring the previous counts afterwards."""
    blas = _blas()
    if not blas.lib_controllers:
        yield
        return
    with blas.limit(limits=n):
        yield


def block_threads(size: int):
    """A context with the thread count :func:`threads_for_block` picks for a dense block of ``size``
    rows; a no-op (no switch at all) when that is the count the fit already runs with."""
    n = threads_for_block(size)
    return contextlib.nullcontext() if n == (_setting or 1) else blas_threads(n)


def controls_threads(func):
    """Decorator for entry points (fits, intervals, samplers): everything inside runs with one
    BLAS thread unless a kernel block asks for more, and the caller's own limit is the cap."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        if _caller_cap.get() is not None:  # already inside a fit
            return func(*args, **kwargs)
        token = _caller_cap.set(_current_threads())
        try:
            with blas_threads(_setting or 1):
                return func(*args, **kwargs)
        finally:
            _caller_cap.reset(token)
    return wrapper
