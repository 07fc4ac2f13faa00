"""Exporting many files, and one big file, from S3 through the slow link (issue 9).

Many files: ``FILES`` files of 4 KiB to 1 MiB (log-uniform, so most are
small: the case where a naive exporter spends its time on one query and one
round trip per file) are exported to a directory by ``export_to_directory``
and, side by side, fetched by a plain thread pool of boto3 GETs of the same
objects written to files (the download a script would do). Targets: within
1.25x of that plain download, and at most one query per 100 files.

One file: the suite's test file exported to a directory against
``File.save_to`` of the same file: within 1.1x.
"""

from __future__ import annotations

import os
import random
import shutil
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from .environment import BUCKET, Spec, s3_client
from .report import COUNT, Check, Section, median, median_ratio, median_seconds, num, rst
from .workload import BOTO3_CONCURRENCY, Extras, Timed, Variant, warm_client, warm_store

if TYPE_CHECKING:  # harness imports the variants, so it is imported lazily here
    from .harness import Bench, Sample

FILES, QUICK_FILES = 2000, 200
MIN_SIZE, MAX_SIZE = 4 * 1024, 1024 * 1024
FILE_TYPE = "export-bench"


def _out(spec: Spec) -> str:
    """The output directory, emptied (not timed) before each variant."""
    path = os.path.join(spec.workdir, "export-out")
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def _many(spec: Spec) -> Any:
    from chunkfiles.models import File

    return File.objects.filter(type=FILE_TYPE)


def export_many(spec: Spec) -> Timed:
    """``export_to_directory`` of every bench file, ``spec.workers`` in flight."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from chunkfiles.exportdir import export_to_directory

    out = _out(spec)
    files = _many(spec)
    count, total = files.count(), sum(files.values_list("size", flat=True))
    warm_store(spec)

    def run() -> Extras:
        with CaptureQueriesContext(connection) as queries:
            done = list(export_to_directory(files, out, workers=spec.workers))
        written = sum(d.bytes for d in done)
        if len(done) != count or written != total:
            raise AssertionError(f"exported {len(done)} files / {written} bytes")
        return {"queries": len(queries), "files": count, "bytes": total}

    return run


def raw_many(spec: Spec) -> Timed:
    """The plain download: a pool of boto3 GETs of the same objects, one file each."""
    from storages.utils import clean_name

    from chunkfiles.models import FileBlobIndex
    from chunkfiles.storage import blob_storage

    out = _out(spec)
    storage: Any = blob_storage()
    keys = [
        storage._normalize_name(clean_name(path))
        for path in FileBlobIndex.objects.filter(file__type=FILE_TYPE)
        .order_by("file_id", "offset")
        .values_list("blob__path", flat=True)
    ]
    pool_size = max(BOTO3_CONCURRENCY, spec.workers)
    client = warm_client(s3_client(spec, max_pool_connections=pool_size), spec.workers)

    def one(item: tuple[int, str]) -> int:
        data = client.get_object(Bucket=BUCKET, Key=item[1])["Body"].read()
        with open(os.path.join(out, f"{item[0]}.bin"), "wb") as fh:
            fh.write(data)
        return len(data)

    def run() -> Extras:
        with ThreadPoolExecutor(spec.workers) as pool:
            total = sum(pool.map(one, enumerate(keys)))
        return {"files": len(keys), "bytes": total}

    return run


def export_one(spec: Spec) -> Timed:
    """``export_to_directory`` of the suite's single test file."""
    from chunkfiles.exportdir import export_to_directory
    from chunkfiles.models import File

    out = _out(spec)
    files = File.objects.filter(pk=spec.file_id)
    warm_store(spec)

    def run() -> Extras:
        done = list(export_to_directory(files, out, workers=spec.workers))
        if [d.bytes for d in done] != [spec.size]:
            raise AssertionError(f"exported {done}")
        return {}

    return run


def save_to_one(spec: Spec) -> Timed:
    """``File.save_to`` of the same file: the single-file baseline."""
    from chunkfiles.models import File

    out = _out(spec)
    f = File.objects.get(pk=spec.file_id)
    warm_store(spec)

    def run() -> Extras:
        f.save_to(os.path.join(out, "one.bin"))
        if os.path.getsize(os.path.join(out, "one.bin")) != spec.size:
            raise AssertionError("short save_to")
        return {}

    return run


VARIANTS: dict[str, Variant] = {
    "export_many": export_many,
    "raw_many": raw_many,
    "export_one": export_one,
    "save_to_one": save_to_one,
}


def store_many(bench: Bench, count: int) -> int:
    """Store ``count`` random files (once); returns their total size."""
    from chunkfiles.importing import import_paths
    from chunkfiles.models import File

    existing = File.objects.filter(type=FILE_TYPE)
    if existing.count() == count:
        return sum(existing.values_list("size", flat=True))
    rng = random.Random(9)
    source = bench.workfile("export-source")
    os.makedirs(source, exist_ok=True)
    for i in range(count):
        size = int(MIN_SIZE * (MAX_SIZE / MIN_SIZE) ** rng.random())
        with open(os.path.join(source, f"f{i:05}.bin"), "wb") as fh:
            fh.write(os.urandom(size))
    total = sum(d.size for d in import_paths([source], type=FILE_TYPE, workers=8))
    shutil.rmtree(source)
    return total


def run(bench: Bench) -> Section:
    """The suite: store the files once, then measure every variant per run, interleaved."""
    from .harness import log, rotated

    count = QUICK_FILES if bench.args.quick else FILES
    log(f"storing {count} files of 4 KiB-1 MiB for the export benchmark")
    total = store_many(bench, count)
    many = bench.spec.replace(blob_size=bench.args.default_blob_size)
    one = bench.stored_file(bench.args.default_blob_size)
    samples: dict[str, list[Sample | None]] = {name: [] for name in VARIANTS}
    for r in range(bench.args.runs):
        log(f"export run {r + 1}/{bench.args.runs}")
        for name in rotated(list(VARIANTS), r):
            spec = one if name.endswith("_one") else many
            samples[name].append(bench.measure(spec, name, "export"))

    def seconds(name: str) -> float | None:
        return median_seconds(samples[name])

    def ratio(a: str, b: str) -> float | None:
        return median_ratio(samples[a], samples[b])

    queries = median(s.extras["queries"] for s in samples["export_many"] if s is not None)
    mib = total / 2**20
    rows = []
    for name, label, size in [
        ("export_many", f"chunkfiles_export, {count} files", mib),
        ("raw_many", f"boto3 GETs in a pool, {count} files", mib),
        ("export_one", f"export, one {one.size // 2**20} MiB file", one.size / 2**20),
        ("save_to_one", "File.save_to, the same file", one.size / 2**20),
    ]:
        s = seconds(name)
        rate = "-" if s is None else num(size / s)
        rows.append([label, "failed" if s is None else num(s), rate])
    section = Section(f"Export: {count} files ({num(mib)} MiB), and one file")
    section.tables.append(rst(["variant", "seconds", "MiB/s"], rows))
    section.checks = [
        Check("export / plain boto3 download", ratio("export_many", "raw_many"), "<=", 1.25),
        Check(
            "queries per 100 files",
            None if queries is None else 100 * queries / count,
            "<=",
            1,
            "",
            kind=COUNT,
        ),
        Check("export one file / save_to", ratio("export_one", "save_to_one"), "<=", 1.1),
    ]
    return section
