"""Orphan objects: blob objects in storage that no ``FileBlob`` row names.

The plain Python API behind ``manage.py chunkfiles_gc --orphans``::

    from chunkfiles.orphans import collect_orphans

    report = collect_orphans(grace=86400)  # objects older than a day that no row names

What leaves orphans: a process killed between a storage write and its row's
commit, a PUT whose answer was lost, a caller's transaction rolled back after
``putfile``, an object delete that failed after its row went. Uploads in
flight look the same (their objects exist before their rows commit): the
grace period is what protects them, so a sweep with grace 0 is only safe
while no upload, heal or ``chunkfiles_move_storage`` runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import TypeVar

from django.utils import timezone

from .conf import chunkfiles_settings, current_storage
from .gc import (
    BATCH_SIZE,
    GcError,
    Progress,
    blob_database,
    delete_object,
    grace_period,
    named_paths,
)
from .storage import blob_store

T = TypeVar("T")


@dataclass(slots=True)
class OrphanReport:
    """What ``collect_orphans`` did (or, with ``dry_run``, would do)."""

    dry_run: bool = False
    #: Objects listed under the blob prefix, in every storage searched.
    listed: int = 0
    #: Objects newer than the grace period, left alone whether named or not.
    young: int = 0
    #: Unnamed objects removed (or, with ``dry_run``, found).
    deleted: int = 0
    #: The storage aliases listed.
    aliases: list[str] = field(default_factory=list)
    #: ``(alias, name)`` of objects whose delete failed.
    failed: list[tuple[str, str]] = field(default_factory=list)


def orphan_aliases(using: str | None = None) -> list[str]:
    """The storage aliases a sweep lists: every one a blob row uses, and ``STORAGE``."""
    from .models import FileBlob

    used = FileBlob.objects.using(blob_database(using)).aliases()
    return sorted({*used, current_storage()})


def listing_root(prefix: str) -> str:
    """The directory to list for ``prefix``; ``GcError`` rather than a storage's root."""
    root = prefix[: prefix.rfind("/") + 1]
    if not root.strip("/"):
        raise GcError(
            "orphan collection needs CHUNKFILES['BLOB_PREFIX'] to start with a directory "
            f"(such as 'chunkfiles/'), not {prefix!r}: it never lists a whole storage"
        )
    return root


def _batches(items: Iterator[T], size: int) -> Iterator[list[T]]:
    while batch := list(islice(items, size)):
        yield batch


def _aware(moment: datetime) -> datetime:
    return timezone.make_aware(moment) if timezone.is_naive(moment) else moment


def collect_orphans(
    *,
    using: str | None = None,
    grace: float | None = None,
    dry_run: bool = False,
    batch_size: int = BATCH_SIZE,
    progress: Progress | None = None,
) -> OrphanReport:
    """Delete objects under ``BLOB_PREFIX`` that no blob row names and older than ``grace``.

    ``grace`` is in seconds (default ``CHUNKFILES['GC_GRACE']``). Lists every
    storage ``orphan_aliases`` names, ``batch_size`` objects at a time (memory
    stays bounded, one row query per batch), and never touches an object
    outside the prefix. An object's age is its modification time by the
    storage's clock: keep the grace well above any clock skew.
    """
    if batch_size < 1:
        raise GcError(f"the batch size must be at least 1, not {batch_size}")
    db = blob_database(using)
    prefix = str(chunkfiles_settings.BLOB_PREFIX)
    root = listing_root(prefix)
    cutoff = timezone.now() - grace_period(grace)
    report = OrphanReport(dry_run=dry_run, aliases=orphan_aliases(db))
    for alias in report.aliases:
        for batch in _batches(blob_store(alias).iter_objects(root), batch_size):
            report.listed += len(batch)
            ours = [(name, _aware(mtime)) for name, mtime in batch if name.startswith(prefix)]
            old = [name for name, mtime in ours if mtime <= cutoff]
            report.young += len(ours) - len(old)
            named = named_paths(db, old)
            for name in old:
                if name in named:
                    continue
                if dry_run:
                    report.deleted += 1
                else:
                    report.deleted += delete_object(alias, name, report.failed)
            if progress is not None:
                progress(len(batch), 0)
    return report
