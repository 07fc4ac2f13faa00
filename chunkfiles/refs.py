"""What a reader knows of a file's blobs: ``BlobRef`` values and their index.

The refs of a file are loaded once, in one query ordered by offset; a
``BlobIndex`` then maps a position to a blob by bisection. Both are plain
values, so sources and commands can share them across threads.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, NamedTuple

from .exceptions import BlobCorruptError

if TYPE_CHECKING:
    from .models import File

#: File ids per index query of ``refs_for_files``; under every backend's parameter limit.
FILE_BATCH = 500

_COLUMNS = ("offset", "blob__size", "blob__checksum", "blob__path", "blob__storage", "blob_id")


class BlobRef(NamedTuple):
    """One blob of a file: where it sits, how to check it and where its object lives."""

    offset: int
    size: int
    checksum: str
    path: str | None
    #: The row's ``FileBlob.storage``, as recorded; ``conf.blob_alias`` names its alias.
    storage: str = ""
    blob_id: int | None = None


def _ref(
    offset: int, size: int | None, checksum: str, path: str | None, storage: str, pk: int
) -> BlobRef:
    return BlobRef(offset, size or 0, checksum, path, storage, pk)


def file_refs(file: File, using: str) -> list[BlobRef]:
    """The blobs of ``file`` in order, in one query."""
    from .models import FileBlobIndex

    rows = (
        FileBlobIndex.objects.using(using)
        .filter(file_id=file.pk)
        .order_by("offset")
        .values_list(*_COLUMNS)
    )
    return [_ref(*row) for row in rows]


def refs_for_files(file_ids: Iterable[int], *, using: str) -> dict[int, list[BlobRef]]:
    """The blobs of many files, one query per ``FILE_BATCH`` ids; files without blobs map to []."""
    from .models import FileBlobIndex

    wanted = list(dict.fromkeys(file_ids))
    found: dict[int, list[BlobRef]] = {pk: [] for pk in wanted}
    for start in range(0, len(wanted), FILE_BATCH):
        rows = (
            FileBlobIndex.objects.using(using)
            .filter(file_id__in=wanted[start : start + FILE_BATCH])
            .order_by("file_id", "offset")
            .values_list("file_id", *_COLUMNS)
        )
        for file_id, *row in rows:
            found[file_id].append(_ref(*row))
    return found


def relocate(ref: BlobRef, using: str) -> BlobRef | None:
    """The blob's current location if its row moved since ``ref`` was loaded, else None.

    Called when ``ref``'s object is missing. A blob moved to another storage
    (or healed under a new name) is read from there; a row that still names
    the missing object is marked lost, so the next upload of the same bytes
    writes it again.
    """
    from .models import FileBlob

    if ref.blob_id is None:
        return None
    rows = FileBlob.objects.using(using).filter(pk=ref.blob_id)
    row = rows.values_list("path", "storage", "lost_at").first()
    if row is None:
        return None
    path, storage, lost_at = row
    if lost_at is None and (path, storage) != (ref.path, ref.storage) and path is not None:
        return ref._replace(path=path, storage=storage)
    if ref.path is not None:
        rows.mark_lost(path=ref.path)
    return None


def _corrupt(ref: BlobRef, file_id: int | None, detail: str) -> BlobCorruptError:
    return BlobCorruptError(
        file_id=file_id, checksum=ref.checksum, offset=ref.offset, path=ref.path, detail=detail
    )


class BlobIndex:
    """The ordered blobs of a file with O(log n) position lookup.

    Checks on construction that the blobs tile the file without gaps and add
    up to the recorded size: otherwise every byte after the fault would shift.
    """

    __slots__ = ("file_id", "offsets", "refs", "size")

    def __init__(
        self,
        refs: Sequence[BlobRef],
        file_id: int | None = None,
        expected_size: int | None = None,
    ) -> None:
        self.refs = list(refs)
        self.file_id = file_id
        self.offsets = [ref.offset for ref in self.refs]
        expected = 0
        for ref in self.refs:
            if ref.offset != expected:
                raise _corrupt(ref, file_id, f"index expects this blob at offset {expected}")
            expected += ref.size
        self.size = expected
        if expected_size is not None and expected_size != expected:
            last = self.refs[-1] if self.refs else BlobRef(0, 0, "-", None)
            raise _corrupt(
                last,
                file_id,
                f"blobs add up to {expected} bytes but the file records {expected_size}",
            )

    def __len__(self) -> int:
        return len(self.refs)

    def locate(self, pos: int) -> int:
        """Index of the blob holding byte ``pos`` (``0 <= pos < size``)."""
        return bisect.bisect_right(self.offsets, pos) - 1
