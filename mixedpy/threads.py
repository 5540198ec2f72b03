"""How many BLAS threads the numerical kernel may use.

OpenBLAS starts one thread per core.  The kernel's dense blocks are small for most mixed models,
and on a shared machine those threads oversubscribe the cores: on a 2-core machine a 173 x 173
Cholesky factor took 0.83 ms with two OpenBLAS threads and 0.11 ms with one (idle), and 71 ms
against 0.19 ms with the other core busy.  So every fit runs with one BLAS thread by default, and a
system whose dense part has at least :data:`PARALLEL_MIN_SIZE` rows may use more threads, up to the
cores that no other task is using when the fit starts, and never more than the caller allowed.

The idle cores are counted once per fit, at its start, from the kernel's instantaneous count of
runnable tasks (``/proc/loadavg``) less this process: the load average lags by a minute and counts
the fit itself.  ``set_num_threads(n)`` fixes the count for every block instead;
``set_num_threads(None)`` returns to the automatic choice.  threadpoolctl does the switching: a
cached controller makes one switch cost about 10 microseconds, so the kernel can choose per
factorization.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import os

from threadpoolctl import ThreadpoolController

#: systems whose dense part has fewer rows always use one BLAS thread.  Measured on 2 idle cores:
#: a lone dense factor gains from a second thread only from about 1,000 rows on (1,500 rows: 34 ms
#: with one, 21 ms with two), and whole fits never did below that: InstEval's first 10,000 rows
#: (408 dense rows) took 0.31-0.40 s with one thread and 0.47-0.54 s with two, all of InstEval
#: (1,159 dense rows) 3.4-3.7 s with one and 3.8 s with two.
PARALLEL_MIN_SIZE = 1500

_setting: int | None = None
_controller: ThreadpoolController | None = None
#: the most BLAS threads a block may use in the running fit: the caller's thread count when the
#: outermost fit started, capped by the cores idle then (None outside fits)
_fit_cap: contextvars.ContextVar[int | None] = contextvars.ContextVar("mixedpy_blas_cap", default=None)


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


def _other_runnable_tasks() -> int | None:
    """Tasks other than this one that are running or ready to run now (None where unknown)."""
    try:
        with open("/proc/loadavg") as fh:
            running = int(fh.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0, running - 1)


def idle_cores() -> int:
    """Cores available to this process that other tasks are not using now (at least 1)."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        available = os.cpu_count() or 1
    others = _other_runnable_tasks()
    if others is None:
        try:
            others = max(0.0, os.getloadavg()[0] - 1.0)
        except OSError:
            others = 0
    return max(1, min(available, int(available - others + 0.5)))


def threads_for_block(size: int) -> int:
    """BLAS threads for a dense operation on a system with ``size`` dense rows."""
    if _setting is not None:
        return _setting
    if size < PARALLEL_MIN_SIZE:
        return 1
    cap = _fit_cap.get()
    if cap is None:  # called outside a fit
        cap = min(_current_threads(), idle_cores())
    return max(1, cap)


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
    rows; a no-op (no switch at all) inside a fit that already runs with that count.  Outside a fit
    (the kernel called directly, e.g. through ``mp.lmer_devfun``) the count is always set, since the
    BLAS would otherwise run on its own default."""
    n = threads_for_block(size)
    inside_fit = _fit_cap.get() is not None
    return contextlib.nullcontext() if inside_fit and n == (_setting or 1) else blas_threads(n)


def controls_threads(func):
    """Decorator for entry points (fits, intervals, samplers): everything inside runs with one
    BLAS thread unless a kernel block asks for more; the caller's own limit and the cores idle at
    the start cap what a block may ask for."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        if _fit_cap.get() is not None:  # already inside a fit
            return func(*args, **kwargs)
        token = _fit_cap.set(min(_current_threads(), idle_cores()))
        try:
            with blas_threads(_setting or 1):
                return func(*args, **kwargs)
        finally:
            _fit_cap.reset(token)
    return wrapper
