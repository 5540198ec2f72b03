"""The caller's names a formula uses, kept with the fit (R keeps the formula's environment).

R fits keep a reference to the formula's environment; a Python fit that kept the whole caller
namespace would hold every object in it and could not be pickled.  :func:`used_env` keeps only
the names the formula reads (``np`` for ``np.log(x)``, a user's function or array), and
:class:`FormulaEnv` pickles modules by name, so a fit pickles whenever those values do.
"""
from __future__ import annotations

import importlib
import types

import numpy as np

from .rsyntax import all_names, parse

FORMULA_NAMESPACE = {"np": np, "numpy": np}
"""Modules every formula can use (``np.log(x)``); R's functions are in :data:`reval.R_FUNCTIONS`."""


class FormulaEnv(dict):
    """A dict of the caller's names used by a formula; modules pickle by their import name."""

    def __reduce__(self):
        items = [(k, ("module", v.__name__) if isinstance(v, types.ModuleType) else ("value", v))
                 for k, v in self.items()]
        return _restore_env, (items,)


def _restore_env(items) -> FormulaEnv:
    return FormulaEnv({k: importlib.import_module(v) if kind == "module" else v for k, (kind, v) in items})


def expression_names(expr: str, functions: bool = False) -> set[str]:
    """Names an R expression or formula right-hand side reads (R's ``all.vars``), function names
    too with ``functions=True``; ``np.log`` also counts as ``np``."""
    names = set(all_names(parse(expr), functions=functions))
    return names | {n.split(".")[0] for n in names if "." in n.strip(".")}


def used_env(env: dict | None, exprs: list[str]) -> FormulaEnv:
    """The formula's namespace: :data:`FORMULA_NAMESPACE` and the names of ``env`` that ``exprs`` use."""
    names: set[str] = set()
    for e in exprs:
        names |= expression_names(e, functions=True)
    env = env or {}
    out = FormulaEnv({k: v for k, v in FORMULA_NAMESPACE.items()})
    out.update({k: env[k] for k in names if k in env})
    return out
