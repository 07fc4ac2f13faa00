"""A loopback TCP proxy for database connections that can lose a COMMIT's reply.

Armed with ``cut_after_commit()``, it forwards the next COMMIT to the server
and then closes the client's connection instead of passing on the answer:
the transaction is committed, and the client never hears so. That is the
"lost reply" an uploader must not mistake for a rollback.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from types import TracebackType

# PostgreSQL simple query "COMMIT\0"; MySQL/MariaDB COM_QUERY (0x03) "COMMIT".
_COMMIT = re.compile(rb"(Q\x00\x00\x00\x0bCOMMIT\x00|\x03COMMIT)$", re.IGNORECASE)


class CommitCuttingProxy:
    """Forwards ``127.0.0.1:port`` to ``upstream``; see the module docstring."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._armed = threading.Event()
        self.cuts = 0
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._stopping = False

    def cut_after_commit(self) -> None:
        """Lose the reply to the next COMMIT of any connection."""
        self._armed.set()

    def start(self) -> CommitCuttingProxy:
        self._spawn(self._accept)
        return self

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stopping:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            with self._lock:
                self._sockets += [client, server]
            state = {"commit_sent": False}
            self._spawn(self._pump, client, server, state, True)
            self._spawn(self._pump, server, client, state, False)

    def _pump(
        self, src: socket.socket, dst: socket.socket, state: dict[str, bool], to_server: bool
    ) -> None:
        with contextlib.suppress(OSError):
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if to_server and self._armed.is_set() and _COMMIT.search(data):
                    self._armed.clear()
                    state["commit_sent"] = True
                elif not to_server and state["commit_sent"]:
                    # The server answered the COMMIT: drop the answer and the client.
                    self.cuts += 1
                    for sock in (src, dst):
                        # shutdown() wakes the other pump's recv(); close() alone
                        # would not, and the client would never see the cut.
                        sock.shutdown(socket.SHUT_RDWR)
                    return
                dst.sendall(data)
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        self._stopping = True
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> CommitCuttingProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
