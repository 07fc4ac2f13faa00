"""Bounded retries with jittered exponential backoff under an overall deadline."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import NamedTuple, TypeVar

from .conf import chunkfiles_settings

T = TypeVar("T")

#: No single backoff sleeps longer than this, whatever the attempt.
MAX_BACKOFF = 5.0


class RetryPolicy(NamedTuple):
    """How often and for how long one blob operation is tried.

    ``attempt_time`` is how long one attempt may block (connect plus read
    timeout): no attempt starts that could not end before the deadline.
    """

    attempts: int
    backoff: float
    deadline: float
    attempt_time: float = 0.0

    @classmethod
    def from_settings(cls) -> RetryPolicy:
        return cls(
            max(1, int(chunkfiles_settings.ATTEMPTS)),
            float(chunkfiles_settings.BACKOFF),
            float(chunkfiles_settings.DEADLINE),
            float(chunkfiles_settings.CONNECT_TIMEOUT) + float(chunkfiles_settings.READ_TIMEOUT),
        )

    def delay(self, retry: int) -> float:
        """Sleep before retry number ``retry`` (1-based): half fixed, half random.

        The random half spreads the retries of many workers hit by the same
        fault (a SlowDown, a server restart) instead of retrying in lockstep.
        """
        ceiling = min(MAX_BACKOFF, self.backoff * 2.0 ** (retry - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # jitter, not crypto


def retrying(
    policy: RetryPolicy,
    attempt: Callable[[float], T],
    should_retry: Callable[[BaseException], bool],
    on_retry: Callable[[int, BaseException], None] | None = None,
) -> T:
    """Call ``attempt(deadline)`` until it succeeds, fails permanently or time runs out.

    ``deadline`` is a ``time.monotonic()`` value the attempt should respect
    (e.g. between body reads). No retry starts whose backoff would end after it.
    """
    deadline = time.monotonic() + policy.deadline
    tries = 0
    while True:
        tries += 1
        try:
            return attempt(deadline)
        except Exception as exc:
            if tries >= policy.attempts or not should_retry(exc):
                raise
            pause = policy.delay(tries)
            if time.monotonic() + pause + policy.attempt_time >= deadline:
                raise
            if on_retry is not None:
                on_retry(tries, exc)
            time.sleep(pause)
