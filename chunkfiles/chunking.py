"""Split a byte stream into fixed-size, hashed chunks. Pure Python, no Django."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import IO, NamedTuple, Protocol


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
    first = fileobj.read(size)
    if not first or len(first) == size:
        return bytes(first)
    parts = [first]
    have = len(first)
    while have < size:
        more = fileobj.read(size - have)
        if not more:
            break
        parts.append(more)
        have += len(more)
    return b"".join(parts)


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


def windows(chunks: Iterable[Chunk], max_bytes: int, max_count: int) -> Iterator[list[Chunk]]:
    """Group chunks so each group holds at most ``max_bytes`` (or one chunk) and ``max_count``."""
    window: list[Chunk] = []
    held = 0
    for chunk in chunks:
        if window and (held + chunk.size > max_bytes or len(window) >= max_count):
            yield window
            window, held = [], 0
        window.append(chunk)
        held += chunk.size
    if window:
        yield window
