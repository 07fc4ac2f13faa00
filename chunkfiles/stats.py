"""What the store holds, in a handful of aggregate queries (no per-row work).

The plain Python API behind ``manage.py chunkfiles_stats``: ``store_stats()``
returns a ``StoreStats`` whose ``as_dict()`` is what ``--json`` prints.

- *logical bytes*: the sum of ``File.size``, what users see;
- *stored bytes*: the sum of the sizes of the blobs files use, each once;
- *dedupe ratio*: logical / stored (2.0 means every byte is stored once for
  two bytes of files);
- unreferenced blobs (garbage-collection candidates) and lost blobs (object
  found missing) are counted apart.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from django.db.models import Count, Exists, F, OuterRef, Q, Sum


@dataclass(frozen=True, slots=True)
class TypeStats:
    """Files of one ``File.type``."""

    type: str
    files: int
    bytes: int


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Counts and sizes of the whole store on one database."""

    files: int
    files_not_stored: int
    logical_bytes: int
    blobs: int
    stored_bytes: int
    referenced_blobs: int
    referenced_bytes: int
    unreferenced_blobs: int
    unreferenced_bytes: int
    lost_blobs: int
    largest: list[dict[str, Any]] = field(default_factory=list)
    types: list[TypeStats] = field(default_factory=list)
    storages: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def dedupe_ratio(self) -> float | None:
        """Logical bytes per byte stored for them (None for an empty store)."""
        if not self.referenced_bytes:
            return None
        return self.logical_bytes / self.referenced_bytes

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        data = asdict(self)
        data["dedupe_ratio"] = self.dedupe_ratio
        return data


def store_stats(using: str = "default", *, largest: int = 10) -> StoreStats:
    """Aggregate the tables on ``using``; ``largest`` biggest files are listed."""
    from .models import File, FileBlob, FileBlobIndex

    files = File.objects.using(using)
    blobs = FileBlob.objects.using(using)
    file_totals = files.aggregate(
        count=Count("pk"), total=Sum("size"), not_stored=Count("pk", filter=Q(size__isnull=True))
    )
    blob_totals = blobs.aggregate(
        count=Count("pk"), total=Sum("size"), lost=Count("pk", filter=Q(lost_at__isnull=False))
    )
    used = Exists(FileBlobIndex.objects.using(using).filter(blob=OuterRef("pk")))
    referenced = (
        blobs.alias(used=used).filter(used=True).aggregate(count=Count("pk"), total=Sum("size"))
    )
    per_type = (
        files.values("type")
        .annotate(n=Count("pk"), total=Sum("size"))
        .order_by(F("total").desc(nulls_last=True), "type")
    )
    per_storage = {
        alias: {"blobs": n, "bytes": nbytes}
        for alias, (n, nbytes) in blobs.totals_by_storage().items()
    }
    top = files.filter(size__isnull=False).order_by("-size", "pk")[:largest]
    return StoreStats(
        files=file_totals["count"],
        files_not_stored=file_totals["not_stored"],
        logical_bytes=file_totals["total"] or 0,
        blobs=blob_totals["count"],
        stored_bytes=blob_totals["total"] or 0,
        referenced_blobs=referenced["count"],
        referenced_bytes=referenced["total"] or 0,
        unreferenced_blobs=blob_totals["count"] - referenced["count"],
        unreferenced_bytes=(blob_totals["total"] or 0) - (referenced["total"] or 0),
        lost_blobs=blob_totals["lost"],
        largest=[
            {"id": pk, "name": name, "type": type_, "size": size}
            for pk, name, type_, size in top.values_list("pk", "name", "type", "size")
        ],
        types=[TypeStats(row["type"], row["n"], row["total"] or 0) for row in per_type],
        storages=per_storage,
    )
