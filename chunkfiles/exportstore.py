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

import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, cast

from django.core.files.base import File as DjangoFile
from django.core.files.storage import Storage, storages
from django.db import connections

from .chunking import blob_checksum
from .export import Exported, ExportItem, checked_index, iter_items
from .reader import open_refs
from .refs import BlobRef, relocate
from .safenames import safe_relpath
from .storage import blob_store

#: Files up to this size are read whole and written with one PUT.
SMALL_FILE = 8 * 1024 * 1024


def target_name(item: ExportItem, prefix: str) -> str:
    """Where ``item`` goes in the storage: ``{prefix}{id}/{safe relative name}``."""
    return f"{prefix}{item.id}/{safe_relpath(item.name, f'file-{item.id}')}"


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

    def write(self, name: str, reader: IO[bytes], size: int) -> str:
        """Store ``reader``'s bytes as ``name``; the name the storage used."""
        if size <= SMALL_FILE:
            data = reader.read()
            return self.store.put(name, data, blob_checksum(data))
        with self.lock:
            return self.storage.save(name, DjangoFile(reader, name=name))


def _export_one(
    target: _Target, item: ExportItem, refs: list[BlobRef], name: str, using: str
) -> Exported:
    try:
        found = target.size(name)
        if found is not None and found == item.size:
            return Exported(item, name, "skipped")
        index = checked_index(item, refs)
        if found is not None:
            target.delete(name)  # a partial file: a filesystem would pick another name
        with open_refs(
            index.refs,
            file_id=item.id,
            expected_size=item.size,
            readahead=False,
            relocate=lambda ref: relocate(ref, using),
        ) as reader:
            used = target.write(name, cast(IO[bytes], reader), index.size)
        if used != name:
            # Another worker doing the same batch created ``name`` meanwhile; its copy stays.
            target.delete(used)
    except OSError as exc:
        return Exported(item, name, "failed", str(exc))
    finally:
        connections.close_all()  # this thread's, opened if a blob had to be relocated
    return Exported(item, name, "written")


def export_to_storage(
    file_ids: Iterable[int],
    alias: str,
    prefix: str = "",
    *,
    using: str | None = None,
    workers: int = 8,
) -> Iterator[Exported]:
    """Write each file of ``file_ids`` to ``STORAGES[alias]``; one ``Exported`` per file.

    ``workers`` files are written at once. A broken file is reported as
    ``failed`` and the rest go on; files already there with their size are
    ``skipped``. Outcomes come in id order.
    """
    from .models import File

    target = _Target(alias, max(1, workers))
    files = File.objects.using(using).filter(pk__in=list(file_ids))
    pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="chunkfiles-export")
    running: deque[Future[Exported]] = deque()
    try:
        for item, refs in iter_items(files):
            name = target_name(item, prefix)
            running.append(pool.submit(_export_one, target, item, refs, name, files.db))
            if len(running) >= 2 * max(1, workers):
                yield running.popleft().result()
        while running:
            yield running.popleft().result()
    finally:
        for future in running:
            future.cancel()
        pool.shutdown(wait=True)
