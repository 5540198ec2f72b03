"""``glmer`` on a Dask frame: every PIRLS iteration is one map-reduce pass over the partitions.

PIRLS (lme4 ``pwrssUpdate``; :meth:`mixedpy.glmm.GLMMProblem.pirls`) needs the rows at each
iteration twice: for the penalized deviance of the new iterate and for the cross-products at its
working weights.  Both depend on the rows only through eta, and eta is a function of the small
coefficient vectors (beta, b): so each pass ships them to the partitions, which evaluate eta,
mu and the deviance and sum the cross-products at those weights, in one pass.  The client factors
the reduced system (the engine's blocked Cholesky) and solves for the next iterate; the Laplace
objective is exact, as in memory.

The two stages are :func:`mixedpy.glmm.fit_glmm`'s (stage 1 with the nAGQ = 0 objective, stage 2
over (theta, beta)); :class:`DaskGLMMProblem` gives it the problem interface it uses, with eta
represented by :class:`Eta` (its coefficients) instead of a vector.  The partitions' arrays are
persisted (on the workers of a distributed Client) so that passes do not re-read the data.  Warm
starts (each PIRLS starting at the previous evaluation's eta, ``warm_start=True``) cut the passes.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import DataError
from ..families import Response, get_family
from ..glmer import GlmerFit
from ..glmm import MAXIT, TOL_PWRSS, PIRLSError, PirlsState, _first_iteration_failure, fit_glmm, pirls_iterations
from ..linalg.blocked import CrossProducts
from ..linalg.response import ResponseScaling
from ..optimize import emit
from ..residuals import check_type, glmm_residuals
from ..terms import b_from_u, relative_factors
from ..validation import check_bool, check_constant_response
from .lmer import _design
from .passes import Passes, in_partition, partitions, shared
from .plan import Model, combine_discovery, discover_partition, finish, make_plan, model_arrays
from .sums import (ColumnStats, Sums, TupleMap, combine_sums, dense_pairs, global_tuple_index, kept_columns,
                   level_structure, local_tuples, merge_tuples, system_sums, tuple_map)


# -- eta by its coefficients -------------------------------------------------------------------------
class _Offset:
    """Stands for the offset vector in :func:`fit_glmm`'s ``problem.offset + eta`` and
    ``st.eta - problem.offset``, which become a change of :attr:`Eta.offset`."""

    def __add__(self, eta: "Eta") -> "Eta":
        return dataclasses.replace(eta, offset=eta.offset + 1)


OFFSET = _Offset()


@dataclass(frozen=True, eq=False)
class Eta:
    """eta = offset * (the offset) [+ g(mustart) when ``init``] + X beta + sum_i Z_i b_i."""

    offset: int = 1
    init: bool = False
    beta: np.ndarray | None = None
    b_list: tuple | None = None

    def __sub__(self, other: _Offset) -> "Eta":
        if other is not OFFSET:
            return NotImplemented
        return dataclasses.replace(self, offset=self.offset - 1)

    def key(self) -> tuple:
        """A hashable value of the coefficients (two equal Eta give the same rows)."""
        return (self.offset, self.init, None if self.beta is None else self.beta.tobytes(),
                None if self.b_list is None else tuple(b.tobytes() for b in self.b_list))

    def fixed_rows(self, A: "GlmmArrays", family) -> np.ndarray:
        """offset * (the offset) [+ g(mustart)] + X beta."""
        eta = self.offset * A.offset
        if self.init:
            eta = eta + family.linkfun(family.mustart(A.resp))
        if self.beta is not None and self.beta.size:
            eta = eta + A.X @ self.beta
        return eta

    def rows(self, A: "GlmmArrays", family, fixed: np.ndarray | None = None) -> np.ndarray:
        """eta per row; ``fixed``: :meth:`fixed_rows`, when the caller has it."""
        eta = self.fixed_rows(A, family) if fixed is None else fixed
        if self.b_list is not None:
            random = 0.0
            for M, c, b in zip(A.Ms, A.codes, self.b_list):
                random = random + np.einsum("nk,nk->n", M, b[c])
            eta = eta + random
        return eta

    def same_fixed_part(self, other: "Eta") -> bool:
        """Whether the two have the same :meth:`fixed_rows`."""
        return (self.offset, self.init) == (other.offset, other.init) and (
            (self.beta is None and other.beta is None)
            or (self.beta is not None and other.beta is not None and np.array_equal(self.beta, other.beta)))


# -- the partitions' arrays and one pass over them ------------------------------------------------------
@dataclass
class GlmmArrays:
    """One partition's GLMM arrays (persisted between passes)."""

    index: pd.Index
    X: np.ndarray                # the kept fixed-effects columns
    resp: Response
    offset: np.ndarray
    codes: list
    Ms: list
    aic_const: np.ndarray
    #: two or more terms: the partition's own distinct level-code tuples and per row its tuple among
    #: them (:func:`~mixedpy.scale.sums.local_tuples`), until the rows' map to the fit's tuples replaces them
    local: tuple | None = None
    tuples: TupleMap | None = None   # the rows against the fit's level-code tuples


@dataclass(frozen=True)
class ArraysContext:
    model: Model
    family: object


def glmm_arrays(part, index: int, ctx: ArraysContext) -> GlmmArrays:
    rows, X, codes, Ms = model_arrays(part, ctx.model)
    resp = ctx.family.prepare(rows.y, rows.w, name=ctx.model.plan.parsed.response)
    J = [t.n_levels for t in ctx.model.terms]
    local = local_tuples(codes, J) if len(J) > 1 else None
    return GlmmArrays(rows.index, X, resp, rows.offset, codes, Ms, ctx.family.loglik_const(resp), local)


def _prepare_arrays(A: GlmmArrays, keep: np.ndarray, J: list[int], index: tuple | None) -> GlmmArrays:
    """A partition's arrays for the PIRLS passes: the kept columns of X, and the rows' map to the
    global tuple set (``index``, :func:`~mixedpy.scale.sums.global_tuple_index`) with two or more terms."""
    return dataclasses.replace(A, X=A.X[:, keep], local=None,
                               tuples=None if index is None else tuple_map(*A.local, J, index))


@dataclass
class DesignSummary:
    """What the fit checks before PIRLS: X's column statistics and the response's range; with two
    or more terms, the distinct level-code tuples that occur (sorted, int32 codes)."""

    n: int
    stats: ColumnStats
    y_range: np.ndarray
    J: list
    tuples: np.ndarray | None


def design_summary(A: GlmmArrays, index: int, J: list[int]) -> DesignSummary:
    y = A.resp.y[A.resp.weights > 0]
    rng = np.array([y.min(), y.max()]) if y.size else np.array([np.inf, -np.inf])
    return DesignSummary(A.X.shape[0], ColumnStats.of(A.X), rng, J, None if A.local is None else A.local[0])


def combine_summaries(a: DesignSummary, b: DesignSummary) -> DesignSummary:
    tuples = None if a.tuples is None else merge_tuples(a.tuples, {}, b.tuples, {}, a.J)[0]
    return DesignSummary(a.n + b.n, a.stats.combine(b.stats),
                         np.array([min(a.y_range[0], b.y_range[0]), max(a.y_range[1], b.y_range[1])]), a.J, tuples)


@dataclass(frozen=True)
class PassContext:
    model: Model
    family: object
    eta: Eta
    base: Eta
    joint: bool


@dataclass
class PassResult:
    """At one eta: the deviance and aic sums, whether the working quantities are finite, and the
    cross-products at the working weights."""

    deviance: float
    aic: float
    finite: bool
    sums: Sums | None


def pirls_partition(A: GlmmArrays, index: int, ctx: PassContext) -> PassResult:
    fam = ctx.family
    # the base has no random part; at fixed beta (stage 2) eta shares its offset + X beta, formed once
    base = ctx.base.fixed_rows(A, fam)
    eta = ctx.eta.rows(A, fam, base if ctx.eta.same_fixed_part(ctx.base) else None)
    mu = fam.linkinv(eta)
    dev = float(fam.dev_resids(A.resp.y, mu, A.resp.weights).sum())
    aic = fam.aic(A.resp, mu, A.aic_const)
    mu_eta = fam.mu_eta(eta)
    sqrt_w = mu_eta * np.sqrt(A.resp.weights / fam.variance(mu))
    z = eta - base + (A.resp.y - mu) / mu_eta
    finite = bool(np.all(np.isfinite(sqrt_w)) and np.all(np.isfinite(z)))
    sums = None
    if finite:
        X = A.X if ctx.joint else A.X[:, :0]
        sums = system_sums(ctx.model, X, z, sqrt_w, A.codes, A.Ms, stats=False, tuples=A.tuples)
    return PassResult(dev, aic, finite, sums)


def combine_results(a: PassResult, b: PassResult) -> PassResult:
    sums = combine_sums(a.sums, b.sums) if a.sums is not None and b.sums is not None else None
    return PassResult(a.deviance + b.deviance, a.aic + b.aic, a.finite and b.finite, sums)


@dataclass
class DaskPirlsState(PirlsState):
    """A :class:`PirlsState` whose eta is an :class:`Eta`; ``dev_resid`` holds only the sum and
    ``aic`` the family's aic at mu (the per-row vectors stay in the partitions)."""

    aic: float = np.nan


# -- the problem -----------------------------------------------------------------------------------
class DaskGLMMProblem:
    """The interface :func:`mixedpy.glmm.fit_glmm` uses, with the rows in persisted partitions."""

    def __init__(self, model: Model, family, arrays: list, keep: np.ndarray, passes: Passes, structure):
        self.model, self.family, self.arrays, self.passes = model, family, arrays, passes
        self.terms = model.terms
        self.kept = keep
        self.p = keep.size
        self.lower = np.concatenate([t.theta_lower() for t in self.terms])
        self.n_theta = len(self.lower)
        self.scalar = len(self.terms) == 1 and self.terms[0].k == 1
        self.offset = OFFSET
        self.n_evals = 0
        self.structure = structure   # the block structure of the level tuples that occur
        self._starts = {}     # the pass at the last PIRLS start, by (eta, base, joint)
        self._last = None     # (key, result) of the last pass

    def relative_factors(self, theta: np.ndarray) -> list[np.ndarray]:
        return relative_factors(self.terms, theta)

    def b_from_u(self, theta: np.ndarray, u: np.ndarray) -> list[np.ndarray]:
        return b_from_u(self.terms, self.relative_factors(theta), u)

    def initial_eta(self) -> Eta:
        return Eta(offset=1, init=True)

    # -- passes -------------------------------------------------------------------------------
    def _pass(self, eta: Eta, base: Eta, joint: bool, start: bool = False) -> PassResult:
        """One pass at eta, or the remembered result of a pass at the same (eta, base): PIRLS
        restarts from the same eta at every evaluation (lme4's lp0), or, with warm starts, from
        the last iterate of the previous one; ``start`` marks a PIRLS start, kept for the next."""
        key = (eta.key(), base.key(), joint)
        if key in self._starts:
            return self._starts[key]
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        ctx = PassContext(self.model, self.family, eta, base, joint)
        res = self.passes.run(self.arrays, pirls_partition, combine_results, ctx, "PIRLS")
        if start:
            self._starts = {key: res}
        self._last = (key, res)
        return res

    def _factor(self, res: PassResult, joint: bool, T_list):
        s = res.sums
        p = self.p if joint else 0
        cp = CrossProducts.from_sums(self.structure, s.diag, dense_pairs(s), s.columns, s.fixed,
                                     ResponseScaling.identity(p))
        return cp.factor(T_list)

    def _eta(self, T_list, u, b, joint: bool, beta) -> Eta:
        return Eta(offset=1, beta=np.asarray(b if joint else beta, dtype=float),
                   b_list=tuple(b_from_u(self.terms, T_list, u)))

    # -- PIRLS, as GLMMProblem.pirls with one pass per iteration ----------------------------------
    def pirls(self, theta, beta, eta_start: Eta, tol: float = TOL_PWRSS, maxit: int = MAXIT,
              refactor: bool = False) -> DaskPirlsState:
        theta = np.asarray(theta, dtype=float)
        T_list = self.relative_factors(theta)
        joint = beta is None
        base = Eta(offset=1, beta=None if joint else np.asarray(beta, dtype=float))

        def factor_at(state, first: bool):
            res = state[1]
            if not res.finite:
                if first:
                    raise PIRLSError(_first_iteration_failure(theta, "the working weights are not finite at"))
                raise PIRLSError(f"PIRLS reached non-finite working weights at theta = {np.round(theta, 6).tolist()}")
            return self._factor(res, joint, T_list)   # the pass at eta holds the cross-products at its weights

        def step(u, b):
            eta = self._eta(T_list, u, b, joint, beta)
            res = self._pass(eta, base, joint)
            return (eta, res), res.deviance + float(u @ u)

        def finish(state, u, b, factor, pdev, it):
            eta, res = state
            return DaskPirlsState(theta, np.asarray(b, float), u, eta, None, factor, np.array([res.deviance]),
                                  pdev, it, joint, aic=res.aic)

        start = (eta_start, self._pass(eta_start, base, joint, start=True))
        return pirls_iterations(theta, start, factor_at, step, finish, beta, tol, maxit, refactor)

    # -- objectives ---------------------------------------------------------------------------
    def laplace(self, st: DaskPirlsState) -> float:
        """ldL2 + ||u||^2 + aic(y, mu), as :meth:`GLMMProblem.laplace`."""
        return st.ldL2 + st.ussq + st.aic

    def objective(self, st: DaskPirlsState, nAGQ: int) -> float:
        return self.laplace(st)

    def joint_factor(self, st: DaskPirlsState):
        """The factor of the full (u, beta) system at the weights of mu-hat (one pass)."""
        res = self._pass(st.eta, Eta(offset=1), True)
        return self._factor(res, True, self.relative_factors(st.theta))


# -- the fit ----------------------------------------------------------------------------------------
def _glmm_rows(part, model: Model, family, beta, b_list, what: str) -> pd.Series:
    rows, X, codes, Ms = model_arrays(part, model)
    A = GlmmArrays(rows.index, X, family.prepare(rows.y, rows.w, name=model.plan.parsed.response),
                   rows.offset, codes, Ms, None)
    eta = Eta(offset=1, beta=beta, b_list=tuple(b_list)).rows(A, family)
    if what == "eta":
        return pd.Series(eta, index=rows.index, dtype=float)
    mu = family.linkinv(eta)
    if what == "fitted":
        return pd.Series(mu, index=rows.index, dtype=float)
    return pd.Series(glmm_residuals(family, A.resp.y, mu, A.resp.weights, eta, what), index=rows.index, dtype=float)


class DaskGlmerFit(GlmerFit):
    """A glmer fit on a Dask frame: lme4's numbers as in memory; ``fitted`` (mu-hat), ``resid``,
    ``residuals(type)`` and ``linear_predictor()`` are Dask Series computed per partition;
    ``passes`` counts the map-reduce passes the fit made, ``pass_seconds`` their wall-clock time."""

    pass_seconds = 0.0

    def __init__(self, design, problem: DaskGLMMProblem, result, messages, data_name, data, passes: int):
        super().__init__(design, problem, result, messages, data_name=data_name)
        self.data, self.model, self.passes = data, problem.model, passes

    def _rows(self, what: str):
        return self.data.map_partitions(_glmm_rows, self.model, self.family, self.beta,
                                        self.b_list, what, meta=pd.Series(dtype=float))

    @property
    def fitted(self):
        return self._rows("fitted")

    @property
    def resid(self):
        return self._rows("deviance")

    def residuals(self, type: str = "deviance"):
        """lme4's ``residuals(glmerMod, type)`` as a Dask Series."""
        return self._rows(check_type(type))

    def linear_predictor(self, newdata=None, re_form=None, allow_new_levels: bool = False):
        if newdata is None and re_form is None:
            return self._rows("eta")
        if newdata is None:
            raise NotImplementedError("re_form on the fit's own rows of a Dask glmer fit: pass newdata")
        return super().linear_predictor(newdata, re_form, allow_new_levels)


def glmer(formula: str, data, family="binomial", link: str | None = None, nAGQ: int = 1, weights=None,
          offset=None, start=None, calc_derivs: bool = True, warm_start: bool = False, persist: bool = True,
          progress: bool | None = None, env: dict | None = None, data_name: str = "data") -> DaskGlmerFit:
    """lme4's ``glmer`` (Laplace, or nAGQ = 0) on a ``dask.dataframe.DataFrame``.

    A level pass, a pass that builds (and with ``persist`` keeps, on the workers of a distributed
    Client) each partition's arrays, then one pass per PIRLS iteration (:class:`DaskGLMMProblem`).
    ``warm_start=True`` starts each PIRLS at the previous evaluation's eta: about a quarter fewer
    passes, but the objective then differs from lme4's (which restarts from a fixed eta, the
    default here) by PIRLS-path noise, ~1e-6 relative, enough to upset the finite-difference Hessian.
    """
    import dask

    fam = get_family(family, link)
    calc_derivs = check_bool(calc_derivs, "calc_derivs")
    if int(nAGQ) > 1:
        raise DataError("nAGQ > 1 (adaptive quadrature) is not available on a Dask frame; use nAGQ=1 (Laplace)")
    plan = make_plan(formula, data, weights=weights, offset=offset, env=env, allow_n_levels=True,
                     drop_zero_weights=False)
    passes = Passes(progress, desc="glmer")
    try:
        model = finish(plan, passes.run(data, discover_partition, combine_discovery, plan, "levels"))
        ctx = ArraysContext(model, fam)
        arrays = [dask.delayed(in_partition, pure=True)(glmm_arrays, part, i, ctx)
                  for i, part in enumerate(partitions(data))]
        if persist:
            arrays = list(dask.persist(*arrays))
        J = [t.n_levels for t in model.terms]
        summary = passes.run(arrays, design_summary, combine_summaries, J, "design")
        check_constant_response(summary.y_range, None, plan.parsed.response, f"a {fam.name} GLMM")
        keep = kept_columns(model.fixed_names, summary.stats)
        model = dataclasses.replace(model, kept=keep)
        tuples = summary.tuples if len(J) > 1 else np.zeros((0, len(J)), dtype=np.int32)
        structure = level_structure(model, tuples)
        # the global tuple index goes to each worker once
        index = None if len(J) == 1 else shared(global_tuple_index(tuples, J), "tuples")
        del summary, tuples
        arrays = [dask.delayed(_prepare_arrays, pure=True)(a, keep, J, index) for a in arrays]
        if persist:
            arrays = list(dask.persist(*arrays))
        problem = DaskGLMMProblem(model, fam, arrays, keep, passes, structure)
        result = fit_glmm(problem, nAGQ=nAGQ, start=start, calc_derivs=calc_derivs, warm_start=warm_start)
    finally:
        passes.close()
    emit(result.messages)
    # the pass that built the arrays is counted with the design pass that read them
    out = DaskGlmerFit(_design(model, keep), problem, result, [m for _, m in result.messages], data_name, data,
                       passes.count)
    out.pass_seconds = passes.seconds
    return out
