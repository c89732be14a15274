"""Subjects and chains on a thread per core: same results as one at a time, in order, and an
error stops the queue."""

from __future__ import annotations

import threading
import time
import warnings

import numpy as np
import pytest

from oncotwin.errors import ConvergenceWarning
from oncotwin.inference import threads
from oncotwin.inference.calibrate import calibrate_subjects
from oncotwin.inference.problem import SubjectData
from oncotwin.inference.threads import map_in_threads
from oncotwin.schedule import Schedule

SHORT = {"chains": 2, "draws": 20, "warmup": 5}  # the compiled sampler of test_calibrate's `bad`


def test_results_in_order_computed_on_the_pool(monkeypatch):
    monkeypatch.setattr(threads, "THREADS", 3)
    caller = threading.get_ident()
    ran_on: dict[int, int] = {}

    def work(i: int) -> int:
        ran_on[i] = threading.get_ident()
        time.sleep(0.01 * (5 - i % 5))  # later items finish first
        return i * i

    assert list(map_in_threads(work, range(10))) == [i * i for i in range(10)]
    assert caller not in ran_on.values() and 1 < len(set(ran_on.values())) <= 3


def test_an_error_is_raised_and_the_queued_items_do_not_start(monkeypatch):
    monkeypatch.setattr(threads, "THREADS", 1)
    started: list[int] = []

    def work(i: int) -> int:
        started.append(i)
        if i == 1:
            raise ValueError("subject 1 failed")
        time.sleep(0.05)
        return i

    with pytest.raises(ValueError, match="subject 1 failed"):
        list(map_in_threads(work, range(100)))
    # The worker may have begun the next item or two before the error reached this thread;
    # the rest (about 5 s of work) were cancelled.
    assert started[:2] == [0, 1] and len(started) < 50


def test_nuts_on_threads_equals_one_subject_at_a_time(monkeypatch):
    rng = np.random.default_rng(5)
    t = np.linspace(0.0, 20.0, 7)
    subjects = [
        SubjectData(
            f"s{i}",
            t,
            100.0 * np.exp(0.05 * (1 + i) * t + 0.1 * rng.standard_normal(7)),
            np.zeros(7, bool),
            Schedule(),
            "volume",
            "mm3",
        )  # fmt: skip
        for i in range(4)
    ]
    runs = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for n in (1, 3):
            monkeypatch.setattr(threads, "THREADS", n)
            runs[n] = calibrate_subjects("gompertz", subjects, method="nuts", seed=0, **SHORT)
    for one, many in zip(runs[1], runs[3], strict=True):
        assert one.subject == many.subject
        assert np.array_equal(one.z, many.z)  # bitwise: subject i always uses its own key
