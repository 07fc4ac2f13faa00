"""``manage.py chunkfiles_stats``: files, blobs, bytes, dedupe ratio, largest files, per type."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandParser
from django.template.defaultfilters import filesizeformat

from chunkfiles.management.base import ChunkfilesCommand
from chunkfiles.stats import StoreStats, store_stats


class Command(ChunkfilesCommand):
    help = "Show what the store holds: files, blobs, logical and stored bytes, dedupe ratio."

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--json", action="store_true", help="One JSON object, for machines.")
        parser.add_argument(
            "--largest", type=int, default=10, help="How many of the largest files (10)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        stats = store_stats(self.database(options), largest=max(0, options["largest"]))
        if options["json"]:
            self.stdout.write(json.dumps(stats.as_dict(), indent=2, ensure_ascii=False))
            return
        for line in render(stats):
            self.stdout.write(line)


def render(stats: StoreStats) -> list[str]:
    """The human-readable report."""
    size = filesizeformat
    ratio = f"{stats.dedupe_ratio:.2f}x" if stats.dedupe_ratio is not None else "-"
    lines = [
        f"files             {stats.files:>12,}  ({stats.files_not_stored:,} without content)",
        f"logical bytes     {stats.logical_bytes:>12,}  ({size(stats.logical_bytes)})",
        f"blobs             {stats.blobs:>12,}  ({stats.lost_blobs:,} lost)",
        f"stored bytes      {stats.stored_bytes:>12,}  ({size(stats.stored_bytes)})",
        f"  used by files   {stats.referenced_bytes:>12,}  ({stats.referenced_blobs:,} blobs)",
        f"  unreferenced    {stats.unreferenced_bytes:>12,}  ({stats.unreferenced_blobs:,} blobs)",
        f"dedupe ratio      {ratio:>12}  (logical / stored bytes used by files)",
    ]
    if stats.storages:
        lines.append("")
        lines.append("per storage")
        for alias, entry in stats.storages.items():
            lines.append(f"  {alias:<20} {entry['blobs']:>10,} blobs  {size(entry['bytes'])}")
    if stats.types:
        lines.append("")
        lines.append("per type")
        for t in stats.types:
            lines.append(f"  {t.type:<20} {t.files:>10,} files  {size(t.bytes)}")
    if stats.largest:
        lines.append("")
        lines.append("largest files")
        for f in stats.largest:
            lines.append(f"  {f['id']:>8}  {size(f['size']):>10}  {f['name']}")
    return lines
