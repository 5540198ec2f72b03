"""Profile intervals are equivariant under a change of the predictors' units (issue: profile
tolerances relative to each parameter's scale).  Rescaling a predictor x -> x / k multiplies its
coefficient, its standard error and both interval ends by k; with tolerances in absolute units
(Brent's xtol = 1e-7 max(1, |beta-hat|), glmer's inner BOBYQA xtol_abs = 1e-6 on beta) the ends of
a coefficient of order 1e-6 (lmer) or 1e-4 (glmer) were located to a sizeable fraction of the width.
The response-side transforms y -> a + k y are tested in test_invariance.py."""
import warnings

import numpy as np
import pandas as pd
import pytest

import mixedpy as mp


def _data(seed=1, n=160, J=12, binary=False):
    rng = np.random.default_rng(seed)
    g = np.concatenate([np.arange(J), rng.integers(0, J, n - J)])
    x = np.round(rng.normal(size=n) * 8) / 8
    eta = -0.3 + 0.8 * x + 0.8 * rng.normal(size=J)[g]
    y = rng.binomial(1, 1 / (1 + np.exp(-eta))) if binary else eta + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "g": g.astype(str)})


def _relative_error(ci_k, ci_1, k, rows):
    """max |end(x / k) / k - end(x)| over the rows, relative to each row's width at k = 1."""
    a = ci_k.loc[rows].to_numpy() / k
    b = ci_1.loc[rows].to_numpy()
    return float(np.max(np.abs(a - b) / (b[:, 1] - b[:, 0])[:, None]))


@pytest.mark.filterwarnings("ignore::mixedpy.errors.ScaleWarning")  # x / k is badly scaled on purpose
@pytest.mark.parametrize("k", [1e-6, 1e6])
def test_lmer_profile_of_a_rescaled_predictor(k):
    d = _data()
    c1 = mp.lmer("y ~ x + (1 | g)", d).confint(method="profile")
    ck = mp.lmer("y ~ x + (1 | g)", d.assign(x=d.x / k)).confint(method="profile")
    assert _relative_error(ck, c1, k, ["x"]) < 1e-6
    # the other parameters do not depend on the units of x
    rest = [".sig01", ".sigma", "(Intercept)"]
    np.testing.assert_allclose(ck.loc[rest].to_numpy(), c1.loc[rest].to_numpy(), rtol=1e-6)


def test_glmer_profile_of_a_rescaled_predictor():
    d = _data(n=200, binary=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c1 = mp.glmer("y ~ x + (1 | g)", d, family="binomial").confint(method="profile")
        k = 1e4  # beta_x of order 1e-4: glmer's absolute xtol_abs = 1e-6 was 1% of its width
        ck = mp.glmer("y ~ x + (1 | g)", d.assign(x=d.x * k), family="binomial").confint(method="profile")
    assert _relative_error(ck, c1, 1 / k, ["x"]) < 1e-6
    rest = [".sig01", "(Intercept)"]
    np.testing.assert_allclose(ck.loc[rest].to_numpy(), c1.loc[rest].to_numpy(), rtol=1e-6)
