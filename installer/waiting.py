"""The one polling loop of onehci: ask a condition until it holds, say what is still awaited once
per change, and stop with a clear error when the time is up."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from installer.errors import OnehciError

T = TypeVar("T")


class Pending(str):
    """What a condition still waits for (a condition returns it instead of a result): said once
    per change, and handed to the timeout's message."""


def wait_until(condition: Callable[[], T], *, timeout: float, every: float, timed_out: Callable[[str], str],
               say: Callable[[str], None] | None = None) -> T:
    """condition() until it returns something true that is not Pending; that is returned. The
    condition is asked at least once; after TIMEOUT seconds OnehciError(timed_out(last pending))."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        found = condition()
        if found and not isinstance(found, Pending):
            return found
        pending = found if isinstance(found, Pending) else ""
        if say is not None and pending and pending != last:
            say(pending)
        last = pending
        if time.monotonic() >= deadline:
            raise OnehciError(timed_out(pending))
        time.sleep(every)
