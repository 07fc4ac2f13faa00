"""A loopback TCP proxy with injected latency, HTTP request counting and faults.

Tests and benchmarks put it between boto3 and SeaweedFS to see what actually
goes over the wire: how many requests a read makes, what a 20 ms round trip
does to throughput, and how the code copes with a connection reset mid-body.

The proxy runs an asyncio loop in its own thread so synchronous code can use
it::

    with TcpProxy("127.0.0.1", seaweed.port, latency=0.010) as proxy:
        client = boto3.client("s3", endpoint_url=proxy.endpoint_url, ...)
        ...
        assert proxy.counts()["GET"] == 1

Bytes are forwarded with plain asyncio protocols (no streams, no per-chunk
coroutines) to keep the proxy's own CPU cost small, but it still takes the
GIL for every chunk: for timing-sensitive work keep the code under test in
another process (the benchmarks do).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import socket
import struct
import threading
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import NamedTuple

from .httpcount import HttpRequestCounter

#: Decides from (method, request target) whether a request is to be killed.
RequestPredicate = Callable[[str, str], bool]
#: Names what a request is about, from (method, request target), for seeded faults.
RequestIdentity = Callable[[str, str], str]

# Bytes one direction of a connection may hold in its delay line before the
# proxy stops reading from the sender: the bandwidth-delay product of a fast
# link (32 MiB / 10 ms = 3.2 GB/s), yet bounded if a receiver stalls.
DELAY_LINE_BYTES = 32 * 1024 * 1024


class _CutPolicy(NamedTuple):
    fraction: float
    seed: int
    predicate: RequestPredicate | None
    identify: RequestIdentity | None
    min_bytes: int
    max_bytes: int


class _Pipe:
    """One direction of a connection: a pipeline delay line, bounded in bytes.

    Every chunk is released ``latency`` after it arrived, by one timer for the
    oldest chunk, so many chunks are in flight at once and bandwidth is not
    throttled, as on a long fat link. The sender is paused while the line is
    full or while the receiver's socket buffer is.
    """

    def __init__(self, conn: _Connection, is_response: bool) -> None:
        self.conn = conn
        self.is_response = is_response
        self.source: asyncio.Transport | None = None
        self.sink: asyncio.Transport | None = None
        self.done = False
        self._items: collections.deque[tuple[float, bytes | None]] = collections.deque()
        self._queued = 0
        self._timer: asyncio.TimerHandle | None = None
        self._holds: set[str] = set()

    @property
    def held(self) -> bool:
        return bool(self._holds)

    def feed(self, data: bytes | None) -> None:
        """Queue ``data``; ``None`` is end of stream (EOF or close)."""
        if self.done:
            return
        loop = self.conn.loop
        if self.conn.proxy.latency <= 0 and not self._items and self.sink is not None:
            self._release(data)
            return
        self._items.append((loop.time() + self.conn.proxy.latency, data))
        self._queued += len(data or b"")
        self._schedule()
        self.hold("line", self._queued > DELAY_LINE_BYTES)

    def attach_sink(self, sink: asyncio.Transport) -> None:
        """Start delivering to ``sink``, first what arrived before it existed.

        The client's request can arrive before the upstream connection is made:
        ``pause_reading()`` in ``connection_made()`` is ignored on Python 3.10
        and early 3.11 releases such as Debian 12's 3.11.2 (CPython gh-103607),
        so the "connecting" hold cannot be relied on to keep those bytes in the
        client's socket.
        """
        self.sink = sink
        self._schedule()

    def _schedule(self) -> None:
        """Time the release of the oldest chunk, once there is a sink for it."""
        if self._timer is None and self._items and self.sink is not None and not self.done:
            self._timer = self.conn.loop.call_at(self._items[0][0], self._flush)

    def _flush(self) -> None:
        self._timer = None
        now = self.conn.loop.time()
        while self._items and self._items[0][0] <= now and not self.done:
            _, data = self._items.popleft()
            self._queued -= len(data or b"")
            self._release(data)
        self._schedule()
        self.hold("line", self._queued > DELAY_LINE_BYTES)

    def _release(self, data: bytes | None) -> None:
        sink = self.sink
        if self.done or sink is None:
            return
        if data is None or sink.is_closing():
            # End of stream, or a receiver that is gone: this direction is over.
            self.done = True
            if not sink.is_closing() and sink.can_write_eof():
                sink.write_eof()
            self.conn.direction_done()
            return
        fail = False
        if self.is_response:
            data, fail = self.conn.proxy._spend_budget(data)
            if not fail:
                data, fail = self.conn.spend_cut(data)
        if data:
            sink.write(data)
        if fail:
            self.conn.reset(flush=True)

    def hold(self, reason: str, on: bool) -> None:
        """Pause reading from the sender while any reason holds."""
        before = bool(self._holds)
        if on:
            self._holds.add(reason)
        else:
            self._holds.discard(reason)
        source = self.source
        if source is None or source.is_closing() or before == bool(self._holds):
            return
        if self._holds:
            source.pause_reading()
        else:
            source.resume_reading()

    def cancel(self) -> None:
        self.done = True
        self._items.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class _Side(asyncio.Protocol):
    """Either end of a proxied connection; feeds the pipe leaving it."""

    def __init__(self, conn: _Connection, outgoing: _Pipe, incoming: _Pipe) -> None:
        self.conn = conn
        self.outgoing = outgoing
        self.incoming = incoming

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.conn.transports.append(transport)
        if self.conn.closed or self.conn.refused:
            self.conn.reset()
            return
        self.outgoing.source = transport
        self.incoming.attach_sink(transport)
        if self.outgoing.held:
            transport.pause_reading()
        if self is self.conn.client:
            self.conn.proxy._track(self.conn.open_upstream())

    def data_received(self, data: bytes) -> None:
        if self.outgoing is self.conn.requests and not self.conn.admit(data):
            self.conn.reset()
            return
        self.outgoing.feed(data)

    def eof_received(self) -> bool:
        self.outgoing.feed(None)
        return True  # half-close: keep sending the other direction

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self.conn.reset()  # a reset is passed on as a reset
        elif not self.outgoing.done:
            self.outgoing.feed(None)

    def pause_writing(self) -> None:
        self.incoming.hold("sink", True)

    def resume_writing(self) -> None:
        self.incoming.hold("sink", False)


class _Connection:
    """A client connection and its upstream connection."""

    def __init__(self, proxy: TcpProxy, loop: asyncio.AbstractEventLoop) -> None:
        self.proxy = proxy
        self.loop = loop
        self.requests = _Pipe(self, is_response=False)
        self.responses = _Pipe(self, is_response=True)
        self.counter = HttpRequestCounter()
        self.transports: list[asyncio.Transport] = []
        self.client = _Side(self, self.requests, self.responses)
        self.closed = False
        self.refused = False
        #: Response bytes still let through before a ``cut_responses`` reset.
        self.cut_left: int | None = None

    async def open_upstream(self) -> None:
        """Connect upstream; the client's bytes wait in the request pipe meanwhile."""
        try:
            await self.loop.create_connection(
                lambda: _Side(self, self.responses, self.requests),
                self.proxy.upstream_host,
                self.proxy.upstream_port,
            )
        except OSError:
            self.reset()
            return
        self.requests.hold("connecting", False)

    def admit(self, data: bytes) -> bool:
        admitted = self.proxy._admit_requests(self.counter, data)
        # A new request on this connection: what follows is its response, cut or not.
        if self.counter in self.proxy._planned_cuts:
            self.cut_left = self.proxy._planned_cuts.pop(self.counter)
        return admitted

    def spend_cut(self, data: bytes) -> tuple[bytes, bool]:
        """Cut ``data`` to the planned cut of this response; say whether to reset after it."""
        if self.cut_left is None:
            return data, False
        if data.startswith(b"HTTP/1.1 100 "):
            # An interim "100 Continue" is not the answer: the body has yet to
            # be sent, so the cut applies to the final response after it.
            end = data.find(b"\r\n\r\n") + 4
            if end >= 4:
                if end == len(data):
                    return data, False
                rest, fail = self.spend_cut(data[end:])
                return data[:end] + rest, fail
        allowed = min(len(data), self.cut_left)
        self.cut_left -= allowed
        if self.cut_left:
            return data[:allowed], False
        self.cut_left = None
        self.proxy._count_cut()
        return data[:allowed], True

    def direction_done(self) -> None:
        if self.requests.done and self.responses.done:
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.requests.cancel()
            self.responses.cancel()
            for transport in self.transports:
                transport.close()
            self.proxy._connections.discard(self)

    def reset(self, flush: bool = False) -> None:
        """End both sides with an RST, as a crashed server or a middlebox would.

        With ``flush`` the client first gets what was already written to it.
        """
        client = self.requests.source
        for transport in self.transports:
            if transport.is_closing():
                continue
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            if flush and transport is client:
                transport.close()  # sends its buffer, then the linger-0 close resets
            else:
                transport.abort()
        self.close()


class TcpProxy:
    """Forward ``127.0.0.1:<port>`` to ``upstream_host:upstream_port``.

    ``latency`` seconds are added to each direction (so a round trip gains
    twice that). Every HTTP request the client sends is recorded in
    ``requests``, including ones a fault policy then kills. Fault policies
    (``fail_after_bytes``, ``fail_requests``, ``cut_responses``, ``refuse``)
    last until ``heal()``.
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        latency: float = 0.0,
        max_connections: int = 256,
    ) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.latency = latency
        self.max_connections = max_connections
        self.port = 0
        #: Connections accepted since start (or the last reset_counts()).
        self.connections = 0
        self._lock = threading.Lock()
        self._requests: list[tuple[str, str]] = []
        self._response_budget: int | None = None
        self._request_predicate: RequestPredicate | None = None
        self._refusing = False
        self._cut_policy: _CutPolicy | None = None
        self._seen: collections.Counter[str] = collections.Counter()
        #: Cut decided for the latest request of a connection (by its counter); loop thread only.
        self._planned_cuts: dict[HttpRequestCounter, int | None] = {}
        #: Responses reset by ``cut_responses`` since start (or the last reset_counts()).
        self.cuts = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> TcpProxy:
        """Bind a free port and serve from a daemon thread."""
        if self._thread is not None:
            raise RuntimeError("proxy already started")
        loop = asyncio.new_event_loop()
        self._loop = loop
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                self._server = loop.run_until_complete(
                    loop.create_server(self._accept, "127.0.0.1", 0)
                )
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:  # reported to start(), not lost in the thread
                failure.append(exc)
                loop.close()
                ready.set()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.close()

        # Daemon, so a test that forgets stop() cannot hang interpreter exit.
        self._thread = threading.Thread(
            target=serve, name=f"TcpProxy->{self.upstream_port}", daemon=True
        )
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Reset every connection, close the listener and join the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if not loop.is_closed():
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._loop = self._thread = self._server = None

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn.reset()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- counting ----------------------------------------------------------

    @property
    def requests(self) -> list[tuple[str, str]]:
        """(method, request target) of every request seen since the last reset."""
        with self._lock:
            return list(self._requests)

    def counts(self) -> collections.Counter[str]:
        """Requests per HTTP method since the last reset."""
        return collections.Counter(method for method, _ in self.requests)

    @property
    def open_connections(self) -> int:
        """Client connections being proxied right now."""
        return len(self._connections)

    def reset_counts(self) -> None:
        with self._lock:
            self._requests.clear()
            self.connections = 0
            self.cuts = 0

    # -- faults ------------------------------------------------------------

    def fail_after_bytes(self, n: int) -> None:
        """Forward ``n`` more response bytes in total, then reset every
        connection that has response data to send."""
        with self._lock:
            self._response_budget = n

    def fail_requests(self, predicate: RequestPredicate) -> None:
        """Reset the connection instead of forwarding a matching request."""
        with self._lock:
            self._request_predicate = predicate

    def cut_responses(
        self,
        fraction: float,
        seed: int,
        predicate: RequestPredicate | None = None,
        *,
        identify: RequestIdentity | None = None,
        min_bytes: int = 0,
        max_bytes: int = 0,
    ) -> None:
        """Reset the responses of a seeded ``fraction`` of (matching) requests.

        The chosen response is forwarded for ``min_bytes..max_bytes`` bytes
        (headers included; an interim ``100 Continue`` passes uncounted), then
        the connection is reset: a body cut mid-stream (or, with 0, a request
        the server handled whose answer never arrives).
        Whether the n-th request for an identity is cut, and where, is a hash
        of the seed, the identity and n, not of arrival order, so concurrent
        clients meet the same faults on every run. The identity is
        ``identify(method, target)``, by default the method and target (give
        one when targets hold random names). ``cuts`` counts the resets.
        """
        policy = _CutPolicy(
            fraction, seed, predicate, identify, min_bytes, max(min_bytes, max_bytes)
        )
        with self._lock:
            self._cut_policy = policy
            self._seen.clear()

    def refuse(self) -> None:
        """Reset new connections as soon as they are accepted."""
        with self._lock:
            self._refusing = True

    def heal(self) -> None:
        """Drop every fault policy."""
        with self._lock:
            self._response_budget = None
            self._request_predicate = None
            self._refusing = False
            self._cut_policy = None

    # -- the data path (runs in the proxy's thread) --------------------------

    def _accept(self) -> asyncio.Protocol:
        assert self._loop is not None
        conn = _Connection(self, self._loop)
        with self._lock:
            conn.refused = self._refusing or len(self._connections) >= self.max_connections
            self.connections += 1
        if not conn.refused:
            self._connections.add(conn)
            # Read as little as possible from the client until the upstream is
            # connected; what is read waits in the request pipe (attach_sink).
            conn.requests.hold("connecting", True)
        return conn.client

    def _track(self, coro: Coroutine[object, object, None]) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _admit_requests(self, counter: HttpRequestCounter, data: bytes) -> bool:
        found = counter.feed(data)
        with self._lock:
            self._requests.extend(found)
            predicate = self._request_predicate
            for request in found:
                self._planned_cuts[counter] = self._plan_cut(request)
        return predicate is None or not any(predicate(m, t) for m, t in found)

    def _plan_cut(self, request: tuple[str, str]) -> int | None:
        """Bytes of ``request``'s response to forward before a reset, or None (call locked)."""
        policy = self._cut_policy
        if policy is None or (policy.predicate is not None and not policy.predicate(*request)):
            return None
        identity = policy.identify(*request) if policy.identify else " ".join(request)
        self._seen[identity] += 1
        key = f"{policy.seed}\0{identity}\0{self._seen[identity]}".encode()
        digest = hashlib.sha256(key).digest()
        if int.from_bytes(digest[:8], "big") / 2**64 >= policy.fraction:
            return None
        span = policy.max_bytes - policy.min_bytes + 1
        return policy.min_bytes + int.from_bytes(digest[8:16], "big") % span

    def _count_cut(self) -> None:
        with self._lock:
            self.cuts += 1

    def _spend_budget(self, data: bytes) -> tuple[bytes, bool]:
        """Cut ``data`` to the response budget; say whether to reset after it."""
        with self._lock:
            if self._response_budget is None:
                return data, False
            allowed = min(len(data), self._response_budget)
            self._response_budget -= allowed
            return data[:allowed], self._response_budget == 0
