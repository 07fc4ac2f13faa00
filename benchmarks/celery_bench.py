"""Bulk jobs on Celery: files/s in one process, on one worker and on two (issue 13).

``--suites celery`` (``make bench-celery``); not in the default run: it needs
PostgreSQL (127.0.0.1:5432, user postgres) and Redis (127.0.0.1:6379).

``FILES`` files of two 1 KiB blobs each, drawn from 300 shared blobs
(``testproject.bulkfiles``, as the Celery tests make them), in a PostgreSQL
database of the suite's own (workers must share the rows; SQLite locks the
file across processes), created and dropped here. Blobs live in the
benchmark's SeaweedFS, reached directly: no latency proxy, so the figures
are the per-file costs of the job itself, not of a slow link.

Two worker processes (``celery -A testproject.celery_app worker -P threads
-c 1 --prefetch-multiplier 1``, as ``testproject.celeryworkers`` starts them
for the tests) run for the whole suite, warmed by one batch each. Both
consume the suite's shared queue and worker 0 also a queue of its own, so
"1 worker" sends to worker 0's queue and "2 workers" to the shared one,
with the same two processes alive in every variant (an idle worker only
waits on Redis). Each run measures, interleaved and in rotating order:

- verify: ``chunkfiles.verify.verify_files`` in one process (16 threads), and
  the ``chunkfiles.verify_files`` task in batches through ``dispatch``;
- export: ``chunkfiles.exportstore.export_to_storage`` into a fresh prefix of
  the bucket in one process (8 threads), and the ``chunkfiles.export_files``
  task the same way (what ``chunkfiles_export --storage --prefix --celery`` does).

The dispatcher is a fresh process (``benchmarks.one``) that pages the ids
and sends the batches inside the timed part, as the commands' ``--celery``
does. Every variant checks its result (every file verified without a
problem; every file written); the exported objects are listed afterwards.
Targets: one worker within 1.1x of one process (the cost of going through
Celery), and a second worker at least 1.1x faster. The machine's cores are
shared by SeaweedFS, PostgreSQL, Redis, the workers and the dispatcher, so
on a 2-core machine a second worker cannot come near 2x.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .environment import BUCKET, POSTGRESQL, Spec, chunkfiles_settings, s3_client
from .report import CORRECTNESS, Check, Section, median_ratio, median_seconds, num, rst
from .workload import Extras, Timed, Variant, warm_store

if TYPE_CHECKING:  # harness imports the variants, so it is imported lazily here
    from .harness import Bench, Sample

FILES, QUICK_FILES = 3000, 300
BATCH = 200
FILE_TYPE = "celery-bench"
EXPORT_PREFIX = "celery-bench-export/"
#: Every wait on the workers has a deadline; a batch of 200 small files takes seconds.
DISPATCH_TIMEOUT = 1200.0
JOBS = {"verify": "chunkfiles.verify_files", "export": "chunkfiles.export_files"}
WHERE = {"here": "one process", "w1": "1 worker", "w2": "2 workers"}


def task_kwargs(job: str, prefix: str) -> dict[str, Any]:
    """The task's arguments besides the ids (an export writes under ``prefix``)."""
    return {"alias": "blobs", "prefix": prefix} if job == "export" else {}


def _files(spec: Spec) -> Any:
    from chunkfiles.models import File

    return File.objects.filter(type=FILE_TYPE)


def _bytes(count: int) -> int:
    from testproject.bulkfiles import BLOB

    return 2 * BLOB * count


def prepare(spec: Spec) -> Timed:
    """Not measured: the schema, then ``spec.files`` bulk files (timed only for the log)."""
    from django.core.management import call_command

    from testproject.bulkfiles import bulk_files

    call_command("migrate", run_syncdb=True, verbosity=0)

    def run() -> Extras:
        ids = sorted(bulk_files(spec.files, type=FILE_TYPE))
        return {"files": len(ids), "first_id": ids[0]}

    return run


def verify_here(spec: Spec) -> Timed:
    """``verify_files`` of every bench file in this process (its default 16 threads)."""
    from chunkfiles.verify import verify_files

    files = _files(spec)
    count = files.count()
    warm_store(spec)

    def run() -> Extras:
        checked = size = 0
        problems: list[str] = []
        for outcome in verify_files(files):
            checked += 1
            size += outcome.size
            problems += [str(p) for p in outcome.problems]
        if (checked, size, problems) != (count, _bytes(count), []):
            raise AssertionError(f"verified {checked} files, {size} bytes; {problems[:3]}")
        return {"files": checked}

    return run


def export_here(spec: Spec) -> Timed:
    """``export_to_storage`` of every bench file into ``spec.prefix`` (its default 8 threads)."""
    from chunkfiles.exportstore import export_to_storage

    files = _files(spec)
    count = files.count()
    warm_store(spec)

    def run() -> Extras:
        statuses = [e.status for e in export_to_storage(files, "blobs", spec.prefix)]
        if statuses != ["written"] * count:
            raise AssertionError(f"export of {count} files: {sorted(set(statuses))}")
        return {"files": len(statuses)}

    return run


def _dispatched(job: str, spec: Spec) -> Timed:
    """``job``'s task in batches of ``spec.batch`` ids to ``spec.queue``, as ``--celery`` sends."""
    from chunkfiles.dispatch import dispatch, pk_batches
    from testproject.celery_app import make_app
    from testproject.celeryworkers import REDIS

    files = _files(spec)
    count = files.count()
    app = make_app(REDIS, spec.queue)
    app.control.ping(timeout=1.0)  # opens the broker connection before the clock starts
    kwargs = task_kwargs(job, spec.prefix)

    def run() -> Extras:
        work = ({"file_ids": ids, **kwargs} for ids in pk_batches(files, spec.batch))
        result = dispatch(JOBS[job], work, app=app, timeout=DISPATCH_TIMEOUT)
        done = result.get("written" if job == "export" else "checked", 0)
        if (done, result.get("bytes"), result["errors"], result["problems"]) != (
            count,
            _bytes(count),
            [],
            [],
        ):
            raise AssertionError(f"{job}: {count} files, got {result}")
        return {"files": done, "batches": result["batches"]}

    return run


def verify_celery(spec: Spec) -> Timed:
    return _dispatched("verify", spec)


def export_celery(spec: Spec) -> Timed:
    return _dispatched("export", spec)


VARIANTS: dict[str, Variant] = {
    "celery_prepare": prepare,
    "celery_verify_here": verify_here,
    "celery_export_here": export_here,
    "celery_verify": verify_celery,
    "celery_export": export_celery,
}


@contextlib.contextmanager
def database() -> Iterator[str]:
    """A PostgreSQL database of this run's own, dropped afterwards (whatever happened)."""
    import psycopg

    name = f"chunkfiles_bench_{uuid.uuid4().hex[:8]}"
    dsn = f"host={POSTGRESQL['HOST']} port={POSTGRESQL['PORT']} user={POSTGRESQL['USER']}"
    with psycopg.connect(f"{dsn} dbname=postgres", autocommit=True, connect_timeout=10) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield name
        finally:
            # FORCE: a child killed mid-run may leave a connection behind.
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def worker_env(spec: Spec) -> dict[str, str]:
    """What a worker process needs to see this suite's database and storages."""
    shared = {"DATABASE_NAMES": {"default": spec.database}, **chunkfiles_settings(spec)}
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "testproject.settings",
        "DJANGO_DEBUG": "0",  # DEBUG keeps every query in memory: not how workers run
        "CHUNKFILES_DB": "postgresql",
        "CHUNKFILES_VAR_DIR": os.path.join(spec.workdir, "var"),
        "CHUNKFILES_SETTINGS_JSON": json.dumps(shared),
    }


def exported_objects(bench: Bench, prefix: str) -> int:
    """How many objects under ``prefix`` have a bench file's size (one LIST per 1000)."""
    from testproject.bulkfiles import BLOB

    client = s3_client(bench.spec, endpoint_url=bench.direct_url)
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return sum(o["Size"] == 2 * BLOB for page in pages for o in page.get("Contents", []))
    finally:
        client.close()


def warm_up(workers: Any, first_id: int) -> None:
    """One small batch of each job on each worker: connections, imports, S3 pools."""
    from chunkfiles.dispatch import dispatch
    from testproject.celery_app import make_app

    ids = list(range(first_id, first_id + 5))  # bulk_create in a new database: consecutive
    for name in workers.names:
        app = make_app(workers.broker, workers.own_queues[name])
        try:
            for job in JOBS:
                kwargs = task_kwargs(job, f"celery-bench-warm/{name}/")
                result = dispatch(
                    JOBS[job], [{"file_ids": ids, **kwargs}], app=app, timeout=DISPATCH_TIMEOUT
                )
                if result["errors"] or result["problems"]:
                    raise RuntimeError(f"warm-up {job} on {name}: {result}")
        finally:
            app.close()


def run(bench: Bench) -> Section:
    """The suite: database, files and workers once, then every variant per run, interleaved."""
    from testproject.celeryworkers import REDIS, Workers

    from .harness import log, rotated

    count = bench.args.celery_files or (QUICK_FILES if bench.args.quick else FILES)
    batch = bench.args.celery_batch
    variants = [f"{job}_{where}" for job in JOBS for where in WHERE]
    samples: dict[str, list[Sample | None]] = {name: [] for name in variants}
    exported: list[int] = []
    with contextlib.ExitStack() as stack:
        db = stack.enter_context(database())
        spec = bench.spec.replace(
            endpoint_url=bench.direct_url, database=db, files=count, batch=batch
        )
        log(f"storing {count} files of two 1 KiB blobs in PostgreSQL {db}")
        made = bench.measure(spec, "celery_prepare", "setup")
        if made is None:
            return Section("Bulk jobs on Celery: setup failed")
        logs = Path(bench.workfile("celery-logs"))
        logs.mkdir(exist_ok=True)
        workers = stack.enter_context(
            Workers(REDIS, 2, logs, worker_env(spec), queue_prefix="chunkfiles-bench")
        )
        queues = {"w1": workers.own_queues[workers.names[0]], "w2": workers.queue}
        warm_up(workers, int(made.extras["first_id"]))
        for r in range(bench.args.runs):
            log(f"celery run {r + 1}/{bench.args.runs}")
            for name in rotated(variants, r):
                job, where = name.split("_")
                prefix = f"{EXPORT_PREFIX}{r}-{where}/"
                if where == "here":
                    variant, queue = f"celery_{job}_here", ""
                else:
                    variant, queue = f"celery_{job}", queues[where]
                sample = bench.measure(
                    spec.replace(queue=queue, prefix=prefix), variant, WHERE[where]
                )
                samples[name].append(sample)
                if job == "export" and sample is not None:
                    exported.append(exported_objects(bench, prefix))
        stats = workers.app.control.inspect(workers.names, timeout=5).stats() or {}
    return _section(count, batch, samples, exported, stats)


def _section(
    count: int,
    batch: int,
    samples: dict[str, list[Sample | None]],
    exported: list[int],
    stats: dict[str, Any],
) -> Section:
    def seconds(name: str) -> float | None:
        return median_seconds(samples[name])

    def ratio(a: str, b: str) -> float | None:
        return median_ratio(samples[a], samples[b])

    rows = []
    for name in samples:
        job, where = name.split("_")
        s = seconds(name)
        rows.append(
            [
                job,
                WHERE[where],
                "failed" if s is None else num(s),
                "-" if s is None else num(count / s),
            ]
        )
    section = Section(f"Bulk jobs on Celery: {count} files of two 1 KiB blobs, batches of {batch}")
    section.tables.append(rst(["job", "where", "seconds", "files/s"], rows))
    verified = [
        s.extras["files"] for n in samples if n.startswith("verify") for s in samples[n] if s
    ]
    section.checks = [
        Check(
            "verify: files checked, no problem (fewest of any variant)",
            min(verified) if verified else None,
            "==",
            count,
            "",
            kind=CORRECTNESS,
        ),
        Check(
            "export: objects written with the right size (fewest of any variant)",
            min(exported) if exported else None,
            "==",
            count,
            "",
            kind=CORRECTNESS,
        ),
    ]
    for job in JOBS:
        section.checks += [
            Check(f"{job}: 1 worker / one process", ratio(f"{job}_w1", f"{job}_here"), "<=", 1.1),
            Check(
                f"{job}: speed-up of 2 workers over 1", ratio(f"{job}_w1", f"{job}_w2"), ">=", 1.1
            ),
        ]
    done = [
        f"{name.split('-')[0]}: "
        # Minus the one warm-up batch of each task every worker ran.
        + ", ".join(f"{t.split('.')[-1]} {n - 1}" for t, n in sorted(s.get("total", {}).items()))
        for name, s in sorted(stats.items())
    ]
    section.notes = [
        "SeaweedFS without the latency proxy; PostgreSQL; Redis broker and result backend; "
        "workers: celery -P threads -c 1 --prefetch-multiplier 1, two processes alive in "
        "every variant (1 worker: worker 0's own queue); verify 16 threads and export 8 per "
        "process (the defaults); speed-up = 1-worker seconds / 2-worker seconds.",
        f"Batches each worker ran (warm-up left out): {'; '.join(done) or '?'}.",
    ]
    return section
