"""Move blob objects from one storage to another while the store is in use.

The plain Python API behind ``manage.py chunkfiles_move_storage`` and the
Celery task ``chunkfiles.move_blobs``::

    from chunkfiles.move import move_storage

    for moved in move_storage("s3", workers=16, delete_source=True):
        print(moved.blob_id, moved.status)

Each blob is copied, then recorded, then (optionally) deleted at its source,
in that order, so that no row ever names an object that does not exist:

1. read the object from its storage and check its size and SHA-256;
2. write it to the destination under a fresh name (nothing names it yet);
3. read the copy back and check it again;
4. if the row still names the same object and is not lost, point it at the
   copy (one conditional UPDATE, which locks the row);
5. after the commit, delete the old object if asked to.

A process killed anywhere leaves at most an unnamed copy in the destination
(before 4) or the old object in the source (between 4 and 5): orphans for
``chunkfiles_gc --orphans``, never a lost byte. A re-run skips blobs already
in the destination. If the row changed meanwhile (garbage collection removed
it, an upload healed it, another mover won), the copy is deleted again.

Readers that loaded a blob's location before it moved find the old object
gone after step 5; the read path then reads the row again and follows it.
Storage I/O runs on a thread pool; every query runs in the calling thread.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from django.db import DatabaseError, connections, router

from .commit import retryable
from .conf import blob_alias, chunkfiles_settings
from .storage import BlobStore, ObjectCorruptError, blob_store, new_blob_name

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from .models import FileBlob

logger = logging.getLogger(__name__)

#: Blob rows per query while listing what to move (keyset pages by id).
PAGE = 500
#: Outcomes of ``move_blobs``: the blob moved, or why it did not.
STATUSES = ("moved", "changed", "missing", "corrupt", "failed")
#: Attempts of the recording transaction on a deadlock or lock wait timeout.
RECORD_ATTEMPTS = 5


class BlobLocation(NamedTuple):
    """A blob row as loaded for moving: where its object is and how to check it."""

    pk: int
    path: str
    storage: str
    size: int
    checksum: str


@dataclass(frozen=True, slots=True)
class Moved:
    """What happened to one blob.

    ``status`` is one of ``STATUSES``: ``moved`` (the row names the copy),
    ``changed`` (the row changed under us; nothing to do), ``missing`` (the
    source object is gone; the row is marked lost), ``corrupt`` (the source
    bytes fail their checksum; left as is) or ``failed`` (storage error).
    """

    blob_id: int
    status: str
    size: int
    error: str = ""
    #: For ``moved`` with ``delete_source``: whether the old object is gone.
    source_deleted: bool = False


def check_aliases(dst: str, src: str | None = None) -> None:
    """``ValueError`` unless ``dst`` (and ``src``) are distinct ``STORAGES`` aliases."""
    known = chunkfiles_settings.storages_setting
    for alias in (dst, src):
        if alias is not None and alias not in known:
            raise ValueError(f"unknown storage alias {alias!r} (not in STORAGES)")
    if src is not None and src == dst:
        raise ValueError(f"source and destination are both {dst!r}")


def storage_summary(using: str | None = None) -> list[tuple[str, int, int]]:
    """``(alias, blobs, bytes)`` per storage holding blob objects, by alias.

    Lost blobs (no object) are not counted.
    """
    from .models import FileBlob

    rows = FileBlob.objects.using(using).stored().filter(path__isnull=False)
    return [(alias, blobs, nbytes) for alias, (blobs, nbytes) in rows.totals_by_storage().items()]


def blobs_to_move(
    dst: str, *, src: str | None = None, using: str | None = None
) -> QuerySet[FileBlob]:
    """Blobs with an object (not lost) outside ``dst`` (and in ``src`` if given)."""
    from .models import FileBlob

    rows = FileBlob.objects.using(using).stored().filter(path__isnull=False).outside_storage(dst)
    return rows if src is None else rows.in_storage(src)


def _locations(rows: QuerySet[FileBlob]) -> Iterator[BlobLocation]:
    # Keyset pages: moved rows leave the queryset as we go, so offsets would skip rows.
    last = 0
    while True:
        page = list(
            rows.filter(pk__gt=last)
            .order_by("pk")
            .values_list("pk", "path", "storage", "size", "checksum")[:PAGE]
        )
        for pk, path, storage, size, checksum in page:
            if path is not None:  # filtered out by blobs_to_move; narrows the type
                yield BlobLocation(pk, path, storage, size or 0, checksum)
        if len(page) < PAGE:
            return
        last = page[-1][0]


class _Mover:
    """The storage half of a move: copies on a pool."""

    def __init__(self, dst: str, workers: int) -> None:
        self.dst = dst
        self.workers = max(1, workers)
        self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="chunkfiles-move")

    def store(self, recorded: str) -> BlobStore:
        """The store of a blob whose row records ``recorded`` (or of ``dst``)."""
        return blob_store(blob_alias(recorded), connections=self.workers)

    def copy(self, blob: BlobLocation) -> str:
        """Copy the blob to a fresh name in ``dst``; the name, once read back and checked."""
        data = self.store(blob.storage).get_verified(blob.path, blob.size, blob.checksum)
        target = self.store(self.dst)
        name = target.put(new_blob_name(), data, blob.checksum)
        try:
            target.get_verified(name, blob.size, blob.checksum)
        except BaseException:
            self.discard(self.dst, name)
            raise
        return name

    def discard(self, alias: str, name: str) -> bool:
        """Delete an object nothing names (any more); False if it stays as an orphan."""
        try:
            self.store(alias).delete(name)
        except Exception:
            logger.warning("could not delete %r from %r; left for orphan collection", name, alias)
            return False
        return True

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _record(blob: BlobLocation, dst: str, name: str, using: str | None) -> bool:
    """Point the row at ``name`` in ``dst`` if it still names ``blob``'s object.

    One conditional UPDATE: it locks the row and re-checks the condition on
    the latest committed version on every backend (PostgreSQL re-evaluates
    it after a lock wait, MariaDB's UPDATE reads the current row), and on
    SQLite it cannot fail on a read-to-write lock upgrade as a locking
    SELECT followed by an UPDATE would.
    """
    from .models import FileBlob

    rows = FileBlob.objects.using(using).filter(
        pk=blob.pk, path=blob.path, storage=blob.storage, lost_at__isnull=True
    )
    for attempt in range(1, RECORD_ATTEMPTS + 1):
        try:
            return rows.update(path=name, storage=dst) == 1
        except DatabaseError as error:
            if attempt == RECORD_ATTEMPTS or not retryable(error):
                raise
            time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def _missing(blob: BlobLocation, using: str | None) -> str:
    """The source object is gone: mark the row lost if it still names it."""
    from .models import FileBlob

    rows = FileBlob.objects.using(using).filter(
        pk=blob.pk, path=blob.path, storage=blob.storage, lost_at__isnull=True
    )
    return "missing" if rows.mark_lost(path=blob.path) else "changed"


def move_blobs(
    blobs: Iterable[BlobLocation],
    dst: str,
    *,
    using: str | None = None,
    workers: int = 16,
    delete_source: bool = False,
) -> Iterator[Moved]:
    """Move each of ``blobs`` to ``dst``; yields one ``Moved`` per blob, in order.

    Must not run inside a transaction: each row update has to be committed
    before the old object is deleted, or a rollback would leave the row
    naming a deleted object.
    """
    from .models import FileBlob

    alias = using or router.db_for_write(FileBlob)
    if connections[alias].in_atomic_block:
        raise RuntimeError("move_blobs() commits each blob; call it outside transaction.atomic()")
    mover = _Mover(dst, workers)
    in_flight: deque[tuple[BlobLocation, Future[str]]] = deque()
    limit = 2 * mover.workers  # keeps every worker busy while the main thread commits
    try:
        pending = iter(blobs)
        while True:
            while len(in_flight) < limit:
                blob = next(pending, None)
                if blob is None:
                    break
                in_flight.append((blob, mover.pool.submit(mover.copy, blob)))
            if not in_flight:
                break
            blob, future = in_flight.popleft()
            yield _settle(blob, future, mover, using, delete_source)
    finally:
        for _, future in in_flight:
            future.cancel()
        mover.close()


def _settle(
    blob: BlobLocation,
    future: Future[str],
    mover: _Mover,
    using: str | None,
    delete_source: bool,
) -> Moved:
    try:
        name = future.result()
    except FileNotFoundError as exc:
        return Moved(blob.pk, _missing(blob, using), blob.size, str(exc))
    except ObjectCorruptError as exc:
        return Moved(blob.pk, "corrupt", blob.size, f"{blob.path}: {exc}")
    except Exception as exc:
        return Moved(blob.pk, "failed", blob.size, f"{type(exc).__name__}: {exc}")
    # A database error propagates and keeps the copy: if the commit's outcome
    # is unknown, the copy may be what the row names now.
    if not _record(blob, mover.dst, name, using):
        mover.discard(mover.dst, name)
        return Moved(blob.pk, "changed", blob.size)
    deleted = delete_source and mover.discard(blob.storage, blob.path)
    return Moved(blob.pk, "moved", blob.size, source_deleted=deleted)


def move_storage(
    dst: str,
    *,
    src: str | None = None,
    using: str | None = None,
    workers: int = 16,
    delete_source: bool = False,
    blob_ids: Iterable[int] | None = None,
) -> Iterator[Moved]:
    """Move every blob not yet in ``dst`` (only those in ``src``, or of ``blob_ids``)."""
    check_aliases(dst, src)
    rows = blobs_to_move(dst, src=src, using=using)
    if blob_ids is not None:
        rows = rows.filter(pk__in=list(blob_ids))
    return move_blobs(
        _locations(rows), dst, using=using, workers=workers, delete_source=delete_source
    )


def tally(outcomes: Iterable[Moved]) -> dict[str, int]:
    """Counts per status plus ``bytes`` moved and ``source_deleted``; JSON-friendly."""
    counts = dict.fromkeys(STATUSES, 0) | {"bytes": 0, "source_deleted": 0}
    for moved in outcomes:
        counts[moved.status] += 1
        if moved.status == "moved":
            counts["bytes"] += moved.size
            counts["source_deleted"] += int(moved.source_deleted)
    return counts
