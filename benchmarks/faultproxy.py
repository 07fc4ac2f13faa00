"""A latency proxy that also cuts a seeded share of responses mid-body.

``testproject.tcpproxy.TcpProxy`` can kill a request before it is forwarded
(``fail_requests``) or cut every connection after a global byte budget
(``fail_after_bytes``); neither is "one GET in ten breaks halfway through its
body", the fault issue 7 asks reads to survive and the benchmark to count.
``CuttingProxy`` adds exactly that per connection: when a matching request
goes through, a seeded coin decides whether its response is reset after a
random number of body bytes (the client gets those bytes first, then an RST).

It hooks two internals of ``TcpProxy`` (the request admission and a response
pipe's release), because the proxy belongs to the test project; if the proxy
ever grows a per-request body cut, use that instead.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from testproject.tcpproxy import TcpProxy

#: Decides from (method, request target) whether a request may be cut.
Match = Callable[[str, str], bool]


class CuttingProxy(TcpProxy):
    """``TcpProxy`` plus ``cut_bodies(rate, match, ...)``; ``cuts`` counts the cuts made."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cuts = 0
        self._rate = 0.0
        self._match: Match | None = None
        self._random = random.Random(0)
        self._cut_range = (1, 1)
        # Connection (by its request counter) -> response bytes still let through.
        self._cut_left: dict[object, int] = {}

    def cut_bodies(
        self, rate: float, match: Match, *, seed: int, min_bytes: int, max_bytes: int
    ) -> None:
        """Cut ``rate`` of the responses to matching requests after ``min..max`` bytes."""
        with self._lock:
            self._rate = rate
            self._match = match
            self._random = random.Random(seed)
            self._cut_range = (min_bytes, max(min_bytes, max_bytes))

    def heal(self) -> None:
        super().heal()
        with self._lock:
            self._rate = 0.0
            self._match = None

    def reset_counts(self) -> None:
        super().reset_counts()
        with self._lock:
            self.cuts = 0

    # -- the data path (the proxy's thread) ----------------------------------------

    def _admit_requests(self, counter: Any, data: bytes) -> bool:
        with self._lock:
            before = len(self._requests)
        admitted = super()._admit_requests(counter, data)
        with self._lock:
            found = self._requests[before:]
            if self._match is not None:
                for method, target in found:
                    if self._match(method, target) and self._random.random() < self._rate:
                        self._cut_left[counter] = self._random.randint(*self._cut_range)
        return admitted

    def _accept(self) -> Any:
        side: Any = super()._accept()
        conn = side.conn
        pipe = conn.responses
        release = pipe._release
        counter = conn.counter

        def cutting_release(data: bytes | None) -> None:
            left = self._cut_left.get(counter)
            if left is None or not data:
                release(data)
                return
            if len(data) < left:
                self._cut_left[counter] = left - len(data)
                release(data)
                return
            del self._cut_left[counter]
            with self._lock:
                self.cuts += 1
            release(data[:left])
            conn.reset(flush=True)  # the bytes so far, then an RST: a body cut mid-stream

        pipe._release = cutting_release
        return side
