"""Progress bars (issue 14): one helper (mixedpy.progress) decides for profile, bootstrap, MCMC and
Dask passes; True draws, False never, None (default) only in an interactive session."""
import re
import sys
from pathlib import Path

import pytest

import mixedpy as mp
from mixedpy import progress as prog

PKG = Path(mp.__file__).resolve().parent


@pytest.fixture(scope="module")
def sleep_fit():
    return mp.lmer("Reaction ~ Days + (1 | Subject)", mp.datasets.load("sleepstudy"))


def test_default_is_quiet_in_a_script(monkeypatch):
    monkeypatch.delattr(sys, "ps1", raising=False)
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    assert not prog.interactive()
    assert prog.show_progress(None) is False
    assert prog.show_progress(True) is True
    assert prog.show_progress(False) is False


def test_prompt_and_ipython_count_as_interactive(monkeypatch):
    monkeypatch.setattr(sys, "ps1", ">>> ", raising=False)
    assert prog.show_progress(None) is True
    monkeypatch.delattr(sys, "ps1")

    class FakeIPython:
        @staticmethod
        def get_ipython():
            return object()

    monkeypatch.setitem(sys.modules, "IPython", FakeIPython)
    assert prog.show_progress(None) is True
    FakeIPython.get_ipython = staticmethod(lambda: None)   # IPython imported but no shell running
    assert prog.show_progress(None) is False


def test_bar_counts_steps_and_disabled_bar_is_inert(capsys):
    with prog.progress_bar(5, progress=True, desc="work", unit="step") as bar:
        for _ in range(5):
            bar.update(1)
        assert bar.n == 5
    assert "work" in capsys.readouterr().err
    with prog.progress_bar(5, progress=False, desc="silent") as bar:
        bar.update(3)
        bar.set_postfix_str("x")
    assert capsys.readouterr().err == ""
    assert list(prog.track(range(4), 4, progress=False, desc="t")) == [0, 1, 2, 3]


def test_auto_bar_waits_for_the_delay(monkeypatch, capsys):
    monkeypatch.setattr(sys, "ps1", ">>> ", raising=False)
    assert list(prog.track(range(3), 3, progress=None, desc="quick work")) == [0, 1, 2]
    # an interactive call that ends before AUTO_DELAY never draws
    assert "quick work" not in capsys.readouterr().err


# warnings are silenced: without pytest's warnings plugin they would be written to stderr too
@pytest.mark.filterwarnings("ignore")
def test_bootstrap_bar(sleep_fit, capsys):
    sleep_fit.confint(method="boot", nsim=3, seed=1)
    assert "bootstrap" not in capsys.readouterr().err
    sleep_fit.confint(method="boot", nsim=3, seed=1, progress=True)
    err = capsys.readouterr().err
    assert "bootstrap refits" in err and "3/3" in err


@pytest.mark.filterwarnings("ignore")
def test_profile_bar(sleep_fit, capsys):
    quiet = sleep_fit.confint(method="profile")
    assert "profile" not in capsys.readouterr().err
    shown = sleep_fit.confint(method="profile", progress=True)
    err = capsys.readouterr().err
    # .sig01, .sigma, (Intercept), Days: one step per parameter
    assert "profile" in err and "4/4" in err
    assert quiet.equals(shown)


@pytest.mark.filterwarnings("ignore")
def test_mcmc_bar(capsys):
    df = mp.datasets.load("sleepstudy")
    kw = dict(chains=2, iter=200, seed=3, thin=1)
    post = mp.bayes_lmer("Reaction ~ Days + (1 | Subject)", df, **kw)
    assert "emcee" not in capsys.readouterr().err
    post2 = mp.bayes_lmer("Reaction ~ Days + (1 | Subject)", df, progress=True, **kw)
    assert "emcee" in capsys.readouterr().err
    assert post.draws.equals(post2.draws)   # the bar does not touch the random stream


# modules that still import tqdm themselves (none: every bar comes from progress.py)
_NOT_YET: set[str] = set()


def test_one_helper_draws_every_bar():
    users = {p.relative_to(PKG).as_posix() for p in PKG.rglob("*.py")
             if re.search(r"^\s*(from tqdm|import tqdm)", p.read_text(), re.M)}
    assert users - _NOT_YET == {"progress.py"}
