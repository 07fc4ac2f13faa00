"""Re-read what the database says is stored, and report what is not as it should be.

The plain Python API behind ``manage.py chunkfiles_verify``:

- ``verify_blobs(blobs)`` fetches every blob object once and checks its size
  and SHA-256; a problem names the blob, its storage alias and object name,
  and each file and offset that uses it.
- ``verify_files(files)`` reads each file front to back as a reader would:
  its index must tile ``File.size``, every blob must verify, and the whole
  file's SHA-1 must equal ``File.checksum``.

A blob whose object is gone or damaged is marked lost
(``FileBlob.objects.mark_lost``): dedupe then stops reusing it, and the next
upload of the same bytes writes the object again, healing every file that
uses it. A lost blob whose object verifies again (restored from a backup) is
unmarked. ``dry_run`` only reports.

Both functions yield one ``Checked`` per blob or file, so callers can show
progress; fetches run on a bounded pool, in flight at most ``2 * workers``.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import deque
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from .conf import blob_alias
from .exceptions import BlobCorruptError, BlobMissingError, BlobReadError
from .export import ExportItem, checked_index, iter_items
from .fetch import load_blob, settle, storage_fetch
from .refs import BlobRef, relocate
from .storage import ObjectCorruptError, blob_store

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from .models import FileBlob

T = TypeVar("T")
V = TypeVar("V")

#: Blob rows per query.
PAGE = 500
#: Files listed per problem blob (a popular blob may be in millions of files).
MAX_FILES_LISTED = 10


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong, with everything an operator needs to find it."""

    kind: str  # missing, corrupt, unreadable, not stored, index, checksum
    detail: str
    file_id: int | None = None
    file_name: str | None = None
    checksum: str | None = None  # the blob's SHA-256
    offset: int | None = None
    storage: str | None = None  # STORAGES alias
    path: str | None = None  # the object's name in that storage
    marked_lost: bool = False

    def __str__(self) -> str:
        where = []
        if self.file_id is not None:
            where.append(f"file {self.file_id} ({self.file_name!r})")
        if self.checksum is not None:
            at = f" at offset {self.offset}" if self.offset is not None else ""
            where.append(f"blob {self.checksum}{at}")
        if self.path is not None or self.storage is not None:
            where.append(f"in storage {self.storage!r} as {self.path!r}")
        text = f"{' '.join(where) or 'store'}: {self.kind}: {self.detail}"
        return text + (" (marked lost)" if self.marked_lost else "")


@dataclass(frozen=True, slots=True)
class Checked:
    """One blob or file checked: its size and what was wrong (nothing, usually)."""

    size: int
    problems: list[Problem] = field(default_factory=list)
    recovered: bool = False


def _ordered(
    pool: ThreadPoolExecutor,
    tasks: Iterator[tuple[V, Callable[[], T]]],
    depth: int,
) -> Generator[tuple[V, Future[T]], None, None]:
    """Run ``tasks`` on ``pool`` with at most ``depth`` in flight; results in order."""
    window: deque[tuple[V, Future[T]]] = deque()
    try:
        for key, task in tasks:
            window.append((key, pool.submit(task)))
            if len(window) >= depth:
                yield window.popleft()
        while window:
            yield window.popleft()
    finally:
        for _, future in window:
            future.cancel()


def _blob_rows(blobs: QuerySet[FileBlob]) -> Iterator[tuple[int, str | None, int, str, str, Any]]:
    last = 0
    columns = ("pk", "path", "size", "checksum", "storage", "lost_at")
    while True:
        rows = list(blobs.filter(pk__gt=last).order_by("pk").values_list(*columns)[:PAGE])
        if not rows:
            return
        last = rows[-1][0]
        yield from (
            (pk, path, size or 0, c, blob_alias(s), lost) for pk, path, size, c, s, lost in rows
        )


def _users(blob_id: int, using: str) -> list[tuple[int, str, int]]:
    from .models import FileBlobIndex

    rows = (
        FileBlobIndex.objects.using(using)
        .filter(blob_id=blob_id)
        .order_by("file_id", "offset")
        .values_list("file_id", "file__name", "offset")
    )
    return list(rows[:MAX_FILES_LISTED])


def verify_blobs(
    blobs: QuerySet[FileBlob], *, workers: int = 16, dry_run: bool = False
) -> Iterator[Checked]:
    """Fetch and check every blob of ``blobs``; see the module docstring."""
    from .models import FileBlob

    using = blobs.db

    def tasks() -> Iterator[tuple[tuple[Any, ...], Callable[[], bytes]]]:
        for row in _blob_rows(blobs):
            _, path, size, checksum, alias, _ = row
            if path is None:
                yield row, _raise(FileNotFoundError("no storage name recorded"))
            else:
                store = blob_store(alias, workers)
                yield row, _bind(store.get_verified, path, size, checksum)

    with (
        ThreadPoolExecutor(max(1, workers), thread_name_prefix="chunkfiles-verify") as pool,
        contextlib.closing(_ordered(pool, tasks(), 2 * max(1, workers))) as results,
    ):
        for (pk, path, size, checksum, alias, lost_at), future in results:
            try:
                future.result()
            except Exception as exc:
                if isinstance(exc, FileNotFoundError):
                    kind = "missing"
                elif isinstance(exc, ObjectCorruptError):
                    kind = "corrupt"
                else:
                    kind = "unreadable"
                marked = False
                if kind != "unreadable" and not dry_run:
                    rows = FileBlob.objects.using(using).filter(pk=pk)
                    marked = rows.mark_lost(path=path) > 0 or lost_at is not None
                detail = str(exc) or type(exc).__name__
                where = dict(checksum=checksum, storage=alias, path=path, marked_lost=marked)
                users = _users(pk, using)
                problems = [
                    Problem(kind, detail, file_id=f, file_name=n, offset=o, **where)
                    for f, n, o in users
                ] or [Problem(kind, detail + " (used by no file)", **where)]
                yield Checked(size, problems)
                continue
            recovered = False
            if lost_at is not None and not dry_run:
                rows = FileBlob.objects.using(using).filter(pk=pk, path=path, lost_at=lost_at)
                recovered = rows.update(lost_at=None) > 0
            yield Checked(size, recovered=recovered)


def _bind(fn: Callable[..., T], *args: Any) -> Callable[[], T]:
    return lambda: fn(*args)


def _raise(exc: Exception) -> Callable[[], bytes]:
    def fail() -> bytes:
        raise exc

    return fail


_KINDS: list[tuple[type[BlobReadError], str]] = [
    (BlobMissingError, "missing"),
    (BlobCorruptError, "corrupt"),
    (BlobReadError, "unreadable"),
]


def verify_files(
    files: QuerySet[Any], *, workers: int = 16, dry_run: bool = False
) -> Iterator[Checked]:
    """Read every file of ``files`` as a reader would; see the module docstring."""
    using = files.db
    fetch = storage_fetch(workers)

    def tasks() -> Iterator[tuple[tuple[ExportItem, BlobRef | Problem, bool], Callable[[], bytes]]]:
        for item, refs in iter_items(files):
            try:
                index = checked_index(item, refs)
            except OSError as exc:
                kind = "not stored" if item.size is None else "index"
                problem = Problem(kind, str(exc), file_id=item.id, file_name=item.name)
                yield (item, problem, True), _raise(exc)
                continue
            if not index.refs:
                yield (item, problem_none, True), _bind(bytes)
            for n, ref in enumerate(index.refs):
                yield (item, ref, n == len(index.refs) - 1), _bind(load_blob, ref, fetch, item.id)

    problem_none = Problem("", "")
    digest = hashlib.sha1()
    broken: list[Problem] = []
    with (
        ThreadPoolExecutor(max(1, workers), thread_name_prefix="chunkfiles-verify") as pool,
        contextlib.closing(_ordered(pool, tasks(), 2 * max(1, workers))) as results,
    ):
        for (item, ref, last), future in results:
            if isinstance(ref, Problem):
                if ref is not problem_none:
                    broken.append(ref)
            elif not broken:
                try:
                    digest.update(_result(future, ref, item, using, dry_run, fetch))
                except BlobReadError as exc:
                    marked = not dry_run and _lost(exc, ref, using)
                    broken.append(_blob_problem(exc, item, ref, marked=marked))
            if not last:
                continue
            if not broken and item.checksum and digest.hexdigest() != item.checksum:
                detail = f"content SHA-1 {digest.hexdigest()} != recorded {item.checksum}"
                broken.append(Problem("checksum", detail, file_id=item.id, file_name=item.name))
            yield Checked(item.size or 0, broken)
            digest, broken = hashlib.sha1(), []


def _result(
    future: Future[bytes], ref: BlobRef, item: ExportItem, using: str, dry_run: bool, fetch: Any
) -> bytes:
    # relocate() marks the blob lost unless its row moved: not in a dry run.
    follow = None if dry_run else (lambda r: relocate(r, using))
    return settle(future.result, ref, fetch, item.id, follow)


def _lost(exc: BlobReadError, ref: BlobRef, using: str) -> bool:
    """Whether the blob is (now) marked lost; corrupt objects are marked here."""
    from .models import FileBlob

    if ref.blob_id is None:
        return False
    rows = FileBlob.objects.using(using).filter(pk=ref.blob_id)
    if isinstance(exc, BlobCorruptError) and ref.path is not None:
        rows.mark_lost(path=ref.path)
    return rows.filter(lost_at__isnull=False).exists()


def _blob_problem(exc: BlobReadError, item: ExportItem, ref: BlobRef, marked: bool) -> Problem:
    kind = next(name for cls, name in _KINDS if isinstance(exc, cls))
    return Problem(
        kind,
        exc.detail or kind,
        file_id=item.id,
        file_name=item.name,
        checksum=ref.checksum,
        offset=ref.offset,
        storage=blob_alias(ref.storage),
        path=ref.path,
        marked_lost=marked,
    )
