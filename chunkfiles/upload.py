"""The upload path: stream -> hashed blobs -> dedupe -> concurrent writes -> rows.

Memory stays bounded whatever the input size: chunks are looked up in
windows (one query per window) and at most ``1.5 * workers`` blobs are queued
for writing at any time.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import IO, TYPE_CHECKING, TypeAlias

from django.core.files.base import File as DjangoFile
from django.db import router, transaction

from .chunking import Chunk, blob_checksum, iter_chunks, windows
from .conf import chunkfiles_settings
from .exceptions import ChecksumMismatchError
from .storage import blob_store

if TYPE_CHECKING:
    from .models import File, FileBlob, FileBlobIndex

logger = logging.getLogger(__name__)

#: Checksums per lookup query; well under every backend's bound-parameter limit.
CHECKSUM_BATCH = 500
#: Bytes of chunks held while their dedupe lookup runs (one query per window).
WINDOW_BYTES = 32 * 1024 * 1024

#: One blob for ``from_files``: a file object, or ``(fileobj, expected checksum)``.
UploadItem: TypeAlias = "IO[bytes] | DjangoFile[bytes] | tuple[IO[bytes] | DjangoFile[bytes], str]"


class BlobWriter:
    """Writes the blobs a batch of uploads needs, at most once each.

    Used as a context manager: on an exception every object it wrote is
    deleted again (their rows were never committed); on success only the
    objects that lost a race to an identical concurrent upload are deleted.
    """

    def __init__(self, using: str, workers: int | None = None) -> None:
        self.using = using
        self.workers = max(1, workers or chunkfiles_settings.UPLOAD_WORKERS)
        self.store = blob_store(connections=self.workers)
        self.known: dict[str, FileBlob] = {}
        self._pending: dict[str, tuple[Future[str], int]] = {}
        self._written: dict[str, tuple[str, int]] = {}
        self._losers: list[str] = []
        self._committed = False
        self._failed = threading.Event()
        # Bounds memory: a queued write holds its blob's bytes until it runs;
        # half a pool's worth of queue keeps every worker busy while we hash.
        self._slots = threading.BoundedSemaphore(self.workers + (self.workers + 1) // 2)
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="chunkfiles-upload")

    def __enter__(self) -> BlobWriter:
        return self

    def lookup(self, checksums: Iterable[str]) -> None:
        """Find which of ``checksums`` are stored already (one query per batch)."""
        from .models import FileBlob

        unseen = [c for c in checksums if c not in self.known and c not in self._pending]
        if unseen:
            self.known.update(FileBlob.objects.using(self.using).by_checksums(unseen))

    def add(self, checksum: str, data: bytes) -> None:
        """Queue ``data`` for writing unless a blob with its checksum exists or is queued."""
        if checksum in self.known or checksum in self._pending:
            return
        if self._failed.is_set():
            self.wait()  # fail fast instead of reading the rest of the input
        self._slots.acquire()
        future = self._pool.submit(self.store.put, data, checksum)
        future.add_done_callback(self._done)
        self._pending[checksum] = (future, len(data))

    def _done(self, future: Future[str]) -> None:
        self._slots.release()
        if not future.cancelled() and future.exception() is not None:
            self._failed.set()

    def wait(self) -> None:
        """Wait for every queued write; re-raise the first failure."""
        for checksum, (future, size) in list(self._pending.items()):
            name = future.result()
            self._written[checksum] = (name, size)
            del self._pending[checksum]

    def save_rows(self) -> dict[str, FileBlob]:
        """Create the rows of the written blobs; call inside a transaction.

        Returns every blob seen, by checksum. A concurrent upload of the same
        content may have won the unique checksum: its row is used and our
        object is scheduled for deletion.
        """
        from .models import FileBlob

        self.wait()
        if not self._written:
            return self.known
        blobs = FileBlob.objects.using(self.using)
        blobs.bulk_create(
            [
                FileBlob(checksum=c, path=name, size=size)
                for c, (name, size) in self._written.items()
            ],
            ignore_conflicts=True,
        )
        rows = blobs.by_checksums(self._written)
        missing = [c for c in self._written if c not in rows]
        if missing:
            # Under REPEATABLE READ (MariaDB) an older snapshot can hide a row
            # whose conflict made our insert a no-op; a locking read sees it.
            rows.update(blobs.select_for_update().by_checksums(missing))
        self._losers = [name for c, (name, _) in self._written.items() if rows[c].path != name]
        self.known.update(rows)
        return self.known

    def committed(self) -> None:
        """Mark the rows as saved: from now on the written objects are referenced."""
        self._committed = True

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for future, _ in self._pending.values():
            future.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._committed:
            doomed = self._losers
        else:
            doomed = [name for name, _ in self._written.values()]
            doomed += [
                f.result()
                for f, _ in self._pending.values()
                if f.done() and not f.cancelled() and f.exception() is None
            ]
        for name in doomed:
            try:
                self.store.delete(name)
            except Exception:
                # Leaves an orphan object for garbage collection; the upload's
                # own error (if any) is the one worth raising.
                logger.warning("could not delete unused blob object %r", name, exc_info=True)


def _upload(chunks: Iterator[Chunk], writer: BlobWriter) -> None:
    for window in windows(chunks, WINDOW_BYTES, CHECKSUM_BATCH):
        writer.lookup(chunk.checksum for chunk in window)
        for chunk in window:
            writer.add(chunk.checksum, chunk.data)
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

    blob_size = blob_size or chunkfiles_settings.BLOB_SIZE
    if not commit and file.pk is None:
        raise ValueError("putfile(commit=False) needs a saved File")
    db = file._db_for_write()
    whole = hashlib.sha1()  # Sentry's File.checksum; not used for dedupe
    placed: list[tuple[int, str]] = []
    size = 0

    def hashed(chunks: Iterator[Chunk]) -> Iterator[Chunk]:
        nonlocal size
        for chunk in chunks:
            whole.update(chunk.data)
            placed.append((chunk.offset, chunk.checksum))
            size = chunk.offset + chunk.size
            yield chunk

    with BlobWriter(db, workers) as writer:
        _upload(hashed(iter_chunks(fileobj, blob_size)), writer)
        with transaction.atomic(using=db):
            blobs = writer.save_rows()
            file.size = size
            file.checksum = whole.hexdigest()
            if commit:
                file.save(using=db)
            indexes = FileBlobIndex.objects.using(db)
            indexes.filter(file=file).delete()
            rows = indexes.bulk_create(
                [FileBlobIndex(file=file, blob=blobs[c], offset=o) for o, c in placed]
            )
        writer.committed()
    return rows


def _expected_matches(expected: str, data: bytes, sha256_hex: str) -> str:
    """The digest of ``data`` in the algorithm of ``expected`` (SHA-256 or SHA-1)."""
    if len(expected) == 64:
        return sha256_hex
    if len(expected) == 40:
        return hashlib.sha1(data).hexdigest()
    raise ValueError(
        f"expected checksum {expected!r} is neither SHA-256 (64 hex) nor SHA-1 (40 hex)"
    )


def _items(items: Iterable[UploadItem]) -> Iterator[Chunk]:
    for index, item in enumerate(items):
        fileobj, expected = item if isinstance(item, tuple) else (item, None)
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
        yield Chunk(index, data, checksum)


def store_blobs(
    items: Iterable[UploadItem], *, workers: int | None = None, using: str | None = None
) -> list[FileBlob]:
    """Store each item as one blob; see ``FileBlob.from_files``."""
    from .models import FileBlob

    db = using or router.db_for_write(FileBlob)
    order: list[str] = []

    def recorded(chunks: Iterator[Chunk]) -> Iterator[Chunk]:
        for chunk in chunks:
            order.append(chunk.checksum)
            yield chunk

    with BlobWriter(db, workers) as writer:
        _upload(recorded(_items(items)), writer)
        with transaction.atomic(using=db):
            blobs = writer.save_rows()
        writer.committed()
    return [blobs[c] for c in order]
