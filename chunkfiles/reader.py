"""The read path: a standard binary file object over a file's blobs.

``ChunkedFileBlobIndexWrapper`` (the name Sentry uses) keeps the position and
nothing else; it is handed a *source* that supplies the bytes of each blob
(``chunkfiles.sources`` / ``chunkfiles.prefetch``). ``open_refs`` decides the
read mode once and builds the fetch function, the source and the wrapper:

- default: adaptive read-ahead, which fetches only the blobs touched by
  random reads and grows a window of concurrent fetches on sequential ones;
- ``readahead=K``: a window of up to K blobs from the first read on;
- ``readahead=False`` (or 0): one blob at a time, no threads;
- ``prefetch=True``: the whole file into a temp file by a pool, then reads from it.
"""

from __future__ import annotations

import errno
import io
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .conf import chunkfiles_settings
from .exceptions import FileNotStoredError
from .fetch import Fetch, Relocate, storage_fetch
from .prefetch import Prefetched
from .refs import BlobIndex, BlobRef, file_refs, relocate
from .sources import LazySource, ReadAhead, Source

if TYPE_CHECKING:
    from .models import File

__all__ = ["BlobRef", "ChunkedFileBlobIndexWrapper", "open_file", "open_refs"]


class ChunkedFileBlobIndexWrapper(io.RawIOBase):
    """A read-only, seekable binary file over blobs.

    ``io`` supplies ``readlines``, iteration and the context manager from
    ``readinto``/``readline``; reads return exactly what was asked unless at
    EOF, and a failed read leaves the position where it was.
    """

    def __init__(self, source: Source) -> None:
        super().__init__()
        self._source = source
        self._pos = 0
        self.mode = "rb"
        self.size = source.index.size
        self.prefetched = isinstance(source, Prefetched)

    def _ensure_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file.")

    def readable(self) -> bool:
        self._ensure_open()
        return True

    def seekable(self) -> bool:
        self._ensure_open()
        return True

    def tell(self) -> int:
        self._ensure_open()
        return self._pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        """Move the position; fetches nothing (the next read does)."""
        self._ensure_open()
        pos = pos.__index__()
        if whence == io.SEEK_SET:
            new = pos
        elif whence == io.SEEK_CUR:
            new = self._pos + pos
        elif whence == io.SEEK_END:
            new = self.size + pos
        else:
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        if new < 0:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        self._pos = new
        return new

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` completely unless EOF comes first."""
        self._ensure_open()
        view = memoryview(buffer).cast("B")
        filled = 0
        pos = self._pos  # committed only on success: a failed read moves nothing
        end = min(self.size, pos + len(view))
        if end - pos > 0:
            self._source.want(self._source.index.locate(pos), self._source.index.locate(end - 1))
        while filled < len(view) and pos < self.size:
            n = self._source.readinto(pos, view[filled:])
            pos += n
            filled += n
        self._pos = pos
        return filled

    def read(self, size: int | None = -1) -> bytes:
        self._ensure_open()
        left = max(0, self.size - self._pos)
        n = left if size is None or size < 0 else min(size, left)
        if n == 0:
            return b""
        data = self._source.read(self._pos, n)
        self._pos += n  # only after success: a failed read moves nothing
        return data

    def readall(self) -> bytes:
        return self.read()

    def readline(self, size: int | None = -1) -> bytes:
        """Bytes up to and including the next newline, searched in place."""
        self._ensure_open()
        pos = self._pos  # committed only on success, as in readinto
        limit = self.size if size is None or size < 0 else pos + size
        parts: list[bytes] = []
        while pos < min(limit, self.size):
            data, start, end = self._source.span(pos)
            end = min(end, start + limit - pos)
            newline = data.find(b"\n", start, end)
            stop = end if newline < 0 else newline + 1
            parts.append(data[start:stop])
            pos += stop - start
            if newline >= 0:
                break
        self._pos = pos
        return b"".join(parts)

    def write(self, data: Any) -> int:
        raise io.UnsupportedOperation("write")

    def close(self) -> None:
        """Release the source (threads, temp file); idempotent, bounded in time."""
        if not self.closed:
            try:
                self._source.close()
            finally:
                super().close()

    def __del__(self) -> None:
        # The cyclic GC may finalise a reader while another thread holds a
        # lock that joining threads needs: a finaliser cancels, never waits.
        source = self.__dict__.get("_source")
        if source is not None and not self.closed:
            source.abandon()
        super().__del__()

    def detach_tempfile(self) -> Any:
        """Hand over the prefetched temp file (removed when closed) and close the reader."""
        self._ensure_open()
        tmp = self._source.detach()
        self.close()
        return tmp


def open_refs(
    refs: Sequence[BlobRef],
    *,
    fetch: Fetch | None = None,
    file_id: int | None = None,
    expected_size: int | None = None,
    prefetch: bool = False,
    readahead: int | bool | None = None,
    workers: int | None = None,
    temp_dir: str | None = None,
    relocate: Relocate | None = None,
) -> ChunkedFileBlobIndexWrapper:
    """A reader over ``refs``; the read mode is decided here, once (see the module docstring)."""
    # Checked before any fetch: a prefetch must not download a broken file.
    index = BlobIndex(refs, file_id, expected_size)
    if prefetch:
        threads = workers or chunkfiles_settings.PREFETCH_WORKERS
    elif readahead is None or readahead is True:
        threads = workers or chunkfiles_settings.READAHEAD
    else:
        threads = workers or max(1, int(readahead))
    fetch = fetch or storage_fetch(threads)
    options: dict[str, Any] = {
        "relocate": relocate,
        "close_timeout": float(chunkfiles_settings.CLOSE_TIMEOUT),
    }
    source: Source
    if prefetch:
        temp = temp_dir if temp_dir is not None else chunkfiles_settings.TEMP_DIR
        source = Prefetched(index, fetch, threads, temp, **options)
    elif readahead is None:
        depth = chunkfiles_settings.READAHEAD
        source = ReadAhead(index, fetch, depth, threads, adaptive=True, **options)
    elif readahead is False or readahead == 0:
        source = LazySource(index, fetch, **options)
    else:
        depth = chunkfiles_settings.READAHEAD if readahead is True else int(readahead)
        source = ReadAhead(index, fetch, depth, threads, **options)
    return ChunkedFileBlobIndexWrapper(source)


def stored_refs(file: File, using: str) -> list[BlobRef]:
    """``file``'s blobs, checked against its row; a stale row is re-read once first.

    Raises ``FileNotStoredError`` for a file whose content was never stored.
    """
    refs = file_refs(file, using)
    total = sum(ref.size for ref in refs)
    if file.size is None or total != file.size:
        # Another process may have replaced the content since this instance
        # was loaded: the database, not our copy, decides whether it is corrupt.
        rows = type(file)._default_manager.using(using).filter(pk=file.pk)
        fresh = rows.values_list("size", "checksum").first()
        if fresh is not None:
            file.size, file.checksum = fresh
            refs = file_refs(file, using)
    if file.size is None and not refs:
        raise FileNotStoredError(file.pk, file.name)
    return refs


def open_file(
    file: File,
    *,
    using: str,
    prefetch: bool = False,
    readahead: int | bool | None = None,
    workers: int | None = None,
    temp_dir: str | None = None,
) -> ChunkedFileBlobIndexWrapper:
    """A reader over ``file``'s blobs, their index loaded in one query."""
    return open_refs(
        stored_refs(file, using),
        file_id=file.pk,
        expected_size=file.size,
        prefetch=prefetch,
        readahead=readahead,
        workers=workers,
        temp_dir=temp_dir,
        relocate=lambda ref: relocate(ref, using),
    )
