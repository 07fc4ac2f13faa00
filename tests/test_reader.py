"""The reader keeps the ``io`` contract of a read-only binary file in every mode.

Random operation sequences run against the reader and ``io.BytesIO`` on the
same bytes must agree step by step (lazy, prefetch and read-ahead alike).
Explicit tests then cover the contract bullets, the modes' own promises
(what is fetched when, threads, temp files), ``detach_tempfile`` and
``save_to``. Pure contract tests use an in-memory ``fetch``; the
storage-backed ones go through ``File.putfile``/``File.getfile`` on the
filesystem and on S3.
"""

from __future__ import annotations

import gc
import hashlib
import io
import os
import random
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.files.base import File as DjangoFile
from django.core.files.storage import storages
from django.test import override_settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from chunkfiles.exceptions import BlobMissingError, BlobReadError
from chunkfiles.models import File, FileBlobIndex
from chunkfiles.reader import ChunkedFileBlobIndexWrapper, open_refs
from chunkfiles.refs import BlobRef

from .conftest import MODES

MiB = 1024 * 1024


# -- in-memory blobs --------------------------------------------------------


class Blobs:
    """A file split into blobs held in a dict: what the reader sees of storage."""

    __slots__ = ("blob_size", "data", "objects", "refs")

    def __init__(
        self, data: bytes, blob_size: int, refs: list[BlobRef], objects: dict[str, bytes]
    ) -> None:
        self.data = data
        self.blob_size = blob_size
        self.refs = refs
        self.objects = objects

    def __repr__(self) -> str:
        return f"<Blobs of {len(self.refs)} x {self.blob_size} bytes, {len(self.data)} in all>"


def split(data: bytes, blob_size: int) -> Blobs:
    refs: list[BlobRef] = []
    objects: dict[str, bytes] = {}
    for offset in range(0, len(data), blob_size):
        chunk = data[offset : offset + blob_size]
        checksum = hashlib.sha256(chunk).hexdigest()
        refs.append(BlobRef(offset, len(chunk), checksum, checksum))
        objects[checksum] = chunk
    return Blobs(data, blob_size, refs, objects)


def text_like(size: int, blob_size: int, seed: int) -> bytes:
    """Random bytes cut into lines, some short, some longer than two blobs."""
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        length = rng.choice([0, 1, 5, 40, rng.randrange(2 * blob_size + 3)])
        out += rng.randbytes(length).replace(b"\n", b"x") + b"\n"
    return bytes(out[:size])


class CountingFetch:
    """A thread-safe ``fetch`` over a dict that records what was fetched and how."""

    def __init__(self, blobs: Blobs, delay: float = 0.0) -> None:
        self.objects = blobs.objects
        self.blob_size = blobs.blob_size
        self.delay = delay
        self.fetched: list[int] = []  # blob numbers, in the order fetches started
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    def __call__(self, ref: BlobRef) -> bytes:
        assert ref.path is not None
        with self._lock:
            self.fetched.append(ref.offset // self.blob_size)
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            if self.delay:
                time.sleep(self.delay)
            return self.objects[ref.path]
        finally:
            with self._lock:
                self.active -= 1

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.fetched)

    def settle(self, expected: int, timeout: float = 5.0) -> int:
        """Wait until ``expected`` fetches started (or time runs out), then a little more."""
        deadline = time.monotonic() + timeout
        while self.count < expected and time.monotonic() < deadline:
            time.sleep(0.002)
        with self._lock:
            idle = self.active == 0
        deadline = time.monotonic() + timeout
        while not idle and time.monotonic() < deadline:
            time.sleep(0.002)
            with self._lock:
                idle = self.active == 0
        time.sleep(0.02)  # room for a fetch that should not happen to start
        return self.count


def open_reader(
    blobs: Blobs, mode: str, fetch: Any = None, **kwargs: Any
) -> ChunkedFileBlobIndexWrapper:
    options = {**MODES[mode], **kwargs}
    return open_refs(blobs.refs, fetch=fetch or CountingFetch(blobs), file_id=4242, **options)


def chunkfiles_threads() -> list[str]:
    return [
        t.name for t in threading.enumerate() if t.name.startswith("chunkfiles-") and t.is_alive()
    ]


# -- conformance with io.BytesIO ---------------------------------------------

#: (id, file size, blob size): blob sizes 1, 7, 4 KiB and 1 MiB, an empty and a one-blob file.
DATASETS = [
    ("empty", 0, 4096),
    ("one-blob", 1000, 4096),
    ("blob-1", 257, 1),
    ("blob-7", 7 * 61 + 3, 7),
    ("blob-4096", 4096 * 9 + 123, 4096),
    ("blob-1MiB", 2 * MiB + 4567, MiB),
]


@pytest.fixture(scope="module", params=DATASETS, ids=[d[0] for d in DATASETS])
def dataset(request: pytest.FixtureRequest) -> Blobs:
    """Built once per module and blob size, shared by every example."""
    _, size, blob_size = request.param
    return split(text_like(size, blob_size, seed=size), blob_size)


@pytest.fixture(scope="module")
def module_temp_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("prefetch")


DEFAULT = object()  # read() called without an argument


def operations(size: int, blob_size: int) -> st.SearchStrategy[tuple[Any, ...]]:
    """Single file operations with arguments around blob and file boundaries."""
    edges = sorted(
        {0, 1, blob_size - 1, blob_size, blob_size + 1, size - 1, size, size + 1, size + blob_size}
    )
    position = st.one_of(st.sampled_from(edges), st.integers(0, size + blob_size))
    count = st.one_of(
        st.sampled_from([0, 1, blob_size - 1, blob_size, blob_size + 1, size, size + 1]),
        st.integers(0, min(size, 3 * blob_size) + 2),
    )
    delta = st.integers(-(size + 3), size + 3)
    return st.one_of(
        st.tuples(st.just("seek"), position, st.just(io.SEEK_SET)),
        st.tuples(st.just("seek"), st.integers(-3, -1), st.just(io.SEEK_SET)),
        st.tuples(st.just("seek"), delta, st.just(io.SEEK_CUR)),
        st.tuples(st.just("seek"), st.integers(-(size + 3), blob_size + 2), st.just(io.SEEK_END)),
        st.tuples(st.just("read"), st.one_of(count, st.sampled_from([None, -1, -7, DEFAULT]))),
        st.tuples(st.just("readinto"), count, st.sampled_from(["bytearray", "memoryview"])),
        st.tuples(st.just("readline"), st.one_of(count, st.sampled_from([None, -1, DEFAULT]))),
        st.tuples(st.just("readlines"), st.one_of(st.none(), count)),
        st.tuples(st.just("next")),
        st.tuples(st.just("tell")),
    )


def apply(f: Any, op: tuple[Any, ...]) -> Any:
    name, *args = op
    if name == "seek":
        return f.seek(*args)
    if name in ("read", "readline"):
        method = getattr(f, name)
        return method() if args[0] is DEFAULT else method(args[0])
    if name == "readinto":
        buffer = bytearray(b"?" * args[0])
        target = buffer if args[1] == "bytearray" else memoryview(buffer)
        return f.readinto(target), bytes(buffer)
    if name == "readlines":
        if isinstance(f, io.BytesIO) and args[0]:
            # BytesIO stops once the lines reach the hint; real files (IOBase,
            # FileIO, BufferedReader) stop once they exceed it, as documented.
            lines, total = [], 0
            while total <= args[0] and (line := f.readline()):
                lines.append(line)
                total += len(line)
            return lines
        return f.readlines(args[0])
    if name == "next":
        try:
            return next(f)
        except StopIteration:
            return StopIteration
    return f.tell()


def seek_target(reference: io.BytesIO, op: tuple[Any, ...]) -> int:
    _, offset, whence = op
    base = {io.SEEK_SET: 0, io.SEEK_CUR: reference.tell(), io.SEEK_END: len(reference.getvalue())}
    return int(base[whence] + offset)


def run_against_bytesio(reader: Any, data: bytes, ops: list[tuple[Any, ...]]) -> None:
    reference = io.BytesIO(data)
    for step, op in enumerate(ops):
        if op[0] == "seek" and seek_target(reference, op) < 0:
            # BytesIO clamps a negative SEEK_CUR/END to 0; a real file refuses.
            with pytest.raises((OSError, ValueError)):
                reader.seek(op[1], op[2])
        else:
            assert apply(reader, op) == apply(reference, op), f"step {step}: {op}"
        assert reader.tell() == reference.tell(), f"position after step {step}: {op}"


class TestConformance:
    """Random operation sequences give what ``io.BytesIO`` gives, in every mode."""

    @hypothesis_settings(
        max_examples=20,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(data=st.data())
    def test_matches_bytesio(
        self, mode: str, dataset: Blobs, module_temp_dir: Path, data: st.DataObject
    ) -> None:
        ops = data.draw(
            st.lists(operations(len(dataset.data), dataset.blob_size), max_size=25), label="ops"
        )
        # Two workers: the thread count is not what this test is about.
        with open_reader(dataset, mode, workers=2, temp_dir=str(module_temp_dir)) as reader:
            run_against_bytesio(reader, dataset.data, ops)
        assert reader.closed
        assert os.listdir(module_temp_dir) == []

    def test_whole_file_in_one_read(self, mode: str, dataset: Blobs) -> None:
        with open_reader(dataset, mode) as reader:
            assert reader.read() == dataset.data
            assert reader.read() == b""
            assert reader.tell() == len(dataset.data)

    def test_iteration_yields_the_lines(self, mode: str, dataset: Blobs) -> None:
        with open_reader(dataset, mode) as reader:
            assert list(reader) == io.BytesIO(dataset.data).readlines()


# -- the contract, bullet by bullet -----------------------------------------


@pytest.fixture(scope="module")
def small() -> Blobs:
    """Five and a bit 4 KiB blobs of line-structured bytes."""
    return split(text_like(4096 * 5 + 100, 4096, seed=5), 4096)


class TestContract:
    def test_read_sizes(self, mode: str, small: Blobs) -> None:
        with open_reader(small, mode) as reader:
            assert reader.read(0) == b""
            assert reader.read(5000) == small.data[:5000]  # exactly n, across a blob edge
            assert reader.read(None) == small.data[5000:]
            reader.seek(10)
            assert reader.read(-1) == small.data[10:]
            reader.seek(-3, io.SEEK_END)
            assert reader.read(10) == small.data[-3:]  # fewer only at EOF
            assert reader.read(1) == b""

    def test_readinto_fills_bytearray_and_memoryview(self, mode: str, small: Blobs) -> None:
        with open_reader(small, mode) as reader:
            buffer = bytearray(6000)
            assert reader.readinto(buffer) == 6000
            assert buffer == small.data[:6000]
            view = memoryview(bytearray(len(small.data)))
            assert reader.readinto(view) == len(small.data) - 6000
            assert view[: len(small.data) - 6000] == small.data[6000:]
            assert reader.readinto(bytearray(10)) == 0

    def test_readline_with_and_without_size(self, mode: str, small: Blobs) -> None:
        lines = io.BytesIO(small.data).readlines()
        # A line longer than a blob, so it crosses at least one blob edge.
        long = next(i for i, line in enumerate(lines) if len(line) > 4096)
        with open_reader(small, mode) as reader:
            assert reader.readline() == lines[0]
            assert reader.readline(None) == lines[1]
            reader.seek(sum(map(len, lines[:long])))
            assert reader.readline(4097) == lines[long][:4097]  # the size stops it mid-line
            assert reader.readline(0) == b""
            assert reader.readline(-1) == lines[long][4097:]
            assert reader.readlines() == lines[long + 1 :]

    def test_readline_size_stops_just_before_a_newline(self, mode: str, small: Blobs) -> None:
        # A line of at least three bytes wholly inside the second blob.
        start = small.data.index(b"\n", 4096) + 1
        while not (small.data.index(b"\n", start) - start >= 2):
            start = small.data.index(b"\n", start) + 1
        end = small.data.index(b"\n", start)
        assert end < 2 * 4096
        with open_reader(small, mode) as reader:
            reader.seek(start)
            assert reader.readline(end - start) == small.data[start:end]  # without the newline
            assert reader.readline() == b"\n"

    def test_seek_returns_new_position_for_every_whence(self, mode: str, small: Blobs) -> None:
        size = len(small.data)
        with open_reader(small, mode) as reader:
            assert reader.seek(100) == 100
            assert reader.seek(50, io.SEEK_CUR) == 150
            assert reader.seek(-50, io.SEEK_CUR) == 100
            assert reader.seek(-10, io.SEEK_END) == size - 10
            assert reader.read() == small.data[-10:]
            assert reader.seek(0, io.SEEK_END) == size

    def test_seek_past_eof_is_allowed_and_reads_nothing(self, mode: str, small: Blobs) -> None:
        size = len(small.data)
        with open_reader(small, mode) as reader:
            assert reader.seek(size + 1000) == size + 1000
            assert reader.tell() == size + 1000
            assert reader.read() == b""
            assert reader.read(10) == b""
            assert reader.readline() == b""
            assert reader.readinto(bytearray(10)) == 0
            assert reader.seek(10, io.SEEK_END) == size + 10
            assert reader.read(1) == b""

    @pytest.mark.parametrize(
        ("offset", "whence"),
        [(-1, io.SEEK_SET), (-1, io.SEEK_CUR), (-(4096 * 5 + 101), io.SEEK_END)],
    )
    def test_negative_position_is_refused(
        self, mode: str, small: Blobs, offset: int, whence: int
    ) -> None:
        with open_reader(small, mode) as reader:
            with pytest.raises((OSError, ValueError)):
                reader.seek(offset, whence)
            assert reader.tell() == 0
            assert reader.read(3) == small.data[:3]

    @pytest.mark.parametrize("whence", [3, -1])
    def test_invalid_whence(self, mode: str, small: Blobs, whence: int) -> None:
        with open_reader(small, mode) as reader:
            reader.seek(7)
            with pytest.raises(ValueError):
                reader.seek(0, whence)
            assert reader.tell() == 7

    def test_capabilities(self, mode: str, small: Blobs) -> None:
        with open_reader(small, mode) as reader:
            assert reader.readable()
            assert reader.seekable()
            assert not reader.writable()

    @pytest.mark.parametrize(
        "write",
        [
            lambda f: f.write(b"x"),
            lambda f: f.writelines([b"x"]),
            lambda f: f.truncate(0),
            lambda f: f.fileno(),
        ],
        ids=["write", "writelines", "truncate", "fileno"],
    )
    def test_writes_are_unsupported(self, mode: str, small: Blobs, write: Any) -> None:
        with open_reader(small, mode) as reader:
            with pytest.raises(io.UnsupportedOperation):
                write(reader)
            assert reader.read() == small.data

    @pytest.mark.parametrize(
        "operation",
        [
            lambda f: f.read(),
            lambda f: f.read(1),
            lambda f: f.readinto(bytearray(1)),
            lambda f: f.readline(),
            lambda f: f.readlines(),
            lambda f: f.seek(0),
            lambda f: f.tell(),
            lambda f: f.readable(),
            lambda f: f.seekable(),
            lambda f: next(f),
            lambda f: iter(f),
            lambda f: f.__enter__(),
            lambda f: f.write(b"x"),
            lambda f: f.detach_tempfile(),
        ],
        ids=[
            "read",
            "read-n",
            "readinto",
            "readline",
            "readlines",
            "seek",
            "tell",
            "readable",
            "seekable",
            "next",
            "iter",
            "enter",
            "write",
            "detach_tempfile",
        ],
    )
    def test_operations_after_close_raise_valueerror(
        self, mode: str, small: Blobs, operation: Any
    ) -> None:
        reader = open_reader(small, mode)
        reader.read(10)
        reader.close()
        assert reader.closed
        with pytest.raises(ValueError):
            operation(reader)

    def test_close_is_idempotent_and_context_manager_closes(self, mode: str, small: Blobs) -> None:
        with open_reader(small, mode) as reader:
            assert reader.read(1) == small.data[:1]
        assert reader.closed
        reader.close()
        reader.close()
        assert reader.closed

    # Prefetch reads everything on open, so only the other modes can show it.
    @pytest.mark.parametrize("mode", ["lazy", "readahead"])
    def test_size_is_known_without_io(self, mode: str, small: Blobs) -> None:
        fetch = CountingFetch(small)
        with open_reader(small, mode, fetch) as reader:
            assert reader.size == len(small.data)
            assert DjangoFile(reader).size == len(small.data)
            assert fetch.settle(0) == 0


class TestSeekFetchesNothing:
    def test_seek_and_tell_fetch_nothing(self, mode: str) -> None:
        blobs = split(os.urandom(4096 * 12), 4096)
        fetch = CountingFetch(blobs)
        with open_reader(blobs, mode, fetch) as reader:
            assert reader.read(1) == blobs.data[:1]
            # Read-ahead opens its window at 1 blob and doubles it per blob read;
            # the default mode fetches nothing ahead until reads cross a blob.
            expected = {"lazy": 1, "default": 1, "prefetch": 12, "readahead": 1 + 2}[mode]
            assert fetch.settle(expected) == expected
            for offset, whence in [
                (4096 * 8, io.SEEK_SET),
                (-5, io.SEEK_END),
                (-4096 * 3, io.SEEK_CUR),
                (10**9, io.SEEK_SET),
                (4096 * 6 + 7, io.SEEK_SET),
            ]:
                reader.seek(offset, whence)
                reader.tell()
            assert fetch.settle(expected) == expected
            # The counter does see fetches: the next read needs blob 6.
            assert reader.read(10) == blobs.data[4096 * 6 + 7 : 4096 * 6 + 17]
            if mode == "prefetch":
                assert fetch.settle(expected) == expected
            else:
                assert fetch.settle(expected + 1) > expected
                assert 6 in fetch.fetched


class TestReadAhead:
    def test_window_holds_at_most_depth_blobs_ahead(self) -> None:
        blobs = split(os.urandom(4096 * 20), 4096)
        fetch = CountingFetch(blobs, delay=0.002)
        depth = 3
        with open_reader(blobs, "readahead", fetch, readahead=depth) as reader:
            for i in range(20):
                assert reader.read(4096) == blobs.data[i * 4096 : (i + 1) * 4096]
                # Blob i is being consumed; fetched ahead: the window, which
                # opens at one blob and doubles per blob read, up to depth.
                expected = min(i + 1 + min(depth, 2 ** (i + 1)), 20)
                assert fetch.settle(expected) == expected
                assert sorted(fetch.fetched) == list(range(expected))
        assert fetch.max_active <= depth

    def test_a_new_window_fetches_the_wanted_blob_alone(self) -> None:
        # Time to first byte: the blob the reader waits for gets the link to
        # itself instead of sharing it with the rest of the window.
        blobs = split(os.urandom(4096 * 12), 4096)
        fetch = CountingFetch(blobs, delay=0.03)
        overlapped: dict[int, int] = {}

        def recording(ref: BlobRef) -> bytes:
            number = ref.offset // 4096
            data = fetch(ref)
            with fetch._lock:  # fetches that started while this one ran
                overlapped[number] = len(fetch.fetched)
            return data

        with open_reader(blobs, "readahead", recording, readahead=8) as reader:
            assert reader.read(1) == blobs.data[:1]
            assert fetch.settle(3) == 3
            reader.seek(4096 * 9)
            assert reader.read(1) == blobs.data[4096 * 9 : 4096 * 9 + 1]
        assert overlapped[0] == 1, "blob 0 shared the link with the window"
        assert overlapped[9] == 4, "blob 9 shared the link with the window"

    def test_fetches_concurrently_up_to_depth(self) -> None:
        blobs = split(os.urandom(4096 * 12), 4096)
        fetch = CountingFetch(blobs, delay=0.03)
        with open_reader(blobs, "readahead", fetch, readahead=4) as reader:
            assert reader.read() == blobs.data
        assert 2 <= fetch.max_active <= 4

    def test_workers_bound_the_concurrency(self) -> None:
        blobs = split(os.urandom(4096 * 10), 4096)
        fetch = CountingFetch(blobs, delay=0.03)
        with open_reader(blobs, "readahead", fetch, readahead=5, workers=2) as reader:
            assert reader.read() == blobs.data
        assert fetch.max_active == 2

    def test_seeking_restarts_the_window(self) -> None:
        blobs = split(os.urandom(4096 * 40), 4096)
        fetch = CountingFetch(blobs)
        with open_reader(blobs, "readahead", fetch, readahead=3) as reader:
            assert reader.read(1) == blobs.data[:1]
            assert fetch.settle(3) == 3
            reader.seek(20 * 4096 + 5)
            assert reader.read(3) == blobs.data[20 * 4096 + 5 : 20 * 4096 + 8]
            fetch.settle(6)
            fetched = set(fetch.fetched)
            assert {0, 20, 21, 22} <= fetched
            assert fetched <= {0, 1, 2, 20, 21, 22}
            reader.seek(4096 * 2)  # back into blobs that were dropped
            assert reader.read(4096) == blobs.data[4096 * 2 : 4096 * 3]

    def test_readahead_true_uses_the_configured_depth(self) -> None:
        blobs = split(os.urandom(4096 * 10), 4096)
        fetch = CountingFetch(blobs)
        with (
            override_settings(CHUNKFILES={"READAHEAD": 2}),
            open_reader(blobs, "lazy", fetch, readahead=True) as reader,
        ):
            assert reader.read(1) == blobs.data[:1]
            assert fetch.settle(3) == 3

    def test_close_leaves_no_thread(self) -> None:
        blobs = split(os.urandom(4096 * 10), 4096)
        reader = open_reader(blobs, "readahead", CountingFetch(blobs, delay=0.05))
        assert reader.read(10) == blobs.data[:10]
        assert any(name.startswith("chunkfiles-readahead") for name in chunkfiles_threads())
        reader.close()  # with fetches still in flight
        assert chunkfiles_threads() == []


class TestPrefetch:
    def test_fills_the_whole_file_before_the_first_read(self, tmp_path: Path) -> None:
        blobs = split(os.urandom(4096 * 9 + 1), 4096)
        fetch = CountingFetch(blobs)
        with open_reader(blobs, "prefetch", fetch, temp_dir=str(tmp_path)) as reader:
            assert sorted(fetch.fetched) == list(range(10))
            assert chunkfiles_threads() == []  # the pool is gone once the file is full
            assert len(os.listdir(tmp_path)) == 1
            assert reader.read() == blobs.data
            assert fetch.count == 10
        assert os.listdir(tmp_path) == []

    def test_workers_bound_the_concurrency(self, tmp_path: Path) -> None:
        blobs = split(os.urandom(4096 * 8), 4096)
        fetch = CountingFetch(blobs, delay=0.03)
        with open_reader(blobs, "prefetch", fetch, workers=2, temp_dir=str(tmp_path)) as reader:
            assert reader.read() == blobs.data
        assert fetch.max_active == 2

    def test_settings_give_default_workers_and_temp_dir(self, tmp_path: Path) -> None:
        blobs = split(os.urandom(4096 * 8), 4096)
        fetch = CountingFetch(blobs, delay=0.03)
        with (
            override_settings(CHUNKFILES={"PREFETCH_WORKERS": 3, "TEMP_DIR": str(tmp_path)}),
            open_reader(blobs, "prefetch", fetch) as reader,
        ):
            assert len(os.listdir(tmp_path)) == 1
            assert reader.read() == blobs.data
        assert fetch.max_active == 3
        assert os.listdir(tmp_path) == []

    def test_first_failure_is_raised_and_the_rest_cancelled(self, tmp_path: Path) -> None:
        blobs = split(os.urandom(4096 * 20), 4096)
        counting = CountingFetch(blobs, delay=0.02)  # slack for the cancel to land

        def fetch(ref: BlobRef) -> bytes:
            data = counting(ref)
            if ref.offset in (4096, 4096 * 15):
                raise ConnectionError(f"lost blob at {ref.offset}")
            return data

        with pytest.raises(BlobReadError) as info:
            open_reader(blobs, "prefetch", fetch, workers=1, temp_dir=str(tmp_path))
        assert info.value.offset == 4096
        assert isinstance(info.value.__cause__, ConnectionError)
        assert counting.count < 20
        assert os.listdir(tmp_path) == []
        assert chunkfiles_threads() == []


class TestDetachTempfile:
    def test_hands_over_the_prefetched_file(self, tmp_path: Path, small: Blobs) -> None:
        reader = open_reader(small, "prefetch", temp_dir=str(tmp_path))
        reader.read(100)
        tmp = reader.detach_tempfile()
        assert reader.closed
        try:
            (name,) = os.listdir(tmp_path)
            assert Path(tmp.name) == tmp_path / name
            tmp.seek(0)
            assert tmp.read() == small.data
        finally:
            tmp.close()
        assert os.listdir(tmp_path) == []

    @pytest.mark.parametrize("mode", ["lazy", "readahead"])
    def test_other_modes_raise_typeerror(self, mode: str, small: Blobs) -> None:
        with open_reader(small, mode) as reader:
            with pytest.raises(TypeError):
                reader.detach_tempfile()
            assert not reader.closed
            assert reader.read() == small.data


# -- through the models, on both storages ------------------------------------


def stored(data: bytes, blob_size: int = 4096, name: str = "data.bin") -> File:
    f = File(name=name, type="test")
    f.putfile(io.BytesIO(data), blob_size=blob_size)
    return f


@pytest.fixture
def content() -> bytes:
    return text_like(4096 * 6 + 321, 4096, seed=11)


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """An empty directory of its own (``tmp_path`` also holds the storage's blobs)."""
    directory = tmp_path / "out"
    directory.mkdir()
    return directory


@pytest.mark.django_db
class TestGetfile:
    def test_reads_back_through_a_django_file(
        self, storage: Any, mode: str, content: bytes, out: Path, django_assert_num_queries: Any
    ) -> None:
        f = File.objects.get(pk=stored(content).pk)
        with django_assert_num_queries(1):  # the index rows, nothing else
            fh = f.getfile(**MODES[mode], temp_dir=str(out))
        with django_assert_num_queries(0), fh:
            assert isinstance(fh, DjangoFile)
            assert isinstance(fh.file, ChunkedFileBlobIndexWrapper)
            assert fh.name == "data.bin"
            assert fh.size == len(content)
            assert fh.read(5000) == content[:5000]
            fh.seek(-100, io.SEEK_END)
            assert fh.read() == content[-100:]
            fh.seek(4095)
            assert fh.readline() == io.BytesIO(content[4095:]).readline()
            fh.seek(0)
            assert fh.read() == content
            assert len(os.listdir(out)) == (1 if mode == "prefetch" else 0)
        assert fh.closed
        assert os.listdir(out) == []

    @pytest.mark.parametrize("mode", ["lazy", "readahead"])
    def test_size_without_touching_storage(self, storage: Any, mode: str, content: bytes) -> None:
        f = stored(content)
        for name in storage.object_names():
            storage.remove(name)
        with f.getfile(**MODES[mode]) as fh:
            assert fh.size == len(content)
            fh.seek(0, io.SEEK_END)
            assert fh.tell() == len(content)
            fh.seek(0)
            with pytest.raises(BlobMissingError):
                fh.read(1)

    def test_reading_does_not_keep_the_storage_alive(self, s3_storage: Any, content: bytes) -> None:
        # Storages are rebuilt whenever STORAGES changes (override_settings, a
        # reload); each S3 store holds a boto3 session and client, so one that
        # outlives its storage is a leak that grows with every rebuild.
        f = stored(content)
        with f.getfile(readahead=2) as fh:
            assert fh.read() == content
        del fh
        storage = weakref.ref(storages["blobs"])
        with override_settings(STORAGES=dict(settings.STORAGES)):  # drops the cached instance
            gc.collect()
            assert storage() is None

    def test_writing_modes_are_refused(self, fs_storage: Any, content: bytes) -> None:
        f = stored(content)
        for open_mode in ("wb", "w", "ab", "r+b"):
            with pytest.raises(ValueError):
                f.getfile(open_mode)
        with f.getfile("rb") as fh:
            assert fh.read() == content

    def test_temp_dir_defaults_to_the_setting(
        self, fs_storage: Any, content: bytes, out: Path
    ) -> None:
        f = stored(content)
        with (
            override_settings(CHUNKFILES={"STORAGE": "blobs", "TEMP_DIR": str(out)}),
            f.getfile(prefetch=True, workers=2) as fh,
        ):
            assert len(os.listdir(out)) == 1
            assert fh.read() == content
        assert os.listdir(out) == []

    def test_detach_tempfile_through_getfile(
        self, fs_storage: Any, content: bytes, out: Path
    ) -> None:
        f = stored(content)
        fh = f.getfile(prefetch=True, temp_dir=str(out))
        tmp = fh.file.detach_tempfile()
        assert fh.closed
        with tmp:
            assert tmp.read() == content
        assert os.listdir(out) == []


def blob_name_at(f: File, offset: int) -> str:
    path = FileBlobIndex.objects.select_related("blob").get(file=f, offset=offset).blob.path
    assert path is not None
    return path


@pytest.mark.django_db
class TestSaveTo:
    def test_writes_the_content_and_leaves_no_temp(
        self, storage: Any, content: bytes, out: Path
    ) -> None:
        f = stored(content)
        target = out / "copy.bin"
        assert f.save_to(target) == str(target)
        assert target.read_bytes() == content
        assert os.listdir(target.parent) == ["copy.bin"]

    def test_honours_the_umask_and_replaces_an_existing_file(
        self, fs_storage: Any, content: bytes, out: Path
    ) -> None:
        f = stored(content)
        target = out / "copy.bin"
        target.write_bytes(b"old")
        umask = os.umask(0o022)
        try:
            f.save_to(str(target), workers=2)
        finally:
            os.umask(umask)
        assert target.read_bytes() == content
        assert target.stat().st_mode & 0o777 == 0o644

    def test_empty_file(self, fs_storage: Any, out: Path) -> None:
        f = stored(b"")
        target = out / "empty.bin"
        f.save_to(target)
        assert target.read_bytes() == b""

    def test_missing_blob_creates_no_target(self, storage: Any, content: bytes, out: Path) -> None:
        f = stored(content)
        storage.remove(blob_name_at(f, 4096 * 3))
        target = out / "copy.bin"
        with pytest.raises(BlobMissingError) as info:
            f.save_to(target)
        assert info.value.offset == 4096 * 3
        assert os.listdir(out) == []

    def test_failure_leaves_an_existing_target_untouched(
        self, storage: Any, content: bytes, out: Path
    ) -> None:
        f = stored(content)
        storage.corrupt(blob_name_at(f, 4096), b"\0" * 4096)
        target = out / "copy.bin"
        target.write_bytes(b"previous contents")
        with pytest.raises(BlobReadError):
            f.save_to(target)
        assert target.read_bytes() == b"previous contents"
        assert os.listdir(out) == ["copy.bin"]
