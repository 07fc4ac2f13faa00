"""What suites share: the servers, the stored test files and measuring a variant.

``Bench`` is handed to every suite (``benchmarks.run.SUITES``). It stores test
files once and remembers them (``stored_file(blob_size)``), runs one variant in
a fresh child process (``measure``) and counts the requests of its timed part
at the proxy. A child that fails is logged and recorded as a failure (a
correctness problem, e.g. wrong bytes), and the benchmark goes on.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

from .environment import (
    BUCKET,
    MIB,
    ONE_OBJECT_KEY,
    WARMUP_KEY,
    Spec,
    s3_client,
    write_random_file,
)
from .one import READY, RESULT

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
#: A child that takes longer than this is stuck, not slow.
CHILD_TIMEOUT = 1800.0


@dataclasses.dataclass
class Sample:
    """One variant measured once, in its own process."""

    seconds: float
    rss_growth: int
    counts: dict[str, int]
    extras: dict[str, float]

    def reads(self) -> int:
        return self.counts.get("GET", 0) + self.counts.get("HEAD", 0)


def log(message: str) -> None:
    """Progress, on stderr (the report goes to stdout)."""
    print(message, file=sys.stderr, flush=True)


def rotated(items: list[T], by: int) -> list[T]:
    """``items`` started at ``by``: each run measures in another order."""
    if not items:
        return items
    by %= len(items)
    return items[by:] + items[:by]


def _read_until(stream: IO[str], prefix: str) -> str:
    for line in stream:
        if line.startswith(prefix):
            return line[len(prefix) :]
    raise RuntimeError(f"benchmark child ended before {prefix.strip()!r}")


@dataclasses.dataclass
class Bench:
    """The servers, the base ``Spec`` and what has been stored; see the module docstring."""

    args: argparse.Namespace
    spec: Spec
    weed: Any
    proxy: Any
    failures: list[str] = dataclasses.field(default_factory=list)
    _files: dict[tuple[int, int], int] = dataclasses.field(default_factory=dict)
    _one_object = False

    @property
    def direct_url(self) -> str:
        """SeaweedFS itself: preparation is not measured, so it skips the proxy."""
        return str(self.weed.endpoint_url)

    def workfile(self, name: str) -> str:
        return os.path.join(self.spec.workdir, name)

    # -- stored test files ---------------------------------------------------------

    def stored_file(self, blob_size: int, size: int | None = None) -> Spec:
        """The spec of a test file of ``size`` bytes stored as ``blob_size`` blobs (once)."""
        spec = self.spec.replace(blob_size=blob_size, size=size or self.spec.size)
        if (blob_size, spec.size) not in self._files:
            from chunkfiles.models import File

            source = self.workfile("read-source.bin")
            write_random_file(source, spec.size)
            f = File.objects.create(name=f"bench-{blob_size}.bin", type="bench")
            with open(source, "rb") as fh:
                f.putfile(fh, blob_size=blob_size, workers=spec.workers)
            if not self._one_object and spec.size == self.spec.size:
                # Any one blob size's bytes serve boto3's one-object variant.
                client = s3_client(spec, endpoint_url=self.direct_url)
                try:
                    client.upload_file(source, BUCKET, ONE_OBJECT_KEY)
                finally:
                    client.close()
                self._one_object = True
            os.remove(source)  # the blobs hold the bytes now; save the disk
            self._files[blob_size, spec.size] = f.pk
        return spec.replace(file_id=self._files[blob_size, spec.size])

    def index_file(self, blobs: int, blob_size: int) -> Spec:
        """A file of ``blobs`` index rows over one stored blob of ``blob_size`` bytes.

        One object serves every row (a file may repeat a blob), so a 10,000-blob
        file costs one PUT and one bulk insert instead of 10,000 uploads.
        """
        from chunkfiles.models import File, FileBlobIndex

        f = File.objects.create(name="many-blobs.bin", type="bench")
        f.putfile(io.BytesIO(os.urandom(blob_size)), blob_size=blob_size)
        blob = f.blobs.get()
        FileBlobIndex.objects.filter(file=f).delete()
        FileBlobIndex.objects.bulk_create(
            [FileBlobIndex(file=f, blob=blob, offset=i * blob_size) for i in range(blobs)],
            batch_size=2000,
        )
        File.objects.filter(pk=f.pk).update(size=blobs * blob_size)
        return self.spec.replace(index_file_id=f.pk, blob_size=blob_size, size=blobs * blob_size)

    # -- measuring -----------------------------------------------------------------

    def measure(
        self,
        spec: Spec,
        variant: str,
        label: str = "",
        faults: Callable[[Any], None] | None = None,
    ) -> Sample | None:
        """Run ``variant`` in a fresh process; None (and a recorded failure) if it failed.

        ``faults(proxy)`` is called once the child is prepared, so only the
        timed part meets them; the proxy is healed afterwards.
        """
        try:
            sample = self._measure(spec, variant, faults)
        except Exception as exc:
            message = f"{variant} ({label or f'{spec.blob_size / MIB:g} MiB blobs'}): {exc}"
            log(f"FAILED {message}")
            self.failures.append(message)
            return None
        counts = ", ".join(f"{n} {m}" for m, n in sorted(sample.counts.items()))
        log(
            f"  {label:<12} {variant:<17} {sample.seconds:7.2f} s  "
            f"RSS +{sample.rss_growth / MIB:.0f} MiB  [{counts}]"
        )
        return sample

    def _measure(self, spec: Spec, variant: str, faults: Callable[[Any], None] | None) -> Sample:
        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        )
        child = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.one"],
            cwd=ROOT,
            env=env,
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert child.stdin is not None and child.stdout is not None
        try:
            child.stdin.write(json.dumps({"spec": spec.to_json(), "variant": variant}) + "\n")
            child.stdin.flush()
            _read_until(child.stdout, READY)
            self.proxy.reset_counts()  # only the timed part's requests count
            if faults is not None:
                faults(self.proxy)
            child.stdin.write("go\n")
            child.stdin.flush()
            result = json.loads(_read_until(child.stdout, RESULT))
            counts = dict(self.proxy.counts())
            cuts = self.proxy.cuts
            if child.wait(CHILD_TIMEOUT) != 0:
                raise RuntimeError(f"child exited with {child.returncode}")
        finally:
            self.proxy.heal()
            if child.poll() is None:
                child.kill()
            child.wait()
            child.stdin.close()
            child.stdout.close()
        extras = {k: v for k, v in result.items() if k not in ("seconds", "rss_growth")}
        if cuts:
            extras["cuts"] = cuts
        return Sample(result["seconds"], result["rss_growth"], counts, extras)


def prepare(spec: Spec, direct_url: str) -> None:
    """Configure Django in this process (against SeaweedFS directly) and create the schema."""
    from django.core.management import call_command

    from .environment import configure_django

    configure_django(spec, endpoint_url=direct_url)
    call_command("migrate", run_syncdb=True, verbosity=0)
    client = s3_client(spec, endpoint_url=direct_url)
    try:
        client.put_object(Bucket=BUCKET, Key=WARMUP_KEY, Body=b"warm")
    finally:
        client.close()
