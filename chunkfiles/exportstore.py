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

from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, cast

from django.core.files.base import File as DjangoFile
from django.core.files.storage import Storage, storages
from django.db import connections

from .export import Exported, ExportItem, checked_index, iter_items
from .reader import open_refs
from .refs import BlobRef, relocate
from .safenames import safe_relpath


def target_name(item: ExportItem, prefix: str) -> str:
    """Where ``item`` goes in the storage: ``{prefix}{id}/{safe relative name}``."""
    return f"{prefix}{item.id}/{safe_relpath(item.name, f'file-{item.id}')}"


def _stored_size(storage: Storage, name: str) -> int | None:
    """Size of the object ``name``, or None if there is none (one request)."""
    try:
        return int(storage.size(name))
    except Exception:
        # FileNotFoundError on a filesystem, a ClientError (404) on S3.
        return None


def _export_one(
    storage: Storage, item: ExportItem, refs: list[BlobRef], name: str, using: str
) -> Exported:
    try:
        found = _stored_size(storage, name)
        if found is not None and found == item.size:
            return Exported(item, name, "skipped")
        index = checked_index(item, refs)
        if found is not None:
            storage.delete(name)  # a partial file: Storage.save would pick another name
        with open_refs(
            index.refs,
            file_id=item.id,
            expected_size=item.size,
            readahead=False,
            relocate=lambda ref: relocate(ref, using),
        ) as reader:
            used = storage.save(name, DjangoFile(cast(IO[bytes], reader), name=name))
        if used != name:
            # Another worker doing the same batch created ``name`` meanwhile; its copy stays.
            storage.delete(used)
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

    storage = storages[alias]
    files = File.objects.using(using).filter(pk__in=list(file_ids))
    pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="chunkfiles-export")
    running: deque[Future[Exported]] = deque()
    try:
        for item, refs in iter_items(files):
            name = target_name(item, prefix)
            running.append(pool.submit(_export_one, storage, item, refs, name, files.db))
            if len(running) >= 2 * max(1, workers):
                yield running.popleft().result()
        while running:
            yield running.popleft().result()
    finally:
        for future in running:
            future.cancel()
        pool.shutdown(wait=True)
