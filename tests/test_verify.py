"""chunkfiles_verify: finds missing and corrupt objects, marks them lost, and the heal."""

from __future__ import annotations

import io
import os
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from chunkfiles.models import File, FileBlob, FileBlobIndex
from chunkfiles.verify import verify_blobs, verify_files

pytestmark = pytest.mark.django_db

KIB = 1024


def store(name: str, data: bytes, blob_size: int = 4 * KIB) -> File:
    file = File.objects.create(name=name, type="t")
    file.putfile(io.BytesIO(data), blob_size=blob_size)
    return file


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("chunkfiles_verify", *args, stdout=out, stderr=err)
    except CommandError as exc:
        exc.stderr = err.getvalue()  # type: ignore[attr-defined]  # what the report said
        raise
    return out.getvalue(), err.getvalue()


def blob_at(file: File, offset: int) -> FileBlob:
    return FileBlobIndex.objects.select_related("blob").get(file=file, offset=offset).blob


def content(file: File) -> bytes:
    with file.getfile() as fp:
        return fp.read()


class TestVerify:
    def test_clean_store(self, storage: Any) -> None:
        store("a", os.urandom(10 * KIB))
        store("b", b"")
        stdout, stderr = run("--blobs", "--files")
        assert "Verified 3 blob(s)" in stdout and "2 file(s)" in stdout
        assert "0 with problems" in stdout and stderr == ""

    def test_missing_object_reported_and_marked_lost(self, storage: Any) -> None:
        file = store("a.bin", os.urandom(10 * KIB))
        blob = blob_at(file, 4 * KIB)
        storage.remove(blob.path)
        with pytest.raises(CommandError, match="1 problem") as caught:
            run()
        report = caught.value.stderr
        assert f"file {file.pk} ('a.bin')" in report
        assert f"blob {blob.checksum} at offset {4 * KIB}" in report
        assert f"in storage 'blobs' as {blob.path!r}" in report
        assert "missing" in report and "(marked lost)" in report
        assert list(FileBlob.objects.lost().values_list("pk", flat=True)) == [blob.pk]

    def test_corrupt_object(self, storage: Any) -> None:
        file = store("a.bin", os.urandom(10 * KIB))
        blob = blob_at(file, 0)
        storage.corrupt(blob.path, b"x" * (4 * KIB))
        with pytest.raises(CommandError) as caught:
            run("--files")
        report = caught.value.stderr
        assert f"file {file.pk} ('a.bin') blob {blob.checksum} at offset 0" in report
        assert "corrupt" in report
        assert FileBlob.objects.lost().filter(pk=blob.pk).exists()

    def test_dry_run_marks_nothing(self, storage: Any) -> None:
        file = store("a.bin", os.urandom(5 * KIB))
        storage.remove(blob_at(file, 0).path)
        with pytest.raises(CommandError):
            run("--dry-run", "--blobs", "--files")
        assert not FileBlob.objects.lost().exists()

    def test_file_checksum_and_index_problems(self, storage: Any) -> None:
        a = store("a", os.urandom(9 * KIB))
        b = store("b", os.urandom(9 * KIB))
        File.objects.filter(pk=a.pk).update(checksum="0" * 40)
        FileBlobIndex.objects.filter(file=b, offset=4 * KIB).delete()
        problems = [p for r in verify_files(File.objects.all(), workers=2) for p in r.problems]
        assert sorted((p.file_id, p.kind) for p in problems) == [
            (a.pk, "checksum"),
            (b.pk, "index"),
        ]
        assert "SHA-1" in str(problems[0]) or "SHA-1" in str(problems[1])

    def test_heal_by_reupload(self, storage: Any) -> None:
        data = os.urandom(12 * KIB)
        file = store("a.bin", data)
        blob = blob_at(file, 8 * KIB)
        storage.remove(blob.path)
        with pytest.raises(CommandError):
            run()
        with pytest.raises(OSError):
            content(file)
        store("copy.bin", data)  # same bytes: the lost blob is written again
        assert content(file) == data
        run("--blobs", "--files")  # clean again
        assert not FileBlob.objects.lost().exists()

    def test_lost_blob_found_intact_is_unmarked(self, storage: Any) -> None:
        file = store("a.bin", os.urandom(5 * KIB))
        FileBlob.objects.filter(pk=blob_at(file, 0).pk).mark_lost()
        stdout, _ = run()
        assert "1 lost blob(s) found intact again" in stdout
        assert not FileBlob.objects.lost().exists()

    def test_since(self, storage: Any) -> None:
        from django.utils import timezone

        old = store("old", os.urandom(KIB))
        storage.remove(blob_at(old, 0).path)
        FileBlob.objects.update(timestamp=timezone.now() - timezone.timedelta(days=3))
        stdout, _ = run("--since", (timezone.now() - timezone.timedelta(days=1)).isoformat())
        assert "Verified 0 blob(s)" in stdout
        with pytest.raises(CommandError, match="ISO date"):
            run("--since", "yesterday")

    def test_unreferenced_blob_problem(self, storage: Any) -> None:
        file = store("a", os.urandom(KIB))
        blob = blob_at(file, 0)
        file.delete()
        storage.remove(blob.path)
        results = list(verify_blobs(FileBlob.objects.all(), workers=1))
        assert [str(p) for r in results for p in r.problems] == [
            f"blob {blob.checksum} in storage 'blobs' as {blob.path!r}: missing: "
            f"{results[0].problems[0].detail.split(' (used')[0]} (used by no file) (marked lost)"
        ]
