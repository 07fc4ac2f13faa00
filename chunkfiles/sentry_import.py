"""Bring files from a Sentry file store into chunkfiles: ``SentryImporter``.

Per page of Sentry files: the files imported before are skipped (a
``SentryImport`` row records each one, so an interrupted run is simply run
again); each remaining file's index is checked to tile the file; its blobs
are fetched from Sentry's filestore by a thread pool, a window ahead of
the one being stored, and each is checked against Sentry's size and SHA-1
before it is stored with ``FileBlob.from_files`` (deduplicated by SHA-256, so
two blobs that collide on SHA-1 stay apart). The files whose last blob was
in a window are committed together, each with its index rows and its
``SentryImport`` row, once the whole file hashes to Sentry's checksum; if
that transaction fails, each file is committed on its own.

A broken Sentry file (a blob missing or not matching, an inconsistent index)
is reported as a ``Problem`` naming the file and the offset, and skipped; the
run goes on. Failures on the chunkfiles side (the database, the blob storage)
stop the run: nothing half-done is committed, and a re-run resumes.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.db import IntegrityError, connections, router, transaction

from .assemble import link_files
from .conf import chunkfiles_settings
from .refs import BlobRef
from .sentry import (
    Filters,
    Problem,
    SentryBlob,
    SentryFile,
    SentryTables,
    blob_problem,
    parse_headers,
    structure_problem,
)
from .storage import BlobStore, blob_store

if TYPE_CHECKING:
    from .models import File

#: Bytes of Sentry blobs per window; two windows (one fetching, one storing) are in memory.
WINDOW_BYTES = 32 * 1024 * 1024
#: Blobs per window at most, so windows of tiny blobs still overlap fetching and storing.
WINDOW_BLOBS = 256


@dataclass
class ImportReport:
    """What a run did; ``problems`` holds one entry per broken Sentry file."""

    imported: int = 0
    skipped: int = 0
    blobs: int = 0
    bytes: int = 0
    problems: list[Problem] = field(default_factory=list)


@dataclass(eq=False)
class _Plan:
    """One Sentry file on its way in: its blobs, those stored so far, the running SHA-1."""

    file: SentryFile
    blobs: list[SentryBlob]
    headers: dict[str, str]
    refs: list[BlobRef] = field(default_factory=list)
    sha1: hashlib._Hash = field(default_factory=hashlib.sha1)
    failed: bool = False
    size: int | None = None
    checksum: str | None = None


#: (plan, index of the blob in plan.blobs)
_Item = tuple[_Plan, int]
_Outcome = bytes | str  # the verified bytes, or why the blob is broken


class SentryImporter:
    """Imports Sentry files read from ``database`` with blobs from the ``storage`` alias.

    ``on_problem`` is called with each ``Problem`` as it is found,
    ``on_imported`` with each Sentry file and the ``File`` it became, once
    committed, and ``on_progress`` with the number of bytes of Sentry files
    dealt with (imported, skipped or broken) so far, e.g. to drive a progress bar.
    """

    def __init__(
        self,
        database: str,
        storage: str,
        *,
        using: str | None = None,
        workers: int | None = None,
        window_bytes: int = WINDOW_BYTES,
        on_problem: Callable[[Problem], None] | None = None,
        on_progress: Callable[[int], None] | None = None,
        on_imported: Callable[[SentryFile, File], None] | None = None,
    ) -> None:
        from .models import File as FileModel

        self.database = database
        self.tables = SentryTables(database)
        self.workers = workers or chunkfiles_settings.UPLOAD_WORKERS
        self.store: BlobStore = blob_store(storage, connections=self.workers)
        self.using = using or router.db_for_write(FileModel)
        self.window_bytes = window_bytes
        self.on_problem = on_problem
        self.on_progress = on_progress
        self.on_imported = on_imported
        self.report = ImportReport()

    def totals(self, filters: Filters) -> tuple[int, int]:
        """How many Sentry files match and their bytes (one query)."""
        return self.tables.totals(filters)

    def run(self, filters: Filters | None = None) -> ImportReport:
        """Import every matching file not imported yet; see the module docstring."""
        filters = filters or Filters()
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="chunkfiles-import")
        try:
            for page in self.tables.files(filters):
                self._page(page, pool)
        finally:
            # An interrupt must not wait for the rest of the queued fetches.
            pool.shutdown(wait=True, cancel_futures=True)
        return self.report

    def _problem(self, plan: _Plan, problem: Problem) -> None:
        plan.failed = True
        self.report.problems.append(problem)
        if self.on_problem is not None:
            self.on_problem(problem)

    def _progress(self, nbytes: int) -> None:
        if self.on_progress is not None and nbytes:
            self.on_progress(nbytes)

    def _page(self, page: list[SentryFile], pool: ThreadPoolExecutor) -> None:
        from .models import SentryImport

        done = set(
            SentryImport.objects.using(self.using)
            .filter(source=self.database, sentry_file_id__in=[f.id for f in page])
            .values_list("sentry_file_id", flat=True)
        )
        todo = [f for f in page if f.id not in done]
        self.report.skipped += len(page) - len(todo)
        self._progress(sum(f.size or 0 for f in page if f.id in done))
        blobs = self.tables.blobs([f.id for f in todo])
        plans: list[_Plan] = []
        empty: list[_Plan] = []
        for file in todo:
            plan = _Plan(file, blobs[file.id], {})
            try:
                plan.headers = parse_headers(file.headers)
            except ValueError as exc:
                self._problem(plan, Problem(file.id, file.name, f"headers: {exc}"))
            problem = None if plan.failed else structure_problem(file, plan.blobs)
            if problem is not None:
                self._problem(plan, problem)
            if plan.failed:
                self._progress(file.size or 0)
            elif plan.blobs:
                plans.append(plan)
            elif self._checked(plan):
                empty.append(plan)  # an empty file, or one never stored in Sentry
        self._commit(empty)
        pending: tuple[list[_Item], dict[int, Future[_Outcome]]] | None = None
        for window in self._windows(plans):
            wanted = {plan.blobs[i].blob_id: plan.blobs[i] for plan, i in window}
            fetching = {bid: pool.submit(self._fetch, blob) for bid, blob in wanted.items()}
            if pending is not None:
                self._store(*pending)
            pending = (window, fetching)
        if pending is not None:
            self._store(*pending)

    def _windows(self, plans: list[_Plan]) -> Iterator[list[_Item]]:
        window: list[_Item] = []
        size = 0
        for plan in plans:
            for i, blob in enumerate(plan.blobs):
                if window and (size >= self.window_bytes or len(window) >= WINDOW_BLOBS):
                    yield window
                    window, size = [], 0
                window.append((plan, i))
                size += blob.size or 0
        if window:
            yield window

    def _fetch(self, blob: SentryBlob) -> _Outcome:
        """The blob's bytes from Sentry's filestore, checked; or why it is broken."""
        if blob.path is None:
            return "Sentry recorded no filestore path"
        try:
            data = self.store.get(blob.path)
        except FileNotFoundError:
            return "missing from the Sentry filestore"
        except Exception as exc:
            # After the store's retries: this object is unreadable, the next may not be.
            return f"unreadable from the Sentry filestore: {type(exc).__name__}: {exc}"
        return blob_problem(data, blob.size, blob.checksum) or data

    def _store(self, window: list[_Item], fetching: dict[int, Future[_Outcome]]) -> None:
        from .models import FileBlob

        outcomes = {blob_id: future.result() for blob_id, future in fetching.items()}
        good = [(bid, data) for bid, data in outcomes.items() if isinstance(data, bytes)]
        stored = FileBlob.from_files(
            [io.BytesIO(data) for _, data in good], workers=self.workers, using=self.using
        )
        by_id = {bid: blob for (bid, _), blob in zip(good, stored, strict=True)}
        self.report.blobs += len(good)
        self.report.bytes += sum(len(data) for _, data in good)
        finished: list[_Plan] = []
        for plan, i in window:
            blob = plan.blobs[i]
            self._progress(blob.size or 0)
            if plan.failed:
                continue
            outcome = outcomes[blob.blob_id]
            if isinstance(outcome, str):
                problem = Problem(
                    plan.file.id, plan.file.name, outcome, blob.offset, blob.blob_id, blob.path
                )
                self._problem(plan, problem)
                continue
            plan.sha1.update(outcome)
            ours = by_id[blob.blob_id]
            plan.refs.append(
                BlobRef(blob.offset, len(outcome), ours.checksum, ours.path, ours.storage, ours.pk)
            )
            if i == len(plan.blobs) - 1 and self._checked(plan):
                finished.append(plan)
        self._commit(finished)

    def _checked(self, plan: _Plan) -> _Plan | None:
        """``plan`` if its bytes hash to Sentry's checksum for the file, else None (reported)."""
        source = plan.file
        if plan.blobs or source.size is not None:
            plan.checksum = plan.sha1.hexdigest()
            plan.size = sum(ref.size for ref in plan.refs)
        else:  # never stored in Sentry (its putfile did not finish): kept as it is
            plan.checksum, plan.size = source.checksum, None
        if plan.size is not None and source.checksum and plan.checksum != source.checksum.lower():
            reason = f"its blobs hash to SHA-1 {plan.checksum}, Sentry recorded {source.checksum}"
            self._problem(plan, Problem(source.id, source.name, reason))
            return None
        return plan

    def _commit(self, plans: list[_Plan]) -> None:
        """Commit the files with their index and ``SentryImport`` rows, in one transaction.

        If that fails, each file is committed on its own, so one file's fault
        (a blob collected meanwhile, a concurrent import) holds up no other.
        """
        from .exceptions import BlobMissingError
        from .models import SentryImport

        if not plans:
            return
        try:
            with transaction.atomic(using=self.using):
                files = self._save(plans)
        except (BlobMissingError, IntegrityError) as exc:
            if len(plans) > 1:
                for plan in plans:
                    self._commit([plan])
                return
            source = plans[0].file
            if isinstance(exc, BlobMissingError):
                # Garbage collection took a blob between storing and linking it.
                reason = f"{exc.detail}; run the import again"
                self._problem(plans[0], Problem(source.id, source.name, reason, exc.offset))
                return
            imported = SentryImport.objects.using(self.using).filter(
                source=self.database, sentry_file_id=source.id
            )
            if not imported.exists():
                raise
            self.report.skipped += 1  # another run imported it meanwhile
            return
        self.report.imported += len(plans)
        if self.on_imported is not None:
            for plan, file in zip(plans, files, strict=True):
                self.on_imported(plan.file, file)

    def _save(self, plans: list[_Plan]) -> list[File]:
        from .models import File, SentryImport

        files = [
            File(
                name=plan.file.name,
                type=plan.file.type,
                timestamp=plan.file.timestamp,
                headers=plan.headers,
                size=plan.size,
                checksum=plan.checksum,
            )
            for plan in plans
        ]
        if connections[self.using].features.can_return_rows_from_bulk_insert:
            File.objects.using(self.using).bulk_create(files)
        else:
            for file in files:
                file.save(using=self.using)
        link_files([(file, plan.refs) for file, plan in zip(files, plans, strict=True)], self.using)
        SentryImport.objects.using(self.using).bulk_create(
            [
                SentryImport(source=self.database, sentry_file_id=plan.file.id, file=file)
                for file, plan in zip(files, plans, strict=True)
            ]
        )
        return files
