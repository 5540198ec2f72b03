"""Exceptions and warnings raised by mixedpy, each naming the problem it reports."""


class MixedpyError(ValueError):
    """Base class for input errors."""


class FormulaError(MixedpyError):
    """A formula that cannot be parsed or refers to something that is not there."""


class DataError(MixedpyError):
    """Data that cannot be used for the requested model."""


class FitError(MixedpyError, RuntimeError):
    """The model could not be fitted at all: the objective is not finite anywhere the optimizer
    looked, or is -inf (unbounded below), or PIRLS diverged from the start.  No fit object exists."""


class ConvergenceError(FitError):
    """A convergence check failed whose action in the fit's control is "stop" (lme4's
    ``check.conv.grad = "stop"`` and the like)."""


class MixedpyWarning(UserWarning):
    """Base class of mixedpy's warnings (filter them all with this category)."""


class MixedpyInfo(MixedpyWarning):
    """An informational note, R's ``message()`` (e.g. "refitting model(s) with ML (instead of
    REML)"): nothing is wrong.  Silence with ``warnings.simplefilter("ignore", mp.MixedpyInfo)``."""


class BootstrapWarning(MixedpyWarning):
    """Some parametric-bootstrap refits failed and were dropped from the intervals."""


class DiagnosticWarning(MixedpyWarning):
    """A posterior diagnostic cannot be computed as asked (e.g. R-hat needs at least two chains)."""


class ConvergenceWarning(MixedpyWarning):
    """The optimizer stopped somewhere that may not be the optimum; the message says what to do."""


class SingularFitWarning(MixedpyWarning):
    """A variance component is estimated at (or within 1e-4 of) zero."""


class DataWarning(MixedpyWarning):
    """The data were used in a way the user may not expect (rows dropped, columns dropped, scales);
    the message says what was done and what to do."""


class MissingValuesWarning(DataWarning):
    """Rows with a missing value in a column the model uses were dropped (R's ``na.omit``)."""


class ZeroWeightsWarning(DataWarning):
    """Rows with prior weight 0 were left out of a linear mixed model."""


class RankDeficiencyWarning(DataWarning):
    """Fixed-effects columns were dropped because the model matrix is rank deficient (lme4 ``check.rankX``)."""


class ScaleWarning(DataWarning):
    """Predictors on very different scales (lme4 ``check.scaleX``)."""


class FamilyWarning(MixedpyWarning):
    """A family used in a way lme4 deprecates (glmer with gaussian(identity) is fitted by lmer)."""


class FormulaWarning(MixedpyWarning):
    """A formula term is valid R but probably not what was meant (``x^2`` outside ``I()`` is the
    crossing of x with itself, i.e. just x, as in R)."""
