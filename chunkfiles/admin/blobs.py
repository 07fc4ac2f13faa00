"""The Blobs pages: what is stored, who uses it, and when garbage collection takes it."""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet, Sum
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from ..conf import chunkfiles_settings
from ..models import File, FileBlob, FileBlobIndex
from .display import (
    INLINE_ROWS,
    PageAnnotatingChangeList,
    exact_size,
    human_size,
    index_row_counts,
    short_checksum,
)
from .filters import FileFilter, StorageFilter, UsageFilter

SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


def gc_due(blob: FileBlob) -> datetime.datetime | None:
    """When garbage collection may delete an unused blob: ``unused_since + GC_GRACE``."""
    if blob.unused_since is None:
        return None
    return blob.unused_since + datetime.timedelta(seconds=float(chunkfiles_settings.GC_GRACE))


class FileBlobAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Read-only blob pages; rows are removed by garbage collection only."""

    list_display = (
        "checksum_display",
        "size_display",
        "used_by",
        "storage_display",
        "gc_display",
        "path",
        "timestamp",
    )
    list_filter = (UsageFilter, FileFilter, StorageFilter)
    search_fields = ("=path",)
    search_help_text = "A blob's SHA-256, or its storage name."
    ordering = ("-timestamp", "-pk")
    sortable_by = ("size_display", "timestamp")
    list_per_page = 100
    show_full_result_count = False
    fields = (
        "checksum",
        "size_exact",
        "path",
        "storage_display",
        "timestamp",
        "lost_at",
        "unused_since",
        "gc_display",
        "files_table",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Deleting a row would orphan its object; garbage collection owns that.
        return False

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[PageAnnotatingChangeList]:
        return PageAnnotatingChangeList

    def annotate_page(self, rows: Iterable[FileBlob]) -> None:
        """How many index rows use each blob of the page, in one query."""
        blobs = list(rows)
        counts = index_row_counts(blobs, "blob_id")
        for blob in blobs:
            blob.use_count = counts.get(blob.pk, 0)  # type: ignore[attr-defined]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[FileBlob], search_term: str
    ) -> tuple[QuerySet[FileBlob], bool]:
        term = search_term.strip()
        if SHA256.match(term):
            return queryset.filter(checksum=term.lower()), False
        return super().get_search_results(request, queryset, search_term)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = dict(extra_context or {})
        if self.has_view_permission(request):
            context["store"] = self.store_summary(request)
        return super().changelist_view(request, context)

    def store_summary(self, request: HttpRequest) -> dict[str, Any]:
        """Bytes the files hold against bytes stored, and blobs per storage (two queries)."""
        db = self.get_queryset(request).db
        logical = File.objects.using(db).aggregate(total=Sum("size"))["total"] or 0
        per_storage = FileBlob.objects.using(db).totals_by_storage()
        storages = [
            {"alias": alias, "blobs": n, "size": human_size(size)}
            for alias, (n, size) in per_storage.items()
        ]
        stored = sum(size for _, size in per_storage.values())
        saved = max(0, logical - stored)
        return {
            "logical": human_size(logical),
            "stored": human_size(stored),
            "saved": human_size(saved),
            "saved_percent": f"{saved / logical:.0%}" if logical else "0%",
            "storages": storages,
        }

    @admin.display(description="SHA-256")
    def checksum_display(self, obj: FileBlob) -> SafeString | str:
        return short_checksum(obj.checksum)

    @admin.display(description="size", ordering="size")
    def size_display(self, obj: FileBlob) -> str:
        return human_size(obj.size)

    @admin.display(description="size")
    def size_exact(self, obj: FileBlob) -> SafeString | str:
        return exact_size(obj.size)

    @admin.display(description="storage")
    def storage_display(self, obj: FileBlob) -> str:
        return obj.storage_alias

    @admin.display(description="used by")
    def used_by(self, obj: FileBlob) -> SafeString | str:
        count = getattr(obj, "use_count", 0)
        if not count:
            return format_html('<span class="chunkfiles-unused">{}</span>', "unreferenced")
        url = reverse(f"{self.admin_site.name}:chunkfiles_file_changelist") + f"?q={obj.checksum}"
        return format_html('<a href="{}">{} file{}</a>', url, count, "" if count == 1 else "s")

    @admin.display(description="collected after")
    def gc_display(self, obj: FileBlob) -> str:
        due = gc_due(obj)
        if due is None:
            return "-"
        if due <= timezone.now():
            return f"{timezone.localtime(due):%Y-%m-%d %H:%M} (due at the next run)"
        return f"{timezone.localtime(due):%Y-%m-%d %H:%M}"

    @admin.display(description="used by")
    def files_table(self, obj: FileBlob) -> SafeString:
        rows = list(
            FileBlobIndex.objects.using(obj._state.db)
            .filter(blob_id=obj.pk)
            .order_by("file_id", "offset")
            .values_list("file_id", "file__name", "offset")[:INLINE_ROWS]
        )
        if not rows:
            return format_html("{}", "No file uses this blob.")
        total = len(rows)
        if total == INLINE_ROWS:
            total = FileBlobIndex.objects.using(obj._state.db).filter(blob_id=obj.pk).count()
        site = self.admin_site.name
        body = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td><td>{}</td></tr>',
            (
                (reverse(f"{site}:chunkfiles_file_change", args=[pk]), name, offset)
                for pk, name, offset in rows
            ),
        )
        more = ""
        if total > len(rows):
            url = reverse(f"{site}:chunkfiles_file_changelist") + f"?q={obj.checksum}"
            more = format_html(
                '<p>Showing {} of {} uses. <a href="{}">All files</a></p>', len(rows), total, url
            )
        return format_html(
            '<table class="chunkfiles-files"><thead><tr><th>file</th><th>at offset</th></tr>'
            "</thead><tbody>{}</tbody></table>{}",
            body,
            more,
        )
