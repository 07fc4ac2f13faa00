"""Changelist actions on files: a streamed ZIP of the selection, and an integrity check."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from django.utils.http import content_disposition_header

from ..exceptions import BlobReadError
from ..reader import open_refs
from ..refs import BlobRef, refs_for_files, relocate
from ..safenames import UniqueNames
from ..zipstream import Member, zip_stream
from .download import CHUNK, body_chunks

if TYPE_CHECKING:
    from ..models import File

logger = logging.getLogger("chunkfiles.admin")

#: Files reported one message each by "Verify"; beyond it, a summary line.
MESSAGES_PER_RUN = 50


def _members(files: list[File]) -> Iterator[Member]:
    names = UniqueNames()
    for file in files:
        name = names.claim(file.name, str(file.pk))
        size = file.size or 0

        def chunks(file: File = file, size: int = size) -> Iterable[bytes]:
            return body_chunks(file, 0, size) if size else ()

        yield Member(name, file.timestamp, chunks)


@admin.action(description="Download selected as ZIP", permissions=["view"])
def download_zip(
    modeladmin: admin.ModelAdmin[Any], request: HttpRequest, queryset: QuerySet[File]
) -> StreamingHttpResponse:
    """Stream the selected files as one ZIP (zip64, stored), names made unique and safe.

    Files whose content was never stored are left out. A blob that fails
    mid-archive breaks the download (see ``chunkfiles.admin.download``).
    """
    files = list(queryset.filter(size__isnull=False).order_by("name", "pk"))
    response = StreamingHttpResponse(zip_stream(_members(files)), content_type="application/zip")
    response["Content-Disposition"] = content_disposition_header(True, "files.zip") or ""
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private"
    return response


def verify_refs(file: File, refs: list[BlobRef]) -> str | None:
    """Read every blob of ``file`` (each checked against its SHA-256) and the whole-file SHA-1.

    Returns what is wrong, or None when the file reads back intact.
    """
    if file.size is None:
        return "no stored content"
    using = file._state.db or "default"
    digest = hashlib.sha1(usedforsecurity=False)
    try:
        with open_refs(
            refs,
            file_id=file.pk,
            expected_size=file.size,
            readahead=True,
            relocate=lambda ref: relocate(ref, using),
        ) as reader:
            while data := reader.read(CHUNK):
                digest.update(data)
    except BlobReadError as exc:
        return str(exc)
    if file.checksum and digest.hexdigest() != file.checksum:
        return f"SHA-1 is {digest.hexdigest()}, the file records {file.checksum}"
    return None


@admin.action(description="Verify integrity", permissions=["view"])
def verify_integrity(
    modeladmin: admin.ModelAdmin[Any], request: HttpRequest, queryset: QuerySet[File]
) -> None:
    """Re-read the selected files' blobs and report each file as a message."""
    files = list(queryset.order_by("name", "pk"))
    db = queryset.db
    refs = refs_for_files([file.pk for file in files], using=db)
    broken = 0
    for n, file in enumerate(files):
        problem = verify_refs(file, refs[file.pk])
        if problem:
            broken += 1
            logger.error("verify: file %s (%s): %s", file.pk, file.name, problem)
        if n >= MESSAGES_PER_RUN and not problem:
            continue
        if problem:
            modeladmin.message_user(request, f"{file.name}: {problem}", messages.ERROR)
        else:
            blobs = len(refs[file.pk])
            modeladmin.message_user(
                request,
                f"{file.name}: intact ({blobs} blob{'' if blobs == 1 else 's'} verified)",
                messages.SUCCESS,
            )
    level = messages.ERROR if broken else messages.SUCCESS
    modeladmin.message_user(
        request,
        f"Verified {len(files)} files: {len(files) - broken} intact, {broken} broken.",
        level,
    )
