"""Small pieces shared by the admin pages: sizes, checksums, page-only counts."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from django.contrib.admin.views.main import ChangeList
from django.db.models import Count
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from ..conf import blob_alias
from ..models import FileBlobIndex

if TYPE_CHECKING:
    from ..models import File

#: Rows of a file's blobs (or a blob's files) shown on its page; the rest are a link away.
INLINE_ROWS = 100


def human_size(size: int | None) -> str:
    """``5.0 GB``; '-' for a size not recorded yet."""
    return "-" if size is None else str(filesizeformat(size))


def exact_size(size: int | None) -> SafeString | str:
    """``5.0 GB (5,368,709,120 bytes)`` for detail pages."""
    if size is None or size < 1024:
        return human_size(size)
    return format_html("{} ({} bytes)", human_size(size), f"{size:,}")


def short_checksum(checksum: str | None) -> SafeString | str:
    """The first 12 hex digits, with the full checksum on hover."""
    if not checksum:
        return "-"
    return format_html('<code title="{}">{}</code>', checksum, checksum[:12])


def index_row_counts(objects: list[Any], column: str) -> dict[int, int]:
    """How many index rows name each of ``objects`` by ``column`` (``file_id`` or
    ``blob_id``), in one query over the page's rows only: no join that grows with the store."""
    if not objects:
        return {}
    return dict(
        FileBlobIndex.objects.using(objects[0]._state.db)
        .filter(**{f"{column}__in": [o.pk for o in objects]})
        .values_list(column)
        .annotate(n=Count("pk"))
        .values_list(column, "n")
    )


class PageAnnotatingChangeList(ChangeList):
    """A changelist that lets its admin add values to the rows of the current page.

    Counting per row with a join or a subquery in the page query costs time
    that grows with the whole table; counting only the page's ids costs one
    small query, whatever the store's size.
    """

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        rows = list(self.result_list)
        annotate: Callable[[Iterable[Any]], None] = self.model_admin.annotate_page  # type: ignore[attr-defined]
        annotate(rows)
        self.result_list = rows


def file_blobs_table(file: File, blob_url: Callable[[int], str], all_url: str) -> SafeString:
    """The first ``INLINE_ROWS`` blobs of ``file`` as a table, and a link to all of them.

    Two small queries whatever the file's size: a 5 GiB file of 5,120 blobs
    renders 100 rows, not 5.8 MB of HTML.
    """
    index = FileBlobIndex.objects.using(file._state.db).filter(file_id=file.pk)
    columns = ("offset", "blob_id", "blob__size", "blob__checksum", "blob__storage")
    rows = list(index.order_by("offset").values_list(*columns)[:INLINE_ROWS])
    total = index.count() if len(rows) == INLINE_ROWS else len(rows)
    body = format_html_join(
        "",
        '<tr><td class="field-offset">{}</td><td class="field-size">{}</td>'
        '<td class="field-blob"><a href="{}"><code>{}</code></a></td><td>{}</td></tr>',
        (
            (
                offset,
                human_size(size),
                blob_url(pk),
                checksum,
                blob_alias(storage),
            )
            for offset, pk, size, checksum, storage in rows
        ),
    )
    more: SafeString | str = ""
    if total > len(rows):
        more = format_html(
            '<p class="chunkfiles-more">Showing the first {} of {} blobs. '
            '<a href="{}">All {} blobs</a></p>',
            len(rows),
            total,
            all_url,
            total,
        )
    return format_html(
        '<table class="chunkfiles-blobs"><thead><tr><th>offset</th><th>size</th>'
        "<th>SHA-256</th><th>storage</th></tr></thead><tbody>{}</tbody></table>{}",
        body,
        more,
    )
