"""Admin: browse files and blobs, download a file's bytes (view permission required)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import FileResponse, Http404, HttpRequest
from django.http.response import HttpResponseBase
from django.template.defaultfilters import filesizeformat
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from .models import File, FileBlob, FileBlobIndex


class ReadOnlyMixin:
    """Rows are written by the upload API only; the admin never edits them."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class FileBlobIndexInline(ReadOnlyMixin, admin.TabularInline):  # type: ignore[type-arg]
    model = FileBlobIndex
    fields = ("offset", "blob", "blob_size")
    readonly_fields = fields
    ordering = ("offset",)
    can_delete = False
    extra = 0
    show_change_link = False

    @admin.display(description="size")
    def blob_size(self, obj: FileBlobIndex) -> str:
        return filesizeformat(obj.blob.size or 0)

    def get_queryset(self, request: HttpRequest) -> QuerySet[FileBlobIndex]:
        return super().get_queryset(request).select_related("blob")


@admin.register(File)
class FileAdmin(ReadOnlyMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("name", "type", "human_size", "blob_count", "timestamp", "download_link")
    list_filter = ("type", "timestamp")
    search_fields = ("name", "checksum")
    date_hierarchy = "timestamp"
    readonly_fields = ("name", "type", "timestamp", "headers", "size", "checksum", "download_link")
    fields = readonly_fields
    inlines = (FileBlobIndexInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet[File]:
        queryset: QuerySet[File] = super().get_queryset(request)
        return queryset.annotate(blob_total=Count("blobs"))

    @admin.display(description="size", ordering="size")
    def human_size(self, obj: File) -> str:
        return filesizeformat(obj.size) if obj.size is not None else "-"

    @admin.display(description="blobs", ordering="blob_total")
    def blob_count(self, obj: File) -> int:
        return getattr(obj, "blob_total", 0)

    @admin.display(description="download")
    def download_link(self, obj: File) -> str:
        url = reverse(f"admin:{obj._meta.app_label}_file_download", args=[obj.pk])
        return format_html('<a href="{}" class="chunkfiles-download">Download</a>', url)

    def get_urls(self) -> list[URLPattern]:
        download = path(
            "<path:object_id>/download/",
            self.admin_site.admin_view(self.download_view),
            name=f"{self.opts.app_label}_file_download",
        )
        return [download, *super().get_urls()]

    def download_view(self, request: HttpRequest, object_id: str) -> HttpResponseBase:
        """Stream the file with a bounded read-ahead; needs view permission on it.

        FileResponse sets Content-Length by seeking to the end, which fetches nothing.
        """
        # Permission first, so staff without it cannot probe which ids exist.
        if not self.has_view_permission(request):
            raise PermissionDenied
        file = self.get_object(request, unquote(object_id))  # None for a malformed id too
        if file is None:
            raise Http404(f"No file with id {object_id!r}")
        if not self.has_view_permission(request, file):
            raise PermissionDenied
        content_type = (file.headers or {}).get("Content-Type", "application/octet-stream")
        fp = file.getfile(readahead=True)
        try:
            # Fetch the first blob before the 200 goes out: a file broken at
            # its start then gets an error page, not an empty "successful" body.
            fp.read(1)
            fp.seek(0)  # the blob stays in the read-ahead window: no refetch
        except BaseException:
            fp.close()
            raise
        return FileResponse(fp, as_attachment=True, filename=file.name, content_type=content_type)


@admin.register(FileBlob)
class FileBlobAdmin(ReadOnlyMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("checksum", "human_size", "path", "timestamp")
    search_fields = ("checksum", "path")
    date_hierarchy = "timestamp"
    readonly_fields = ("checksum", "size", "path", "timestamp")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Deleting a row would orphan its object; garbage collection owns that.
        return False

    @admin.display(description="size", ordering="size")
    def human_size(self, obj: FileBlob) -> str:
        return filesizeformat(obj.size) if obj.size is not None else "-"
