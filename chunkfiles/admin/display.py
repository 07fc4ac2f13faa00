"""Small pieces shared by the admin pages: sizes, checksums, page-only counts."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.contrib.admin.views.main import ChangeList
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat
from django.utils.html import format_html
from django.utils.safestring import SafeString

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
