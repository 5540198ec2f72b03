"""The reduce step of the Dask cross-product pass (mixedpy.scale.sums): the merge of level-tuple
sets, their compact storage, and what the client keeps after forming the cross-products."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

dd = pytest.importorskip("dask.dataframe")

from mixedpy.scale.passes import map_reduce  # noqa: E402
from mixedpy.scale.plan import combine_discovery, discover_partition, finish, make_plan  # noqa: E402
from mixedpy.scale.sums import (Sums, _merge_tuples, _sum_by, _unique_rows, combine_sums, cross_products,  # noqa: E402
                                kept_columns, partition_sums, response_shift)

from test_dask_lmer import DATA  # noqa: E402


def _tuple_sums(rng, n, J):
    C = np.column_stack([rng.integers(0, j, n) for j in J])
    tuples, inv = _unique_rows(C, J)
    v = rng.normal(size=(n, 2, 1))
    sums = Sums(n, 0.0, [np.zeros((j, 1, 1)) for j in J], tuples, {(1, 0): _sum_by(inv, v, tuples.shape[0])},
                [], np.zeros((1, 1)), None, None, np.zeros(2))
    return sums, C, v


@pytest.mark.parametrize("na, nb", [(100, 30), (5, 200), (0, 10), (300, 300), (0, 0)])
def test_merge_equals_the_union_by_sorting(na, nb):
    rng = np.random.default_rng(na + 7 * nb)
    J = [50, 7]
    (a, Ca, va), (b, Cb, vb) = _tuple_sums(rng, na, J), _tuple_sums(rng, nb, J)
    tuples, pairs = _merge_tuples(a, b, J)
    want, inv = _unique_rows(np.vstack([Ca, Cb]), J)
    np.testing.assert_array_equal(tuples, want)
    np.testing.assert_allclose(pairs[1, 0], _sum_by(inv, np.concatenate([va, vb]), want.shape[0]), atol=1e-12)
    assert tuples.dtype == np.int32


def test_the_client_keeps_no_per_tuple_arrays():
    """After the cross-products are formed, the level tuples, their pair sums and the structure's
    per-tuple positions are released (at 20M rows they are 15.7M tuples, ~0.4 GiB)."""
    ddf = dd.from_pandas(DATA.dropna(), npartitions=3)
    plan = make_plan("y ~ x + (1 | a) + (1 | b)", ddf)
    model = finish(plan, map_reduce(ddf, discover_partition, combine_discovery, plan))
    sums = map_reduce(ddf, partition_sums, combine_sums, model)
    assert sums.tuples.dtype == np.int32 and sums.tuples.shape[1] == 2
    keep = kept_columns(model.fixed_names, sums.stats)
    cp = cross_products(dataclasses.replace(model, kept=keep), sums, keep, response_shift(model))
    assert sums.tuples is None and sums.pairs is None and cp.structure.a_pos == {}
    assert sums.sum_w == sums.n == len(DATA.dropna())
