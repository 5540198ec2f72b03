"""lme4's ``lmerControl()`` and ``glmerControl()``: frozen objects holding how a fit is optimized and
checked, passed as ``control=`` to :func:`mixedpy.lmer` and :func:`mixedpy.glmer`.

The fields are lme4's (``lme4::lmerControl``/``glmerControl``, lme4 1.1-31), with R's dots written
as underscores (``boundary.tol`` -> ``boundary_tol``, ``check.conv.grad`` -> ``check_conv_grad``;
``optCtrl`` and ``tolPwrss`` keep their names).  Every lme4 field is accepted; a value that mixedpy
cannot honour (a sparse X, ``check.nlev.gtr.1 = "ignore"``, ...) raises :class:`ControlError`
naming the field, so no setting is ever silently ignored.  The input checks (``check_nobs_vs_nlev``
and the others of lme4's ``checkControl``) are always made with lme4's default actions, which are
therefore the only accepted values.

Optimizers: ``"bobyqa"`` (NLopt's BOBYQA, lme4's ``"nloptwrap"``/``"bobyqa"``), ``"nelder_mead"``
(scipy's bounded Nelder-Mead; lme4's ``"Nelder_Mead"`` is a different implementation, so its path
differs) and ``"scipy"`` (scipy's L-BFGS-B).  glmer takes one name for both stages or a pair
(stage 1, stage 2) as lme4 does.  lme4's glmer default is ``c("bobyqa", "Nelder_Mead")``: minqa's BOBYQA
(n + 2 interpolation points) in stage 1 and lme4's own Nelder-Mead in stage 2.  mixedpy's is NLopt's
BOBYQA (2n + 1 points) for both stages with minqa's step settings (ALGORITHMS.md 2.3), plus a
restart of stage 1 when it stops on the boundary (``glmerControl.boundary_restart``), which reaches
lme4's optimum on the reference corpus.
"""
from __future__ import annotations

import dataclasses
import types
from dataclasses import dataclass, field
from typing import Mapping

from .errors import MixedpyError


class ControlError(MixedpyError):
    """A control setting mixedpy does not support, or a malformed one."""


#: optimizer names accepted, lme4's spelling included -> mixedpy's name
OPTIMIZERS = {"bobyqa": "bobyqa", "nloptwrap": "bobyqa", "nelder_mead": "nelder_mead",
              "Nelder_Mead": "nelder_mead", "Nelder-Mead": "nelder_mead", "scipy": "scipy", "L-BFGS-B": "scipy"}

#: optCtrl keys (lme4's nloptwrap names, with minqa's/Nelder_Mead's aliases) -> mixedpy's setting
OPT_CTRL_KEYS = {"maxeval": "maxeval", "maxfun": "maxeval", "ftol_abs": "ftol_abs", "FtolAbs": "ftol_abs",
                 "xtol_abs": "xtol_abs", "XtolAbs": "xtol_abs"}

ACTIONS = ("warning", "message", "ignore", "stop")


def optimizer_name(name) -> str:
    """mixedpy's name for an optimizer given in mixedpy's or lme4's spelling."""
    if not isinstance(name, str) or name not in OPTIMIZERS:
        raise ControlError(f"unknown optimizer {name!r}; use 'bobyqa' (lme4's 'nloptwrap'), 'nelder_mead' "
                           "or 'scipy' (L-BFGS-B)")
    return OPTIMIZERS[name]


@dataclass(frozen=True)
class ConvCheck:
    """One convergence check, lme4's ``.makeCC(action, tol, relTol)``.

    ``action``: "warning" (a warning), "message" (a :class:`~mixedpy.errors.MixedpyInfo` note; for
    the singular check a :class:`~mixedpy.errors.SingularFitWarning`, mixedpy's form of lme4's
    message), "ignore" (nothing is issued; ``fit.convergence`` still records the check) or "stop"
    (:class:`~mixedpy.errors.ConvergenceError`).  ``relTol`` (lme4's relative gradient check) is not
    supported and must stay None.
    """

    action: str = "warning"
    tol: float = 2e-3
    relTol: float | None = None  # noqa: N815 - lme4's name

    def __post_init__(self):
        if self.action not in ACTIONS:
            raise ControlError(f"convergence-check action must be one of {list(ACTIONS)}, got {self.action!r}")
        tol = float(self.tol)
        if not tol >= 0:
            raise ControlError(f"convergence-check tol must be >= 0, got {self.tol!r}")
        object.__setattr__(self, "tol", tol)
        if self.relTol is not None:
            raise ControlError("relTol (lme4's relative gradient check) is not supported by mixedpy; leave it None")


def _conv_check(value, default: ConvCheck, name: str) -> ConvCheck:
    if isinstance(value, ConvCheck):
        return value
    if isinstance(value, Mapping):
        bad = set(value) - {"action", "tol", "relTol"}
        if bad:
            raise ControlError(f"{name} takes 'action', 'tol' (and relTol=None), got {sorted(bad)}")
        return dataclasses.replace(default, **value)
    if isinstance(value, str):
        return dataclasses.replace(default, action=value)
    raise ControlError(f"{name} must be a ConvCheck, a dict with action/tol, or an action string, got {value!r}")


def _opt_ctrl(value) -> Mapping[str, float]:
    if not isinstance(value, Mapping):
        raise ControlError(f"optCtrl must be a dict, got {type(value).__name__}")
    out: dict[str, float] = {}
    for key, v in value.items():
        if key not in OPT_CTRL_KEYS:
            raise ControlError(f"optCtrl key {key!r} is not supported; mixedpy's optimizers take "
                               f"{sorted(set(OPT_CTRL_KEYS.values()))} (lme4's aliases: maxfun, FtolAbs, XtolAbs)")
        name = OPT_CTRL_KEYS[key]
        num = float(v)
        if not num > 0:
            raise ControlError(f"optCtrl {key} must be positive, got {v!r}")
        out[name] = int(num) if name == "maxeval" else num
    return types.MappingProxyType(out)


# the lme4 fields mixedpy accepts only at lme4's default (the value mixedpy always uses), and why
_FIXED = {
    "use_last_params": (False, "the final state is always recomputed at the optimum"),
    "sparseX": (False, "the fixed-effects matrix is dense"),
    "standardize_X": (False, "X is used as given"),
    "check_nobs_vs_rankZ": ("ignore", "this check is not made (lme4's default)"),
    "check_nobs_vs_nlev": ("stop", "the check always stops (lme4's default)"),
    "check_nlev_gtreq_5": ("ignore", "this check is not made (lme4's default)"),
    "check_nlev_gtr_1": ("stop", "the check always stops (lme4's default)"),
    "check_nobs_vs_nRE": ("stop", "the check always stops (lme4's default)"),
    "check_rankX": ("message+drop.cols", "deficient columns are dropped with a RankDeficiencyWarning"),
    "check_scaleX": ("warning", "very different scales give a ScaleWarning"),
    "check_formula_LHS": ("stop", "a formula needs a response"),
    "compDev": (True, "the deviance is always computed by mixedpy's kernel"),
    "nAGQ0initStep": (True, "glmer always runs the nAGQ = 0 stage first"),
    "check_response_not_const": ("stop", "a constant response always stops"),
}


def _rebuild(cls, fields: dict):
    return cls(**fields)


@dataclass(frozen=True)
class lmerControl:  # noqa: N801 - lme4's name
    """lme4's ``lmerControl()`` for :func:`mixedpy.lmer` (see the module docstring).

    Supported: ``optimizer``; ``restart_edge`` (rerun the optimizer when a parameter on its bound
    should move off it); ``boundary_tol`` (snap parameters within this distance to their bound, 0
    to skip); ``calc_derivs`` (finite-difference gradient and Hessian for the checks);
    ``check_conv_grad``, ``check_conv_singular``, ``check_conv_hess`` (:class:`ConvCheck`, or a
    dict ``{"action": ..., "tol": ...}``, or an action string); ``optCtrl`` (a dict for the
    optimizer: ``maxeval``, ``ftol_abs``, ``xtol_abs``; L-BFGS-B takes ``maxeval`` only).  The other
    lme4 fields accept only lme4's default values.
    """

    optimizer: str = "bobyqa"
    restart_edge: bool = True
    boundary_tol: float = 1e-5
    calc_derivs: bool = True
    use_last_params: bool = False
    sparseX: bool = False  # noqa: N815
    standardize_X: bool = False  # noqa: N815
    check_nobs_vs_rankZ: str = "ignore"  # noqa: N815
    check_nobs_vs_nlev: str = "stop"
    check_nlev_gtreq_5: str = "ignore"
    check_nlev_gtr_1: str = "stop"
    check_nobs_vs_nRE: str = "stop"  # noqa: N815
    check_rankX: str = "message+drop.cols"  # noqa: N815
    check_scaleX: str = "warning"  # noqa: N815
    check_formula_LHS: str = "stop"  # noqa: N815
    check_conv_grad: ConvCheck = field(default_factory=lambda: ConvCheck("warning", 2e-3))
    check_conv_singular: ConvCheck = field(default_factory=lambda: ConvCheck("message", 1e-4))
    check_conv_hess: ConvCheck = field(default_factory=lambda: ConvCheck("warning", 1e-6))
    optCtrl: Mapping = field(default_factory=dict)  # noqa: N815

    def __post_init__(self):
        self._set("optimizer", self._optimizer(self.optimizer))
        for name in ("restart_edge", "calc_derivs"):
            if not isinstance(getattr(self, name), bool):
                raise ControlError(f"{name} must be True or False, got {getattr(self, name)!r}")
        tol = float(self.boundary_tol)
        if not tol >= 0:
            raise ControlError(f"boundary_tol must be >= 0, got {self.boundary_tol!r}")
        self._set("boundary_tol", tol)
        defaults = {f.name: f.default_factory() for f in dataclasses.fields(self)
                    if f.name.startswith("check_conv")}
        for name, default in defaults.items():
            self._set(name, _conv_check(getattr(self, name), default, name))
        self._set("optCtrl", _opt_ctrl(self.optCtrl))
        for name, (value, why) in _FIXED.items():
            if hasattr(self, name) and getattr(self, name) != value:
                raise ControlError(f"{type(self).__name__}({name}={getattr(self, name)!r}) is not supported: "
                                   f"mixedpy only does {name}={value!r} ({why})")
        if "scipy" in self.optimizer_stages() and set(self.optCtrl) - {"maxeval"}:
            raise ControlError("optimizer='scipy' (L-BFGS-B) takes only optCtrl={'maxeval': ...}; "
                               f"got {sorted(self.optCtrl)}")

    def _set(self, name, value):
        object.__setattr__(self, name, value)

    def __reduce__(self):
        # optCtrl is a read-only view, which pickle cannot copy: rebuild from the fields
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields["optCtrl"] = dict(self.optCtrl)
        return (_rebuild, (type(self), fields))

    @staticmethod
    def _optimizer(value):
        return optimizer_name(value)

    def optimizer_stages(self) -> tuple[str, ...]:
        return (self.optimizer,)

    @property
    def opt_settings(self) -> dict:
        """optCtrl as keyword arguments of :func:`mixedpy.optimize.minimize`."""
        return dict(self.optCtrl)


@dataclass(frozen=True)
class glmerControl(lmerControl):  # noqa: N801 - lme4's name
    """lme4's ``glmerControl()`` for :func:`mixedpy.glmer`: the fields of :class:`lmerControl`
    plus ``tolPwrss`` (PIRLS's relative tolerance on the penalized deviance), ``compDev``,
    ``nAGQ0initStep`` and ``check_response_not_const`` (lme4's defaults only).  ``optimizer`` is
    one name for both stages or a pair (stage 1, stage 2); ``restart_edge`` must stay False, as in
    lme4's glmer.  ``optCtrl`` replaces the stage settings it names in both stages.

    ``boundary_restart`` (mixedpy's, not lme4's; default True): when stage 1 (the nAGQ = 0 criterion,
    which can have a singular local optimum besides the interior one) stops with a variance on its
    bound, it is rerun with those parameters back at their start values and the lower optimum is kept
    (:func:`mixedpy.optimize.restart_off_boundary`).  lme4's stage 1 (minqa's BOBYQA) and mixedpy's
    (NLopt's) take different paths, so without it mixedpy can stop at a boundary optimum where lme4
    does not; False gives the single optimizer run.
    """

    optimizer: str | tuple[str, str] = "bobyqa"
    restart_edge: bool = False
    boundary_restart: bool = True
    tolPwrss: float = 1e-7  # noqa: N815
    compDev: bool = True  # noqa: N815
    nAGQ0initStep: bool = True  # noqa: N815
    check_response_not_const: str = "stop"

    def __post_init__(self):
        if self.restart_edge:
            raise ControlError("glmerControl(restart_edge=True) is not supported (lme4's glmer does not "
                               "restart at the edge either)")
        super().__post_init__()
        if not isinstance(self.boundary_restart, bool):
            raise ControlError(f"boundary_restart must be True or False, got {self.boundary_restart!r}")
        tol = float(self.tolPwrss)
        if not tol > 0:
            raise ControlError(f"tolPwrss must be positive, got {self.tolPwrss!r}")
        self._set("tolPwrss", tol)

    @staticmethod
    def _optimizer(value):
        if isinstance(value, (tuple, list)):
            if len(value) != 2:
                raise ControlError(f"glmer's optimizer is one name or a pair (stage 1, stage 2), got {value!r}")
            first, second = (optimizer_name(v) for v in value)
            return first if first == second else (first, second)
        return optimizer_name(value)

    def optimizer_stages(self) -> tuple[str, str]:
        opt = self.optimizer
        return tuple(opt) if isinstance(opt, tuple) else (opt, opt)


def resolve_control(control, cls: type, **overrides) -> lmerControl:
    """The control of a fit: ``control`` (None for the defaults; a dict of fields also works)
    with the fit function's own arguments (``optimizer=``, ``calc_derivs=``) applied when given."""
    if control is None:
        control = cls()
    elif isinstance(control, Mapping):
        control = cls(**control)
    elif type(control) is not cls:   # a glmerControl is no lmerControl: its glmer fields would be ignored
        raise ControlError(f"control must be a {cls.__name__} (mp.{cls.__name__}(...)), got "
                           f"{type(control).__name__}")
    given = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(control, **given) if given else control


def require_dask_control(control: lmerControl, cls: type) -> None:
    """A fit on a Dask frame takes ``optimizer`` and ``calc_derivs`` (glmer: ``calc_derivs``) from a
    control; any other non-default field is an error rather than silently ignored."""
    passed = {"optimizer", "calc_derivs"} if cls is lmerControl else {"calc_derivs"}
    differs = [f.name for f in dataclasses.fields(control) if f.name not in passed
               and getattr(control, f.name) != getattr(cls(), f.name)]
    if differs:
        raise ControlError(f"a fit on a Dask frame does not support the control settings {differs} yet; "
                           f"it takes only {sorted(passed)} (fit the data in memory for the others)")


__all__ = ["lmerControl", "glmerControl", "ConvCheck", "ControlError", "resolve_control", "optimizer_name", "require_dask_control"]
