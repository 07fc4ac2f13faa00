"""The admin as an operator's console for the store.

Files: browse, search (name, SHA-1, or a blob's SHA-256), open a file's page
with its blobs paged, download it (streamed, resumable with HTTP Range),
preview images and text, get a ZIP of several, verify them, upload and
delete. Blobs: what is stored, which files use it, what garbage collection
will take and when. ``FileAdmin`` and ``FileBlobAdmin`` can be registered on
a custom ``AdminSite`` too.
"""

from __future__ import annotations

from django.contrib import admin

from ..models import File, FileBlob
from .blobs import FileBlobAdmin
from .files import FileAdmin

__all__ = ["FileAdmin", "FileBlobAdmin"]

admin.site.register(File, FileAdmin)
admin.site.register(FileBlob, FileBlobAdmin)
