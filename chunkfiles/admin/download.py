"""Serve a stored file over HTTP: streamed, resumable (Range), and safe to open.

The body is read with a read-ahead window over only the blobs the
requested bytes cover, so a ``Range: bytes=0-99`` of a 5 GiB file fetches
one blob. A blob that fails before the first byte is sent becomes a 500;
one that fails later is logged (file, blob, offset) and re-raised from the
body iterator, which makes the WSGI server drop the connection: the client
sees a broken download, never a short one that looks complete.
"""

from __future__ import annotations

import errno
import logging
import posixpath
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.utils.cache import get_conditional_response
from django.utils.http import content_disposition_header, http_date

from ..exceptions import BlobReadError
from ..http_range import ByteRange, Unsatisfiable, if_range_matches, parse_range
from ..reader import ChunkedFileBlobIndexWrapper, open_refs
from ..refs import BlobIndex, relocate

if TYPE_CHECKING:
    from ..models import File

logger = logging.getLogger("chunkfiles.admin")

#: Bytes per body chunk: small next to a blob, large enough to keep syscalls few.
CHUNK = 256 * 1024
DEFAULT_TYPE = "application/octet-stream"
# type/subtype with optional parameters; anything else is not served as given.
_MEDIA_TYPE = re.compile(r"^[\w.+-]+/[\w.+-]+(\s*;\s*[\w.+-]+=(\"[^\"\r\n]*\"|[\w.+-]+))*$")


def content_type_of(file: File) -> str:
    """The file's ``Content-Type`` header if it is a well-formed media type."""
    value = (file.headers or {}).get("Content-Type") if isinstance(file.headers, dict) else None
    if isinstance(value, str) and _MEDIA_TYPE.match(value.strip()):
        return value.strip()
    return DEFAULT_TYPE


def download_name(file: File) -> str:
    """The last component of the file's name, without control characters."""
    base = posixpath.basename(file.name.replace("\\", "/"))
    base = re.sub(r"[\x00-\x1f\x7f]", "_", base).strip()
    return base or f"file-{file.pk}"


def etag_of(file: File) -> str | None:
    """A strong entity tag: the whole file's SHA-1, which changes with the bytes."""
    return f'"{file.checksum}"' if file.checksum else None


def body_chunks(file: File, start: int, length: int) -> Body:
    """Bytes ``start .. start+length`` of ``file``, in chunks; the first is read now.

    Reading the first chunk before returning lets a file broken at that
    point get an error status instead of a 200 with no body.
    """
    refs = file.blob_refs()
    BlobIndex(refs, file.pk, file.size)  # a broken index fails here, before any byte
    end = start + length
    # Only the blobs up to the range's end: the window cannot fetch past it.
    covered = [ref for ref in refs if ref.offset < end] if length else []
    using = file._state.db or "default"
    reader = open_refs(
        covered,
        file_id=file.pk,
        readahead=True,
        relocate=lambda ref: relocate(ref, using),
    )
    try:
        reader.seek(start)
        first = _read(reader, file, min(CHUNK, length))
    except BaseException:
        reader.close()
        raise
    return Body(reader, file, first, length - len(first))


def _read(reader: ChunkedFileBlobIndexWrapper, file: File, n: int) -> bytes:
    try:
        data = reader.read(n)
    except BlobReadError as exc:
        logger.error(
            "download of file %s (%s) failed at byte %s: blob %s at offset %s: %s",
            file.pk,
            file.name,
            reader.tell(),
            exc.checksum,
            exc.offset,
            exc,
        )
        raise
    if len(data) != n:
        raise OSError(errno.EIO, f"file {file.pk}: read {len(data)} of {n} bytes")
    return data


class Body:
    """A response body over an open reader; ``close()`` releases the reader.

    The server closes the body even when it never iterated it (the client
    left before the first byte), which a generator's ``finally`` would miss.
    """

    def __init__(
        self, reader: ChunkedFileBlobIndexWrapper, file: File, first: bytes, left: int
    ) -> None:
        self._reader = reader
        self._file = file
        self._first = first
        self._left = left

    def __iter__(self) -> Iterator[bytes]:
        try:
            if self._first:
                yield self._first
            while self._left > 0:
                data = _read(self._reader, self._file, min(CHUNK, self._left))
                self._left -= len(data)
                yield data
        finally:
            self.close()

    def close(self) -> None:
        """Stop the read-ahead and free its blobs; idempotent."""
        self._reader.close()


def file_response(
    request: HttpRequest, file: File, *, as_attachment: bool = True, content_type: str | None = None
) -> HttpResponseBase:
    """The file as a streamed response honouring Range, If-Range and conditional GETs."""
    if file.size is None:
        raise Http404("the file has no stored content")
    size = file.size
    etag = etag_of(file)
    modified = int(file.timestamp.timestamp())
    conditional = get_conditional_response(request, etag=etag, last_modified=modified)
    if conditional is not None:
        return _with_headers(conditional, file, etag, as_attachment)
    wanted: ByteRange | Unsatisfiable | None = None
    if request.method in ("GET", "HEAD") and if_range_matches(
        request.headers.get("If-Range"), etag or "", file.timestamp
    ):
        wanted = parse_range(request.headers.get("Range"), size)
    if isinstance(wanted, Unsatisfiable):
        refused = HttpResponse(status=416)
        refused["Content-Range"] = wanted.content_range()
        return _with_headers(refused, file, etag, as_attachment)
    start, length = (wanted.start, wanted.length) if wanted else (0, size)
    response: HttpResponseBase
    if request.method == "HEAD":
        response = HttpResponse(status=206 if wanted else 200)
    else:
        response = StreamingHttpResponse(
            body_chunks(file, start, length), status=206 if wanted else 200
        )
    response["Content-Type"] = content_type or content_type_of(file)
    response["Content-Length"] = str(length)
    if wanted:
        response["Content-Range"] = wanted.content_range(size)
    return _with_headers(response, file, etag, as_attachment)


def _with_headers(
    response: HttpResponseBase, file: File, etag: str | None, as_attachment: bool
) -> HttpResponseBase:
    response["Accept-Ranges"] = "bytes"
    # Set here, not left to SecurityMiddleware: a stored file must never be
    # sniffed into HTML and run as the admin's origin.
    response["X-Content-Type-Options"] = "nosniff"
    response["Last-Modified"] = http_date(file.timestamp.timestamp())
    if etag:
        response["ETag"] = etag
    disposition = content_disposition_header(as_attachment, download_name(file))
    if disposition:
        response["Content-Disposition"] = disposition
    # Per-user data: no shared cache may keep it.
    response["Cache-Control"] = "private"
    return response


#: Largest file previewed inline on its page.
PREVIEW_LIMIT = 2 * 1024 * 1024
# Raster formats a browser renders without running anything; SVG is left out
# on purpose (it can carry script).
PREVIEW_IMAGES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


def preview_type(file: File) -> str | None:
    """The strict Content-Type a preview is served with, or None if not previewable."""
    if file.size is None or file.size > PREVIEW_LIMIT:
        return None
    media = content_type_of(file).split(";", 1)[0].strip().lower()
    if media in PREVIEW_IMAGES:
        return media
    if media.startswith("text/") or media in ("application/json", "application/xml"):
        return "text/plain; charset=utf-8"  # shown as text, never rendered as markup
    return None
