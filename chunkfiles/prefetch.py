"""Threaded reading: whole-file prefetch into a temp file, and a read-ahead window.

Both run ``load_blob`` (fetch + verify) in worker threads, so hashing and
network waits overlap; neither touches the database.
"""

from __future__ import annotations

import collections
import contextlib
import os
import tempfile
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import IO, Any

from .conf import chunkfiles_settings
from .reader import BlobIndex, BlobRef, Fetch, Source, load_blob, storage_fetch

#: Bytes returned by one ``span()`` of a prefetched file (bounds readline copies).
SPAN_BYTES = 64 * 1024


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def fill(index: BlobIndex, fetch: Fetch, fd: int, workers: int) -> None:
    """Write every blob at its offset into ``fd`` using ``workers`` threads.

    Each worker writes its own blob with ``pwrite``, so there is no shared
    file position and no single writer thread. The first failure cancels
    everything still queued and is raised here.
    """
    os.ftruncate(fd, index.size)  # preallocate (sparse) so every offset is writable

    def one(ref: BlobRef) -> None:
        _pwrite_all(fd, load_blob(ref, fetch, index.file_id), ref.offset)

    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="chunkfiles-prefetch") as pool:
        futures = [pool.submit(one, ref) for ref in index.refs]
        _, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
        for future in futures:
            if future.done() and not future.cancelled() and future.exception() is not None:
                raise future.exception()  # type: ignore[misc]


class Prefetched(Source):
    """Serves reads from a temp file that a thread pool filled completely first."""

    def __init__(self, index: BlobIndex, fetch: Fetch, workers: int, temp_dir: str | None) -> None:
        super().__init__(index)
        self._tmp: IO[bytes] | None = tempfile.NamedTemporaryFile(  # noqa: SIM115
            prefix="._prefetch-", dir=temp_dir
        )
        try:
            fill(index, fetch, self._tmp.fileno(), workers)
        except BaseException:
            self.close()
            raise

    def _fd(self) -> int:
        if self._tmp is None:
            raise ValueError("I/O operation on closed file.")
        return self._tmp.fileno()

    def span(self, pos: int) -> tuple[bytes, int, int]:
        data = os.pread(self._fd(), min(SPAN_BYTES, self.index.size - pos), pos)
        return data, 0, len(data)

    def read(self, pos: int, n: int) -> bytes:
        data = os.pread(self._fd(), n, pos)
        while len(data) < n:  # a regular file reads short only at EOF; be safe
            more = os.pread(self._fd(), n - len(data), pos + len(data))
            if not more:
                raise OSError(f"prefetched temp file ended early at {pos + len(data)}")
            data += more
        return data

    def readinto(self, pos: int, view: memoryview) -> int:
        n = os.preadv(self._fd(), [view[: self.index.size - pos]], pos)
        if n == 0:
            raise OSError(f"prefetched temp file ended early at {pos}")
        return n

    def detach(self) -> Any:
        tmp, self._tmp = self._tmp, None
        return tmp

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.close()  # NamedTemporaryFile removes itself
            self._tmp = None


class ReadAhead(Source):
    """Keeps up to ``depth`` blobs in flight, in order, from the read position.

    Memory holds at most ``depth`` fetched blobs plus the one being read. A
    read outside the window (after a seek) drops the window and starts a new
    one at the blob read. A new window opens like TCP's slow start (1, 2,
    4, ... blobs): the blob the reader waits for does not share the link with
    ``depth - 1`` others, so the first byte comes after about one round trip.
    """

    def __init__(self, index: BlobIndex, fetch: Fetch, depth: int, workers: int) -> None:
        super().__init__(index)
        self.fetch = fetch
        self.depth = max(1, depth)
        self._pool = ThreadPoolExecutor(
            max(1, min(workers, self.depth)), thread_name_prefix="chunkfiles-readahead"
        )
        self._window: collections.deque[tuple[int, Future[bytes]]] = collections.deque()
        self._next = 0
        self._limit = 1
        self._current: tuple[int, bytes] | None = None

    def _drop(self) -> None:
        while self._window:
            self._window.popleft()[1].cancel()

    def _fill(self) -> None:
        refs = self.index.refs
        while len(self._window) < self._limit and self._next < len(refs):
            ref = refs[self._next]
            future = self._pool.submit(load_blob, ref, self.fetch, self.index.file_id)
            self._window.append((self._next, future))
            self._next += 1

    def blob(self, i: int) -> bytes:
        if self._current is not None and self._current[0] == i:
            return self._current[1]
        self._current = None  # release the old blob before waiting for the next
        while self._window and self._window[0][0] < i:
            self._window.popleft()[1].cancel()
        if not self._window or self._window[0][0] != i:
            self._drop()
            self._next = i
            self._limit = 1
        self._fill()
        _, future = self._window.popleft()
        data = future.result()
        self._current = (i, data)
        self._limit = min(self.depth, self._limit * 2)
        self._fill()
        return data

    def close(self) -> None:
        self._drop()
        self._current = None
        self._pool.shutdown(wait=True, cancel_futures=True)


def save_to(
    refs: list[BlobRef],
    path: str | os.PathLike[str],
    *,
    file_id: int | None,
    workers: int | None = None,
) -> str:
    """Prefetch into a temp file beside ``path``, then rename it into place."""
    target = os.path.abspath(path)
    directory = os.path.dirname(target)
    index = BlobIndex(refs, file_id)
    workers = workers or chunkfiles_settings.PREFETCH_WORKERS
    fetch = storage_fetch(workers)
    # mkstemp would create the file 0600; an ordinary file honours the umask.
    for _ in range(100):
        temp = os.path.join(directory, f"._prefetch-{os.urandom(6).hex()}")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover
        raise FileExistsError(f"could not create a temp file in {directory}")
    try:
        try:
            fill(index, fetch, fd, workers)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    return target
