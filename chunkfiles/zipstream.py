"""A ZIP archive produced as a stream of byte strings, for HTTP responses.

The stdlib ``zipfile`` writes to a non-seekable stream by putting each
member's sizes and CRC in a data descriptor after its data, so no byte has
to be revisited; ``force_zip64=True`` lets a member grow past 4 GiB without
the sizes being known in advance. Members are stored, not deflated: most
stored files (archives, media, builds) do not compress, and deflate would
cost a core per download. Memory holds one chunk of the member being
written, whatever the archive's size.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from typing import NamedTuple


class Member(NamedTuple):
    """One file of the archive: its name, time, and a callable yielding its bytes.

    ``chunks`` is called only when the member is reached, so a reader is
    open for one member at a time.
    """

    name: str
    modified: datetime
    chunks: Callable[[], Iterable[bytes]]


class _Sink:
    """The write end ``zipfile`` writes into; the generator drains it."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def drain(self) -> Iterator[bytes]:
        parts, self._parts = self._parts, []
        data = b"".join(parts)
        if data:
            yield data


def _zip_time(when: datetime) -> tuple[int, int, int, int, int, int]:
    # ZIP stores local time without a zone; UTC is the least surprising choice.
    if when.tzinfo is not None:
        when = when.astimezone(timezone.utc)
    when = max(when.replace(tzinfo=None), datetime(1980, 1, 1))
    return (when.year, when.month, when.day, when.hour, when.minute, when.second)


def zip_stream(members: Iterable[Member]) -> Iterator[bytes]:
    """The bytes of a ZIP archive of ``members``, produced as they are read.

    An exception from a member's chunks propagates: the archive is then
    incomplete (no central directory), so unzip tools reject it rather
    than extract a silently truncated member.
    """
    sink = _Sink()
    archive = zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED, allowZip64=True)  # type: ignore[call-overload]
    for member in members:
        info = zipfile.ZipInfo(member.name, date_time=_zip_time(member.modified))
        info.compress_type = zipfile.ZIP_STORED
        info.external_attr = 0o644 << 16  # a regular file readable by all, as unzip expects
        chunks = member.chunks()
        try:
            with archive.open(info, "w", force_zip64=True) as out:
                for chunk in chunks:
                    out.write(chunk)
                    yield from sink.drain()
        finally:
            # Release the member's reader now, also when the download stops here.
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        yield from sink.drain()
    archive.close()
    yield from sink.drain()
