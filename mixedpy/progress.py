"""Progress bars for long work: profile intervals, bootstrap refits, MCMC sampling, Dask passes.

Every long loop in mixedpy asks :func:`progress_bar` for its bar, so one rule decides when a bar is
drawn.  The ``progress`` argument of the public functions means:

- ``True``: always draw the bar (on stderr, through tqdm), from the first step;
- ``False``: never;
- ``None`` (the default): draw it only in an interactive session (the Python prompt, IPython or a
  Jupyter kernel) and only once the work has taken longer than ``delay`` seconds, so scripts,
  batch jobs and test runs stay quiet and quick calls never flash a bar.

A bar is tqdm's own text on stderr (or a widget in Jupyter via ``tqdm.auto``), never ``print``.
"""
from __future__ import annotations

import sys

#: seconds of work before an automatic (``progress=None``) bar appears
AUTO_DELAY = 2.0


def interactive() -> bool:
    """True at the Python prompt (``sys.ps1`` is set, or ``python -i``) and under IPython/Jupyter."""
    if hasattr(sys, "ps1") or sys.flags.interactive:
        return True
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        return ipython.get_ipython() is not None
    except AttributeError:  # a stub module without get_ipython
        return False


def show_progress(progress: bool | None) -> bool:
    """Whether a bar is wanted: ``progress`` itself when it is True or False; for ``None``, whether
    the session is interactive (:func:`interactive`)."""
    return interactive() if progress is None else bool(progress)


def progress_bar(total: int | None = None, *, progress: bool | None = None, desc: str, unit: str = "it",
                 leave: bool = True, delay: float = AUTO_DELAY):
    """A tqdm bar of ``total`` steps for one long computation, drawn or not as ``progress`` says
    (see the module docstring).  When it is not drawn, the returned object is a disabled tqdm whose
    ``update``, ``set_postfix_str`` and ``close`` do nothing, so callers never branch on it.

    ``delay`` (seconds) applies only to the automatic case: an explicit ``progress=True`` draws the
    bar at once.  Use it as a context manager or call ``close()``.
    """
    from tqdm.auto import tqdm

    shown = show_progress(progress)
    return tqdm(total=total, desc=desc, unit=unit, leave=leave, disable=not shown,
                delay=delay if progress is None else 0.0)


def track(iterable, total: int | None = None, *, progress: bool | None = None, desc: str, unit: str = "it"):
    """Iterate over ``iterable`` with a :func:`progress_bar` of ``total`` steps (the bar closes when
    the iteration ends)."""
    with progress_bar(total, progress=progress, desc=desc, unit=unit) as bar:
        for item in iterable:
            yield item
            bar.update(1)


__all__ = ["progress_bar", "track", "show_progress", "interactive", "AUTO_DELAY"]
