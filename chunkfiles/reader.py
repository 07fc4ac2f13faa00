"""The read path: a standard binary file object over a file's blobs.

``ChunkedFileBlobIndexWrapper`` keeps the position and maps it to a blob by
bisection over the offsets; the bytes come from a *source*:

- ``LazySource`` fetches the blob under the position when it is first read;
- ``chunkfiles.prefetch.ReadAhead`` keeps the next K blobs in flight;
- ``chunkfiles.prefetch.Prefetched`` reads a temp file filled by a pool.

Whatever the source, every blob is checked against its size and SHA-256 by
``load_blob`` before a byte of it is handed out.
"""

from __future__ import annotations

import bisect
import errno
import hashlib
import io
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from .conf import chunkfiles_settings
from .exceptions import BlobCorruptError, BlobMissingError, BlobReadError

if TYPE_CHECKING:
    from .models import File


class BlobRef(NamedTuple):
    """What the reader knows of one blob: where it sits and how to check it."""

    offset: int
    size: int
    checksum: str
    path: str | None


#: Fetches a blob's raw bytes from storage (``FileNotFoundError`` if absent).
Fetch = Callable[[BlobRef], bytes]


def load_blob(ref: BlobRef, fetch: Fetch, file_id: int | None) -> bytes:
    """Fetch one blob and verify it; every byte a reader returns passes here."""
    where: dict[str, Any] = {
        "file_id": file_id,
        "checksum": ref.checksum,
        "offset": ref.offset,
        "path": ref.path,
    }
    if ref.path is None:
        raise BlobMissingError(**where, detail="no storage name recorded")
    try:
        data = fetch(ref)
    except BlobReadError:
        raise
    except FileNotFoundError as exc:
        raise BlobMissingError(**where, detail=str(exc)) from exc
    except Exception as exc:
        # Any failure (network, credentials, a storage bug) must reach the
        # caller as a read error; a worker thread must never hide it.
        raise BlobReadError(**where, detail=f"{type(exc).__name__}: {exc}") from exc
    if len(data) != ref.size:
        raise BlobCorruptError(
            **where, detail=f"expected {ref.size} bytes, storage returned {len(data)}"
        )
    actual = hashlib.sha256(data).hexdigest()
    if actual != ref.checksum:
        raise BlobCorruptError(**where, detail=f"stored bytes hash to {actual}")
    return data


def storage_fetch(connections: int = 1) -> Fetch:
    """A ``Fetch`` reading from the configured blob storage with ``connections`` threads."""
    from .storage import blob_store

    store = blob_store(connections=connections)

    def fetch(ref: BlobRef) -> bytes:
        assert ref.path is not None  # load_blob checks before fetching
        return store.get(ref.path)

    return fetch


class BlobIndex:
    """The ordered blobs of a file with O(log n) position lookup."""

    __slots__ = ("file_id", "offsets", "refs", "size")

    def __init__(
        self,
        refs: Sequence[BlobRef],
        file_id: int | None = None,
        expected_size: int | None = None,
    ) -> None:
        self.refs = list(refs)
        self.file_id = file_id
        self.offsets = [ref.offset for ref in self.refs]
        expected = 0
        for ref in self.refs:
            if ref.offset != expected:
                # A gap or overlap would silently shift every following byte.
                raise BlobCorruptError(
                    file_id=file_id,
                    checksum=ref.checksum,
                    offset=ref.offset,
                    path=ref.path,
                    detail=f"index expects this blob at offset {expected}",
                )
            expected += ref.size
        self.size = expected
        if expected_size is not None and expected_size != expected:
            last = self.refs[-1] if self.refs else BlobRef(0, 0, "-", None)
            raise BlobCorruptError(
                file_id=file_id,
                checksum=last.checksum,
                offset=last.offset,
                path=last.path,
                detail=f"blobs add up to {expected} bytes but the file records {expected_size}",
            )

    def locate(self, pos: int) -> int:
        """Index of the blob holding byte ``pos`` (``0 <= pos < size``)."""
        return bisect.bisect_right(self.offsets, pos) - 1


class Source:
    """Supplies bytes at a position; subclasses say where they come from."""

    def __init__(self, index: BlobIndex) -> None:
        self.index = index

    def blob(self, i: int) -> bytes:
        raise NotImplementedError

    def span(self, pos: int) -> tuple[bytes, int, int]:
        """``(data, start, end)``: ``data[start:end]`` are the bytes from ``pos`` on."""
        i = self.index.locate(pos)
        ref = self.index.refs[i]
        return self.blob(i), pos - ref.offset, ref.size

    def readinto(self, pos: int, view: memoryview) -> int:
        data, start, end = self.span(pos)
        n = min(len(view), end - start)
        view[:n] = memoryview(data)[start : start + n]
        return n

    def read(self, pos: int, n: int) -> bytes:
        """Exactly ``n`` bytes from ``pos`` (the caller stays within the file).

        Copies each byte once: a read inside one blob is a slice (none at all
        for a whole blob), a longer one joins views of the blobs it spans.
        """
        parts: list[memoryview] = []
        wanted = n
        while wanted:
            data, start, end = self.span(pos)
            if not parts and end - start >= wanted:
                return data[start : start + wanted]
            take = min(wanted, end - start)
            parts.append(memoryview(data)[start : start + take])
            pos += take
            wanted -= take
        return b"".join(parts)

    def detach(self) -> Any:
        raise TypeError("detach_tempfile() needs a reader opened with prefetch=True")

    def close(self) -> None:
        pass


class LazySource(Source):
    """Fetches a blob when the position first enters it; holds one blob."""

    def __init__(self, index: BlobIndex, fetch: Fetch) -> None:
        super().__init__(index)
        self.fetch = fetch
        self._current: tuple[int, bytes] | None = None

    def blob(self, i: int) -> bytes:
        if self._current is None or self._current[0] != i:
            self._current = (i, load_blob(self.index.refs[i], self.fetch, self.index.file_id))
        return self._current[1]

    def close(self) -> None:
        self._current = None


class ChunkedFileBlobIndexWrapper(io.RawIOBase):
    """A read-only, seekable binary file over blobs (the name Sentry uses).

    ``io`` supplies ``readlines``, iteration and the context manager from
    ``readinto``/``readline``; reads return exactly what was asked unless at EOF.
    """

    def __init__(
        self,
        refs: Sequence[BlobRef],
        fetch: Fetch,
        *,
        file_id: int | None = None,
        expected_size: int | None = None,
        prefetch: bool = False,
        readahead: int | bool | None = None,
        workers: int | None = None,
        temp_dir: str | None = None,
    ) -> None:
        from . import prefetch as modes

        super().__init__()
        self._pos = 0
        self.mode = "rb"
        # Checked before any fetch: a prefetch must not download a broken file.
        self._index = BlobIndex(refs, file_id, expected_size)
        self.size = self._index.size
        self.prefetched = bool(prefetch)
        self._source: Source
        if prefetch:
            self._source = modes.Prefetched(
                self._index,
                fetch,
                workers or chunkfiles_settings.PREFETCH_WORKERS,
                temp_dir if temp_dir is not None else chunkfiles_settings.TEMP_DIR,
            )
        elif readahead:
            depth = chunkfiles_settings.READAHEAD if readahead is True else int(readahead)
            self._source = modes.ReadAhead(self._index, fetch, depth, workers or depth)
        else:
            self._source = LazySource(self._index, fetch)

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
        """Release the source (threads, temp file); idempotent."""
        if not self.closed:
            try:
                # Absent when the constructor raised (a failed prefetch).
                source = getattr(self, "_source", None)
                if source is not None:
                    source.close()
            finally:
                super().close()

    def detach_tempfile(self) -> Any:
        """Hand over the prefetched temp file (removed when closed) and close the reader."""
        self._ensure_open()
        tmp = self._source.detach()
        self.close()
        return tmp


def open_file(
    file: File,
    *,
    prefetch: bool = False,
    readahead: int | bool | None = None,
    workers: int | None = None,
    temp_dir: str | None = None,
) -> ChunkedFileBlobIndexWrapper:
    """A reader over ``file``'s blobs, their index loaded in one query."""
    refs = file.blob_refs()
    connections = workers or (
        chunkfiles_settings.PREFETCH_WORKERS
        if prefetch
        else (chunkfiles_settings.READAHEAD if readahead is True else int(readahead or 1))
    )
    return ChunkedFileBlobIndexWrapper(
        refs,
        storage_fetch(connections),
        file_id=file.pk,
        expected_size=file.size,
        prefetch=prefetch,
        readahead=readahead,
        workers=workers,
        temp_dir=temp_dir,
    )
