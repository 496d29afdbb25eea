"""A rate limit per key: the dashboard re-reads a run, and re-scans its folders, at most once a period."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable


class RateLimit:
    """Lets each key through at most once every ``period`` seconds; a key never let through passes at once.

    Pure policy on an injectable monotonic ``clock`` (seconds); safe to share between threads.
    """

    def __init__(self, period: float, clock: Callable[[], float] = time.monotonic) -> None:
        if not period >= 0:
            raise ValueError(f"period must be >= 0 seconds, got {period!r}")
        self.period = period
        self._clock = clock
        self._passed: dict[Hashable, float] = {}
        self._lock = threading.Lock()

    def allow(self, key: Hashable) -> bool:
        """Whether ``key`` may go through now; if so, its next period starts now."""
        with self._lock:
            now = self._clock()
            last = self._passed.get(key)
            if last is not None and now - last < self.period:
                return False
            self._passed[key] = now
            return True
