"""Sentry's file store as Sentry writes it: three tables and a filestore.

Read with plain SQL through a Django database alias, so no Sentry code is
needed. What Sentry's column types mean here:

- ``sentry_file.size`` and ``sentry_fileblobindex.offset`` are 32-bit
  (``WrappingU32IntegerField``): values of 2 GiB and more are stored as
  negative signed integers and unwrapped by ``u32``;
- ``sentry_file.headers`` is a text column holding JSON (``LegacyTextJSONField``);
- ``sentry_fileblob.checksum`` is the SHA-1 of the blob, ``path`` its name in
  the filestore (``FileBlob.generate_unique_path()``, e.g. ``ab/cdef/0123...``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from django.db import connections

#: Sentry file ids per query; well under every backend's bound-parameter limit.
PAGE = 500
_WRAP = 2**32

FILE_TABLE = "sentry_file"
BLOB_TABLE = "sentry_fileblob"
INDEX_TABLE = "sentry_fileblobindex"


def u32(value: int | None) -> int | None:
    """A 32-bit unsigned value that Sentry stored wrapped into a signed column."""
    if value is not None and value < 0:
        return value + _WRAP
    return value


@dataclass(frozen=True, slots=True)
class SentryFile:
    """One row of ``sentry_file``, sizes unwrapped; ``headers`` is the raw JSON text."""

    id: int
    name: str
    type: str
    timestamp: datetime
    headers: str | None
    size: int | None
    checksum: str | None


class SentryBlob(NamedTuple):
    """A blob of a Sentry file: ``sentry_fileblobindex`` joined with ``sentry_fileblob``."""

    offset: int
    blob_id: int
    path: str | None
    size: int | None
    checksum: str


class Filters(NamedTuple):
    """Which Sentry files to read; empty or None means no restriction."""

    ids: Sequence[int] = ()
    types: Sequence[str] = ()
    since: datetime | None = None


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a Sentry file was not imported; no offset or blob for faults of the whole file."""

    sentry_file_id: int
    name: str
    reason: str
    offset: int | None = None
    blob_id: int | None = None
    path: str | None = None

    def __str__(self) -> str:
        where = f"Sentry file {self.sentry_file_id} ({self.name!r})"
        if self.offset is not None:
            where += f" at offset {self.offset}"
        if self.blob_id is not None:
            where += f", blob {self.blob_id} (path {self.path!r})"
        return f"{where}: {self.reason}"


def parse_headers(text: str | None) -> dict[str, str]:
    """Sentry's headers text as a dict of strings.

    Empty means no headers. Values that are not strings (Sentry's JSON field
    accepts any) are kept as their JSON text; a null value is dropped.
    Raises ``ValueError`` for text that is not a JSON object, and for headers
    ``File.clean()`` refuses (a line break could inject a header into the
    admin download).
    """
    from .upload import headers_problem

    if text is None or not text.strip():
        return {}
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"headers are JSON {type(value).__name__}, not an object")
    headers = {
        str(key): item if isinstance(item, str) else json.dumps(item)
        for key, item in value.items()
        if item is not None
    }
    problem = headers_problem(headers)
    if problem:
        raise ValueError(problem)
    return headers


def blob_problem(data: bytes, size: int | None, sha1: str) -> str | None:
    """Why ``data`` is not the Sentry blob (size, then SHA-1), or None when it is."""
    if size is not None and len(data) != size:
        return f"Sentry recorded {size} bytes, the filestore holds {len(data)}"
    actual = hashlib.sha1(data).hexdigest()
    if actual != sha1.lower():
        return f"bytes hash to SHA-1 {actual}, Sentry recorded {sha1}"
    return None


def structure_problem(file: SentryFile, blobs: list[SentryBlob]) -> Problem | None:
    """Why the index rows do not tile the file without gaps up to its size, or None."""
    expected = 0
    for blob in blobs:
        if blob.offset != expected or blob.size is None:
            reason = (
                "Sentry recorded no size for the blob"
                if blob.size is None
                else f"the index places the blob at offset {blob.offset}, expected {expected}"
            )
            return Problem(file.id, file.name, reason, blob.offset, blob.blob_id, blob.path)
        expected += blob.size
    if file.size is not None and file.size != expected:
        reason = f"its blobs add up to {expected} bytes, Sentry recorded {file.size}"
        return Problem(file.id, file.name, reason)
    return None


class SentryTables:
    """Reads the three tables from the ``DATABASES`` alias ``using``."""

    def __init__(self, using: str) -> None:
        self.using = using
        self.connection = connections[using]
        self.q = self.connection.ops.quote_name

    def _where(self, filters: Filters) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if filters.ids:
            clauses.append(f"{self.q('id')} IN ({', '.join(['%s'] * len(filters.ids))})")
            params.extend(filters.ids)
        if filters.types:
            clauses.append(f"{self.q('type')} IN ({', '.join(['%s'] * len(filters.types))})")
            params.extend(filters.types)
        if filters.since is not None:
            clauses.append(f"{self.q('timestamp')} >= %s")
            params.append(filters.since)
        return " AND ".join(clauses) or "1 = 1", params

    def _query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall())

    def totals(self, filters: Filters) -> tuple[int, int]:
        """How many files match and how many bytes they hold (one query)."""
        where, params = self._where(filters)
        size = self.q("size")
        sql = (
            f"SELECT COUNT(*), COALESCE(SUM(CASE WHEN {size} < 0 THEN {size} + {_WRAP} "
            f"ELSE {size} END), 0) FROM {self.q(FILE_TABLE)} WHERE {where}"
        )
        count, total = self._query(sql, params)[0]
        return int(count), int(total)

    def unknown_ids(self, ids: Sequence[int]) -> list[int]:
        """Those of ``ids`` that no row of ``sentry_file`` has (one query per ``PAGE``)."""
        wanted = sorted(set(ids))
        found: set[int] = set()
        for start in range(0, len(wanted), PAGE):
            batch = wanted[start : start + PAGE]
            sql = (
                f"SELECT {self.q('id')} FROM {self.q(FILE_TABLE)} "
                f"WHERE {self.q('id')} IN ({', '.join(['%s'] * len(batch))})"
            )
            found.update(row[0] for row in self._query(sql, batch))
        return [pk for pk in wanted if pk not in found]

    def files(self, filters: Filters) -> Iterator[list[SentryFile]]:
        """Matching files in pages of ``PAGE``, by ascending id (keyset paging)."""
        where, params = self._where(filters)
        columns = ", ".join(
            self.q(c) for c in ("id", "name", "type", "timestamp", "headers", "size", "checksum")
        )
        sql = (
            f"SELECT {columns} FROM {self.q(FILE_TABLE)} WHERE {where} AND {self.q('id')} > %s "
            f"ORDER BY {self.q('id')} LIMIT {PAGE}"
        )
        after = -1
        while True:
            rows = self._query(sql, [*params, after])
            if not rows:
                return
            yield [
                SentryFile(pk, name, type_, timestamp, headers, u32(size), checksum)
                for pk, name, type_, timestamp, headers, size, checksum in rows
            ]
            after = rows[-1][0]

    def blobs(self, file_ids: Sequence[int]) -> dict[int, list[SentryBlob]]:
        """The blobs of each file, ordered by offset (one query); files without blobs map to []."""
        found: dict[int, list[SentryBlob]] = {pk: [] for pk in file_ids}
        if not file_ids:
            return found
        q = self.q
        sql = (
            f"SELECT i.{q('file_id')}, i.{q('offset')}, b.{q('id')}, b.{q('path')}, "
            f"b.{q('size')}, b.{q('checksum')} "
            f"FROM {q(INDEX_TABLE)} i JOIN {q(BLOB_TABLE)} b ON b.{q('id')} = i.{q('blob_id')} "
            f"WHERE i.{q('file_id')} IN ({', '.join(['%s'] * len(file_ids))})"
        )
        for file_id, offset, blob_id, path, size, checksum in self._query(sql, list(file_ids)):
            found[file_id].append(SentryBlob(u32(offset) or 0, blob_id, path, u32(size), checksum))
        for blobs in found.values():
            # Sorted here: unwrapped offsets do not sort like the stored signed ones.
            blobs.sort()
        return found
