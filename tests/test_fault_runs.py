"""Seeded fault runs against the real SeaweedFS through ``TcpProxy`` (issue 7).

- Reads: 40 files of 32 blobs (1,280 blob reads per mode, 5,120 in all) with
  a seeded 10% of GET responses cut mid-body. No read may return a wrong
  byte, and at least 99% of file reads must succeed: broken bodies are
  fetched again. The extra GETs that costs are counted and printed.
- Uploads: PUTs whose response is dropped after the server stored the
  object are retried; afterwards no blob row names a missing object, every
  stored file reads back, and every object is either named by a row or
  listed under ``BLOB_PREFIX`` where orphan collection looks.

Which requests are cut is a hash of the seed and the request's identity (the
blob for a GET, the arrival number for a PUT), so runs are reproducible.
The settings are the shipped defaults (``ATTEMPTS`` 3) except ``BACKOFF``
for the reads, shortened to keep the run brief: it spaces the retries, it
does not change how many there are.
"""

from __future__ import annotations

import contextlib
import io
import random
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.test import override_settings

from chunkfiles.conf import chunkfiles_settings
from chunkfiles.exceptions import BlobWriteError
from chunkfiles.models import File, FileBlob, FileBlobIndex
from chunkfiles.storage import blob_store
from testproject.tcpproxy import TcpProxy

from .conftest import BUCKET, MODES, s3_options

pytestmark = pytest.mark.django_db

SEED = 7
BLOB = 16 * 1024
FILES = 40
BLOBS_PER_FILE = 32
#: Share of GET responses cut mid-body.
CUT_FRACTION = 0.10
#: Cut points: past SeaweedFS's response head (a few hundred bytes), before the body's end.
CUT_RANGE = (1024, BLOB)


@contextlib.contextmanager
def proxied_blobs(s3_storage: Any, **chunkfiles: Any) -> Iterator[TcpProxy]:
    """A proxy to SeaweedFS, made the endpoint of the ``blobs`` storage."""
    with TcpProxy("127.0.0.1", s3_storage.server.port) as proxy:
        options = s3_options(s3_storage.server, s3_storage.location, proxy.endpoint_url)
        storages = {
            **settings.STORAGES,
            "blobs": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": options},
        }
        with override_settings(STORAGES=storages, CHUNKFILES={"STORAGE": "blobs", **chunkfiles}):
            yield proxy


@pytest.fixture
def proxy(s3_storage: Any) -> Iterator[TcpProxy]:
    with proxied_blobs(s3_storage) as proxy:
        yield proxy


def key_path(s3_storage: Any, name: str) -> str:
    """The request path of object ``name`` (path-style addressing)."""
    return f"/{BUCKET}/{s3_storage.location}/{name}"


def wrong_bytes(got: bytes, data: bytes) -> int:
    """Bytes of ``got`` that differ from ``data``, counting a length difference."""
    return sum(a != b for a, b in zip(got, data, strict=False)) + abs(len(got) - len(data))


def upload_files(count: int, blobs: int, seed: int) -> list[tuple[File, bytes]]:
    rng = random.Random(seed)
    stored = []
    for i in range(count):
        data = rng.randbytes(blobs * BLOB)
        f = File(name=f"f{i}.bin", type="test")
        f.putfile(io.BytesIO(data), blob_size=BLOB)
        stored.append((f, data))
    return stored


class TestReadsWithBodiesCutMidStream:
    def test_no_wrong_byte_and_99_percent_of_file_reads_succeed(
        self, s3_storage: Any, capsys: pytest.CaptureFixture[str]
    ) -> None:
        files = upload_files(FILES, BLOBS_PER_FILE, SEED)  # straight to SeaweedFS
        # A GET's identity is its blob's place (not its random name), so each
        # blob meets the same faults on every run and in any order.
        blob_ids = {
            key_path(s3_storage, str(row.blob.path)): f"GET {row.file.name}@{row.offset}"
            for row in FileBlobIndex.objects.select_related("blob", "file")
        }
        assert len(blob_ids) == FILES * BLOBS_PER_FILE

        def identify(method: str, target: str) -> str:
            return blob_ids.get(urlsplit(target).path, f"{method} {target}")

        lines = []
        totals = {"reads": 0, "ok": 0, "wrong_bytes": 0}
        with proxied_blobs(s3_storage, BACKOFF=0.01) as proxy:
            attempts = chunkfiles_settings.ATTEMPTS
            for k, mode in enumerate(MODES):
                proxy.reset_counts()
                proxy.cut_responses(
                    CUT_FRACTION,
                    SEED * 100 + k,
                    lambda method, target: method == "GET",
                    identify=identify,
                    min_bytes=CUT_RANGE[0],
                    max_bytes=CUT_RANGE[1],
                )
                ok = failed = wrong = 0
                for f, data in files:
                    try:
                        with f.getfile(**MODES[mode]) as fh:
                            got = fh.read()
                    except OSError:
                        failed += 1
                        continue
                    ok += got == data
                    wrong += wrong_bytes(got, data)
                gets, cuts = proxy.counts()["GET"], proxy.cuts
                proxy.heal()
                blob_reads = FILES * BLOBS_PER_FILE
                lines.append(
                    f"{mode:>9}: {ok}/{FILES} files read, {failed} failed, "
                    f"{wrong} wrong bytes; {gets} GETs for {blob_reads} blobs "
                    f"({gets - blob_reads:+d} extra), {cuts} cut mid-body"
                )
                # The faults were real: about one GET in ten was cut.
                assert 0.05 * blob_reads < cuts < 0.15 * blob_reads, lines[-1]
                totals["reads"] += FILES
                totals["ok"] += ok
                totals["wrong_bytes"] += wrong
        # Each blob fails only if all its attempts are cut: what to expect per file.
        expected = (1 - CUT_FRACTION**attempts) ** BLOBS_PER_FILE
        lines.append(
            f"{totals['ok']}/{totals['reads']} file reads succeeded; with ATTEMPTS={attempts} "
            f"the expected share is {expected:.2%}"
        )
        report = "\n".join(lines)
        with capsys.disabled():
            print(f"\nseeded fault run:\n{report}")
        assert totals["wrong_bytes"] == 0, report
        assert totals["ok"] >= 0.99 * totals["reads"], report
        # One seed is one sample: it may pass by luck (seeds 1, 2 and 3 gave
        # 157, 154 and 156 of 160 at ATTEMPTS=3). The promise needs the retries
        # to make it on average too.
        assert expected >= 0.99, report


class TestPutsWhoseAnswerIsLost:
    @pytest.mark.parametrize("fraction", [0.2, 0.6])
    def test_nothing_is_left_that_orphan_collection_would_not_find(
        self,
        s3_storage: Any,
        proxy: TcpProxy,
        fraction: float,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        # The n-th PUT is cut or not by the seed; its answer is dropped after
        # SeaweedFS stored the object (0 response bytes get through).
        proxy.cut_responses(
            fraction, SEED, lambda method, target: method == "PUT", identify=lambda m, t: m
        )
        rng = random.Random(SEED)
        outcomes: list[tuple[str, bytes, BaseException | None]] = []
        for i in range(16):
            data = rng.randbytes(8 * BLOB)
            f = File(name=f"put{i}.bin", type="test")
            try:
                f.putfile(io.BytesIO(data), blob_size=BLOB)
            except OSError as exc:
                outcomes.append((f.name, data, exc))
            else:
                outcomes.append((f.name, data, None))
        puts, cuts = proxy.counts()["PUT"], proxy.cuts
        proxy.heal()

        errors = [exc for _, _, exc in outcomes if exc is not None]
        assert all(isinstance(exc, BlobWriteError) for exc in errors), errors
        assert cuts > 0
        # Every upload that returned reads back; the failed ones left no rows.
        for name, data, error in outcomes:
            if error is None:
                with File.objects.get(name=name).getfile() as fh:
                    assert fh.read() == data
            else:
                assert not File.objects.filter(name=name).exists()
        # No row names a missing object.
        objects = set(s3_storage.object_names())
        rows = set(FileBlob.objects.values_list("path", flat=True))
        assert rows <= objects, f"rows without objects: {sorted(map(str, rows - objects))[:5]}"
        assert FileBlobIndex.objects.filter(blob__path__in=rows).count() == sum(
            8 for *_, exc in outcomes if exc is None
        )
        # Every object is named by a row or is where orphan collection lists objects.
        prefix = chunkfiles_settings.BLOB_PREFIX
        listed = {name for name, _ in blob_store("blobs").iter_objects(prefix)}
        assert objects == listed, "objects outside BLOB_PREFIX"
        orphans = objects - rows
        with capsys.disabled():
            print(
                f"\nPUT answers dropped ({fraction:.0%}): {len(outcomes) - len(errors)}/"
                f"{len(outcomes)} uploads stored, {len(errors)} raised BlobWriteError; "
                f"{puts} PUTs for {len(rows) + len(orphans)} objects, {cuts} answers dropped, "
                f"{len(orphans)} orphans left for collection"
            )


class TestSeededCuts:
    """The proxy's ``cut_responses``, which the runs above rely on."""

    def test_the_same_seed_cuts_the_same_requests(self, s3_storage: Any) -> None:
        key = f"{s3_storage.location}/probe"
        direct = s3_storage.server.client()
        try:
            direct.put_object(Bucket=BUCKET, Key=key, Body=bytes(BLOB))
        finally:
            direct.close()

        def run(seed: int) -> tuple[list[str], int]:
            outcomes = []
            with TcpProxy("127.0.0.1", s3_storage.server.port) as proxy:
                proxy.cut_responses(0.3, seed, min_bytes=CUT_RANGE[0], max_bytes=CUT_RANGE[1])
                client = _client(s3_storage, proxy.endpoint_url)
                try:
                    for _ in range(20):
                        try:
                            body = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
                        except Exception:
                            outcomes.append("cut")
                        else:
                            outcomes.append("ok" if body == bytes(BLOB) else "WRONG")
                finally:
                    client.close()
                return outcomes, proxy.cuts

        first, cuts = run(1)
        assert run(1) == (first, cuts)
        assert cuts == first.count("cut") and 0 < cuts < 20
        assert "WRONG" not in first
        assert run(2)[0] != first

    def test_a_put_whose_answer_is_dropped_was_stored(self, s3_storage: Any) -> None:
        key = f"{s3_storage.location}/stored-anyway"
        with TcpProxy("127.0.0.1", s3_storage.server.port) as proxy:
            proxy.cut_responses(1.0, SEED, lambda method, target: method == "PUT")
            client = _client(s3_storage, proxy.endpoint_url)
            try:
                with pytest.raises(Exception, match=r"(?i)connection|closed|reset"):
                    client.put_object(Bucket=BUCKET, Key=key, Body=b"payload")
            finally:
                client.close()
            assert proxy.cuts == 1
        direct = s3_storage.server.client()
        try:
            assert direct.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"payload"
        finally:
            direct.close()


def _client(s3_storage: Any, endpoint_url: str) -> Any:
    """A boto3 client through ``endpoint_url`` that makes one attempt per call."""
    import boto3
    from botocore.config import Config

    server = s3_storage.server
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}),
    )
