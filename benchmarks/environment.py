"""What a benchmark runs against: SeaweedFS, the latency proxy and Django settings.

The parent process (``benchmarks.run``) owns SeaweedFS and the proxy; child
processes (``benchmarks.one``) only get a ``Spec`` and configure Django from
it, so parent and children agree on the database, the bucket and the keys.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
BUCKET = "chunkfiles-bench"
#: A tiny object every child reads before timing starts, to warm its connections.
WARMUP_KEY = "bench/warmup"
#: The whole test file stored as ONE object, for boto3's own transfer manager.
ONE_OBJECT_KEY = "bench/one-object.bin"


@dataclasses.dataclass(frozen=True)
class Spec:
    """Everything a child process needs; travels as JSON."""

    workdir: str
    endpoint_url: str  # the proxy: every measured request goes through it
    access_key: str
    secret_key: str
    blob_size: int
    size: int
    workers: int
    readahead: int
    source_path: str = ""  # the test file's bytes, for uploads
    file_id: int = 0  # the File holding the read test file
    index_file_id: int = 0  # a File of many small blobs: opening and random access
    database: str = ""  # a PostgreSQL database (127.0.0.1:5432) instead of SQLite
    files: int = 0  # how many bulk files (the Celery suite)
    batch: int = 0  # files per Celery task
    queue: str = ""  # the Celery queue a dispatcher sends to
    prefix: str = ""  # the storage prefix an export writes under

    @property
    def db_path(self) -> str:
        return os.path.join(self.workdir, "bench.sqlite3")

    @property
    def temp_dir(self) -> str:
        return os.path.join(self.workdir, "tmp")

    @property
    def blobs(self) -> int:
        return -(-self.size // self.blob_size)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Spec:
        return cls(**json.loads(text))

    def replace(self, **changes: Any) -> Spec:
        return dataclasses.replace(self, **changes)


def storage_options(spec: Spec, endpoint_url: str | None = None) -> dict[str, Any]:
    """django-storages S3 OPTIONS for the benchmark bucket."""
    from testproject.seaweed import s3_storage_options

    return s3_storage_options(
        BUCKET, endpoint_url or spec.endpoint_url, spec.access_key, spec.secret_key
    )


#: Where ``Spec.database`` lives: the PostgreSQL server the tests use too.
POSTGRESQL = {"USER": "postgres", "HOST": "127.0.0.1", "PORT": "5432"}


def database_settings(spec: Spec) -> dict[str, Any]:
    """``DATABASES["default"]``: the spec's PostgreSQL database, or SQLite in the workdir.

    Processes that must share the rows (Celery workers) need PostgreSQL:
    SQLite locks the whole file across processes.
    """
    if spec.database:
        return {"ENGINE": "django.db.backends.postgresql", "NAME": spec.database, **POSTGRESQL}
    return {"ENGINE": "django.db.backends.sqlite3", "NAME": spec.db_path}


def chunkfiles_settings(spec: Spec, endpoint_url: str | None = None) -> dict[str, Any]:
    """``STORAGES`` and ``CHUNKFILES`` of the benchmark project (by setting name)."""
    return {
        "STORAGES": {
            "default": {
                "BACKEND": "django.core.files.storage.FileSystemStorage",
                "OPTIONS": {"location": os.path.join(spec.workdir, "media")},
            },
            "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
            "blobs": {
                "BACKEND": "storages.backends.s3.S3Storage",
                "OPTIONS": storage_options(spec, endpoint_url),
            },
        },
        "CHUNKFILES": {
            "STORAGE": "blobs",
            "BLOB_SIZE": spec.blob_size,
            "UPLOAD_WORKERS": spec.workers,
            "PREFETCH_WORKERS": spec.workers,
            "READAHEAD": spec.readahead,
            "TEMP_DIR": spec.temp_dir,
        },
    }


def configure_django(spec: Spec, endpoint_url: str | None = None) -> None:
    """``settings.configure()`` for the benchmark project, then ``django.setup()``."""
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="chunkfiles-benchmark",
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "chunkfiles"],
        DATABASES={"default": database_settings(spec)},
        **chunkfiles_settings(spec, endpoint_url),
    )
    django.setup()


def s3_client(spec: Spec, endpoint_url: str | None = None, **config: Any) -> Any:
    """A plain boto3 client with botocore defaults except ``config``."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url or spec.endpoint_url,
        aws_access_key_id=spec.access_key,
        aws_secret_access_key=spec.secret_key,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, **config),
    )


def write_random_file(path: str, size: int) -> None:
    """``size`` random bytes, written a MiB at a time (never all in memory)."""
    with open(path, "wb") as out:
        left = size
        while left:
            step = min(MIB, left)
            out.write(os.urandom(step))
            left -= step


def _raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def servers(latency: float) -> Iterator[tuple[Any, Any, str]]:
    """SeaweedFS, a bucket and the proxy; yields (seaweed, proxy, workdir).

    Cleanup runs on any exit: an exception, Ctrl-C, and SIGTERM/SIGHUP
    (turned into SystemExit here). SeaweedFS runs in its own session, so
    Ctrl-C in the terminal never reaches it: only this cleanup stops it.
    """
    from testproject.seaweed import SeaweedS3

    from .faultproxy import CuttingProxy

    previous = {sig: signal.signal(sig, _raise_exit) for sig in (signal.SIGTERM, signal.SIGHUP)}
    workdir = tempfile.mkdtemp(prefix="chunkfiles-bench-")
    try:
        with contextlib.ExitStack() as stack:
            stack.callback(shutil.rmtree, workdir, ignore_errors=True)
            weed = SeaweedS3()
            # Registered before start(): a Ctrl-C during startup still stops it.
            stack.push(functools.partial(_stop_weed, weed))
            weed.start()
            weed.create_bucket(BUCKET)
            proxy = stack.enter_context(CuttingProxy("127.0.0.1", weed.port, latency=latency))
            os.makedirs(os.path.join(workdir, "tmp"))
            yield weed, proxy, workdir
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop_weed(weed: Any, exc_type: type[BaseException] | None, *exc: object) -> None:
    if exc_type is not None and exc_type is not KeyboardInterrupt:
        # The workdir (and its log) is about to go: show why the server failed.
        with contextlib.suppress(OSError):
            tail = Path(weed.workdir, "weed.log").read_text(errors="replace").splitlines()[-20:]
            print("weed.log (last lines):", *tail, sep="\n  ", file=sys.stderr)
    # `weed server` ignores SIGTERM for a long time; the data is throwaway,
    # so kill it outright rather than wait for SeaweedS3.stop()'s grace period.
    if weed.process is not None and weed.process.poll() is None:
        weed.process.kill()
        weed.process.wait()
    weed.stop()


def machine_info() -> list[str]:
    """Lines describing where the numbers come from."""
    import boto3
    import botocore
    import django

    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    from testproject.seaweed import weed_binary

    try:
        weed = (
            subprocess.run([weed_binary(), "version"], capture_output=True, text=True, timeout=30)
            .stdout.strip()
            .splitlines()[0]
        )
    except (OSError, IndexError, subprocess.SubprocessError):
        weed = "weed version unknown"
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        f"machine: {cpus} CPUs ({model}), {platform.system()} {platform.release()}",
        f"python {platform.python_version()}, django {django.get_version()}, "
        f"boto3 {boto3.__version__}, botocore {botocore.__version__}",
        f"server: {weed}",
    ]
