"""Exceptions and warnings raised by mixedpy, each naming the problem it reports."""


class MixedpyError(ValueError):
    """Base class for input errors."""


class FormulaError(MixedpyError):
    """A formula that cannot be parsed or refers to something that is not there."""


class DataError(MixedpyError):
    """Data that cannot be used for the requested model."""


class ConvergenceWarning(UserWarning):
    """The optimizer stopped somewhere that may not be the optimum; the message says what to do."""


class SingularFitWarning(UserWarning):
    """A variance component is estimated at (or within 1e-4 of) zero."""
