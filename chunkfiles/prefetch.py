"""Whole-file prefetch: a pool fills a temp file, then reads are served from it.

Each worker writes its own blob with ``pwrite`` through its own duplicate of
the file descriptor, so there is no shared file position, no single writer
thread, and closing the file never has to wait for a stalled worker: a late
write lands in an already unlinked inode and is harmless. The first error
cancels everything still queued and is raised at once.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, Future, wait
from typing import IO, Any

from .exceptions import BlobMissingError
from .fetch import Fetch, Relocate, load_blob
from .refs import BlobIndex, BlobRef
from .retry import RetryPolicy
from .sources import Source, WorkerPool

#: Bytes returned by one ``span()`` of a prefetched file (bounds readline copies).
SPAN_BYTES = 64 * 1024


class _Gate:
    """Lets workers take a descriptor until the owner closes the gate."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._lock = threading.Lock()
        self._open = True

    def dup(self) -> int | None:
        with self._lock:
            return os.dup(self.fd) if self._open else None

    def close(self) -> None:
        with self._lock:
            self._open = False


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def _write_blob(
    ref: BlobRef, fetch: Fetch, gate: _Gate, file_id: int | None, policy: RetryPolicy
) -> bytes:
    data = load_blob(ref, fetch, file_id, policy)
    fd = gate.dup()
    if fd is None:  # the fill was given up: nobody wants these bytes
        return b""
    try:
        _pwrite_all(fd, data, ref.offset)
    finally:
        os.close(fd)
    return b""


def fill(
    index: BlobIndex,
    fetch: Fetch,
    fd: int,
    workers: int,
    *,
    relocate: Relocate | None = None,
    close_timeout: float = 2.0,
) -> None:
    """Write every blob at its offset into ``fd`` using ``workers`` threads.

    Raises the first failure as soon as it happens (a missing blob is first
    looked up again with ``relocate``); does not return before every write
    has finished, and after a failure waits at most ``close_timeout``.
    """
    os.ftruncate(fd, index.size)  # preallocate (sparse) so every offset is writable
    source = Source(index, fetch, relocate=relocate, close_timeout=close_timeout)
    gate = _Gate(fd)
    pool = WorkerPool(workers, "chunkfiles-prefetch")
    pending: dict[Future[bytes], int] = {}

    def submit(i: int) -> None:
        ref = index.refs[i]
        pending[pool.submit(_write_blob, ref, fetch, gate, index.file_id, source.policy)] = i

    deadline = time.monotonic() + source.blob_timeout * max(1, len(index.refs))
    try:
        for i in range(len(index.refs)):
            submit(i)
        while pending:
            left = deadline - time.monotonic()
            done, _ = wait(list(pending), timeout=max(0.0, left), return_when=FIRST_EXCEPTION)
            if not done:
                raise TimeoutError(f"prefetch of file {index.file_id} did not finish in time")
            for future in done:
                i = pending.pop(future)
                error = future.exception()
                if isinstance(error, BlobMissingError) and source.relocated(i) is not None:
                    submit(i)  # moved to another storage since the index was read
                elif error is not None:
                    raise error
    except BaseException:
        gate.close()
        pool.shutdown(list(pending), close_timeout)
        raise
    pool.shutdown([], close_timeout)


class Prefetched(Source):
    """Serves reads from a temp file that a thread pool filled completely first."""

    def __init__(
        self, index: BlobIndex, fetch: Fetch, workers: int, temp_dir: str | None, **options: Any
    ) -> None:
        super().__init__(index, fetch, **options)
        self._tmp: IO[bytes] | None = tempfile.NamedTemporaryFile(  # noqa: SIM115
            prefix="._prefetch-", dir=temp_dir
        )
        try:
            fill(
                index,
                fetch,
                self._tmp.fileno(),
                workers,
                relocate=self.relocate,
                close_timeout=self.close_timeout,
            )
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


def save_refs_to(
    refs: list[BlobRef],
    path: str | os.PathLike[str],
    *,
    fetch: Fetch,
    file_id: int | None = None,
    expected_size: int | None = None,
    workers: int = 16,
    relocate: Relocate | None = None,
    close_timeout: float = 2.0,
) -> str:
    """Prefetch into a temp file beside ``path``, then rename it into place.

    Missing parent directories are created (as Sentry's ``save_to`` does);
    no partial file is ever left at ``path`` or beside it.
    """
    target = os.path.abspath(path)
    directory = os.path.dirname(target)
    index = BlobIndex(refs, file_id, expected_size)
    os.makedirs(directory, exist_ok=True)
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
            fill(index, fetch, fd, workers, relocate=relocate, close_timeout=close_timeout)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    return target
