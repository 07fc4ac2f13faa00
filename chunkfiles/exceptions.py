"""Errors raised by chunkfiles.

Read errors derive from ``OSError`` so code that handles I/O failures of a
normal file (``except OSError``) handles ours too.
"""

from __future__ import annotations

import errno


class ChunkfilesError(Exception):
    """Base class of every chunkfiles error."""


class ChecksumMismatchError(ChunkfilesError, ValueError, OSError):
    """Uploaded bytes do not match the checksum the caller said they have.

    A ``ValueError`` (bad input) and an ``OSError``, because Sentry's callers
    catch ``IOError`` around ``from_files``/``assemble_from_file_blob_ids``.
    """

    def __init__(self, expected: str, actual: str, index: int | None = None) -> None:
        self.expected = expected
        self.actual = actual
        self.index = index
        where = f" (item {index})" if index is not None else ""
        super().__init__(f"checksum mismatch{where}: expected {expected}, got {actual}")

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.expected, self.actual, self.index))


class FileNotStoredError(ChunkfilesError, OSError):
    """A ``File`` row whose content was never stored (``putfile`` never completed)."""

    def __init__(self, file_id: int | None, name: str = "") -> None:
        self.file_id = file_id
        self.name = name
        super().__init__(
            errno.ENODATA, f"file {file_id} ({name!r}) has no stored content: putfile() never ran"
        )

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.file_id, self.name))

    def __str__(self) -> str:
        return str(self.args[1])


class BlobWriteError(ChunkfilesError, OSError):
    """A blob could not be written to storage, after every allowed attempt.

    ``path`` is the storage name the object was being written to: whatever
    reached the storage under it is an orphan that garbage collection finds.
    """

    def __init__(self, checksum: str, path: str | None, detail: str = "") -> None:
        self.checksum = checksum
        self.path = path
        self.detail = detail
        message = f"blob {checksum} could not be written to storage name {path!r}"
        if detail:
            message += f": {detail}"
        super().__init__(errno.EIO, message)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.checksum, self.path, self.detail))

    def __str__(self) -> str:
        return str(self.args[1])


class BlobReadError(ChunkfilesError, OSError):
    """A blob could not be read back correctly.

    Names the file, the blob checksum and the offset of the blob in the file,
    so an operator can find the broken object without a debugger.
    """

    reason = "could not be read"
    default_errno = errno.EIO

    def __init__(
        self,
        *,
        file_id: int | None,
        checksum: str,
        offset: int,
        path: str | None = None,
        detail: str = "",
    ) -> None:
        self.file_id = file_id
        self.checksum = checksum
        self.offset = offset
        self.path = path
        self.detail = detail
        message = (
            f"blob {checksum} at offset {offset} of file {file_id} {self.reason}"
            f" (storage name {path!r})"
        )
        if detail:
            message += f": {detail}"
        super().__init__(message)
        # Like the OSErrors of real files, so `exc.errno == ENOENT` checks work.
        self.errno = self.default_errno

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # OSError pickles by its args; keep the keyword-only constructor working
        # across process boundaries (multiprocessing, celery).
        return (
            _rebuild,
            (type(self), self.file_id, self.checksum, self.offset, self.path, self.detail),
        )


def _rebuild(
    cls: type[BlobReadError],
    file_id: int | None,
    checksum: str,
    offset: int,
    path: str | None,
    detail: str,
) -> BlobReadError:
    return cls(file_id=file_id, checksum=checksum, offset=offset, path=path, detail=detail)


class BlobMissingError(BlobReadError, FileNotFoundError):
    """The storage has no object for a blob that the database references."""

    reason = "is missing from storage"
    default_errno = errno.ENOENT


class BlobCorruptError(BlobReadError):
    """The stored bytes of a blob do not match its recorded size or checksum."""

    reason = "is corrupt"
