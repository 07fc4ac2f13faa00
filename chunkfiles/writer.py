"""Writes the blobs of an upload concurrently and records them as rows.

A ``BlobWriter`` queues a PUT for every blob not stored yet, under a name it
makes (so a failed PUT still leaves a name to clean up), and remembers how to
read the bytes of every blob it deduplicated again: if garbage collection
removes such a blob before the upload commits, it is written again instead
of linking a file to a missing object.

Objects are deleted only when no committed row can name them: everything
written if the transaction is known to have rolled back; only the copies that
lost a race to an identical upload if it committed; nothing at all if the
commit's outcome is unknown (a lost reply): those wait for orphan collection.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from concurrent.futures import TimeoutError as FutureTimeout
from types import TracebackType
from typing import IO, TYPE_CHECKING

from django.db import DatabaseError, connections
from django.db.models import QuerySet
from django.utils import timezone

from .chunking import blob_checksum
from .conf import chunkfiles_settings, current_storage
from .exceptions import BlobWriteError
from .storage import blob_store, new_blob_name

if TYPE_CHECKING:
    from .models import FileBlob

logger = logging.getLogger(__name__)

#: Reads a deduplicated blob's bytes again from the caller's input.
Reread = Callable[[], bytes]

LOCK_BATCH = 500


def share_locked(rows: QuerySet[FileBlob]) -> list[FileBlob]:
    """``rows`` read with a shared row lock (none on SQLite, which locks the database)."""
    using = rows.db
    vendor = connections[using].vendor
    clause = {"postgresql": " FOR SHARE", "mysql": " LOCK IN SHARE MODE"}.get(vendor)
    if clause is None:
        return list(rows)
    sql, params = rows.query.get_compiler(using).as_sql()
    return list(rows.model._default_manager.using(using).raw(sql + clause, params))


class VanishedError(Exception):
    """Blobs this upload deduplicated onto were removed (or found lost) before it committed."""

    def __init__(self, checksums: list[str]) -> None:
        self.checksums = checksums
        super().__init__(f"{len(checksums)} deduplicated blobs vanished before commit")


class BlobWriter:
    """Writes the blobs a batch of uploads needs, at most once each; a context manager."""

    def __init__(self, using: str, workers: int) -> None:
        self.using = using
        self.workers = max(1, workers)
        self.alias = current_storage()
        self.store = blob_store(self.alias, connections=self.workers)
        self.known: dict[str, FileBlob] = {}
        self._rereads: dict[str, Reread | tuple[int, int]] = {}
        self._spool: IO[bytes] | None = None
        self._pending: dict[str, tuple[Future[str], int]] = {}
        self._written: dict[str, tuple[str, int]] = {}
        self._names: set[str] = set()
        self._losers: list[str] = []
        self._outcome = "open"  # then "committed" or "uncertain"
        self._failed = threading.Event()
        self._lock = threading.Lock()
        self._put_timeout = 2 * self.store.policy.deadline + 5
        # Bounds memory: a queued write holds its blob's bytes until it runs;
        # half a pool's worth of queue keeps every worker busy while we hash.
        self._slots = threading.BoundedSemaphore(self.workers + (self.workers + 1) // 2)
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="chunkfiles-upload")

    def __enter__(self) -> BlobWriter:
        return self

    def lookup(self, checksums: Iterable[str]) -> None:
        """Find which of ``checksums`` are stored already (one query per batch).

        A blob marked lost does not count: its bytes are written again, which
        heals every file that uses it.
        """
        from .models import FileBlob

        unseen = [c for c in checksums if c not in self.known and c not in self._pending]
        if unseen:
            found = FileBlob.objects.using(self.using).by_checksums(unseen)
            self.known.update((c, b) for c, b in found.items() if b.lost_at is None)

    def add(self, checksum: str, data: bytes, reread: Reread | None = None) -> None:
        """Queue ``data`` for writing unless its blob exists or is queued already."""
        if checksum in self.known:
            self._remember(checksum, data, reread)
            return
        if checksum in self._pending or checksum in self._written:
            return
        if self._failed.is_set():
            self.wait()  # fail fast instead of reading the rest of the input
        if not self._slots.acquire(timeout=self._put_timeout):
            raise BlobWriteError(checksum, None, "no write slot freed in time")
        future = self._pool.submit(self._put, new_blob_name(), data, checksum)
        future.add_done_callback(self._done)
        self._pending[checksum] = (future, len(data))

    def _put(self, name: str, data: bytes, checksum: str) -> str:
        # Recorded before the first byte goes out: a PUT that fails may still
        # have stored something under this name. PUTs cancelled while queued
        # never touched storage and leave nothing to delete.
        with self._lock:
            self._names.add(name)
        return self.store.put(name, data, checksum)

    def _done(self, future: Future[str]) -> None:
        self._slots.release()
        if not future.cancelled() and future.exception() is not None:
            self._failed.set()

    def _remember(self, checksum: str, data: bytes, reread: Reread | None) -> None:
        if checksum in self._rereads:
            return
        if reread is not None:
            self._rereads[checksum] = reread
            return
        # A pipe cannot be read twice: keep the bytes on disk, not in memory.
        if self._spool is None:
            self._spool = tempfile.TemporaryFile(prefix="chunkfiles-upload-")  # noqa: SIM115
        offset = self._spool.seek(0, 2)
        self._spool.write(data)
        self._rereads[checksum] = (offset, len(data))

    def _replay(self, checksum: str) -> bytes:
        where = self._rereads[checksum]
        if callable(where):
            data = where()
        else:
            assert self._spool is not None
            self._spool.seek(where[0])
            data = self._spool.read(where[1])
        if blob_checksum(data) != checksum:
            raise BlobWriteError(
                checksum, None, "the input changed during the upload; cannot write it again"
            )
        return data

    def rewrite(self, checksums: list[str]) -> None:
        """Write again blobs that vanished after this upload deduplicated onto them."""
        for checksum in checksums:
            self.known.pop(checksum, None)
            self.add(checksum, self._replay(checksum))
        self.wait()

    def wait(self) -> None:
        """Wait for every queued write; re-raise the first failure."""
        for checksum, (future, size) in list(self._pending.items()):
            try:
                name = future.result(timeout=self._put_timeout)
            except FutureTimeout:
                raise BlobWriteError(
                    checksum, None, f"no answer within {self._put_timeout:.0f} s"
                ) from None
            with self._lock:
                self._names.add(name)  # the storage may have picked another name
            self._written[checksum] = (name, size)
            del self._pending[checksum]

    def save_rows(self) -> dict[str, FileBlob]:
        """Create and lock the rows of every blob used; call inside a transaction.

        Returns every blob by checksum. Raises ``VanishedError`` when a blob
        this upload deduplicated onto is gone or lost: the caller rolls back,
        calls ``rewrite`` and tries again.
        """
        from .models import FileBlob

        self.wait()
        blobs = FileBlob.objects.using(self.using)
        written = sorted(self._written.items())
        if written:
            blobs.bulk_create(
                [FileBlob(checksum=c, path=n, size=s, storage=self.alias) for c, (n, s) in written],
                ignore_conflicts=True,
            )
        # Share-lock every row used, in checksum order: garbage collection
        # cannot delete a row this upload links until it commits, while
        # uploads sharing blobs do not block each other (an exclusive lock
        # here would deadlock two uploads that both inserted a duplicate).
        wanted = sorted(set(self.known) | set(self._written))
        rows: dict[str, FileBlob] = {}
        for start in range(0, len(wanted), LOCK_BATCH):
            batch = blobs.filter(checksum__in=wanted[start : start + LOCK_BATCH])
            rows.update((b.checksum, b) for b in share_locked(batch.order_by("checksum")))
        vanished = [c for c in self.known if c not in rows or rows[c].lost_at is not None]
        vanished += [c for c in self._written if c not in rows]
        if vanished:
            raise VanishedError(sorted(vanished))
        self._losers = []
        for checksum, (name, _) in written:
            row = rows[checksum]
            if row.path == name:
                continue
            if row.lost_at is not None:
                # Heal: the row now names the object just written.
                row.path, row.storage, row.lost_at = name, self.alias, None
                row.save(update_fields=["path", "storage", "lost_at"], using=self.using)
            else:
                self._losers.append(name)  # an identical upload won the row
        self.known.update(rows)
        return rows

    def committed(self) -> None:
        """The rows are saved: from now on the written objects are referenced."""
        self._outcome = "committed"

    def clear_unused_marks(self) -> None:
        """After commit: un-stamp ``unused_since`` of blobs this upload linked.

        Best effort and outside the transaction: clearing it under the shared
        lock made two uploads of the same blob deadlock, and a stale stamp only
        shortens a grace period (collection re-checks every row under a lock).
        """
        from .models import FileBlob

        marked = [b.pk for b in self.known.values() if b.unused_since is not None]
        if not marked:
            return
        try:
            FileBlob.objects.using(self.using).filter(pk__in=marked).update(unused_since=None)
        except DatabaseError:
            logger.info("could not clear unused_since of %d blobs", len(marked), exc_info=True)

    def uncertain(self) -> None:
        """The commit's outcome is unknown: delete nothing (orphans are collected later)."""
        self._outcome = "uncertain"

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        futures = [future for future, _ in self._pending.values()]
        for future in futures:
            future.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)
        _, running = wait(futures, timeout=float(chunkfiles_settings.CLOSE_TIMEOUT))
        if not running:
            self._pool.shutdown(wait=True)  # threads are idle: this returns at once
        if self._spool is not None:
            self._spool.close()
        if self._outcome == "committed":
            doomed = self._losers
        elif self._outcome == "uncertain":
            logger.warning(
                "commit outcome unknown at %s: keeping %d written objects for orphan collection",
                timezone.now().isoformat(),
                len(self._names),
            )
            return
        else:
            doomed = sorted(self._names)
        self._delete(doomed)

    def _delete(self, names: list[str]) -> None:
        """Delete ``names`` within one deadline; what is left is found by orphan collection.

        The store that just failed may be failing still: one attempt each, and
        the first delete that fails ends the clean-up.
        """
        deadline = time.monotonic() + self.store.policy.deadline
        for done, name in enumerate(names):
            try:
                if time.monotonic() > deadline:
                    raise TimeoutError("clean-up deadline passed")
                self.store.delete(name, retry=False)
            except Exception:
                # The upload's own error (if any) is the one worth raising.
                logger.warning(
                    "could not delete %d unused blob objects from %r (first: %r); "
                    "orphan collection will remove them",
                    len(names) - done,
                    self.alias,
                    name,
                    exc_info=True,
                )
                return
