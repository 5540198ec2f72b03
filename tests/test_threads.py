"""BLAS thread control: one thread for small blocks, never more than the idle cores or the caller's limit."""
import os

import numpy as np
import pytest
import threadpoolctl

import mixedpy as mp
from mixedpy import threads
from mixedpy.linalg import blocked


def blas_counts():
    return {lib["filepath"]: lib["num_threads"] for lib in threadpoolctl.threadpool_info()
            if lib["user_api"] == "blas"}


@pytest.fixture(autouse=True)
def automatic_threads():
    threads.set_num_threads(None)
    yield
    threads.set_num_threads(None)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_set_num_threads_rejects_non_positive_whole_numbers(bad):
    with pytest.raises(ValueError, match="positive whole number"):
        mp.set_num_threads(bad)


def test_set_num_threads_is_used_for_every_block():
    mp.set_num_threads(3)
    assert mp.get_num_threads() == 3
    assert threads.threads_for_block(10) == 3
    assert threads.threads_for_block(10_000) == 3


def test_small_blocks_use_one_thread():
    assert threads.threads_for_block(threads.PARALLEL_MIN_SIZE - 1) == 1


def test_large_blocks_use_only_idle_cores(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(threads, "_current_threads", lambda: 4)
    for others, expected in [(0, 4), (2, 2), (7, 1)]:
        monkeypatch.setattr(threads, "_other_runnable_tasks", lambda: others)
        assert threads.threads_for_block(5000) == expected


def test_idle_cores_are_counted_at_the_start_of_the_fit(monkeypatch):
    """A task that starts during a fit does not change its thread count (the fit is already sized),
    and the running fit itself is not counted as a busy core."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(threads, "_current_threads", lambda: 2)
    others = {"n": 0}
    monkeypatch.setattr(threads, "_other_runnable_tasks", lambda: others["n"])
    seen = []

    @threads.controls_threads
    def entry():
        seen.append(threads.threads_for_block(5000))
        others["n"] = 1
        seen.append(threads.threads_for_block(5000))

    entry()
    assert seen == [2, 2]
    entry()  # now one other task runs from the start
    assert seen[2:] == [1, 1]


def test_runnable_tasks_exclude_this_process():
    n = threads._other_runnable_tasks()
    assert n is None or n >= 0


def test_large_blocks_never_exceed_the_callers_limit(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(threads, "_other_runnable_tasks", lambda: 0)
    seen = {}

    @threads.controls_threads
    def entry():
        seen["inside"] = max(blas_counts().values())
        seen["large"] = threads.threads_for_block(5000)

    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        entry()
    assert seen == {"inside": 1, "large": 1}


def test_entry_points_run_single_threaded_and_restore_the_callers_threads():
    before = blas_counts()
    seen = []

    @threads.controls_threads
    def entry():
        seen.append(max(blas_counts().values()))

    entry()
    assert seen == [1]
    assert blas_counts() == before


def test_lmer_factorizations_run_with_one_blas_thread_by_default(monkeypatch):
    seen = []
    original = blocked.CrossProducts.factor

    def recording(self, T_list, **kw):
        seen.append(max(blas_counts().values()))
        return original(self, T_list, **kw)

    monkeypatch.setattr(blocked.CrossProducts, "factor", recording)
    mp.lmer("Reaction ~ Days + (Days | Subject)", mp.datasets.load("sleepstudy"))
    assert seen and set(seen) == {1}


def test_formulas_still_see_the_callers_variables_through_the_thread_wrappers():
    sleep = mp.datasets.load("sleepstudy")
    cbpp = mp.datasets.load("cbpp")
    hours = sleep["Days"].to_numpy() * 24.0
    big = (cbpp["size"] > 15).to_numpy()
    fit = mp.lmer("Reaction ~ hours + (1 | Subject)", sleep)
    assert "hours" in fit.fixef_names
    gm = mp.glmer("cbind(incidence, size - incidence) ~ big + (1 | herd)", cbpp, family="binomial")
    assert "bigTRUE" in gm.fixef_names
    assert fit.data_name == "sleep"


def test_the_kernel_called_outside_a_fit_also_runs_small_blocks_single_threaded(monkeypatch):
    """mp.lmer_devfun evaluates the kernel without entering a fit: its blocks must not fall back to
    OpenBLAS's default of one thread per core."""
    seen = []
    original = blocked.CrossProducts.factor

    def recording(self, T_list, **kw):
        with threads.block_threads(self.m):
            seen.append(max(blas_counts().values()))
        return original(self, T_list, **kw)

    monkeypatch.setattr(blocked.CrossProducts, "factor", recording)
    dev = mp.lmer_devfun("Reaction ~ Days + (Days | Subject)", mp.datasets.load("sleepstudy"))
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        dev(dev.start)
    assert seen == [1]


def test_profile_intervals_run_inside_one_thread_controlled_call(monkeypatch):
    """confint is an entry point: its many inner evaluations run in one controlled context."""
    seen = []
    original = blocked.CrossProducts.factor

    def recording(self, T_list, **kw):
        seen.append(threads._fit_cap.get() is not None)
        return original(self, T_list, **kw)

    fit = mp.lmer("Reaction ~ Days + (1 | Subject)", mp.datasets.load("sleepstudy"))
    monkeypatch.setattr(blocked.CrossProducts, "factor", recording)
    mp.confint(fit, method="profile")
    assert seen and all(seen)
