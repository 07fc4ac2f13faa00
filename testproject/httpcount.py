"""Counting HTTP/1.1 requests in a raw client->server byte stream (for ``tcpproxy``)."""

from __future__ import annotations

MAX_HEAD_BYTES = 64 * 1024


class HttpRequestCounter:
    """Finds request lines in one connection's client->server byte stream.

    Only the framing needed to skip bodies is understood: ``Content-Length``
    and ``Transfer-Encoding: chunked`` (botocore sends Content-Length for
    ``put_object`` over plain HTTP, with ``Expect: 100-continue``). Anything it
    cannot parse turns counting off for the rest of the connection rather than
    guessing.
    """

    __slots__ = ("_body_left", "_buffer", "_state", "lost")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._state = "head"  # head | body | chunk-size | chunk-data | trailer
        self._body_left = 0
        self.lost = False

    def feed(self, data: bytes) -> list[tuple[str, str]]:
        """Consume bytes; return the (method, target) of each request started."""
        found: list[tuple[str, str]] = []
        view = memoryview(data)
        while view and not self.lost:
            if self._state in ("body", "chunk-data"):
                # Body bytes are skipped by arithmetic, never copied.
                step = min(self._body_left, len(view))
                self._body_left -= step
                view = view[step:]
                if self._body_left == 0:
                    self._state = "head" if self._state == "body" else "chunk-size"
                continue
            if self._state == "head":
                self._buffer += view
                view = memoryview(b"")
                end = self._buffer.find(b"\r\n\r\n")
                if end < 0:
                    self.lost = len(self._buffer) > MAX_HEAD_BYTES
                    continue
                head = bytes(self._buffer[:end])
                view = memoryview(bytes(self._buffer[end + 4 :]))
                self._buffer.clear()
                request = self._parse_head(head)
                if request is not None:
                    found.append(request)
                continue
            # chunk-size and trailer are line based.
            self._buffer += view
            view = memoryview(b"")
            end = self._buffer.find(b"\r\n")
            if end < 0:
                self.lost = len(self._buffer) > MAX_HEAD_BYTES
                continue
            line = bytes(self._buffer[:end])
            view = memoryview(bytes(self._buffer[end + 2 :]))
            self._buffer.clear()
            self._parse_line(line)
        return found

    def _parse_head(self, head: bytes) -> tuple[str, str] | None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            self.lost = True
            return None
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip().lower()
        if b"chunked" in headers.get(b"transfer-encoding", b""):
            self._state = "chunk-size"
        elif headers.get(b"content-length", b"0") != b"0":
            try:
                self._body_left = int(headers[b"content-length"])
            except ValueError:
                self.lost = True
            self._state = "body"
        return parts[0].decode("latin-1"), parts[1].decode("latin-1")

    def _parse_line(self, line: bytes) -> None:
        if self._state == "trailer":
            if not line:
                self._state = "head"
            return
        try:
            size = int(line.split(b";")[0], 16)
        except ValueError:
            self.lost = True
            return
        # A chunk's data is followed by CRLF, which is skipped as part of it.
        self._state, self._body_left = ("trailer", 0) if size == 0 else ("chunk-data", size + 2)
