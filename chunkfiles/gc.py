"""Garbage collection: blob rows no file uses any more, and their objects.

The plain Python API behind ``manage.py chunkfiles_gc``::

    from chunkfiles.gc import collect_blobs

    report = collect_blobs(grace=3600)  # blobs unused for an hour, and their objects

``collect_blobs`` first stamps ``FileBlob.unused_since`` on blobs no index
row names (and clears it on blobs a file uses again), then removes blobs
unused for longer than the grace period, a batch per transaction:

1. lock the candidates (``SELECT ... FOR UPDATE SKIP LOCKED``, by checksum as
   uploads lock them: a blob an upload holds is skipped, never waited for);
2. check again, under the lock, that no index row names them;
3. delete the rows, one statement each; the foreign key refuses the delete of a blob
   an upload linked meanwhile (``IntegrityError``), and the batch is then
   retried one row at a time, keeping the linked ones;
4. only after the commit, delete their objects.

An upload that deduplicates onto a blob locks its row before linking it, so
it either holds the row first (GC skips it) or finds it gone and writes the
bytes again (``chunkfiles.writer``). A failed object delete leaves an orphan
object, never a row without its object.

Objects no row names (a crash between a storage write and its row) are
``chunkfiles.orphans``' business.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, TypeVar

from django.db import DatabaseError, IntegrityError, connections, router, transaction
from django.db.models import Q, Sum
from django.utils import timezone

from .commit import retryable
from .conf import blob_alias, chunkfiles_settings
from .storage import blob_store

if TYPE_CHECKING:
    from .models import FileBlobQuerySet

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Blob rows per transaction, and storage names per lookup query.
BATCH_SIZE = 500
#: Attempts of one statement or batch on a deadlock or lock wait timeout.
ATTEMPTS = 5

#: Called after each batch with the rows (or objects) and bytes just handled.
Progress = Callable[[int, int], None]


class GcError(Exception):
    """Garbage collection cannot run as asked (the message says why)."""


@dataclass(slots=True)
class BlobReport:
    """What ``collect_blobs`` did (or, with ``dry_run``, would do)."""

    dry_run: bool = False
    #: Blobs newly stamped ``unused_since``.
    marked: int = 0
    #: Blobs used again, whose ``unused_since`` was cleared.
    revived: int = 0
    #: Rows removed, and the bytes their blobs held.
    rows: int = 0
    bytes: int = 0
    #: Objects deleted after their rows.
    objects: int = 0
    #: Candidates an upload linked or held while we looked; they stay (for now).
    kept: int = 0
    #: ``(alias, name)`` of objects whose delete failed: orphans for ``collect_orphans``.
    failed: list[tuple[str, str]] = field(default_factory=list)


def _blobs(using: str) -> FileBlobQuerySet:
    from .models import FileBlob

    return FileBlob.objects.using(using)


def blob_database(using: str | None) -> str:
    """``using``, or where the router writes ``FileBlob`` rows."""
    from .models import FileBlob

    return using or router.db_for_write(FileBlob)


def grace_period(grace: float | None) -> timedelta:
    """``grace`` seconds, or ``CHUNKFILES['GC_GRACE']`` when None."""
    seconds = float(chunkfiles_settings.GC_GRACE if grace is None else grace)
    if seconds < 0:
        raise GcError(f"the grace period cannot be negative ({seconds:g} s)")
    return timedelta(seconds=seconds)


def _attempts(action: Callable[[], T]) -> T | None:
    """``action()``, again after a deadlock or a lock we would not wait for; None if busy.

    Raises ``IntegrityError`` (a blob linked meanwhile) and every other error.
    """
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return action()
        except IntegrityError:
            raise
        except DatabaseError as error:
            if not retryable(error):
                raise
            if attempt < ATTEMPTS:
                time.sleep(0.01 * 2**attempt)
    return None  # busy: left for a later run


def _locking(rows: FileBlobQuerySet, db: str) -> FileBlobQuerySet:
    """``rows`` locked, skipping rows an upload holds (no row locks on SQLite)."""
    if connections[db].features.has_select_for_update_skip_locked:
        return rows.select_for_update(skip_locked=True)
    return rows


def _id_batches(rows: FileBlobQuerySet, size: int) -> Iterator[list[int]]:
    """The ids of ``rows`` in keyset pages of ``size``; rows changed between pages are fine."""
    last = 0
    while True:
        ids = list(rows.filter(pk__gt=last).order_by("pk").values_list("pk", flat=True)[:size])
        if not ids:
            return
        yield ids
        last = ids[-1]


def _due(using: str, cutoff: datetime, now: datetime) -> FileBlobQuerySet:
    """Unused blobs that a collection at ``now`` with this ``cutoff`` removes."""
    due = Q(unused_since__lte=cutoff)
    if cutoff >= now:  # grace 0: what the marking stamps now is due at once
        due |= Q(unused_since__isnull=True)
    return _blobs(using).unreferenced().filter(due)


def _lock(db: str, ids: list[int]) -> list[int]:
    """Lock the rows among ``ids`` that no upload holds; their ids.

    Through the checksum index, in checksum order, as uploads lock them:
    InnoDB locks the index entry before the row, and taking the two in the
    opposite order to an upload's would deadlock with it.
    """
    checksums = list(_blobs(db).filter(pk__in=ids).values_list("checksum", flat=True))
    rows = _blobs(db).filter(checksum__in=checksums).order_by("checksum")
    return list(_locking(rows, db).values_list("pk", flat=True))


def _stamp(db: str, ids: list[int], used: bool, value: datetime | None) -> int:
    """Set ``unused_since`` to ``value`` on the rows among ``ids`` still (un)used."""
    with transaction.atomic(using=db, durable=True):
        rows = _blobs(db).filter(pk__in=_lock(db, ids), unused_since__isnull=value is not None)
        rows = rows.referenced() if used else rows.unreferenced()
        return rows.update(unused_since=value)


def mark_unused(
    *, using: str | None = None, now: datetime | None = None, batch_size: int = BATCH_SIZE
) -> tuple[int, int]:
    """Stamp ``unused_since`` on unused blobs, clear it on used ones; ``(marked, revived)``.

    A batch per transaction; rows an upload holds are skipped (a later run
    sees them), so uploads never wait long for garbage collection.
    """
    db = blob_database(using)
    now = now or timezone.now()
    blobs = _blobs(db)
    revived = marked = 0
    stale = blobs.referenced().filter(unused_since__isnull=False)
    for ids in _id_batches(stale, batch_size):
        revived += _attempts(partial(_stamp, db, ids, True, None)) or 0
    fresh = blobs.unreferenced().filter(unused_since__isnull=True)
    for ids in _id_batches(fresh, batch_size):
        marked += _attempts(partial(_stamp, db, ids, False, now)) or 0
    return marked, revived


def due_for_collection(
    *, using: str | None = None, grace: float | None = None, now: datetime | None = None
) -> tuple[int, int]:
    """``(rows, bytes)`` that ``collect_blobs`` with the same arguments would remove."""
    db = blob_database(using)
    now = now or timezone.now()
    due = _due(db, now - grace_period(grace), now)
    total = due.aggregate(bytes=Sum("size"))["bytes"] or 0
    return due.count(), int(total)


@dataclass(slots=True)
class _Gone:
    """A deleted row's object, to delete once the deletion has committed."""

    alias: str
    path: str | None
    size: int


def _delete_rows(db: str, ids: list[int], cutoff: datetime) -> list[_Gone]:
    """Delete the rows among ``ids`` still due, in one transaction; what went."""
    with transaction.atomic(using=db, durable=True):
        locked = _lock(db, ids)
        # Checked again under the lock: an upload that linked a blob before we
        # locked it has committed its index rows by now.
        unused = _blobs(db).filter(pk__in=locked, unused_since__lte=cutoff).unreferenced()
        gone = [
            (pk, _Gone(blob_alias(storage), path, size or 0))
            for pk, storage, path, size in unused.values_list("pk", "storage", "path", "size")
        ]
        if gone:
            # Django's PROTECT check, then the database's foreign key, refuse
            # (IntegrityError) if an index row names one of them after all.
            # One row per statement: a point lookup on the primary key locks
            # just that row, where InnoDB may scan (and wait on) other rows
            # for an IN list.
            for pk, _ in gone:
                _blobs(db).filter(pk=pk).delete()
    return [row for _, row in gone]


def _collect_batch(db: str, ids: list[int], cutoff: datetime) -> list[_Gone]:
    """Delete a batch; if refused or busy, row by row. The rows that went."""
    try:
        gone = _attempts(partial(_delete_rows, db, ids, cutoff))
    except IntegrityError:
        gone = None
    if gone is not None or len(ids) == 1:
        return gone or []
    gone = []
    for pk in ids:
        with contextlib.suppress(IntegrityError):  # linked meanwhile: it stays
            gone += _attempts(partial(_delete_rows, db, [pk], cutoff)) or []
    return gone


def delete_object(alias: str, name: str, failed: list[tuple[str, str]]) -> bool:
    """Delete an object from ``STORAGES[alias]``; a failure is logged and recorded, not raised."""
    try:
        blob_store(alias).delete(name)
    except Exception:  # any storage fault: the object stays, an orphan
        logger.warning("could not delete blob object %r in %r", name, alias, exc_info=True)
        failed.append((alias, name))
        return False
    return True


def named_paths(db: str, names: Iterable[str]) -> set[str]:
    """Those of ``names`` that some blob row names (one query)."""
    # Any row naming the object protects it, whatever storage it records: two
    # aliases may point at the same bucket or directory.
    rows = _blobs(db).filter(path__in=list(names)).values_list("path", flat=True)
    return {path for path in rows if path is not None}


def collect_blobs(
    *,
    using: str | None = None,
    grace: float | None = None,
    dry_run: bool = False,
    batch_size: int = BATCH_SIZE,
    progress: Progress | None = None,
) -> BlobReport:
    """Remove blobs unused for ``grace`` seconds (default ``GC_GRACE``) and their objects.

    Safe while uploads run; see the module docstring. Must not run inside a
    transaction (``RuntimeError``): objects go only after their rows' deletion
    commits. ``dry_run`` changes nothing, not even the ``unused_since`` stamps,
    and reports what a real run would remove now.
    """
    if batch_size < 1:
        raise GcError(f"the batch size must be at least 1, not {batch_size}")
    db = blob_database(using)
    now = timezone.now()
    cutoff = now - grace_period(grace)
    report = BlobReport(dry_run=dry_run)
    if dry_run:
        blobs = _blobs(db)
        report.marked = blobs.unreferenced().filter(unused_since__isnull=True).count()
        report.revived = blobs.referenced().filter(unused_since__isnull=False).count()
        report.rows, report.bytes = due_for_collection(using=db, grace=grace, now=now)
        return report
    report.marked, report.revived = mark_unused(using=db, now=now, batch_size=batch_size)
    for ids in _id_batches(_due(db, cutoff, now), batch_size):
        gone = _collect_batch(db, ids, cutoff)
        report.kept += len(ids) - len(gone)
        report.rows += len(gone)
        nbytes = sum(row.size for row in gone)
        report.bytes += nbytes
        # A path another row still names is kept (rows copied from elsewhere
        # may share an object); names are random, so none can appear later.
        shared = named_paths(db, (row.path for row in gone if row.path is not None))
        for row in gone:
            if row.path is not None and row.path not in shared:
                report.objects += delete_object(row.alias, row.path, report.failed)
        if progress is not None:
            progress(len(gone), nbytes)
    return report
