"""Where a reader's bytes come from: one blob at a time, a read-ahead window, or a
temp file prefetched by a pool.

A source schedules fetches and owns their cancellation; it knows blobs, not
the reader's position. Every blob goes through ``load_blob`` (fetch + verify).
A blob whose object is missing is looked up again once through ``relocate``
(it may have moved to another storage since the index was loaded) before the
error reaches the caller; that lookup runs in the caller's thread, never in a
worker, so workers never open database connections.

Waits are bounded: ``close()`` cancels what is queued and waits at most
``CLOSE_TIMEOUT`` for fetches already running, then abandons them (they end
on their own socket timeouts); ``abandon()`` (for finalisers) never waits.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

from . import buffers
from .exceptions import BlobReadError
from .fetch import Fetch, Relocate, load_blob, settle
from .refs import BlobIndex, BlobRef
from .retry import RetryPolicy

T = TypeVar("T")


class Source:
    """Supplies the bytes of blob ``i``; subclasses say where they come from."""

    def __init__(
        self,
        index: BlobIndex,
        fetch: Fetch,
        *,
        relocate: Relocate | None = None,
        close_timeout: float = 2.0,
    ) -> None:
        self.index = index
        self.fetch = fetch
        self.relocate = relocate
        self.close_timeout = close_timeout
        self.policy = RetryPolicy.from_settings()
        # Longest a caller waits for one blob: the store's own bounds (transport
        # retries, then verification retries) plus slack; a safety net only.
        self.blob_timeout = 2 * self.policy.deadline + 5

    # -- fetching, in the caller's thread -------------------------------------------
    def load(self, i: int) -> bytes:
        """Blob ``i``, fetched now, relocated once if its object is missing."""
        ref = self.index.refs[i]
        return self._settle(i, lambda: load_blob(ref, self.fetch, self.index.file_id, self.policy))

    def relocated(self, i: int) -> BlobRef | None:
        """Blob ``i``'s new ref if its row moved (the index is updated), else None."""
        if self.relocate is None:
            return None
        moved = self.relocate(self.index.refs[i])
        if moved is not None:
            self.index.refs[i] = moved
        return moved

    def _settle(self, i: int, load: Callable[[], bytes]) -> bytes:
        return settle(
            load,
            self.index.refs[i],
            self.fetch,
            self.index.file_id,
            lambda ref: self.relocated(i),
            self.policy,
        )

    def result(self, i: int, future: Future[bytes]) -> bytes:
        """The outcome of a worker's fetch of blob ``i``, within the blob deadline."""
        try:
            return self._settle(i, lambda: future.result(timeout=self.blob_timeout))
        except FutureTimeout:
            future.cancel()
            ref = self.index.refs[i]
            raise BlobReadError(
                file_id=self.index.file_id,
                checksum=ref.checksum,
                offset=ref.offset,
                path=ref.path,
                detail=f"no answer within {self.blob_timeout:.0f} s",
            ) from None

    # -- what the reader calls -----------------------------------------------------
    def blob(self, i: int) -> bytes:
        raise NotImplementedError

    def want(self, first: int, last: int) -> None:
        """A read will need blobs ``first..last``: a source may start fetching them."""

    def span(self, pos: int) -> tuple[bytes, int, int]:
        """``(data, start, end)``: ``data[start:end]`` are the bytes from ``pos`` on."""
        i = self.index.locate(pos)
        ref = self.index.refs[i]
        return self.blob(i), pos - ref.offset, ref.size

    def readinto(self, pos: int, view: memoryview) -> int:
        data, start, end = self.span(pos)
        n = min(len(view), end - start)
        view[:n] = memoryview(data)[start : start + n]
        return n

    def read(self, pos: int, n: int) -> bytes:
        """Exactly ``n`` bytes from ``pos`` (the caller stays within the file).

        A read inside one blob is a slice; a longer one is written once into
        the result, blob by blob, with the blobs it spans fetched together.
        """
        data, start, end = self.span(pos)
        if end - start >= n:
            return data[start : start + n]
        self.want(self.index.locate(pos), self.index.locate(pos + n - 1))

        def fill(view: memoryview) -> None:
            done = 0
            while done < n:
                done += self.readinto(pos + done, view[done:])

        return buffers.filled(n, fill)

    def detach(self) -> Any:
        raise TypeError("detach_tempfile() needs a reader opened with prefetch=True")

    def close(self) -> None:
        """Release what the source holds; waits at most ``close_timeout``."""

    def abandon(self) -> None:
        """Release without waiting for anything (finalisers call this)."""
        self.close()


class LazySource(Source):
    """Fetches a blob when the position first enters it, in the caller's thread."""

    def __init__(self, index: BlobIndex, fetch: Fetch, **options: Any) -> None:
        super().__init__(index, fetch, **options)
        self._current: tuple[int, bytes] | None = None

    def blob(self, i: int) -> bytes:
        if self._current is None or self._current[0] != i:
            self._current = None  # drop the old blob before fetching the next
            self._current = (i, self.load(i))
        return self._current[1]

    def close(self) -> None:
        self._current = None


class WorkerPool:
    """A lazily started thread pool whose shutdown never waits without bound."""

    def __init__(self, workers: int, name: str) -> None:
        self.workers = max(1, workers)
        self.name = name
        self._pool: ThreadPoolExecutor | None = None

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix=self.name)
        return self._pool.submit(fn, *args)

    def shutdown(self, futures: list[Future[Any]], timeout: float) -> None:
        """Cancel queued work, wait up to ``timeout`` for running work, then let go."""
        for future in futures:
            future.cancel()
        pool, self._pool = self._pool, None
        if pool is None:
            return
        pool.shutdown(wait=False, cancel_futures=True)
        if timeout > 0:
            _, running = wait(futures, timeout=timeout)
            if not running:
                # Every task is over: the threads exit at once, so joining
                # them is quick and leaves nothing behind.
                pool.shutdown(wait=True)


class ReadAhead(Source):
    """Keeps blobs in flight, in order, ahead of the reader.

    With ``adaptive`` (the default mode) nothing is fetched ahead until the
    reads are seen to be sequential, like an operating system's page-cache
    read-ahead: random access (a zip member, a header) fetches only the
    blobs it touches, in the caller's thread. Then the window grows by
    doubling (1, 2, 4, ... up to ``depth``) and restarts after a seek
    elsewhere. Without ``adaptive`` (``readahead=K``) the window starts
    growing at the first blob read. Memory holds at most ``depth`` fetched
    or in-flight blobs plus the one being read.
    """

    def __init__(
        self,
        index: BlobIndex,
        fetch: Fetch,
        depth: int,
        workers: int,
        *,
        adaptive: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(index, fetch, **options)
        self.depth = max(1, depth)
        self.adaptive = adaptive
        self._pool = WorkerPool(min(workers, self.depth), "chunkfiles-readahead")
        self._window: collections.deque[tuple[int, Future[bytes]]] = collections.deque()
        self._next = 0
        self._ahead = 0
        self._run = 0  # consecutive sequential blob transitions seen
        self._last: int | None = None
        self._wanted_until = -1
        self._want_run = 0
        self._current: tuple[int, bytes] | None = None
        self._abandoned = False

    def _drop(self) -> None:
        while self._window:
            self._window.popleft()[1].cancel()

    def _fill(self, after: int) -> None:
        """Keep blobs ``after+1 ...`` in flight: ``_ahead`` of them, or up to a wanted range."""
        if self._wanted_until >= after and self._want_run < 2:
            # Inside one read whose end is known, not part of a stream: fetch up
            # to its end, no guessing beyond (a zip member must not pull in its
            # neighbour).
            target = min(self._wanted_until, after + self.depth)
        else:
            target = min(max(after + self._ahead, self._wanted_until), after + self.depth)
        target = min(target, len(self.index.refs) - 1)
        if self._next <= after:
            self._next = after + 1
        while self._next <= target:
            ref = self.index.refs[self._next]
            future = self._pool.submit(load_blob, ref, self.fetch, self.index.file_id, self.policy)
            self._window.append((self._next, future))
            self._next += 1

    def want(self, first: int, last: int) -> None:
        self._wanted_until = max(self._wanted_until, last)
        self._want_run = self._run
        if self._last is not None:
            self._fill(self._last)

    def blob(self, i: int) -> bytes:
        if self._current is not None and self._current[0] == i:
            return self._current[1]
        self._current = None  # release the old blob before waiting for the next
        sequential = self._last is not None and i == self._last + 1
        self._run = self._run + 1 if sequential else 0
        while self._window and self._window[0][0] < i:
            self._window.popleft()[1].cancel()
        if self._window and self._window[0][0] == i:
            _, future = self._window.popleft()
            data = self.result(i, future)
        else:
            self._drop()
            self._next = i + 1
            if not sequential:
                self._ahead = 0
                if self._wanted_until < i:
                    self._wanted_until = -1
            data = self.load(i)
        self._current = (i, data)
        self._last = i
        if not self.adaptive or self._run >= 1:
            # Slow start: 2, 4, 8, ... blobs ahead, so the first blob had the
            # link to itself and the window grows while it is being read. The
            # default mode waits for one step from a blob into the next: a
            # header read never pays for a second blob.
            self._ahead = min(self.depth, max(2, self._ahead * 2))
        self._fill(i)
        return data

    def close(self) -> None:
        self._current = None
        futures = [f for _, f in self._window]
        self._window.clear()
        self._pool.shutdown(futures, 0 if self._abandoned else self.close_timeout)

    def abandon(self) -> None:
        self._abandoned = True
        self.close()
