"""A loopback HTTP server that misbehaves on purpose, for deadline tests.

Modes (what every request gets once its headers have arrived):

- ``"silent"``: nothing, ever. The connection is accepted and its bytes
  read, as a hung server or a black-holed load balancer would.
- ``"midbody"``: ``200 OK`` headers with ``Content-Length: body_size`` and
  the first half of the body, then nothing more (the connection stays open).
- ``"trickle"``: the same headers, then one body byte every
  ``trickle_interval`` seconds: no single socket read ever times out.
- ``"slow_read"``: reads the request 1 KiB every ``trickle_interval``
  seconds and never answers: a large upload's socket writes each make
  progress, so no single write times out.
- ``"continue_close"``: ``HTTP/1.1 100 Continue`` (status line and the blank
  line) and then end of stream (a half-close: the server keeps reading, so
  the client gets a clean EOF rather than a reset).
- ``"continue_cut"``: the same, cut before the blank line. botocore's
  ``Expect: 100-continue`` handling reads header lines until a blank one and
  spins at 100% CPU on the EOF.

One thread serves every connection with a selector, so a test can hold
dozens of stalled connections without a thread each::

    with StallServer("silent") as server:
        ...  # point an S3 storage's endpoint_url at server.endpoint_url
        assert server.requests >= 1
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from types import TracebackType

MODES = ("silent", "midbody", "trickle", "slow_read", "continue_close", "continue_cut")
#: Request bytes a ``slow_read`` connection takes per interval.
SLOW_READ_BYTES = 1024
#: What each ``continue_*`` mode sends before its end of stream.
CONTINUE = {
    "continue_close": b"HTTP/1.1 100 Continue\r\n\r\n",
    "continue_cut": b"HTTP/1.1 100 Continue\r\n",
}

#: Bytes of request headers kept per connection while looking for their end.
HEADER_LIMIT = 64 * 1024


class StallServer:
    """Accepts HTTP connections on ``127.0.0.1`` and stalls them as ``mode`` says."""

    def __init__(self, mode: str, body_size: int = 4096, trickle_interval: float = 0.2) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self.mode = mode
        self.body_size = body_size
        self.trickle_interval = trickle_interval
        self.port = 0
        #: Connections accepted and request heads received, since start.
        self.connections = 0
        self.requests = 0
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._selector: selectors.BaseSelector | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        #: Request head received so far per connection; None once answered.
        self._heads: dict[socket.socket, bytes | None] = {}
        #: Trickled connections: body bytes still to send and when the next one is due.
        self._trickles: dict[socket.socket, tuple[int, float]] = {}
        #: ``slow_read`` connections and when their next read is due.
        self._slow: dict[socket.socket, float] = {}

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> StallServer:
        """Bind a free port and serve from a daemon thread."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        listener.setblocking(False)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._selector = selectors.DefaultSelector()
        self._selector.register(listener, selectors.EVENT_READ)
        # Not "chunkfiles-": the test suite's leak check is about our workers.
        self._thread = threading.Thread(target=self._serve, name="stallserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close every connection and the listener; join the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> StallServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the serving thread ----------------------------------------------------

    def _serve(self) -> None:
        assert self._selector is not None and self._listener is not None
        try:
            while not self._stop.is_set():
                for key, _ in self._selector.select(timeout=0.05):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    if sock is self._listener:
                        self._accept()
                    else:
                        self._receive(sock)
                self._trickle()
        finally:
            for sock in list(self._heads):
                self._drop(sock)
            self._selector.close()
            self._listener.close()

    def _accept(self) -> None:
        assert self._listener is not None and self._selector is not None
        try:
            conn, _ = self._listener.accept()
        except BlockingIOError:
            return
        conn.setblocking(False)
        self._heads[conn] = b""
        if self.mode == "slow_read":  # read on a timer, not when data is there
            # A small fixed window, so the client's writes block at once.
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            self._slow[conn] = time.monotonic()
        else:
            self._selector.register(conn, selectors.EVENT_READ)
        with self._lock:
            self.connections += 1

    def _receive(self, sock: socket.socket, limit: int = 65536) -> None:
        try:
            data = sock.recv(limit)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client gave up
            self._drop(sock)
            return
        head = self._heads.get(sock)
        if head is None:  # answered already: read and forget (a request body)
            return
        head += data
        if b"\r\n\r\n" not in head and len(head) < HEADER_LIMIT:
            self._heads[sock] = head
            return
        # One answer per connection; whatever follows (the body) is drained.
        self._heads[sock] = None
        with self._lock:
            self.requests += 1
        if self.mode != "slow_read":
            self._answer(sock)

    def _answer(self, sock: socket.socket) -> None:
        head = (
            "HTTP/1.1 200 OK\r\n"
            "Content-Type: application/octet-stream\r\n"
            f"Content-Length: {self.body_size}\r\n\r\n"
        ).encode()
        try:
            if self.mode == "midbody":
                sock.sendall(head + b"\0" * (self.body_size // 2))
            elif self.mode == "trickle":
                sock.sendall(head)
                self._trickles[sock] = (self.body_size, time.monotonic())
            elif self.mode in CONTINUE:
                sock.sendall(CONTINUE[self.mode])
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._drop(sock)

    def _trickle(self) -> None:
        now = time.monotonic()
        for sock, due in list(self._slow.items()):
            if due <= now:
                self._slow[sock] = now + self.trickle_interval
                self._receive(sock, SLOW_READ_BYTES)
        for sock, (left, due) in list(self._trickles.items()):
            if due > now:
                continue
            try:
                sock.send(b"\0")
            except OSError:
                self._drop(sock)
                continue
            if left > 1:
                self._trickles[sock] = (left - 1, now + self.trickle_interval)
            else:
                del self._trickles[sock]

    def _drop(self, sock: socket.socket) -> None:
        assert self._selector is not None
        self._heads.pop(sock, None)
        self._trickles.pop(sock, None)
        self._slow.pop(sock, None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(sock)
        sock.close()
