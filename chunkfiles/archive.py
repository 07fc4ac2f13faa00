"""Export files as one stream: a tar, tar.gz or zip archive, or a single file's bytes.

Archives are written front to back as the blobs arrive (tar in stream mode,
zip with data descriptors when the output cannot seek), never built in
memory or in a temp copy. ``stream_files`` keeps up to ``2 * workers`` blobs
in flight across file boundaries and hands them over in order, so small
files do not cost a round trip each and memory stays at a few blobs.

Member names follow the same rules as files in a directory
(``chunkfiles.safenames``): whoever unpacks the archive gets no ``..``,
absolute path, device name or case clash.
"""

from __future__ import annotations

import contextlib
import io
import os
import tarfile
import zipfile
from collections import deque
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, TYPE_CHECKING

from .atomicfile import AtomicFile
from .export import (
    Exported,
    ExportError,
    ExportItem,
    WholeFileCheck,
    checked_index,
    iter_items,
)
from .fetch import load_blob, settle, storage_fetch
from .refs import BlobIndex, BlobRef, relocate
from .safenames import UniqueNames

if TYPE_CHECKING:
    from .export import FileQuerySet

#: Archive formats by file name ending.
FORMATS = {".tar": "tar", ".tar.gz": "tar.gz", ".tgz": "tar.gz", ".zip": "zip"}
#: Bytes buffered between the archive writer and the output file.
OUT_BUFFER = 1 << 20


def archive_format(path: str) -> str:
    """``tar``, ``tar.gz`` or ``zip`` from ``path``'s ending; ``ValueError`` otherwise."""
    lower = path.lower()
    for ending, fmt in sorted(FORMATS.items(), key=lambda kv: -len(kv[0])):
        if lower.endswith(ending):
            return fmt
    raise ValueError(f"{path}: archive name must end in .tar, .tar.gz, .tgz or .zip")


class _Chunks(io.RawIOBase):
    """A readable file over an iterator of byte strings (what ``tarfile.addfile`` reads)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._rest = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._rest:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._rest = memoryview(chunk)
        n = min(len(buffer), len(self._rest))
        buffer[:n] = self._rest[:n]
        self._rest = self._rest[n:]
        return n


class ArchiveWriter:
    """Adds members to a tar, tar.gz or zip archive written to ``out`` as it goes."""

    def __init__(self, out: IO[bytes], fmt: str) -> None:
        self.fmt = fmt
        self._tar: tarfile.TarFile | None = None
        self._zip: zipfile.ZipFile | None = None
        if fmt == "zip":
            self._zip = zipfile.ZipFile(out, "w", zipfile.ZIP_STORED, allowZip64=True)
        elif fmt in ("tar", "tar.gz"):
            if fmt == "tar.gz":
                self._tar = tarfile.open(fileobj=out, mode="w|gz", format=tarfile.PAX_FORMAT)  # noqa: SIM115
            else:
                self._tar = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT)  # noqa: SIM115
        else:
            raise ValueError(f"unknown archive format {fmt!r}")

    def add(self, name: str, size: int, mtime: float, chunks: Iterator[bytes]) -> None:
        """Write one member of ``size`` bytes from ``chunks``."""
        if self._tar is not None:
            member = tarfile.TarInfo(name)
            member.size, member.mtime, member.mode = size, int(mtime), 0o644
            # tarfile wants every read but the last to be full: BufferedReader loops.
            self._tar.addfile(member, io.BufferedReader(_Chunks(chunks), OUT_BUFFER))
            return
        assert self._zip is not None
        info = zipfile.ZipInfo(name, _zip_time(mtime))
        info.external_attr = 0o644 << 16
        with self._zip.open(info, "w", force_zip64=size >= zipfile.ZIP64_LIMIT) as dest:
            for chunk in chunks:
                dest.write(chunk)

    def close(self) -> None:
        """Write the archive's end (tar end blocks, zip central directory)."""
        if self._tar is not None:
            self._tar.close()
        if self._zip is not None:
            self._zip.close()

    def abandon(self) -> None:
        """Give up an unfinished archive: nothing more is written, not even by finalisers."""
        # tarfile's stream and ZipFile write their trailer from __del__ when
        # not closed; the output is being thrown away, so make them skip it.
        if self._tar is not None:
            self._tar.closed = True  # type: ignore[attr-defined]
            stream = self._tar.fileobj
            if stream is not None and hasattr(stream, "closed"):
                stream.closed = True
        if self._zip is not None:
            self._zip.fp = None


def _zip_time(mtime: float) -> tuple[int, int, int, int, int, int]:
    import time

    # zip stores local-less DOS times from 1980 on; UTC keeps exports reproducible.
    t = time.gmtime(max(mtime, 315532800))
    return (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)


def stream_files(
    files: FileQuerySet, *, workers: int = 16, on_bytes: Callable[[int], None] | None = None
) -> Generator[tuple[ExportItem, BlobIndex, Iterator[bytes]], None, None]:
    """Each file with its blobs' verified bytes, in order, fetched ahead across files.

    The caller must consume a file's chunks before asking for the next file.
    A broken file raises its ``BlobReadError`` (or ``FileNotStoredError``)
    when the stream reaches it.
    """
    using = files.db
    fetch = storage_fetch(workers)
    pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="chunkfiles-export")
    depth = 2 * max(1, workers)
    window: deque[tuple[BlobRef, Future[bytes]]] = deque()
    planned: deque[tuple[ExportItem, BlobIndex | OSError]] = deque()
    refs: deque[tuple[ExportItem, BlobRef]] = deque()
    items = iter_items(files)

    def plan() -> bool:
        entry = next(items, None)
        if entry is None:
            return False
        item, item_refs = entry
        try:
            index = checked_index(item, item_refs)
        except OSError as exc:
            planned.append((item, exc))
            return True
        planned.append((item, index))
        refs.extend((item, ref) for ref in index.refs)
        return True

    def top_up() -> None:
        while len(window) < depth:
            if not refs and not plan():
                return
            if refs:
                item, ref = refs.popleft()
                window.append((ref, pool.submit(load_blob, ref, fetch, item.id)))

    def take(item: ExportItem) -> bytes:
        top_up()
        ref, future = window.popleft()
        return settle(future.result, ref, fetch, item.id, lambda r: relocate(r, using))

    def chunks(item: ExportItem, index: BlobIndex) -> Iterator[bytes]:
        for ref in index.refs:
            yield take(item)
            if on_bytes is not None:
                on_bytes(ref.size)

    try:
        while planned or plan():
            item, index = planned.popleft()
            if isinstance(index, OSError):
                raise index
            yield item, index, chunks(item, index)
            top_up()
    finally:
        for _, future in window:
            future.cancel()
        pool.shutdown(wait=True)


def _checked(item: ExportItem, chunks: Iterator[bytes], verify: bool) -> Iterator[bytes]:
    check = WholeFileCheck(item, verify)
    for chunk in chunks:
        check.update(chunk)
        yield chunk
    check.check()


def write_archive(
    files: FileQuerySet,
    out: IO[bytes],
    fmt: str,
    *,
    workers: int = 16,
    verify: bool = False,
    on_bytes: Callable[[int], None] | None = None,
) -> Iterator[Exported]:
    """Write ``files`` as an archive to the binary stream ``out``; yields each file written.

    A broken file raises (as ``ExportError``) and leaves the archive unfinished:
    a member cannot be taken back, so write to a temp file (``export_to_archive``).
    """
    names = UniqueNames()
    writer = ArchiveWriter(out, fmt)
    try:
        with contextlib.closing(stream_files(files, workers=workers, on_bytes=on_bytes)) as stream:
            for item, index, chunks in stream:
                path = names.claim(item.name, str(item.id))
                mtime = item.timestamp.timestamp()
                writer.add(path, index.size, mtime, _checked(item, chunks, verify))
                yield Exported(item, path, "written")
    except BaseException as exc:
        writer.abandon()
        if isinstance(exc, OSError):
            raise ExportError(str(exc)) from exc
        raise
    writer.close()


def write_one(
    files: FileQuerySet, out: IO[bytes], *, workers: int = 16, verify: bool = False
) -> Iterator[Exported]:
    """Write the bytes of the single file in ``files`` to ``out`` (e.g. stdout)."""
    count = files.count()
    if count != 1:
        raise ExportError(f"--output - writes exactly one file; the selection has {count}")
    try:
        with contextlib.closing(stream_files(files, workers=workers)) as stream:
            for item, _, chunks in stream:
                for chunk in _checked(item, chunks, verify):
                    out.write(chunk)
                out.flush()
                yield Exported(item, "-", "written")
    except OSError as exc:
        raise ExportError(str(exc)) from exc


def export_to_archive(
    files: FileQuerySet,
    path: str,
    *,
    fmt: str | None = None,
    workers: int = 16,
    verify: bool = False,
    overwrite: bool = False,
    parents: bool = False,
    on_bytes: Callable[[int], None] | None = None,
) -> Iterator[Exported]:
    """Write ``files`` into the archive file ``path``, which appears only when complete."""
    fmt = fmt or archive_format(path)
    target = os.path.abspath(path)
    directory = os.path.dirname(target)
    if parents:
        os.makedirs(directory, exist_ok=True)
    elif not os.path.isdir(directory):
        raise ExportError(f"output directory {directory} does not exist (use --parents)")
    if os.path.lexists(target) and not overwrite:
        raise ExportError(f"{path} exists (use --overwrite)")
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        output = AtomicFile(dir_fd)
        try:
            with open(output.fd, "wb", buffering=OUT_BUFFER, closefd=False) as out:
                yield from write_archive(
                    files, out, fmt, workers=workers, verify=verify, on_bytes=on_bytes
                )
            os.fsync(output.fd)
            output.publish(os.path.basename(target), overwrite=overwrite)
        except FileExistsError:
            raise ExportError(f"{path} appeared while the archive was written") from None
        finally:
            output.discard()
    finally:
        os.close(dir_fd)


__all__ = [
    "FORMATS",
    "ArchiveWriter",
    "archive_format",
    "export_to_archive",
    "stream_files",
    "write_archive",
    "write_one",
]
