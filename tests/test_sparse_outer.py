"""mixedpy.linalg.outer.sparse_outer: M M' by the sparse product or by chunked dense dsyrk, the
same matrix either way (a kernel against its dense equivalent)."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from mixedpy.linalg import outer


@pytest.mark.parametrize("n, m, density", [(30, 500, 0.02), (30, 500, 0.6), (1, 40, 0.5), (50, 7, 1.0), (12, 0, 0.1)])
@pytest.mark.parametrize("chunk", [None, 37])
def test_sparse_outer_equals_the_dense_product(n, m, density, chunk, monkeypatch):
    if chunk is not None:     # several chunks of columns, one of them ragged
        monkeypatch.setattr(outer, "CHUNK_ENTRIES", chunk * n)
    M = sp.random(n, m, density=density, format="csr", random_state=n + m)
    want = M.toarray() @ M.toarray().T
    got = outer.sparse_outer(M)
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)
    np.testing.assert_array_equal(got, got.T)


def test_the_dense_form_is_chosen_for_dense_columns_and_the_sparse_for_sparse(monkeypatch):
    """The choice follows the cost model: sum of squared column counts against n^2 m / 2."""
    used, real = [], outer.dsyrk

    def recording(*args, **kwargs):
        used.append(True)
        return real(*args, **kwargs)

    monkeypatch.setattr(outer, "dsyrk", recording)
    outer.sparse_outer(sp.random(200, 2000, density=0.5, format="csr", random_state=1))
    assert used
    used.clear()
    outer.sparse_outer(sp.random(200, 2000, density=0.01, format="csr", random_state=1))
    assert not used
