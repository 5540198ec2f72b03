"""The worked analyses in examples/: each runs (quick settings, PNGs into a temporary folder) and the
facts it illustrates hold.  lme4 numbers come from tests/reference/lme4/worked_analyses.json
(tests/reference/gen/worked_cases.R)."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedpy as mp
from conftest import load_ref
from test_plot import _drawn, _xtick_labels   # drawn tick labels, read as a reader sees them

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(name: str, tmp_path_factory):
    out = tmp_path_factory.mktemp(name)
    return _load(name).main(outdir=out, quick=True), out


def _ref(case: str) -> dict:
    return load_ref("worked_analyses")[case]


def _sd(ref: dict, grp: str, var1: str | None = None) -> float:
    for row in ref["varcorr"]:
        if row["grp"] == grp and row.get("var2") is None and (var1 is None or row.get("var1") == var1):
            return row["sdcor"]
    raise KeyError((grp, var1))


def _pngs_ok(facts, out: Path, expected: int):
    pngs = [Path(p) for p in facts["pngs"]]
    assert len(pngs) == expected
    for p in pngs:
        assert p.parent == out and p.stat().st_size > 5000
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------------
# radon
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def radon(tmp_path_factory):
    return _run("radon", tmp_path_factory)


def test_radon_matches_lme4(radon):
    facts, _ = radon
    ref = _ref("radon")
    assert facts["mu"] == pytest.approx(ref["fixef"]["(Intercept)"], rel=1e-5)
    assert facts["sigma_y"] == pytest.approx(ref["sigma"], rel=1e-4)
    assert facts["sigma_alpha"] == pytest.approx(_sd(ref, "county"), rel=1e-4)
    assert facts["floor_effect"] == pytest.approx(_ref("radon_floor")["fixef"]["floor"], rel=1e-4)
    assert facts["n_counties"] == 85


def test_radon_shrinkage_weight_facts(radon):
    facts, out = radon
    # lme4's county intercepts are exactly the precision-weighted averages of Gelman & Hill eq. 12.1
    assert facts["formula_max_abs_error"] < 1e-8
    assert facts["weights_increase_with_n"]
    assert facts["weight_smallest_county"] < 0.2
    assert facts["weight_largest_county"] > 0.9
    assert facts["partial_between_raw_and_mu"]
    assert facts["mean_shift_small"] > 3 * facts["mean_shift_large"]
    # the weight is 1/2 where n = sigma_y^2 / sigma_alpha^2
    mod = _load("radon")
    w = mod.shrinkage_weights(facts["n_half_weight"], facts["sigma_y"], facts["sigma_alpha"])
    assert w == pytest.approx(0.5)
    assert "floor       -0.66     0.07" in facts["display_floor"]
    _pngs_ok(facts, out, 3)


def test_radon_plots_share_one_tick_style(radon):
    """Both pictures with county size on the x axis label it 1, 2, 5, 10, 20, 50, 100 (the weights
    plot had 10^0, 10^1, 10^2 beside the shrinkage plot's 1.0, 2.0, 5.0)."""
    facts, _ = radon
    mod = _load("radon")
    n_j = mp.datasets.load("radon").groupby("county").size().to_numpy()
    weights = _drawn(mod.weights_figure(n_j, facts["sigma_y"], facts["sigma_alpha"])).axes[0]
    shrink = _drawn(mp.plot.shrinkage(facts["fit"]).figure).axes[0]
    assert _xtick_labels(weights) == ["1", "2", "5", "10", "20", "50", "100"]
    assert _xtick_labels(shrink)[:6] == _xtick_labels(weights)[:6]
    # the counties drawn on the curve are the weights of their sizes
    pts = [ln for ln in weights.get_lines() if ln.get_marker() == "o"][0]
    np.testing.assert_allclose(pts.get_ydata(), mod.shrinkage_weights(n_j, facts["sigma_y"], facts["sigma_alpha"]))


def test_radon_runs_as_a_script(tmp_path):
    env = {"PATH": "", "HOME": str(tmp_path), "PYTHONPATH": str(EXAMPLES.parent)}
    res = subprocess.run([sys.executable, str(EXAMPLES / "radon.py")], capture_output=True, text=True,
                         timeout=300, env={**env, "MPLBACKEND": ""}, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "weight formula reproduces lme4's county intercepts" in res.stdout
    assert "PNGs written: radon_caterpillar.png, radon_shrinkage.png, radon_weights.png" in res.stdout


# ---------------------------------------------------------------------------------------------
# house prices
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def houses(tmp_path_factory):
    return _run("house_prices", tmp_path_factory)


def test_house_prices_match_lme4(houses):
    facts, _ = houses
    for key, case in (("fixef_m2", "house_2"), ("fixef_m3", "house_3")):
        ref = _ref(case)["fixef"]
        np.testing.assert_allclose([facts[key][k] for k in ref], list(ref.values()), rtol=1e-4)
    ref1 = _ref("house_1")
    assert facts["sigma_zip"] == pytest.approx(_sd(ref1, "zipcode"), rel=1e-4)
    assert facts["sigma_y"] == pytest.approx(ref1["sigma"], rel=1e-4)
    # arm's display of the random-slope ML fit: R's layout line by line (R wraps its call over two
    # lines), numbers equal to the optimum's ~1e-4
    ours = facts["display"].splitlines()[1:]
    theirs = _ref("house_3")["display"].splitlines()[2:]
    assert len(ours) == len(theirs)
    assert ours[-4:] == theirs[-4:]        # ---, number of obs, AIC/DIC, deviance
    for a, b in zip(ours, theirs):
        assert [w for w in a.split() if not _is_num(w)] == [w for w in b.split() if not _is_num(w)]
        np.testing.assert_allclose([float(w) for w in a.split() if _is_num(w)],
                                   [float(w) for w in b.split() if _is_num(w)], rtol=1e-4)


def _is_num(word: str) -> bool:
    try:
        float(word)
        return True
    except ValueError:
        return False


def test_house_prices_facts(houses):
    facts, out = houses
    assert facts["partial_between_raw_and_mu"]
    assert facts["sim_sd_vs_n_corr"] < -0.5           # more sales, tighter zipcode mean
    # a house in a new zipcode: sd sqrt(sigma_y^2 + sigma_zip^2), up to sim's extra uncertainty
    assert facts["new_zip_sd"] == pytest.approx(facts["new_zip_sd_theory"], rel=0.08)
    assert facts["new_zip_mean_sd"] > 3 * facts["max_existing_zip_sd"]
    assert facts["bayes_vs_lmer_max_rel_diff"] < 0.05
    cmp = facts["comparison"]
    assert {"lmer", "median", "mad_sd"} <= set(cmp.columns)
    assert cmp.loc["sigma", "median"] == pytest.approx(cmp.loc["sigma", "lmer"], rel=0.05)
    _pngs_ok(facts, out, 2)


# ---------------------------------------------------------------------------------------------
# artists
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def artists(tmp_path_factory):
    return _run("artists", tmp_path_factory)


def test_artists_match_lme4(artists):
    facts, _ = artists
    ref = _ref("artists")
    assert facts["mu"] == pytest.approx(ref["fixef"]["(Intercept)"], rel=1e-5)
    assert facts["sigma_mu"] == pytest.approx(_sd(ref, "artist"), rel=1e-4)
    assert facts["sigma_y"] == pytest.approx(ref["sigma"], rel=1e-4)
    assert facts["complete_pooling"] == pytest.approx(ref["complete_pooling_mean"])


def test_artists_pooling_and_prediction_facts(artists):
    facts, out = artists
    assert facts["partial_between"]
    assert facts["pull_small"] > 2 * facts["pull_large"]
    assert facts["between_share"] + facts["within_share"] == pytest.approx(1.0)
    assert 0.4 < facts["between_share"] < 0.65
    for how in ("lmer", "bayes"):
        # a new artist is less certain than one with 40 songs, and centred near the grand mean
        assert facts["width_new"][how] > facts["width_existing"][how]
        assert facts["new_artist_median"][how] == pytest.approx(facts["mu"], abs=3.0)
        assert facts["frank_ocean_median"][how] == pytest.approx(69.4, abs=3.0)
    _pngs_ok(facts, out, 5)


# ---------------------------------------------------------------------------------------------
# people over time
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def people(tmp_path_factory):
    return _run("people_over_time", tmp_path_factory)


def test_people_match_lme4(people):
    facts, _ = people
    for name, case in (("m2", "people_2"), ("m3", "people_3"), ("m4", "people_4")):
        ref = _ref(case)
        got = facts["fixef"][name]
        np.testing.assert_allclose([got[k] for k in ref["fixef"]], list(ref["fixef"].values()),
                                   rtol=1e-4, atol=1e-4 * max(abs(v) for v in ref["fixef"].values()))
    corr = [r for r in _ref("people_4")["varcorr"] if r.get("var2") is not None][0]["sdcor"]
    assert facts["slope_intercept_cor"] == pytest.approx(corr, abs=2e-3)
    assert not facts["m4_singular"]
    assert facts["n_obs"] == 216 and facts["n_people"] == 88


def test_people_partial_pooling_wins_loo(people):
    facts, out = people
    assert facts["elpd_diff"] > 0
    assert facts["p_loo_no_pooling"] > facts["p_loo_partial"]
    assert facts["loo"].shape == (2, 5)
    _pngs_ok(facts, out, 2)


def test_people_lines_stay_within_each_persons_weeks(people):
    """Each fitted line runs from that person's first to last measured week, at the fitted values
    of partial pooling there, and no further."""
    from matplotlib.collections import LineCollection

    facts, _ = people
    m4 = facts["fits"][3]
    data = mp.datasets.load("mlm").dropna(subset=["week", "group"])
    fig = _load("people_over_time").person_lines_figure(data, m4)
    (lines,) = [c for c in fig.axes[0].collections if isinstance(c, LineCollection)]
    segs = np.asarray(lines.get_segments())                 # (people, 2 ends, xy)
    span = data.groupby("id")["week"].agg(["min", "max"]).loc[mp.coef(m4)["id"].index]
    assert len(segs) == len(span) == 88                     # everyone has two weeks or more
    np.testing.assert_allclose(segs[:, 0, 0], span["min"].to_numpy())
    np.testing.assert_allclose(segs[:, 1, 0], span["max"].to_numpy())
    assert segs[:, :, 0].max() == data["week"].max() and (segs[:, 1, 0] < data["week"].max()).any()
    # the line's ends are the model's fitted values for that person at those weeks
    ends = data.groupby("id").agg(week=("week", "max"), group=("group", "first")).loc[span.index].reset_index()
    np.testing.assert_allclose(segs[:, 1, 1], np.asarray(m4.predict(ends)), rtol=1e-10)


def test_no_pooling_loglik_posterior_moments():
    """The conjugate no-pooling posterior: draws of beta centre on OLS with sd se * sqrt(nu/(nu-2))."""
    mod = _load("people_over_time")
    rng = np.random.default_rng(0)
    n = 60
    X = np.column_stack([np.ones(n), rng.normal(size=(n, 2))])
    y = X @ [1.0, 2.0, -1.0] + rng.normal(size=n)
    ll = mod.no_pooling_loglik(y, X, 4000, np.random.default_rng(1))
    assert ll.shape == (4000, n) and np.isfinite(ll).all()
    # mean log density near the OLS fit's: -0.5 log(2 pi s^2) - 0.5 (n - p)/n, within MC error
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    s2 = np.sum((y - X @ beta) ** 2) / n
    assert ll.sum(axis=1).mean() == pytest.approx(-0.5 * n * (np.log(2 * np.pi * s2) + 1), abs=4.0)


# ---------------------------------------------------------------------------------------------
# classrooms (Bayesian GLMM: slow)
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_classrooms_partial_pooling_wins_for_small_classes(tmp_path_factory):
    facts, out = _run("classrooms", tmp_path_factory)
    assert facts["partial_beats_no_pooling_small"]
    adv = facts["advantage_by_size"]
    assert adv[5] > adv[35]                     # the gain shrinks as classes grow
    assert facts["share_partial_lower"][5] >= 0.8  # and holds in most single schools, not every one
    assert 0.8 < facts["glmer_sigma"] < 2.5 and 0.8 < facts["glmer_alpha_bar"] < 2.5
    assert facts["bayes_alpha_bar"] == pytest.approx(facts["glmer_alpha_bar"], abs=0.4)
    assert facts["bayes_vs_glmer_max_abs_diff"] < 0.1
    ref = _ref("reedfrogs")
    assert mp.fixef(facts["frog_fit"]).iloc[0] == pytest.approx(ref["fixef"]["(Intercept)"], rel=1e-4)
    assert mp.sigma_hat(facts["frog_fit"])["tank"].iloc[0] == pytest.approx(_sd(ref, "tank"), rel=1e-4)
    _pngs_ok(facts, out, 3)


def test_classrooms_error_figure_draws_every_school():
    """The error picture shows each simulated school's mean error per class size, their averages
    and the count of schools where partial pooling erred less: the claim of the script, which is
    about the average, and not one school that may go either way."""
    mod = _load("classrooms")
    rng = np.random.default_rng(3)
    reps = [pd.DataFrame({"no_pooling": rng.uniform(0.05, 0.15, 4), "glmer": rng.uniform(0.05, 0.15, 4)},
                         index=pd.Index(list(mod.SIZES), name="size")) for _ in range(6)]
    ax = mod.error_figure(reps).axes[0]
    no_pool = [ln for ln in ax.get_lines() if ln.get_marker() == "o" and ln.get_markerfacecolor() == "white"]
    partial = [ln for ln in ax.get_lines() if ln.get_marker() == "o" and ln.get_markerfacecolor() != "white"]
    assert len(no_pool) == len(partial) == 4
    for i, n in enumerate(mod.SIZES):
        np.testing.assert_allclose(no_pool[i].get_ydata(), [r.loc[n, "no_pooling"] for r in reps])
        np.testing.assert_allclose(partial[i].get_ydata(), [r.loc[n, "glmer"] for r in reps])
    means = sorted(float(seg[0, 1]) for c in ax.collections for seg in c.get_segments())
    want = sorted(float(np.mean([r.loc[n, col] for r in reps])) for n in mod.SIZES for col in ("no_pooling", "glmer"))
    np.testing.assert_allclose(means, want)
    wins = [sum(r.loc[n, "glmer"] < r.loc[n, "no_pooling"] for r in reps) for n in mod.SIZES]
    notes = [t.get_text() for t in ax.texts]
    assert notes == [f"partial pooling lower\nin {w} of 6 schools" for w in wins]
    assert "6 simulated schools" in ax.get_title()


def test_classrooms_shrinkage_has_ticks_at_every_class_size():
    mod = _load("classrooms")
    students, _ = mod.simulate_classrooms(np.random.default_rng(5))
    fit = mp.glmer(mod.MODEL, mod.aggregate(students), family="binomial")
    ax = _drawn(mp.plot.shrinkage(fit).figure).axes[0]
    assert _xtick_labels(ax) == ["5", "10", "25", "35"]


def test_classroom_simulation_design():
    mod = _load("classrooms")
    students, classes = mod.simulate_classrooms(np.random.default_rng(1))
    assert len(classes) == 60 and sorted(classes["size"].unique()) == [5, 10, 25, 35]
    assert len(students) == 15 * (5 + 10 + 25 + 35)
    agg = mod.aggregate(students)
    assert agg.groupby("classroom")["n"].sum().to_dict() == classes.set_index("classroom")["size"].to_dict()
    assert agg["passed"].sum() == students["passed"].sum()
