"""Celery tasks for the bulk jobs; needs ``pip install "django-chunkfiles[celery]"``.

Register them in the project's Celery app with ``app.autodiscover_tasks()``
(the usual Django setup) and send them with ``chunkfiles.dispatch.dispatch``
or the commands' ``--celery``. Nothing else in chunkfiles imports this module.

Each task is one batch (a list of ids) over the same service function the
single-process command calls, and returns a JSON dict of counts and problem
lines that ``dispatch`` sums over batches. Every task is idempotent, so the
broker may deliver a batch twice: ``acks_late`` acknowledges a batch only
when it is done, and ``reject_on_worker_lost`` requeues it when its worker
process dies (a worker killed mid-batch loses nothing; another does it again).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from celery import shared_task
from django.db import OperationalError

#: Options of every chunkfiles task: see the module docstring. A batch that hit
#: a deadlock, a lock timeout or a dropped connection is simply done again later.
TASK_OPTIONS: dict[str, Any] = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": (OperationalError,),
    "max_retries": 5,
    "retry_backoff": 1,
    "retry_jitter": True,
}

if TYPE_CHECKING:
    from .verify import Checked

Result = dict[str, Any]
F = TypeVar("F", bound=Callable[..., Result])


def _task(name: str) -> Callable[[F], F]:
    # Celery ships no type hints: keep the function's own signature for mypy.
    return cast(Callable[[F], F], shared_task(name=name, **TASK_OPTIONS))


@_task("chunkfiles.move_blobs")
def move_blobs(
    blob_ids: list[int],
    dst: str,
    using: str | None = None,
    workers: int = 16,
    delete_source: bool = False,
) -> Result:
    """Move these blobs to the storage ``dst`` (``chunkfiles.move.move_storage``)."""
    from .move import move_storage, tally

    outcomes = list(
        move_storage(
            dst, using=using, workers=workers, delete_source=delete_source, blob_ids=blob_ids
        )
    )
    result: Result = dict(tally(outcomes))
    result["problems"] = [
        f"blob {m.blob_id} {m.status}: {m.error}"
        for m in outcomes
        if m.status in ("missing", "corrupt", "failed")
    ]
    return result


@_task("chunkfiles.verify_files")
def verify_files(
    file_ids: list[int], using: str | None = None, workers: int = 16, dry_run: bool = False
) -> Result:
    """Read these files back and check them (``chunkfiles.verify.verify_files``)."""
    from .models import File
    from .verify import verify_files as verify

    files = File.objects.using(using).filter(pk__in=file_ids)
    return checked_summary(verify(files, workers=workers, dry_run=dry_run))


@_task("chunkfiles.verify_blobs")
def verify_blobs(
    blob_ids: list[int], using: str | None = None, workers: int = 16, dry_run: bool = False
) -> Result:
    """Fetch these blobs and check them (``chunkfiles.verify.verify_blobs``)."""
    from .models import FileBlob
    from .verify import verify_blobs as verify

    blobs = FileBlob.objects.using(using).filter(pk__in=blob_ids)
    return checked_summary(verify(blobs, workers=workers, dry_run=dry_run))


def checked_summary(outcomes: Iterable[Checked]) -> Result:
    """Counts and problem lines of ``verify_files``/``verify_blobs`` outcomes.

    The keys are those ``chunkfiles_verify`` counts: checked, bytes, bad,
    lost (with a blob now marked lost), recovered, and the problem lines.
    """
    result: Result = {"checked": 0, "bytes": 0, "bad": 0, "lost": 0, "recovered": 0}
    result["problems"] = []
    for checked in outcomes:
        result["checked"] += 1
        result["bytes"] += checked.size
        result["recovered"] += int(checked.recovered)
        if checked.problems:
            result["bad"] += 1
            result["lost"] += int(any(p.marked_lost for p in checked.problems))
        result["problems"].extend(str(problem) for problem in checked.problems)
    return result


@_task("chunkfiles.export_files")
def export_files(
    file_ids: list[int],
    alias: str,
    prefix: str = "",
    using: str | None = None,
    workers: int = 8,
    verify: bool = False,
    overwrite: bool = False,
) -> Result:
    """Write these files into ``STORAGES[alias]`` (``chunkfiles.exportstore``)."""
    from .exportstore import export_to_storage

    outcomes = export_to_storage(
        file_ids, alias, prefix, using=using, workers=workers, verify=verify, overwrite=overwrite
    )
    result: Result = {"written": 0, "skipped": 0, "failed": 0, "bytes": 0, "problems": []}
    for outcome in outcomes:
        result[outcome.status] += 1
        result["bytes"] += outcome.bytes
        if outcome.status == "failed":
            result["problems"].append(
                f"file {outcome.item.id} ({outcome.item.name!r}) failed: {outcome.error}"
            )
    return result


@_task("chunkfiles.import_files")
def import_files(
    files: list[tuple[str, str]],
    type: str = "default",
    using: str = "default",
    headers_from_mimetype: bool = False,
    workers: int = 4,
) -> Result:
    """Store these ``(path, File.name)`` pairs (``chunkfiles.importing.store_one``).

    The paths must be readable by the worker (a shared filesystem). A file
    already stored under the same name and type with the same SHA-1 counts
    as imported, so a batch done again does not store it twice.
    """
    from django.utils import timezone

    from .importing import Found, headers_for, store_one

    since = timezone.now()
    result: Result = {"files": 0, "bytes": 0, "new_files": 0, "new_bytes": 0, "already": 0}
    result["problems"] = []
    for path, name in files:
        try:
            if _imported_already(path, name, type, using):
                result["already"] += 1
                continue
            _, size, blobs = store_one(
                Found(path, name),
                type=type,
                headers=headers_for(name, headers_from_mimetype),
                using=using,
                since=since,
                workers=workers,
            )
        except OSError as exc:
            result["problems"].append(f"{path}: {exc}")
            continue
        new = sum(nbytes for _, nbytes, created in blobs if created)
        result["files"] += 1
        result["bytes"] += size
        result["new_bytes"] += new
        result["new_files"] += int(new > 0)  # as chunkfiles_import counts them
    return result


def _imported_already(path: str, name: str, type: str, using: str) -> bool:
    from .models import File

    size = os.path.getsize(path)
    stored = File.objects.using(using).filter(name=name, type=type, size=size)
    checksums = set(stored.values_list("checksum", flat=True))
    if not checksums:
        return False
    digest = hashlib.sha1()  # File.checksum is Sentry's whole-file SHA-1
    with open(path, "rb") as fileobj:
        for block in iter(lambda: fileobj.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest() in checksums


@_task("chunkfiles.gc_sweep")
def gc_sweep(
    using: str | None = None,
    grace: float | None = None,
    orphans: bool = False,
    dry_run: bool = False,
    batch_size: int | None = None,
) -> Result:
    """One garbage collection sweep (``chunkfiles.gc.collect_blobs``, then orphans if asked)."""
    from .gc import BATCH_SIZE, collect_blobs
    from .orphans import collect_orphans

    size = batch_size or BATCH_SIZE
    report = collect_blobs(using=using, grace=grace, dry_run=dry_run, batch_size=size)
    result: Result = {
        "marked": report.marked,
        "revived": report.revived,
        "rows": report.rows,
        "bytes": report.bytes,
        "objects": report.objects,
        "kept": report.kept,
        "problems": [f"could not delete {name!r} from {alias!r}" for alias, name in report.failed],
    }
    if orphans:
        found = collect_orphans(using=using, grace=grace, dry_run=dry_run, batch_size=size)
        result["orphans_listed"] = found.listed
        result["orphans_deleted"] = found.deleted
        result["problems"] += [f"could not delete {n!r} from {a!r}" for a, n in found.failed]
    return result
