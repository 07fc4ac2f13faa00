"""Export files into a directory: many files and blobs in flight, nothing outside the root.

One thread pool fetches blobs (``load_blob``: fetch and verify) and writes
each at its offset (``pwrite``) into its file's unnamed output file
(``chunkfiles.atomicfile``); when a file's last blob is in, a worker syncs
it, checks its SHA-1 if asked, and gives it its name, so a file appears
whole or not at all, even if the process is killed. The caller's thread plans
files, looks up moved blobs (database access stays in that thread) and
reports progress. At most ``2 * workers`` blobs are queued or in flight, so
memory is bounded by blob size, not file size or count.

Every path is opened relative to a directory descriptor, component by
component, with ``O_NOFOLLOW``: a symlink planted in the output directory
(``out/evil -> /etc``) cannot redirect a write, and a hostile ``File.name``
has already been made a safe relative path by ``chunkfiles.safenames``.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, NamedTuple

from .atomicfile import AtomicFile
from .exceptions import BlobMissingError
from .export import (
    Exported,
    ExportError,
    ExportItem,
    WholeFileCheck,
    checked_index,
    iter_items,
)
from .fetch import Fetch, load_blob, storage_fetch
from .refs import BlobRef, relocate
from .safenames import UniqueNames

if TYPE_CHECKING:
    from .export import FileQuerySet

EXISTING = ("error", "skip", "overwrite")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class _Job:
    """One file being written: its unnamed output file, its blobs still due, its outcome."""

    def __init__(
        self, item: ExportItem, path: str, dir_fd: int, name: str, finish: _Finish
    ) -> None:
        self.item = item
        self.path = path
        self.dir_fd = dir_fd
        self.name = name
        self.finish = finish
        self.out = AtomicFile(dir_fd)
        self.fd = self.out.fd
        self.lock = threading.Lock()
        self.due = 0  # blobs not yet written (workers count it down)
        self.running = 0  # tasks submitted and not yet collected (caller's thread only)
        self.error = ""

    def discard(self) -> None:
        """Drop the output and close the directory (only once no task of the job runs)."""
        self.out.discard()
        self.close_dir()

    def close_dir(self) -> None:
        if self.dir_fd >= 0:
            os.close(self.dir_fd)
            self.dir_fd = -1


class _Finish(NamedTuple):
    verify: bool
    fsync: bool
    overwrite: bool


def _write_blob(job: _Job, ref: BlobRef, fetch: Fetch) -> bool:
    """Fetch, verify and write one blob; the worker writing the last one finishes the file.

    Returns whether the file is now complete under its name. Finishing here
    rather than in another task saves a hand-over per file, which is most of
    the cost of exporting many small files.
    """
    if job.error:  # the file already failed: do not fetch the rest
        return False
    view = memoryview(load_blob(ref, fetch, job.item.id))
    offset = ref.offset
    while view:
        written = os.pwrite(job.fd, view, offset)
        view, offset = view[written:], offset + written
    with job.lock:
        job.due -= 1
        last = job.due == 0
    if last:
        _finish(job)
    return last


def _finish(job: _Job) -> bool:
    verify, fsync, overwrite = job.finish
    if verify:
        check = WholeFileCheck(job.item, verify)
        offset = 0
        while chunk := os.pread(job.fd, 1 << 20, offset):
            check.update(chunk)
            offset += len(chunk)
        check.check()
    if fsync:
        os.fsync(job.fd)
    mtime = job.item.timestamp.timestamp()
    os.utime(job.fd, (mtime, mtime))
    try:
        job.out.publish(job.name, overwrite=overwrite)
    except FileExistsError:
        raise ExportError(f"{job.path} appeared while it was being exported") from None
    job.close_dir()
    return True


class _Root:
    """The output directory, opened once; subdirectories are made without following links."""

    def __init__(self, root: str, parents: bool) -> None:
        if parents:
            os.makedirs(root, exist_ok=True)
        elif not os.path.isdir(root):
            raise ExportError(f"output directory {root} does not exist (use --parents)")
        self.fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def open_parent(self, path: str) -> tuple[int, str]:
        """A descriptor of ``path``'s directory (created as needed) and its last component."""
        *dirs, name = path.split("/")
        fd = os.dup(self.fd)
        try:
            for part in dirs:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, dir_fd=fd)
                try:
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    raise ExportError(f"{path}: {part!r} is not a directory ({exc})") from None
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd, name

    def close(self) -> None:
        os.close(self.fd)


def export_to_directory(
    files: FileQuerySet,
    root: str,
    *,
    workers: int = 16,
    existing: str = "error",
    verify: bool = False,
    parents: bool = False,
    keep_going: bool = False,
    fsync: bool = False,
    on_bytes: Callable[[int], None] | None = None,
) -> Iterator[Exported]:
    """Write every file of ``files`` under ``root``; yields one ``Exported`` per file.

    ``existing`` says what to do when a target exists: ``"error"`` stops the
    export, ``"skip"`` keeps it (a re-run resumes), ``"overwrite"`` replaces
    it. A broken file stops the export with ``ExportError`` (no partial file
    is left), or with ``keep_going`` is reported as failed and the rest go on.
    ``fsync`` makes each file durable before it is named (slower; a killed
    process never leaves a partial file either way). ``on_bytes(n)`` is
    called in the caller's thread as each blob of ``n`` bytes is written.
    """
    if existing not in EXISTING:
        raise ValueError(f"existing must be one of {EXISTING}, not {existing!r}")
    using = files.db
    out = _Root(root, parents)
    names = UniqueNames()
    fetch = storage_fetch(workers)
    pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="chunkfiles-export")
    limit = 2 * max(1, workers)
    queue: deque[tuple[_Job, BlobRef]] = deque()
    running: dict[Future[bool], tuple[_Job, BlobRef | None]] = {}
    items = iter_items(files)
    more = True
    active: dict[int, _Job] = {}  # files with a temp file, by id(job)

    finish = _Finish(verify, fsync, existing == "overwrite")

    def start(item: ExportItem, refs: list[BlobRef], path: str) -> Exported | None:
        index = checked_index(item, refs)
        dir_fd, name = out.open_parent(path)
        try:
            os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            pass
        else:
            if existing == "skip":
                os.close(dir_fd)
                return Exported(item, path, "skipped")
            if existing == "error":
                os.close(dir_fd)
                raise ExportError(f"{path} exists in {root} (use --skip-existing or --overwrite)")
        try:
            job = _Job(item, path, dir_fd, name, finish)
        except BaseException:
            os.close(dir_fd)
            raise
        active[id(job)] = job
        job.due = len(index.refs)
        queue.extend((job, ref) for ref in index.refs)
        if not index.refs:
            job.running += 1
            running[pool.submit(_finish, job)] = (job, None)
        return None

    def plan() -> Exported | None:
        """Start the next file; returns its outcome when there is nothing to write."""
        nonlocal more
        try:
            item, refs = next(items)
        except StopIteration:
            more = False
            return None
        path = names.claim(item.name, str(item.id))
        try:
            return start(item, refs, path)
        except (OSError, ExportError) as exc:
            if not keep_going:
                raise ExportError(str(exc)) from None
            return Exported(item, path, "failed", str(exc))

    try:
        while True:
            while more and len(queue) < limit:
                outcome = plan()
                if outcome is not None:
                    yield outcome
            while queue and len(running) < limit:
                job, ref = queue.popleft()
                job.running += 1
                running[pool.submit(_write_blob, job, ref, fetch)] = (job, ref)
            if not running:
                if not more and not queue:
                    return
                continue
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in done:
                job, blob = running.pop(future)
                job.running -= 1
                error = future.exception()
                if error is not None and not job.error:
                    if isinstance(error, BlobMissingError) and blob is not None:
                        moved = relocate(blob, using)
                        if moved is not None:  # moved to another storage since we loaded it
                            queue.appendleft((job, moved))
                            continue
                    job.error = str(error)
                    _drop(queue, job)
                    if not keep_going:
                        raise ExportError(job.error)
                if error is None and blob is not None and on_bytes is not None:
                    on_bytes(blob.size)
                if job.error:
                    if job.running == 0:
                        job.discard()
                        del active[id(job)]
                        yield Exported(job.item, job.path, "failed", job.error)
                elif future.result():  # complete and named
                    del active[id(job)]
                    yield Exported(job.item, job.path, "written")
    finally:
        for future in running:
            future.cancel()
        pool.shutdown(wait=True)
        for job in active.values():
            job.discard()
        out.close()


def _drop(queue: deque[tuple[_Job, BlobRef]], job: _Job) -> None:
    """Remove the queued blobs of a failed file."""
    kept = [entry for entry in queue if entry[0] is not job]
    queue.clear()
    queue.extend(kept)
