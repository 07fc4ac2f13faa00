"""Store files and directory trees from the local filesystem.

The plain Python API behind ``manage.py chunkfiles_import``::

    from chunkfiles.importing import import_paths

    for done in import_paths(["/srv/uploads"], type="upload", workers=8):
        print(done.name, done.new_bytes)

A directory is walked recursively and each file is named by its path
relative to that directory (``sub/dir/a.txt``, always with ``/``); a file
given directly is named by its base name. Inside a directory only regular
files are stored: symlinks (which may point anywhere, or loop) and special
files (a FIFO would block) are skipped and reported.

``workers`` files are stored at once, each by ``File.putfile`` (which
writes only the blobs the store does not have yet). Each file is stored
in its own transaction, so an interrupted import leaves whole files only.
"""

from __future__ import annotations

import mimetypes
import os
import stat
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connections
from django.utils import timezone


class ImportPathError(ValueError):
    """A path given to the import does not exist or cannot be read."""


@dataclass(frozen=True, slots=True)
class Found:
    """A file to store: where it is and the ``File.name`` it gets (``None`` if skipped)."""

    path: str
    name: str
    skipped: str = ""  # why it is not stored


@dataclass(frozen=True, slots=True)
class Imported:
    """One file stored: its row, its size and how many of its bytes were new to the store."""

    path: str
    name: str
    file_id: int | None
    size: int
    new_bytes: int
    skipped: str = ""

    @property
    def deduplicated(self) -> bool:
        """Whether every byte of the file was already stored."""
        return not self.skipped and self.new_bytes == 0


def walk(paths: Sequence[str]) -> Iterator[Found]:
    """The files under ``paths``, sorted; ``ImportPathError`` if a path is missing."""
    for top in paths:
        if os.path.isfile(top):
            yield Found(top, os.path.basename(os.path.abspath(top)))
            continue
        if not os.path.isdir(top):
            raise ImportPathError(f"{top}: no such file or directory")
        errors: list[OSError] = []
        for directory, dirs, files in os.walk(top, onerror=errors.append):
            dirs.sort()
            for entry in sorted(files):
                path = os.path.join(directory, entry)
                name = os.path.relpath(path, top).replace(os.sep, "/")
                mode = os.lstat(path).st_mode
                if stat.S_ISREG(mode):
                    yield Found(path, name)
                else:
                    kind = "a symlink" if stat.S_ISLNK(mode) else "not a regular file"
                    yield Found(path, name, skipped=kind)
        if errors:
            raise ImportPathError(f"{errors[0].filename}: {errors[0].strerror}")


def headers_for(name: str, from_mimetype: bool) -> dict[str, str]:
    """``Content-Type`` (and ``Content-Encoding``) guessed from the name, if asked."""
    if not from_mimetype:
        return {}
    kind, encoding = mimetypes.guess_type(name, strict=False)
    headers = {"Content-Type": kind or "application/octet-stream"}
    if encoding:
        headers["Content-Encoding"] = encoding
    return headers


def store_one(
    found: Found, *, type: str, headers: dict[str, str], using: str, since: datetime, workers: int
) -> tuple[int, int, list[tuple[int, int, bool]]]:
    """Store one file; returns its id, size and (blob id, size, created by this run) per blob."""
    from .models import File

    file = File(name=found.name, type=type, headers=headers)
    # putfile saves the row in the same transaction as its blobs and index
    # rows (no row without content is ever visible); it writes where the
    # instance belongs, which for a new instance is this.
    file._state.db = using
    with open(found.path, "rb") as fileobj:
        rows = file.putfile(fileobj, workers=workers)
    blobs = [(row.blob.pk, row.blob.size or 0, row.blob.timestamp >= since) for row in rows]
    return file.pk, file.size or 0, blobs


def _close_thread_connections(barrier: threading.Barrier) -> None:
    # Every worker thread opened its own database connections; the barrier
    # makes each thread of the pool run exactly one of these tasks.
    barrier.wait(timeout=30)
    connections.close_all()


def import_paths(
    paths: Sequence[str],
    *,
    type: str = "default",
    using: str = "default",
    workers: int = 4,
    headers_from_mimetype: bool = False,
) -> Iterator[Imported]:
    """Store every file under ``paths``; yields one ``Imported`` per file as it is done.

    ``new_bytes`` counts the bytes of blobs this run wrote for the first time;
    a blob shared by several imported files counts as new once.
    """
    since = timezone.now()
    seen: set[int] = set()

    def outcome(found: Found, result: tuple[int, int, list[tuple[int, int, bool]]]) -> Imported:
        file_id, size, blobs = result
        new = 0
        for blob_id, blob_size, created in blobs:
            if created and blob_id not in seen:
                new += blob_size
            seen.add(blob_id)
        return Imported(found.path, found.name, file_id, size, new)

    def options(found: Found) -> dict[str, Any]:
        headers = headers_for(found.name, headers_from_mimetype)
        return {"type": type, "headers": headers, "using": using, "since": since}

    if workers <= 1:
        for found in walk(paths):
            if found.skipped:
                yield Imported(found.path, found.name, None, 0, 0, found.skipped)
            else:
                yield outcome(found, store_one(found, **options(found), workers=1))
        return
    pool = ThreadPoolExecutor(workers, thread_name_prefix="chunkfiles-import")
    running: dict[Future[Any], Found] = {}
    try:
        for found in walk(paths):
            if found.skipped:
                yield Imported(found.path, found.name, None, 0, 0, found.skipped)
                continue
            running[pool.submit(store_one, found, **options(found), workers=workers)] = found
            while len(running) >= 2 * workers:
                yield from _collect(running, outcome)
        while running:
            yield from _collect(running, outcome)
    finally:
        for future in running:
            future.cancel()
        barrier = threading.Barrier(workers)
        closers = [pool.submit(_close_thread_connections, barrier) for _ in range(workers)]
        wait(closers)
        pool.shutdown(wait=True)


def _collect(running: dict[Future[Any], Found], outcome: Any) -> Iterator[Imported]:
    done, _ = wait(list(running), return_when=FIRST_COMPLETED)
    for future in done:
        found = running.pop(future)
        yield outcome(found, future.result())
