"""``bayes_lmer`` on a Dask frame: the collapsed sampler on the partitions' sums.

The Gaussian LMM posterior of :mod:`mixedpy.bayes.lmm_posterior` integrates b (and beta under
normal or flat priors) out with the blocked PLS factor, so, like the profiled REML criterion, it
reads the data only through the cross-products of [Z | Xc | y_tilde] (Bates et al. 2015, eqs.
16-18; ALGORITHMS.md 1.1, 7.5) and a few moments.  The two passes of :mod:`mixedpy.scale.lmer`
(levels; cross-products) give all of it:

* the cross-products of [Z | X | r] with r = y - offset - y_ref (:mod:`.sums`), from which the
  REML fit that starts the mode search is made exactly as ``mp.lmer`` makes it on a Dask frame;
* rstanarm's centering Xc = X - 1 xbar' (xbar from the column moments of X), applied to the
  sums as Xc = X C with C = I - e_int xbar': [Xc | r]'WZ = C' [X | r]'WZ and
  [Xc | r]'W[Xc | r] = C' [X | r]'W[X | r] C (the Z'Z blocks do not change and are shared);
* y_tilde = (r - Xc d) / s from those sums (:func:`.sums.scaled_system`), as in memory;
* sd(y), sd(x_k) and mean(y) for the autoscaled priors, sum(w), and sd(y - offset) for the start,
  from per-partition moments combined by Chan et al.'s update.

So the sampler runs on the reduced system and never touches the rows again; with the same seed its
draws equal those of the in-memory ``bayes_lmer`` up to the rounding of sums taken in another
order (the REML start agrees to about 1e-10, and so do the draws).  Predictions on the fitted rows
or on a Dask ``newdata`` are Dask arrays (draws x rows) computed partition by partition.
"""
from __future__ import annotations

import dataclasses
import uuid

import numpy as np
import pandas as pd

from ..bayes.lmm_posterior import LMMPosterior, LMMSystem
from ..bayes.model import Centering
from ..bayes.posterior import Posterior
from ..bayes.priors import resolve_priors
from ..errors import DataError
from ..newdata import selected_terms
from .lmer import _design, reduced_lmm
from .passes import partitions
from .plan import Model, model_arrays
from .sums import Sums, moment_rows, moment_sd, response_shift, scaled_system


def bayes_lmer(formula: str, data, *, prior, prior_intercept, prior_aux, prior_covariance, chains: int,
               iter: int, warmup: int, warmup_given: bool, seed, progress, weights, offset, nwalkers, thin,
               env: dict | None = None) -> "DaskPosterior":
    """:func:`mixedpy.bayes_lmer` on a ``dask.dataframe.DataFrame`` in two passes (arguments as there,
    already checked; ``weights``/``offset`` are column names)."""
    from ..bayes.fit import sample_lmm
    from ..lmer import fit_problem

    model, sums, problem, passes = reduced_lmm(formula, data, weights, offset, env, progress, "bayes_lmer",
                                               ("bayes_glmer", "bayes_lmer"))
    keep = model.kept
    design = _design(model, keep)
    fit = fit_problem(design, problem, reml=True, calc_derivs=False, quiet=True)
    system = reduced_system(model, sums, keep, response_shift(model), problem.cross)
    mean_x, sd_x = sums.stats.moments[1, keep], moment_sd(sums.stats.moments[:, keep])
    y_moments = sums.y_stats[:, [0]]
    # resolve_priors reads sd(y), mean(y) and sd(x_k) (ddof 1) of its arrays: two rows with those
    # moments give it the whole data's
    priors = resolve_priors("gaussian", "identity", moment_rows(y_moments[1], moment_sd(y_moments))[:, 0],
                            moment_rows(mean_x, sd_x), design.fixef_names, prior, prior_intercept, prior_aux,
                            prior_covariance)
    post = sample_lmm(LMMPosterior(design, priors, system), fit, chains=chains, iter=iter, warmup=warmup,
                      warmup_given=warmup_given, nwalkers=nwalkers, thin=thin, seed=seed, progress=progress)
    out = DaskPosterior.of(post, data, model)
    out.passes, out.pass_seconds = passes.count, passes.seconds
    return out


def centering_of(model: Model, sums: Sums) -> tuple[Centering, np.ndarray]:
    """rstanarm's centering over the kept columns, and C = I - e_int xbar' over all columns of X."""
    names = model.fixed_names
    p = len(names)
    C = np.eye(p)
    if "(Intercept)" not in names:
        return Centering(np.zeros(model.kept.size), None), C
    j = names.index("(Intercept)")
    xbar = sums.stats.moments[1].copy()
    xbar[j] = 0.0
    C[j] -= xbar
    kept = model.kept.tolist()
    return Centering(xbar[model.kept], kept.index(j)), C


def reduced_system(model: Model, sums: Sums, keep: np.ndarray, shift: float, cross) -> LMMSystem:
    """The posterior's :class:`LMMSystem` from the reduced sums: [Xc | y_tilde] in the last block row of
    a shallow copy of the REML fit's cross-products ``cross`` (its Z'WZ blocks, structure and the
    Gram operators formed from them shared: ``CrossProducts.with_structure``)."""
    centering, C = centering_of(model, sums)
    Cy = np.eye(C.shape[0] + 1)
    Cy[:-1, :-1] = C
    centered = dataclasses.replace(sums, fixed=Cy.T @ sums.fixed @ Cy, columns=[Cy.T @ c for c in sums.columns])
    response, columns, fixed = scaled_system(centered, keep, shift if centering.intercept is not None else 0.0,
                                             centering.intercept)
    cp = cross.with_structure(cross.structure)
    cp.A = dict(cross.A)
    T = cp.T
    for j, c in enumerate(columns):
        cp.A[T, j] = c
    cp.A[T, T] = fixed
    cp.response = response
    y_sd = float(moment_sd(sums.y_stats[:, [1]], ddof=0)[0])
    return LMMSystem(centering, response, cp, sums.n, sums.sum_w, y_sd)


# -- predictions computed per partition -----------------------------------------------------------------
def _fitted_partition(part: pd.DataFrame, index: int, model: Model, small: Posterior, chosen, noise_seed):
    """(draws, rows) linear predictor (plus Gaussian noise when ``noise_seed``) of a partition's rows
    used by the fit."""
    rows, X, codes, Ms = model_arrays(part, model)
    d = small._d
    eta = d["beta"] @ X.T + rows.offset
    for i in chosen:
        eta = eta + np.einsum("nk,snk->sn", Ms[i], d["b"][i][:, codes[i]])
    if noise_seed is None:
        return eta
    rng = np.random.default_rng([noise_seed, index])
    return eta + d["sigma"][:, None] * rng.standard_normal(eta.shape)


def _newdata_partition(part: pd.DataFrame, index: int, small: Posterior, kind: str, kw: dict, noise_seed):
    if kind == "predict":
        return small.posterior_predict(part, seed=[noise_seed, index], **kw)
    return small.posterior_linpred(part, **kw)


class DaskPosterior(Posterior):
    """A ``bayes_lmer`` posterior of a Dask frame: every summary, ``fixef``/``ranef``/``coef``,
    ``print`` and prediction on a pandas ``newdata`` as in memory.  ``posterior_linpred``/
    ``posterior_epred``/``posterior_predict`` without ``newdata`` (the fitted rows, those with
    missing values left out) or with a Dask ``newdata`` are Dask arrays of shape (draws, rows),
    computed partition by partition (their row counts are unknown until computed); the posterior
    draws sent to the workers are only the ones asked for.  ``passes`` counts the passes over the
    data and ``pass_seconds`` their time; what needs every row at once (pointwise log-likelihood,
    LOO, arviz) raises NotImplementedError."""

    passes = 0
    pass_seconds = 0.0

    @classmethod
    def of(cls, post: Posterior, data, model: Model) -> "DaskPosterior":
        out = cls.__new__(cls)
        out.__dict__.update(post.__dict__)
        out.data, out.model = data, model
        return out

    def _subset(self, idx: np.ndarray) -> Posterior:
        """A plain Posterior with only the draws ``idx`` (what a worker needs for its rows)."""
        small = Posterior.__new__(Posterior)
        small.__dict__.update({k: v for k, v in self.__dict__.items() if k not in ("draws", "data", "model")})
        small._d = {k: (v[idx] if isinstance(v, np.ndarray) else [a[idx] for a in v]) for k, v in self._d.items()}
        return small

    @staticmethod
    def _per_partition(frame, n_draws: int, func, *args):
        """A Dask array (n_draws, rows) with one chunk of columns per partition of ``frame``:
        ``func(partition, its number, *args)``."""
        import dask
        import dask.array as da

        # the posterior subset and the model are one key each of the graph (sent once per worker,
        # not once per task)
        args = [dask.delayed(a, name=f"mixedpy-posterior-{uuid.uuid4().hex}", traverse=False)
                if isinstance(a, (Posterior, Model)) else a for a in args]
        blocks = [da.from_delayed(dask.delayed(func, pure=True)(part, i, *args), shape=(n_draws, np.nan),
                                  dtype=float) for i, part in enumerate(partitions(frame))]
        return da.concatenate(blocks, axis=1)

    def _dask_draws(self, newdata, kind: str, draws, re_form, allow_new_levels, sample_new_levels, seed, offset):
        if offset is not None:
            raise DataError("offset= for Dask rows must be a column of the frame used by the formula's offset() "
                            "term; an array cannot be split into the partitions")
        if newdata is not None and allow_new_levels and sample_new_levels != "rstanarm":
            raise NotImplementedError(
                f"sample_new_levels={sample_new_levels!r} on a Dask newdata: a new level found in several "
                "partitions must get one effect per draw, which partitions drawn apart cannot share; use "
                "sample_new_levels='rstanarm' (one shared draw for all new levels) or a pandas newdata")
        rng = np.random.default_rng(seed)
        noise_seed = None
        if kind == "predict":
            # as Posterior.posterior_predict: the draws are chosen by a seed drawn from ``seed``
            noise_seed = int(rng.integers(2 ** 31))
            rng = np.random.default_rng(noise_seed)
        small = self._subset(self._draw_index(draws, rng))
        if newdata is None:
            return self._per_partition(self.data, small.n_draws, _fitted_partition, self.model, small,
                                       selected_terms(self.terms, re_form), noise_seed)
        kw = {"re_form": re_form, "allow_new_levels": allow_new_levels, "sample_new_levels": sample_new_levels}
        return self._per_partition(newdata, small.n_draws, _newdata_partition, small, kind, kw, noise_seed)

    def _rows_elsewhere(self, newdata) -> bool:
        from . import is_dask_frame

        return newdata is None or is_dask_frame(newdata)

    def posterior_linpred(self, newdata=None, draws=None, re_form=None, allow_new_levels=False,
                          sample_new_levels="gaussian", seed=None, offset=None):
        if self._rows_elsewhere(newdata):
            return self._dask_draws(newdata, "linpred", draws, re_form, allow_new_levels, sample_new_levels, seed,
                                    offset)
        return super().posterior_linpred(newdata, draws, re_form, allow_new_levels, sample_new_levels, seed, offset)

    def posterior_predict(self, newdata=None, draws=None, re_form=None, allow_new_levels=False,
                          sample_new_levels="gaussian", seed=None, offset=None):
        if self._rows_elsewhere(newdata):
            return self._dask_draws(newdata, "predict", draws, re_form, allow_new_levels, sample_new_levels, seed,
                                    offset)
        return super().posterior_predict(newdata, draws, re_form, allow_new_levels, sample_new_levels, seed, offset)

    def _needs_rows(self, what: str):
        raise NotImplementedError(f"{what} needs every row of the data at once, which a Dask fit does not hold; "
                                  "fit a sample of the rows in memory with mp.bayes_lmer(formula, ddf.compute())")

    @property
    def observed_response(self):
        self._needs_rows("observed_response")

    def log_likelihood(self):
        self._needs_rows("log_likelihood")

    def loo(self):
        self._needs_rows("loo")

    def to_inference_data(self):
        self._needs_rows("to_inference_data")
