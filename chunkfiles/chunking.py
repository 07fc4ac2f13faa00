"""Split a byte stream into fixed-size, hashed chunks. Pure Python, no Django."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from typing import IO, NamedTuple, Protocol, TypeVar

T = TypeVar("T")


class Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


class Chunk(NamedTuple):
    """One blob-sized piece of a stream and where it sits in it."""

    offset: int
    data: bytes
    checksum: str  # SHA-256 hex of data

    @property
    def size(self) -> int:
        return len(self.data)


def blob_checksum(data: bytes) -> str:
    """The dedupe key of a blob: SHA-256, because SHA-1 collisions are practical."""
    return hashlib.sha256(data).hexdigest()


def read_exactly(fileobj: Readable | IO[bytes], size: int) -> bytes:
    """Read ``size`` bytes, fewer only at EOF.

    A pipe or socket may return short reads; looping keeps blob boundaries
    at fixed offsets so equal content always splits into equal blobs.
    """
    first = _checked(fileobj.read(size), size)
    if not first or len(first) == size:
        return bytes(first)
    parts = [first]
    have = len(first)
    while have < size:
        more = _checked(fileobj.read(size - have), size - have)
        if not more:
            break
        parts.append(more)
        have += len(more)
    return b"".join(parts)


def _checked(data: object, asked: int) -> bytes:
    """``data`` from ``read(asked)``, refused unless it is at most ``asked`` bytes."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(
            f"read() returned {type(data).__name__}, not bytes: open the file in binary mode"
        )
    if len(data) > asked:
        # Taking it would make a blob larger than BLOB_SIZE and shift every boundary.
        raise ValueError(f"read({asked}) returned {len(data)} bytes; the stream is broken")
    return bytes(data)


def iter_chunks(fileobj: Readable | IO[bytes], blob_size: int) -> Iterator[Chunk]:
    """Yield consecutive chunks of ``blob_size`` bytes (the last may be shorter)."""
    if blob_size < 1:
        raise ValueError(f"blob_size must be positive, not {blob_size}")
    offset = 0
    while True:
        data = read_exactly(fileobj, blob_size)
        if not data:
            return
        yield Chunk(offset, data, blob_checksum(data))
        offset += len(data)


def windows(
    items: Iterable[T], max_bytes: int, max_count: int, size: Callable[[T], int]
) -> Iterator[list[T]]:
    """Group items so each group holds at most ``max_bytes`` (or one item) and ``max_count``."""
    window: list[T] = []
    held = 0
    for item in items:
        n = size(item)
        if window and (held + n > max_bytes or len(window) >= max_count):
            yield window
            window, held = [], 0
        window.append(item)
        held += n
    if window:
        yield window
