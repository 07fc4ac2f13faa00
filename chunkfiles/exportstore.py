"""Export files into a Django storage (a bucket prefix), for workers on many machines.

``export_directory`` writes to a local directory of one machine; this writes
each file to ``STORAGES[alias]`` as ``{prefix}{id}/{safe name}``, so Celery
workers anywhere can export disjoint batches to one place. The id in the
name makes every target unique without coordination between workers, and
stable: a batch done again (its worker died) finds the files it already
wrote, with the right size, and skips them; a partial file left by a killed
worker on a filesystem storage has the wrong size and is written again.
"""

from __future__ import annotations

import io
import logging
import re
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, TYPE_CHECKING, cast

from django.core.files.base import File as DjangoFile
from django.core.files.storage import Storage, storages
from django.db import connections
from django.db.models import QuerySet

from .chunking import blob_checksum
from .conf import chunkfiles_settings
from .export import Exported, ExportError, ExportItem, WholeFileCheck, checked_index, iter_items
from .reader import open_refs
from .refs import BlobRef, relocate
from .safenames import safe_relpath
from .storage import blob_store

if TYPE_CHECKING:
    from .export import FileQuerySet

logger = logging.getLogger(__name__)

#: Files up to this size are read whole and written with one PUT.
SMALL_FILE = 8 * 1024 * 1024


def storage_target(alias: str, prefix: str = "") -> str:
    """The checked prefix to export under in ``STORAGES[alias]``; ``ValueError`` if unusable.

    A prefix is a relative path, ended with ``/`` if it is not already. It
    must not reach the blob objects: orphan collection deletes every object
    under ``BLOB_PREFIX`` that no blob row names, exported files included.
    """
    if alias not in chunkfiles_settings.storages_setting:
        raise ValueError(f"unknown storage alias {alias!r} (not in STORAGES)")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    parts = prefix.split("/")[:-1]
    if prefix.startswith("/") or "\\" in prefix or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"the prefix must be a relative path like 'export/2026/', not {prefix!r}")
    blobs = str(chunkfiles_settings.BLOB_PREFIX)
    # Exported names are "{prefix}{id}/{name}": they reach BLOB_PREFIX if it
    # starts with the prefix, or the prefix starts with it. (With no
    # BLOB_PREFIX there is no orphan collection.)
    if blobs and (
        prefix.startswith(blobs)
        or (blobs.startswith(prefix) and re.fullmatch(r"\d*|\d+/.*", blobs[len(prefix) :]))
    ):
        raise ValueError(
            f"the prefix {prefix!r} overlaps CHUNKFILES['BLOB_PREFIX'] ({blobs!r}): "
            "orphan collection would delete the exported files"
        )
    return prefix


def target_name(item: ExportItem, prefix: str) -> str:
    """Where ``item`` goes in the storage: ``{prefix}{id}/{safe relative name}``."""
    return f"{prefix}{item.id}/{safe_relpath(item.name, f'file-{item.id}')}"


class _Hashing(io.RawIOBase):
    """The reader's bytes, each seen by the whole-file check on the way to storage."""

    def __init__(self, reader: IO[bytes], check: WholeFileCheck) -> None:
        self.reader = reader
        self.check = check

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        count = self.reader.readinto(buffer)  # type: ignore[attr-defined]
        self.check.update(memoryview(buffer)[:count])
        return int(count)


class _Target:
    """The storage files are exported into, shared by the export's threads.

    A small file is one PUT through the thread-safe ``BlobStore`` client; a
    large one goes through django-storages, which uploads it in parts but is
    not thread-safe (one call at a time), as are size look-ups.
    """

    def __init__(self, alias: str, workers: int) -> None:
        self.storage: Storage = storages[alias]
        self.store = blob_store(alias, connections=workers)
        self.lock = threading.Lock()

    def size(self, name: str) -> int | None:
        """Size of the object ``name``, or None if there is none."""
        if not self.store.exists(name):
            return None
        with self.lock:
            return int(self.storage.size(name))

    def delete(self, name: str) -> None:
        self.store.delete(name)

    def _discard_partial(self, name: str, size: int) -> None:
        # FileSystemStorage leaves what it wrote before a read failed (S3 aborts
        # the multipart upload itself). A complete copy, written meanwhile by a
        # worker doing the same batch again, has the full size and stays.
        try:
            if self.storage.exists(name) and self.storage.size(name) != size:
                self.storage.delete(name)
        except Exception:
            logger.warning("could not remove the partial export %r", name, exc_info=True)

    def write(self, name: str, reader: IO[bytes], size: int, check: WholeFileCheck) -> str:
        """Store ``reader``'s bytes as ``name``; the name the storage used.

        A small file is checked before it is written; a large one is checked
        as it streams and deleted again if the check fails.
        """
        if size <= SMALL_FILE:
            data = reader.read()
            check.update(data)
            check.check()
            return self.store.put(name, data, blob_checksum(data))
        with self.lock:
            used = self.storage.get_available_name(name)
            try:
                content = DjangoFile(cast(IO[bytes], _Hashing(reader, check)), name=name)
                used = self.storage.save(used, content)
            except BaseException:
                self._discard_partial(used, size)
                raise
        try:
            check.check()
        except ExportError:
            self.delete(used)
            raise
        return used


def _relocate(ref: BlobRef, using: str) -> BlobRef | None:
    # Runs in whichever thread reads the file: for a large file that is one of
    # s3transfer's, which would keep the connection open until it is collected.
    try:
        return relocate(ref, using)
    finally:
        connections[using].close()


def _export_one(
    target: _Target,
    item: ExportItem,
    refs: list[BlobRef],
    name: str,
    using: str,
    check: WholeFileCheck,
    overwrite: bool,
) -> Exported:
    try:
        found = target.size(name)
        if found is not None and found == item.size and not overwrite:
            return Exported(item, name, "skipped")
        index = checked_index(item, refs)
        if found is not None:
            target.delete(name)  # a partial file: a filesystem would pick another name
        with open_refs(
            index.refs,
            file_id=item.id,
            expected_size=item.size,
            readahead=False,
            relocate=lambda ref: _relocate(ref, using),
        ) as reader:
            used = target.write(name, cast(IO[bytes], reader), index.size, check)
        if used != name:
            # Another worker doing the same batch created ``name`` meanwhile; its copy stays.
            target.delete(used)
    except (OSError, ExportError) as exc:
        return Exported(item, name, "failed", str(exc))
    return Exported(item, name, "written")


def export_to_storage(
    files: FileQuerySet | Iterable[int],
    alias: str,
    prefix: str = "",
    *,
    using: str | None = None,
    workers: int = 8,
    verify: bool = False,
    overwrite: bool = False,
) -> Iterator[Exported]:
    """Write each file of ``files`` to ``STORAGES[alias]``; one ``Exported`` per file.

    ``files`` is a ``File`` queryset or file ids (rows of the database ``using``).

    ``workers`` files are written at once. A broken file is reported as
    ``failed`` and the rest go on; files already there with their size are
    ``skipped`` (unless ``overwrite``). ``verify`` also checks each file's
    SHA-1 against ``File.checksum``. Outcomes come in id order.
    """
    from .models import File

    prefix = storage_target(alias, prefix)
    target = _Target(alias, max(1, workers))
    if not isinstance(files, QuerySet):
        files = File.objects.using(using).filter(pk__in=list(files))
    pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="chunkfiles-export")
    running: deque[Future[Exported]] = deque()
    try:
        for item, refs in iter_items(files):
            name = target_name(item, prefix)
            check = WholeFileCheck(item, verify)
            running.append(
                pool.submit(_export_one, target, item, refs, name, files.db, check, overwrite)
            )
            if len(running) >= 2 * max(1, workers):
                yield running.popleft().result()
        while running:
            yield running.popleft().result()
    finally:
        for future in running:
            future.cancel()
        pool.shutdown(wait=True)
