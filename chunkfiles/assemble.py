"""Sentry's chunk-upload step: a ``File`` made of blobs that are already stored.

A Sentry client uploads a file as chunks (``FileBlob.from_files`` with each
chunk's SHA-1), then asks for the file to be assembled from the blob ids, in
order, with the SHA-1 of the whole file. ``assemble_file`` reads the blobs back
(each verified against its SHA-256) into a temp file while hashing them, and
only when the whole file matches does it link them: the index rows, size and
checksum are written in one transaction that locks the blob rows, so garbage
collection cannot remove a blob between the check and the commit.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterable, Sequence
from typing import IO, TYPE_CHECKING

from django.db import connections, transaction

from .conf import chunkfiles_settings
from .exceptions import BlobMissingError, ChecksumMismatchError
from .reader import open_refs
from .refs import BlobRef

if TYPE_CHECKING:
    from .models import File, FileBlob

#: Sentry's name for the error; here it is also a ``ValueError`` and an ``OSError``.
AssembleChecksumMismatch = ChecksumMismatchError

#: Bytes copied per read while hashing; a multiple of every blob size we care about.
COPY_SIZE = 1024 * 1024


def _hashers(checksum: str) -> tuple[hashlib._Hash, hashlib._Hash | None]:
    """SHA-1 (``File.checksum``, always), plus SHA-256 when the caller sent one."""
    if len(checksum) == 40:
        return hashlib.sha1(), None
    if len(checksum) == 64:
        return hashlib.sha1(), hashlib.sha256()
    raise ValueError(f"checksum {checksum!r} is neither SHA-1 (40 hex) nor SHA-256 (64 hex)")


def _refs(file: File, ids: list[int], blobs: dict[int, FileBlob]) -> list[BlobRef]:
    """The blobs in the order given (repeats allowed), each at its offset in the file."""
    from .models import FileBlob

    unknown = sorted({pk for pk in ids if pk not in blobs})
    if unknown:
        raise FileBlob.DoesNotExist(f"no file blobs with ids {unknown}")
    refs: list[BlobRef] = []
    offset = 0
    for pk in ids:
        blob = blobs[pk]
        ref = BlobRef(offset, blob.size or 0, blob.checksum, blob.path, blob.storage, pk)
        if blob.lost_at is not None:
            raise BlobMissingError(
                file_id=file.pk,
                checksum=blob.checksum,
                offset=offset,
                path=blob.path,
                detail="the blob is marked lost; upload its chunk again",
            )
        refs.append(ref)
        offset += ref.size
    return refs


#: Blob rows locked per query when linking; under every backend's parameter limit.
LOCK_BATCH = 500


def link_refs(file: File, refs: Sequence[BlobRef], using: str) -> None:
    """Make ``refs`` the content of the saved ``file``; call inside a transaction.

    See ``link_files``, which does this for many files at once.
    """
    link_files([(file, refs)], using)


def link_files(contents: Sequence[tuple[File, Sequence[BlobRef]]], using: str) -> None:
    """Make each ``refs`` the content of its saved ``File``; call inside a transaction.

    Locks the blob rows first, so garbage collection cannot remove one before
    the commit, and raises ``BlobMissingError`` (naming the file and offset)
    for a blob that is gone, lost or moved since the refs were made. Replaces
    any previous index rows; blobs marked unused by garbage collection are in
    use again.
    """
    from .models import FileBlob, FileBlobIndex

    placed: list[tuple[File, BlobRef, int]] = []
    for file, refs in contents:
        for ref in refs:
            if ref.blob_id is None:
                raise ValueError(f"the blob at offset {ref.offset} has no blob_id to link")
            placed.append((file, ref, ref.blob_id))
    # Locked in checksum order, as uploads lock them: no deadlock between us.
    no_key = connections[using].features.has_select_for_no_key_update
    locking = FileBlob.objects.using(using).select_for_update(no_key=no_key)
    checksums = {pk: ref.checksum for _, ref, pk in placed}
    ids = sorted(checksums, key=checksums.__getitem__)
    rows: dict[int, FileBlob] = {}
    for start in range(0, len(ids), LOCK_BATCH):
        batch = ids[start : start + LOCK_BATCH]
        rows.update((b.pk, b) for b in locking.filter(pk__in=batch).order_by("checksum"))
    for file, ref, pk in placed:
        row = rows.get(pk)
        if row is None or row.lost_at is not None or row.path != ref.path:
            raise BlobMissingError(
                file_id=file.pk,
                checksum=ref.checksum,
                offset=ref.offset,
                path=ref.path,
                detail="the blob was removed or moved before the file was linked to it",
            )
    indexes = FileBlobIndex.objects.using(using)
    indexes.filter(file__in=[file for file, _ in contents]).delete()
    indexes.bulk_create(
        [FileBlobIndex(file=file, blob_id=pk, offset=ref.offset) for file, ref, pk in placed],
        batch_size=LOCK_BATCH,
    )
    unused = [pk for pk, row in rows.items() if row.unused_since is not None]
    if unused:
        FileBlob.objects.using(using).filter(pk__in=unused).update(unused_since=None)


def assemble_file(
    file: File, file_blob_ids: Iterable[int], checksum: str, *, temp_dir: str | None = None
) -> IO[bytes]:
    """Make ``file`` of the blobs ``file_blob_ids`` in that order; see the module docstring.

    ``checksum`` is the whole file's SHA-1 (as Sentry clients send it) or
    SHA-256. A mismatch raises ``ChecksumMismatchError`` and links nothing;
    an unknown id raises ``FileBlob.DoesNotExist``; a blob whose object is
    gone raises ``BlobMissingError`` (or another ``BlobReadError``). Returns a
    temp file holding the bytes, at position 0; the caller closes it.
    """
    from .models import FileBlob

    ids = [int(pk) for pk in file_blob_ids]
    expected = checksum.lower()
    sha1, sha256 = _hashers(expected)
    using = file._db_for_write()
    blobs = FileBlob.objects.using(using).in_bulk(set(ids))
    refs = _refs(file, ids, blobs)
    size = sum(ref.size for ref in refs)
    directory = temp_dir if temp_dir is not None else chunkfiles_settings.TEMP_DIR
    out = tempfile.NamedTemporaryFile(prefix="chunkfiles-assemble-", dir=directory)  # noqa: SIM115
    try:
        with open_refs(refs, file_id=file.pk, expected_size=size, readahead=True) as reader:
            while chunk := reader.read(COPY_SIZE):
                sha1.update(chunk)
                if sha256 is not None:
                    sha256.update(chunk)
                out.write(chunk)
        actual = (sha256 or sha1).hexdigest()
        if actual != expected:
            raise ChecksumMismatchError(expected, actual)
        before = (file.size, file.checksum)
        try:
            with transaction.atomic(using=using):
                file.size, file.checksum = size, sha1.hexdigest()
                file.save(using=using)
                link_refs(file, refs, using)
        except BaseException:
            file.size, file.checksum = before  # the row was rolled back; so is the instance
            raise
        out.flush()
        out.seek(0)
    except BaseException:
        out.close()
        raise
    return out
