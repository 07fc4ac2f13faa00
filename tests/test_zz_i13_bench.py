"""Throwaway: files/s of verify and export, one process vs Celery with 1 and 2 workers."""
import time
import pytest
from chunkfiles.dispatch import dispatch
from chunkfiles.exportstore import export_to_storage
from chunkfiles.models import File
from chunkfiles.move import move_storage, tally
from chunkfiles.tasks import checked_summary
from chunkfiles.verify import verify_files
from tests.celeryworkers import REDIS, Workers
from tests.test_celery import batches, bulk_files, stores  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)
N = 3000


def report(job, how, d):
    print(f"RESULT {job:7} {how:14} {d:6.2f} s {N / d:7.0f} files/s", flush=True)


def test_bench(stores, tmp_path):
    files = bulk_files(N, distinct=1500)
    ids = sorted(files)
    print("\nmove to bucket", tally(move_storage("bucket", workers=16))["moved"], flush=True)
    t = time.monotonic()
    r = checked_summary(verify_files(File.objects.all(), workers=16, dry_run=True))
    report("verify", "one process", time.monotonic() - t)
    assert r["checked"] == N and not r["problems"]
    t = time.monotonic()
    r = list(export_to_storage(ids, "bucket", "p0/", workers=8))
    report("export", "one process", time.monotonic() - t)
    for count in (1, 2):
        with Workers(REDIS, count, tmp_path, visibility=3600):
            t = time.monotonic()
            r = dispatch("chunkfiles.verify_files", batches(ids, 200, dry_run=True))
            report("verify", f"{count} worker(s)", time.monotonic() - t)
            assert r["checked"] == N and not r["problems"], r["errors"]
            t = time.monotonic()
            r = dispatch("chunkfiles.export_files", batches(ids, 200, alias="bucket", prefix=f"p{count}/"))
            report("export", f"{count} worker(s)", time.monotonic() - t)
            assert r["written"] == N, r
