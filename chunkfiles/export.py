"""Export files from the store: choose them, then write them out fast and safely.

The plain Python API behind ``manage.py chunkfiles_export``; scripts and
Celery tasks call the same functions::

    from chunkfiles.export import export_to_directory, select_files

    files = select_files(File.objects.all(), names=["*.pdf"], shard=(1, 4))
    for done in export_to_directory(files, "/srv/export", workers=32):
        print(done.path, done.status)

Files are read in pages of ``PAGE`` rows with one more query for all their
index rows (``refs_for_files``), so a run costs two queries per page, never
one per file. The writers (``chunkfiles.exportdir`` for a directory,
``chunkfiles.archive`` for tar and zip) keep many blobs of many files in
flight on one bounded thread pool, so memory stays at a few blobs per worker
whatever the number or size of the files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any

from django.db.models import Q
from django.db.models.functions import Mod

from .conf import chunkfiles_settings
from .exceptions import FileNotStoredError
from .refs import BlobIndex, BlobRef, refs_for_files

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from .models import File

    FileQuerySet = QuerySet[File]

#: File rows per query; the index rows of a page come in one more query.
PAGE = 500
#: Blob rows loaded at once at most (a page of huge files is split).
MAX_REFS = 50_000


class ExportError(Exception):
    """An export cannot go on; the message is one line for an operator."""


@dataclass(frozen=True, slots=True)
class ExportItem:
    """One file to export, as loaded from its row."""

    id: int
    name: str
    type: str
    size: int | None
    checksum: str | None
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class Exported:
    """What happened to one file: ``status`` is written, skipped or failed."""

    item: ExportItem
    path: str
    status: str
    error: str = ""

    @property
    def bytes(self) -> int:
        """Bytes written for this file (0 unless written)."""
        return (self.item.size or 0) if self.status == "written" else 0

    def manifest_line(self) -> str:
        """The file as one JSON line: id, name, type, size, checksum, output path, status."""
        record: dict[str, Any] = {
            "id": self.item.id,
            "name": self.item.name,
            "type": self.item.type,
            "size": self.item.size,
            "checksum": self.item.checksum,
            "path": self.path,
            "status": self.status,
        }
        if self.error:
            record["error"] = self.error
        return json.dumps(record, ensure_ascii=False) + "\n"


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/8"`` -> ``(2, 8)``; ``ValueError`` unless ``1 <= I <= N``."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise ValueError(f"--shard must be I/N with 1 <= I <= N, not {text!r}")
    return int(match[1]), int(match[2])


def glob_regex(pattern: str) -> str:
    """A regex for a shell glob (``*``, ``?``, ``[abc]``, ``[!abc]``) that every
    database understands (no Python-only syntax); ``ValueError`` if the glob is bad."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        i += 1
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[":
            end = pattern.find("]", i + 1 if pattern[i : i + 1] in ("!", "]") else i)
            if end < 0:
                raise ValueError(f"bad glob {pattern!r}: '[' without ']'")
            body = pattern[i:end]
            i = end + 1
            negate = body.startswith("!")
            body = body[1:] if negate else body
            if not body:
                raise ValueError(f"bad glob {pattern!r}: empty [...]")
            escaped = body.replace("\\", "\\\\").replace("^", "\\^").replace("[", "\\[")
            out.append(f"[{'^' if negate else ''}{escaped}]")
        elif char == "]":
            raise ValueError(f"bad glob {pattern!r}: ']' without '['")
        else:
            out.append(re.escape(char))
    regex = "^" + "".join(out) + "$"
    try:
        re.compile(regex)
    except re.error as exc:
        raise ValueError(f"bad glob {pattern!r}: {exc}") from None
    return regex


def select_files(
    files: FileQuerySet,
    *,
    ids: Sequence[int] = (),
    names: Sequence[str] = (),
    types: Sequence[str] = (),
    since: datetime | None = None,
    until: datetime | None = None,
    shard: tuple[int, int] | None = None,
) -> FileQuerySet:
    """``files`` narrowed by the export options; each given option must match.

    ``names`` are shell globs on ``File.name`` (any of them); ``since`` is
    inclusive and ``until`` exclusive on ``File.timestamp``; ``shard=(i, n)``
    keeps the files whose id is ``i - 1`` modulo ``n``, so the ``n`` shards are
    disjoint and together cover every file.
    """
    if ids:
        files = files.filter(pk__in=list(ids))
    if names:
        match = Q()
        for pattern in names:
            match |= Q(name__regex=glob_regex(pattern))
        files = files.filter(match)
    if types:
        files = files.filter(type__in=list(types))
    if since is not None:
        files = files.filter(timestamp__gte=since)
    if until is not None:
        files = files.filter(timestamp__lt=until)
    if shard is not None:
        index, count = shard
        files = files.alias(_shard=Mod("pk", count)).filter(_shard=index - 1)
    return files


def missing_ids(files: FileQuerySet, ids: Iterable[int]) -> list[int]:
    """The ids among ``ids`` that name no row of ``files``."""
    wanted = set(ids)
    found = set(files.filter(pk__in=list(wanted)).values_list("pk", flat=True))
    return sorted(wanted - found)


def iter_items(files: FileQuerySet) -> Iterator[tuple[ExportItem, list[BlobRef]]]:
    """Every file of ``files`` by id, with its blobs, two queries per ``PAGE`` files.

    Pages are keyed on the id (not OFFSET), so each query is an index range
    scan however far the export has got, and files added meanwhile with a
    higher id are still picked up.
    """
    using = files.db
    columns = ("pk", "name", "type", "size", "checksum", "timestamp")
    blob_size = max(1, int(chunkfiles_settings.BLOB_SIZE))
    last: int | None = 0
    while True:
        if last is None:
            return
        rows = list(files.filter(pk__gt=last).order_by("pk").values_list(*columns)[:PAGE])
        if not rows:
            return
        # A short page is the last one: no query just to find nothing more.
        last = rows[-1][0] if len(rows) == PAGE else None
        items = [ExportItem(*row) for row in rows]
        # Split the page so a page of huge files does not load millions of refs.
        group: list[ExportItem] = []
        budget = 0
        for item in [*items, None]:
            blobs = 1 + (item.size or 0) // blob_size if item is not None else 0
            if item is None or (group and budget + blobs > MAX_REFS):
                refs = refs_for_files([g.id for g in group], using=using)
                for g in group:
                    yield g, refs[g.id]
                group, budget = [], 0
            if item is not None:
                group.append(item)
                budget += blobs


class WholeFileCheck:
    """``--verify``: the SHA-1 of the bytes exported, compared with ``File.checksum``.

    Every blob is checked against its own SHA-256 on every read anyway; this
    also catches a ``File`` row whose index names the wrong blobs. Does
    nothing when not asked, or when the row has no checksum.
    """

    def __init__(self, item: ExportItem, verify: bool) -> None:
        self.item = item
        self.digest = hashlib.sha1() if verify and item.checksum else None

    def update(self, data: bytes | memoryview) -> None:
        if self.digest is not None:
            self.digest.update(data)

    def check(self) -> None:
        """``ExportError`` if the bytes seen are not the content the row records."""
        if self.digest is not None and self.digest.hexdigest() != self.item.checksum:
            raise ExportError(
                f"file {self.item.id} ({self.item.name!r}): content SHA-1 "
                f"{self.digest.hexdigest()} != recorded {self.item.checksum}"
            )


def checked_index(item: ExportItem, refs: list[BlobRef]) -> BlobIndex:
    """The file's blob index, or the error that makes it unexportable."""
    if item.size is None:
        raise FileNotStoredError(item.id, item.name)
    return BlobIndex(refs, item.id, item.size)


@contextlib.contextmanager
def atomic_text(path: str, overwrite: bool = True) -> Iterator[IO[str]]:
    """A text file that appears at ``path`` only if the block ends without an error."""
    target = os.path.abspath(path)
    if not overwrite and os.path.lexists(target):
        raise ExportError(f"{path} exists (use --overwrite)")
    temp = os.path.join(os.path.dirname(target), f".chunkfiles-{os.urandom(6).hex()}.part")
    try:
        with open(temp, "x", encoding="utf-8") as out:
            yield out
        os.replace(temp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
