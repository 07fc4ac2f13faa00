"""The Files pages: changelist, file page, upload form, download and preview."""

from __future__ import annotations

import json
import mimetypes
import re
from collections.abc import Iterable
from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.http.response import HttpResponseBase
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from ..models import File, FileBlobIndex
from .actions import download_zip, verify_integrity
from .display import (
    PageAnnotatingChangeList,
    exact_size,
    file_blobs_table,
    human_size,
    index_row_counts,
    short_checksum,
)
from .download import file_response, preview_type
from .filters import TypeFilter
from .forms import FileUploadForm

SHA1 = re.compile(r"^[0-9a-fA-F]{40}$")
SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


class FileAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Browse, download, verify, upload and delete files."""

    list_display = (
        "name",
        "type",
        "size_display",
        "blob_count",
        "checksum_display",
        "timestamp",
        "download_link",
    )
    list_filter = (TypeFilter, "timestamp")
    search_fields = ("name",)
    search_help_text = "Name, whole-file SHA-1, or the SHA-256 of one of its blobs."
    ordering = ("-timestamp", "-pk")
    sortable_by = ("name", "type", "size_display", "timestamp")
    list_per_page = 100
    show_full_result_count = False  # a second COUNT(*) over the whole table per page
    actions = (download_zip, verify_integrity, "delete_selected")
    detail_fields = (
        "name",
        "type",
        "timestamp",
        "size_exact",
        "checksum",
        "headers_json",
        "download_button",
        "preview",
        "blob_table",
    )

    # -- permissions: rows change only through putfile ---------------------
    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    # -- changelist --------------------------------------------------------
    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[PageAnnotatingChangeList]:
        return PageAnnotatingChangeList

    def annotate_page(self, rows: Iterable[File]) -> None:
        """Blob counts of the page's files, in one query."""
        files = list(rows)
        counts = index_row_counts(files, "file_id")
        for file in files:
            file.blob_total = counts.get(file.pk, 0)  # type: ignore[attr-defined]

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[File], search_term: str
    ) -> tuple[QuerySet[File], bool]:
        term = search_term.strip()
        if SHA1.match(term):
            return queryset.filter(checksum=term.lower()), False
        if SHA256.match(term):
            with_blob = FileBlobIndex.objects.filter(blob__checksum=term.lower())
            return queryset.filter(pk__in=with_blob.values("file_id")), False
        return super().get_search_results(request, queryset, search_term)

    @admin.display(description="size", ordering="size")
    def size_display(self, obj: File) -> str:
        return human_size(obj.size)

    @admin.display(description="blobs")
    def blob_count(self, obj: File) -> int:
        return getattr(obj, "blob_total", 0)

    @admin.display(description="SHA-1")
    def checksum_display(self, obj: File) -> SafeString | str:
        return short_checksum(obj.checksum)

    def _url(self, name: str, *args: Any) -> str:
        return reverse(f"{self.admin_site.name}:chunkfiles_{name}", args=args)

    @admin.display(description="download")
    def download_link(self, obj: File) -> SafeString | str:
        if obj.size is None:
            return "-"
        url = self._url("file_download", obj.pk)
        return format_html('<a href="{}" class="chunkfiles-download">Download</a>', url)

    # -- the file page -----------------------------------------------------
    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ("upload", "name", "type", "content_type")
        return self.detail_fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return () if obj is None else self.detail_fields

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is None:
            kwargs["form"] = FileUploadForm
            kwargs["fields"] = ("name", "type")
        return super().get_form(request, obj, change, **kwargs)

    @admin.display(description="size")
    def size_exact(self, obj: File) -> SafeString | str:
        return exact_size(obj.size)

    @admin.display(description="headers")
    def headers_json(self, obj: File) -> SafeString:
        text = json.dumps(obj.headers, indent=2, sort_keys=True, ensure_ascii=False)
        return format_html('<pre class="chunkfiles-headers">{}</pre>', text)

    @admin.display(description="download")
    def download_button(self, obj: File) -> SafeString | str:
        if obj.size is None:
            return "no stored content"
        url = self._url("file_download", obj.pk)
        return format_html(
            '<a href="{}" class="button chunkfiles-download">Download</a> {}',
            url,
            human_size(obj.size),
        )

    @admin.display(description="preview")
    def preview(self, obj: File) -> SafeString | str:
        kind = preview_type(obj)
        if kind is None:
            return "-"
        url = self._url("file_preview", obj.pk)
        if kind.startswith("image/"):
            return format_html(
                '<img src="{}" alt="" class="chunkfiles-preview" '
                'style="max-width:640px;max-height:480px">',
                url,
            )
        return format_html(
            '<iframe src="{}" sandbox class="chunkfiles-preview" title="preview" '
            'style="width:760px;max-width:100%;height:320px;border:1px solid #ccc"></iframe>',
            url,
        )

    @admin.display(description="blobs")
    def blob_table(self, obj: File) -> SafeString:
        return file_blobs_table(
            obj,
            lambda pk: self._url("fileblob_change", pk),
            self._url("fileblob_changelist") + f"?file={obj.pk}",
        )

    # -- upload ------------------------------------------------------------
    def save_model(self, request: HttpRequest, obj: File, form: Any, change: bool) -> None:
        if change:
            raise PermissionDenied  # content is never edited in place
        upload = form.cleaned_data["upload"]
        obj.name = form.cleaned_data.get("name") or upload.name
        obj.type = form.cleaned_data.get("type") or "upload"
        content_type = (
            form.cleaned_data.get("content_type")
            or mimetypes.guess_type(obj.name)[0]
            or "application/octet-stream"
        )
        obj.headers = {"Content-Type": content_type}
        obj.save()
        # Inside the admin's transaction: a failed upload leaves no row.
        obj.putfile(upload)

    def response_add(
        self, request: HttpRequest, obj: File, post_url_continue: str | None = None
    ) -> HttpResponse:
        if "_addanother" in request.POST or "_popup" in request.POST:
            return super().response_add(request, obj, post_url_continue)
        self.message_user(request, f"Stored {obj.name} ({human_size(obj.size)}).")
        return HttpResponseRedirect(self._url("file_change", obj.pk))

    # -- delete: a short confirmation; blobs are left to garbage collection --
    def get_deleted_objects(
        self, objs: Any, request: HttpRequest
    ) -> tuple[list[Any], dict[str, int], set[str], list[Any]]:
        files = list(objs)
        db = files[0]._state.db if files else None
        index_rows = (
            FileBlobIndex.objects.using(db).filter(file_id__in=[f.pk for f in files]).count()
        )
        shown: list[str] = [
            format_html("File: {} ({})", f.name, human_size(f.size)) for f in files[:20]
        ]
        if len(files) > 20:
            shown.append(f"... and {len(files) - 20} more files")
        shown.append(
            f"Their {index_rows} blob index rows. The blobs themselves stay until "
            "garbage collection finds them unused."
        )
        perms = set() if self.has_delete_permission(request) else {"file"}
        return shown, {"files": len(files), "blob index rows": index_rows}, perms, []

    # -- extra views ----------------------------------------------------------
    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/download/",
                wrap(self.download_view),
                name="chunkfiles_file_download",
            ),
            path(
                "<path:object_id>/preview/", wrap(self.preview_view), name="chunkfiles_file_preview"
            ),
            *super().get_urls(),
        ]

    def _viewable(self, request: HttpRequest, object_id: str) -> File:
        # Permission first, so staff without it cannot probe which ids exist.
        if not self.has_view_permission(request):
            raise PermissionDenied
        file: File | None = self.get_object(request, unquote(object_id))  # None if malformed
        if file is None:
            raise Http404(f"No file with id {object_id!r}")
        if not self.has_view_permission(request, file):
            raise PermissionDenied
        return file

    def download_view(self, request: HttpRequest, object_id: str) -> HttpResponseBase:
        """The file as an attachment, with Range support; needs view permission."""
        return file_response(request, self._viewable(request, object_id))

    def preview_view(self, request: HttpRequest, object_id: str) -> HttpResponseBase:
        """An image or text file shown inline, with a Content-Type that runs nothing."""
        file = self._viewable(request, object_id)
        kind = preview_type(file)
        if kind is None:
            raise Http404("no preview for this file")
        response = file_response(request, file, as_attachment=False, content_type=kind)
        response["Content-Security-Policy"] = "default-src 'none'; img-src 'self'; sandbox"
        response["X-Frame-Options"] = "SAMEORIGIN"  # the file page shows it in a frame
        return response
