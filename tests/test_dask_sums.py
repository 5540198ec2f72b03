"""The reduce step of the Dask cross-product pass (mixedpy.scale.sums): the merge of level-tuple
sets, their compact storage, and what the client keeps after forming the cross-products."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

dd = pytest.importorskip("dask.dataframe")

from mixedpy.scale.passes import map_reduce  # noqa: E402
from mixedpy.scale.plan import combine_discovery, discover_partition, finish, make_plan  # noqa: E402
from mixedpy.scale.sums import (Sums, _sum_by, _unique_rows, combine_sums, cross_products,  # noqa: E402
                                dense_pairs, global_tuple_index, kept_columns, local_tuples, merge_tuples,
                                partition_sums, response_shift, tuple_map)

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
    tuples, pairs = merge_tuples(a.tuples, a.pairs, b.tuples, b.pairs, J)
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


@pytest.mark.parametrize("J", [[50, 7], [40, 6, 3], [2 ** 21, 2 ** 21, 2 ** 21]])
def test_tuple_map_places_each_row_at_its_global_tuple(J):
    """A partition's map (its rows to its own distinct tuples, those to the global set) finds every
    row's tuple, by keys or, when mixed-radix keys could overflow (third case), by rank."""
    rng = np.random.default_rng(len(J))
    C = np.column_stack([rng.integers(0, min(j, 60), 500) for j in J])
    tuples, _ = _unique_rows(C, J)
    part = C[rng.permutation(500)[:120]]
    index = global_tuple_index(tuples, J)
    assert (index[0] is None) == (J[0] > 1000)
    m = tuple_map(*local_tuples([part[:, t] for t in range(len(J))], J), J, index)
    np.testing.assert_array_equal(tuples[m.at[m.inv]], part)
    assert m.size == tuples.shape[0] and m.at.dtype == np.int32


def _mapped_sums(rng, C, J, tuples, rows):
    part = C[rows]
    m = tuple_map(*local_tuples([part[:, t] for t in range(len(J))], J), J, global_tuple_index(tuples, J))
    v = rng.normal(size=(len(rows), 2, 1))
    sums = Sums(len(rows), 0.0, [np.zeros((j, 1, 1)) for j in J], None, {(1, 0): _sum_by(m.inv, v, m.at.size)},
                [np.zeros((1, j)) for j in J], np.zeros((1, 1)), None, None, np.zeros(2), pair_at=m.at,
                n_tuples=m.size)
    return sums, part, v


@pytest.mark.parametrize("sizes", [(5, 7, 9), (300, 250, 400), (5, 600, 3)])
def test_mapped_pair_sums_combine_to_the_sums_by_global_tuple(sizes):
    """Pair sums keyed by the global tuple set, combined in a tree (concatenated while small, then
    dense, whatever the mix), equal the sums over all rows by tuple."""
    rng = np.random.default_rng(sum(sizes))
    J = [50, 7]
    C = np.column_stack([rng.integers(0, j, 1000) for j in J])
    tuples, inv = _unique_rows(C, J)
    splits = np.split(rng.permutation(1000)[:sum(sizes)], np.cumsum(sizes)[:-1])
    parts = [_mapped_sums(rng, C, J, tuples, rows) for rows in splits]
    total = combine_sums(combine_sums(parts[0][0], parts[1][0]), parts[2][0])
    rows = np.concatenate(splits)
    want = _sum_by(inv[rows], np.concatenate([v for _, _, v in parts]), tuples.shape[0])
    np.testing.assert_allclose(dense_pairs(total)[1, 0], want, atol=1e-12)
    assert total.tuples is None and total.n_tuples == tuples.shape[0]
    # the inputs are not changed by the combine (Dask may hold them elsewhere)
    again = combine_sums(combine_sums(parts[0][0], parts[1][0]), parts[2][0])
    np.testing.assert_allclose(dense_pairs(again)[1, 0], want, atol=1e-12)


def test_pass_contexts_are_scattered_with_a_distributed_client():
    """With a Client, what every partition's task reads (a pass's context, the tuple index) is
    scattered to the workers, not put in the graph the scheduler keeps in its logs; without one it
    is a named delayed value."""
    distributed = pytest.importorskip("distributed")
    import dask
    from dask.delayed import Delayed

    from mixedpy.scale.passes import shared

    ctx = {"b": np.arange(10.0)}
    assert isinstance(shared(ctx, "context"), Delayed)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster, distributed.Client(cluster):
        got = shared(ctx, "context")
        assert isinstance(got, distributed.Future)
        np.testing.assert_array_equal(got.result()["b"], ctx["b"])
        total = map_reduce([dask.delayed(np.arange(3.0)), dask.delayed(np.arange(3.0))],
                           lambda part, i, c: float(part.sum() + c["b"].sum()), lambda a, b: a + b, ctx)
        assert total == 2 * (3.0 + 45.0)
