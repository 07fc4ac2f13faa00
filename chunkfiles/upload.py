"""The upload path: stream -> hashed blobs -> dedupe -> concurrent writes -> rows.

Memory stays bounded whatever the input size: chunks are looked up in
windows (one query per window) and at most ``1.5 * workers`` blobs are queued
for writing at any time. The rows are written by ``commit.save_rows`` in
one transaction; objects are deleted only when their rows are known not to
be committed (see ``BlobWriter.__exit__``).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any, TypeAlias

from django.core.files.base import File as DjangoFile
from django.db import router

from .chunking import Chunk, blob_checksum, iter_chunks, windows
from .commit import commit_rows
from .conf import chunkfiles_settings
from .exceptions import ChecksumMismatchError
from .writer import BlobWriter

if TYPE_CHECKING:
    from .models import File, FileBlob, FileBlobIndex

#: Checksums per lookup query; well under every backend's bound-parameter limit.
CHECKSUM_BATCH = 500
#: Bytes of chunks held while their dedupe lookup runs (one query per window):
#: at least this much, so small blobs are looked up many to a query...
WINDOW_BYTES = 4 * 1024 * 1024
#: ...and at most this many blobs more than the write queue already holds, so
#: an upload's memory stays within ``1.5 * workers + WINDOW_BLOBS`` blobs.
WINDOW_BLOBS = 2

#: One blob for ``from_files``: a file object, or ``(fileobj, expected checksum)``.
UploadItem: TypeAlias = "IO[bytes] | DjangoFile[bytes] | tuple[IO[bytes] | DjangoFile[bytes], str]"


def headers_problem(headers: Any) -> str | None:
    """Why ``headers`` cannot be a file's headers (a dict of strings), or None."""
    if not isinstance(headers, dict):
        return f"headers must be a dict of strings, not {type(headers).__name__}"
    for key, value in headers.items():
        if not isinstance(key, str) or not isinstance(value, str):
            return f"headers must be a dict of strings; {key!r}: {value!r} is not"
        if any(c in key + value for c in "\r\n\0"):
            return f"header {key!r} contains a line break or NUL"
    return None


def _positive(name: str, value: int | None, default: int) -> int:
    if value is None:
        return int(default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, not {value}")
    return value


def _binary_input(fileobj: Any, what: str) -> Any:
    """``fileobj`` if it is a readable binary file object, else a clear TypeError.

    A Django ``File`` is rewound, as ``Storage.save()`` reads it from its start.
    """
    if isinstance(fileobj, str | bytes | bytearray | memoryview):
        raise TypeError(
            f"{what} takes a binary file object, not {type(fileobj).__name__}; "
            "wrap bytes in django.core.files.base.ContentFile or io.BytesIO"
        )
    inner = fileobj.file if isinstance(fileobj, DjangoFile) else fileobj
    if isinstance(inner, io.TextIOBase) or not callable(getattr(fileobj, "read", None)):
        raise TypeError(
            f"{what} takes a binary file object (opened with 'rb'), not {type(inner).__name__}"
        )
    if isinstance(fileobj, DjangoFile) and _seekable(fileobj):
        fileobj.seek(0)
    return fileobj


def _seekable(fileobj: Any) -> bool:
    try:
        return bool(fileobj.seekable())
    except (AttributeError, ValueError, OSError):
        return False


def _reread(fileobj: Any, position: int, size: int) -> Any:
    """A function that reads ``size`` bytes at ``position`` of ``fileobj`` again."""

    def read() -> bytes:
        fileobj.seek(position)
        return bytes(fileobj.read(size))

    return read


def _upload(chunks: Iterator[tuple[Chunk, Any]], writer: BlobWriter, blob_size: int) -> None:
    window_bytes = max(WINDOW_BYTES, WINDOW_BLOBS * blob_size)
    for window in windows(chunks, window_bytes, CHECKSUM_BATCH, size=lambda item: item[0].size):
        writer.lookup(chunk.checksum for chunk, _ in window)
        for chunk, reread in window:
            writer.add(chunk.checksum, chunk.data, reread)
    writer.wait()


def put_file(
    file: File,
    fileobj: IO[bytes] | DjangoFile[bytes],
    *,
    blob_size: int | None = None,
    commit: bool = True,
    workers: int | None = None,
) -> list[FileBlobIndex]:
    """Store ``fileobj`` as the content of ``file``; see ``File.putfile``."""
    from .models import FileBlobIndex

    fileobj = _binary_input(fileobj, "putfile()")
    blob_size = _positive("blob_size", blob_size, chunkfiles_settings.BLOB_SIZE)
    workers = _positive("workers", workers, chunkfiles_settings.UPLOAD_WORKERS)
    problem = headers_problem(file.headers)
    if problem:
        raise ValueError(f"file {file.pk} ({file.name!r}): {problem}")
    if not commit and file.pk is None:
        raise ValueError("putfile(commit=False) needs a saved File")
    db = file._db_for_write()
    whole = hashlib.sha1()  # Sentry's File.checksum; not used for dedupe
    placed: list[tuple[int, str]] = []
    size = 0
    start = fileobj.tell() if _seekable(fileobj) else None

    def hashed() -> Iterator[tuple[Chunk, Any]]:
        nonlocal size
        for chunk in iter_chunks(fileobj, blob_size):
            whole.update(chunk.data)
            placed.append((chunk.offset, chunk.checksum))
            size = chunk.offset + chunk.size
            reread = None if start is None else _reread(fileobj, start + chunk.offset, chunk.size)
            yield chunk, reread

    def rows(blobs: dict[str, FileBlob]) -> list[FileBlobIndex]:
        file.size = size
        file.checksum = whole.hexdigest()
        if commit:
            file.save(using=db)
        indexes = FileBlobIndex.objects.using(db)
        indexes.filter(file=file).delete()
        # In checksum order, like every lock this upload takes: concurrent
        # uploads of overlapping content then cannot deadlock on each other.
        ordered = sorted(placed, key=lambda p: (p[1], p[0]))
        return indexes.bulk_create(
            [FileBlobIndex(file=file, blob=blobs[c], offset=o) for o, c in ordered]
        )

    with BlobWriter(db, workers) as writer:
        _upload(hashed(), writer, blob_size)
        created = commit_rows(writer, rows)
    return sorted(created, key=lambda row: row.offset)


def _expected_matches(expected: str, data: bytes, sha256_hex: str) -> str:
    """The digest of ``data`` in the algorithm of ``expected`` (SHA-256 or SHA-1)."""
    if len(expected) == 64:
        return sha256_hex
    if len(expected) == 40:
        return hashlib.sha1(data).hexdigest()
    raise ValueError(
        f"expected checksum {expected!r} is neither SHA-256 (64 hex) nor SHA-1 (40 hex)"
    )


def _items(items: Iterable[UploadItem]) -> Iterator[tuple[Chunk, Any]]:
    for index, item in enumerate(items):
        fileobj, expected = item if isinstance(item, tuple) else (item, None)
        fileobj = _binary_input(fileobj, f"from_files() item {index}")
        start = fileobj.tell() if _seekable(fileobj) else None
        data = fileobj.read()
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"item {index}: read() returned {type(data).__name__}, not bytes")
        data = bytes(data)
        checksum = blob_checksum(data)
        if expected is not None:
            expected = expected.lower()
            actual = _expected_matches(expected, data, checksum)
            if actual != expected:
                raise ChecksumMismatchError(expected, actual, index)
        reread = None if start is None else _reread(fileobj, start, len(data))
        yield Chunk(index, data, checksum), reread


def store_blobs(
    items: Iterable[UploadItem], *, workers: int | None = None, using: str | None = None
) -> list[FileBlob]:
    """Store each item as one blob; see ``FileBlob.from_files``."""
    from .models import FileBlob

    db = using or router.db_for_write(FileBlob)
    workers = _positive("workers", workers, chunkfiles_settings.UPLOAD_WORKERS)
    order: list[str] = []

    def recorded() -> Iterator[tuple[Chunk, Any]]:
        for chunk, reread in _items(items):
            order.append(chunk.checksum)
            yield chunk, reread

    with BlobWriter(db, workers) as writer:
        _upload(recorded(), writer, 0)
        blobs = commit_rows(writer, lambda blobs: blobs)
    return [blobs[c] for c in order]
