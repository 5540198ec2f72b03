"""Coverage of 95% Wald and profile intervals on simulated data (issue 9, part C; slow).

200 datasets from a known random-intercept model,

    y_ij = 1 + 0.5 x_ij + b_j + e_ij,   b_j ~ N(0, 0.8^2),   e_ij ~ N(0, 1),   20 groups of 10,

are fitted by REML; for each, the Wald interval of the slope and the intercept, and the profile
intervals of the slope, the random-intercept SD (.sig01) and sigma are computed.  Each empirical
coverage must lie within binomial error of 0.95: with 200 replicates the standard error is 0.015,
so [0.90, 0.99] is about +-3 standard errors.  A profile end that is wrong (an inner fit stuck on
a boundary, a bad bracket) or a Wald SE that is wrong shows up as under- or over-coverage.
"""
import warnings

import numpy as np
import pandas as pd
import pytest

import mixedpy as mp

N_REP, J, N_PER = 200, 20, 10
BETA, SD_B, SIGMA = np.array([1.0, 0.5]), 0.8, 1.0


def simulate(rng) -> pd.DataFrame:
    g = np.repeat(np.arange(J), N_PER)
    x = rng.normal(size=J * N_PER)
    y = BETA[0] + BETA[1] * x + rng.normal(0, SD_B, J)[g] + rng.normal(0, SIGMA, J * N_PER)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{k:02d}" for k in g]})


@pytest.mark.slow
def test_wald_and_profile_coverage_is_nominal():
    rng = np.random.default_rng(20261201)
    truth = {".sig01": SD_B, ".sigma": SIGMA, "(Intercept)": BETA[0], "x": BETA[1]}
    hits = {("Wald", "(Intercept)"): 0, ("Wald", "x"): 0, ("profile", "x"): 0, ("profile", ".sig01"): 0,
            ("profile", ".sigma"): 0}
    not_converged = 0
    for _ in range(N_REP):
        d = simulate(rng)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", mp.SingularFitWarning)
            fit = mp.lmer("y ~ x + (1 | g)", d)
        not_converged += not (fit.converged or fit.is_singular)
        wald = fit.confint(method="Wald")
        prof = fit.confint(method="profile", parm=[".sig01", ".sigma", "x"])
        for (method, name) in hits:
            ci = wald if method == "Wald" else prof
            lo, hi = ci.loc[name].to_numpy()
            hits[(method, name)] += bool(lo <= truth[name] <= hi)
    coverage = {k: v / N_REP for k, v in hits.items()}
    assert not_converged == 0
    for key, c in coverage.items():
        assert 0.90 <= c <= 0.99, f"{key} coverage {c:.3f} is outside [0.90, 0.99]: {coverage}"
