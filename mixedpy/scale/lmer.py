"""``lmer`` on a Dask frame: a level pass, a cross-product pass, then the in-memory optimization.

The fit is lme4's (Bates et al. 2015): the profiled criterion depends on the data only through
the cross-products of [Z | X | y], which :mod:`.sums` forms partition by partition.  The
optimizer, the convergence checks and the fit object are those of :func:`mixedpy.lmer.fit_problem`
and :class:`~mixedpy.results.LmerFit`; only what needs the rows (``fitted``, ``resid``,
``predict``) is different: it returns Dask collections computed partition by partition.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import DataError
from ..formula.design import ModelDesign, _response_parts
from ..lmm import LMMProblem
from ..newdata import selected_terms
from ..results import LmerFit, MixedModelFit
from ..validation import check_bool, check_constant_response
from .passes import Passes
from .plan import Model, combine_discovery, discover_partition, finish, make_plan, model_arrays
from .sums import combine_sums, cross_products, kept_columns, partition_sums, response_shift, theta_start


@dataclass(frozen=True)
class DaskDesign(ModelDesign):
    """A :class:`ModelDesign` whose rows stay in the Dask frame: X, y and the terms' codes are empty,
    ``n`` is the number of rows used."""

    n: int = 0

    @property
    def nobs(self) -> int:
        return self.n


class ReducedLMMProblem(LMMProblem):
    """An :class:`LMMProblem` built from reduced cross-products instead of rows (no X, y, codes)."""

    def __init__(self, terms, cross, n: int, ldW: float, start: np.ndarray | None):
        self.terms = terms
        self.X = self.y = self.weights = self.offset = self.blocks = None
        self.n, self.p = n, cross.p
        self.ldW = ldW
        self.cross = cross
        self.lower = np.concatenate([t.theta_lower() for t in terms])
        self.n_evals = 0
        self._start = start

    def start_theta(self) -> np.ndarray:
        if self._start is not None:
            return self._start.copy()
        return np.concatenate([t.theta_start() for t in self.terms])


def _design(model: Model, keep: np.ndarray) -> DaskDesign:
    p = keep.size
    names = [model.fixed_names[j] for j in keep]
    dropped = [n for j, n in enumerate(model.fixed_names) if j not in set(keep.tolist())]
    plan = model.plan
    return DaskDesign(formula=plan.formula, parsed=plan.parsed, response_name=plan.parsed.response,
                      y=np.zeros(0), X=np.zeros((0, p)), fixef_names=names, terms=model.terms, weights=None,
                      offset=np.zeros(0), row_index=pd.RangeIndex(0), n_dropped=model.n_missing,
                      fixed_spec=model.fixed_spec, kept_columns=keep, dropped_columns=dropped, env=plan.env,
                      n=model.n)


def lmer(formula: str, data, REML: bool = True, weights=None, offset=None, start=None,
         optimizer: str = "bobyqa", calc_derivs: bool = True, progress: bool | None = None,
         env: dict | None = None, data_name: str = "data") -> "DaskLmerFit":
    """lme4's ``lmer`` on a ``dask.dataframe.DataFrame`` in two passes over the data.

    Pass 1 finds the levels, the complete rows and a reference response value; pass 2 sums each
    partition's cross-products (tree-reduced by Dask, on the active scheduler or
    ``dask.distributed.Client``).  The optimization over theta then uses only the reduced system,
    so the fit equals the in-memory one (to rounding) for any partitioning.  ``weights`` and
    ``offset`` are column names; ``progress`` draws a bar over the passes (:mod:`mixedpy.progress`).
    """
    from ..lmer import fit_problem

    REML = check_bool(REML, "REML")
    model, sums, problem, passes = reduced_lmm(formula, data, weights, offset, env, progress, "lmer",
                                               ("glmer", "a linear mixed model"))
    fit = fit_problem(_design(model, model.kept), problem, reml=REML, start=start, optimizer=optimizer,
                      calc_derivs=calc_derivs, data_name=data_name)
    out = DaskLmerFit(fit, data, model, passes.count)
    out.pass_seconds = passes.seconds
    return out


def reduced_lmm(formula: str, data, weights, offset, env, progress, what: str, says: tuple[str, str]):
    """The two passes of a Gaussian LMM on a Dask frame and what they give: (the model with its kept
    fixed-effects columns, the reduced sums (their level tuples and pair sums consumed), the
    :class:`ReducedLMMProblem`, the :class:`Passes`).  ``what`` names the caller in errors and on the
    progress bar; ``says`` = (the function for cbind responses, the model for a constant one)."""
    plan = make_plan(formula, data, weights=weights, offset=offset, env=env)
    if len(_response_parts(plan.parsed.response)) > 1:
        raise DataError(f"{what} needs a single response; cbind responses are for {says[0]} with family='binomial'")
    passes = Passes(progress, total=2, desc=what)
    try:
        found = passes.run(data, discover_partition, combine_discovery, plan, "levels")
        model = finish(plan, found)
        # the range of y over the rows used tells whether it has more than one value
        check_constant_response(found.y_range, None, plan.parsed.response, says[1])
        sums = passes.run(data, partition_sums, combine_sums, model, "cross-products")
    finally:
        passes.close()
    keep = kept_columns(model.fixed_names, sums.stats)
    model = dataclasses.replace(model, kept=keep)
    cross = cross_products(model, sums, keep, response_shift(model))
    return model, sums, ReducedLMMProblem(model.terms, cross, sums.n, sums.ldW, theta_start(model, sums)), passes


# -- outputs computed per partition -----------------------------------------------------------------
class _Predictor(MixedModelFit):
    """The part of a fit that prediction on new rows needs (small, sent to the workers)."""

    def __init__(self, design, beta, b_list):
        self.design, self.beta, self.b_list = design, beta, b_list


def _eta_partition(part: pd.DataFrame, model: Model, beta, b_list, chosen, what: str) -> pd.Series:
    """Fitted values (or residuals) of a partition's rows used by the fit, indexed as the partition."""
    rows, X, codes, Ms = model_arrays(part, model)
    eta = X @ beta + rows.offset
    for i in chosen:
        eta = eta + np.einsum("nk,nk->n", Ms[i], b_list[i][codes[i]])
    out = rows.y - eta if what == "resid" else eta
    return pd.Series(out, index=rows.index, dtype=float)


def _predict_partition(part: pd.DataFrame, predictor: _Predictor, re_form, allow_new_levels, type) -> pd.Series:
    values = predictor.predict(part, re_form=re_form, allow_new_levels=allow_new_levels, type=type)
    return pd.Series(values, index=part.index, dtype=float)


class DaskLmerFit(LmerFit):
    """An lmer fit on a Dask frame: lme4's numbers as in memory; ``fitted``, ``resid`` and
    ``predict`` are Dask Series computed partition by partition (rows with missing values are
    left out, as in the fit); ``passes`` counts the passes over the data the fit made and
    ``pass_seconds`` is their wall-clock time (the rest of the fit is the optimization)."""

    pass_seconds = 0.0

    def __init__(self, fit: LmerFit, data, model: Model, passes: int):
        super().__init__(fit.design, fit.problem, fit.reml, fit.opt, fit.state, fit.messages, fit.data_name,
                         control=getattr(fit, "control", None))
        self.data, self.model, self.passes = data, model, passes

    def _rows_series(self, what: str, chosen):
        return self.data.map_partitions(_eta_partition, self.model, self.beta, self.b_list, chosen, what,
                                        meta=pd.Series(dtype=float))

    @property
    def fitted(self):
        return self._rows_series("fitted", list(range(len(self.terms))))

    @property
    def resid(self):
        return self._rows_series("resid", list(range(len(self.terms))))

    def linear_predictor(self, newdata=None, re_form=None, allow_new_levels: bool = False):
        from . import is_dask_frame

        if newdata is None:
            return self._rows_series("fitted", selected_terms(self.terms, re_form))
        if is_dask_frame(newdata):
            return newdata.map_partitions(_predict_partition, _Predictor(self.design, self.beta, self.b_list),
                                          re_form, allow_new_levels, "link", meta=pd.Series(dtype=float))
        return super().linear_predictor(newdata, re_form, allow_new_levels)

    def refit(self, reml: bool | None = None, newresp=None, **kwargs) -> "LmerFit":
        """The same model by REML or ML from the reduced system (no pass over the data); a new
        response needs new cross-products: fit again with the new column."""
        if newresp is not None:
            raise NotImplementedError("refit(newresp=...) on a Dask fit: add the response as a column and "
                                      "call lmer again")
        fit = super().refit(reml=reml, **kwargs)
        return fit if fit is self or isinstance(fit, DaskLmerFit) else DaskLmerFit(fit, self.data, self.model, 0)
