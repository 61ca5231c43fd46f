"""installer/waiting.py: the one polling loop."""

from __future__ import annotations

import pytest

from installer.errors import OnehciError
from installer.waiting import Pending, wait_until


def test_returns_the_first_true_result_and_says_each_change_once():
    answers = iter([Pending("2 left"), Pending("2 left"), None, Pending("1 left"), {"done": True}])
    said = []
    assert wait_until(lambda: next(answers), timeout=10, every=0, timed_out=str, say=said.append) == {"done": True}
    assert said == ["2 left", "1 left"]


def test_the_timeout_names_what_was_still_awaited_and_the_condition_ran_at_least_once():
    calls = []

    def never():
        calls.append(1)
        return Pending("lab2 not monitored")

    with pytest.raises(OnehciError) as exc:
        wait_until(never, timeout=0, every=0, timed_out=lambda left: f"gave up: {left}")
    assert str(exc.value) == "gave up: lab2 not monitored" and calls == [1]


def test_a_pending_text_is_never_taken_for_a_result():
    answers = iter([Pending("x"), "real"])
    assert wait_until(lambda: next(answers), timeout=10, every=0, timed_out=str) == "real"
