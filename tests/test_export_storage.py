"""``chunkfiles_export --storage ALIAS --prefix P``: files into a bucket or another storage.

The destination Celery workers share (``--celery`` is in ``test_celery``); here
one process writes to SeaweedFS and to a filesystem storage, small files
(one PUT) and large ones (django-storages' multipart upload), and shows that a
broken file leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.storage import storages
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from chunkfiles import exportstore
from chunkfiles.exportstore import export_to_storage, storage_target
from chunkfiles.models import File, FileBlob
from tests.twostores import Stores, two_storages

pytestmark = pytest.mark.django_db(transaction=True)

KIB = 1024
#: name -> bytes; blobs of 4 KiB, so "big" has five and "dup" shares "small"'s blob.
CONTENTS = {
    "small.txt": b"hello\n",
    "docs/../../escape.bin": os.urandom(3 * KIB),
    "big/multi.bin": os.urandom(18 * KIB + 5),
    "empty": b"",
    "dup.txt": b"hello\n",
}


@pytest.fixture
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    """``disk`` holds the blobs, ``bucket`` is SeaweedFS, ``exports`` a plain directory."""
    with two_storages(request.getfixturevalue("seaweed"), tmp_path) as setup:
        extra = {
            "exports": {
                "BACKEND": "django.core.files.storage.FileSystemStorage",
                "OPTIONS": {"location": str(tmp_path / "exports")},
            }
        }
        with override_settings(STORAGES={**settings.STORAGES, **extra}):
            yield setup


def stored() -> dict[int, bytes]:
    made = {}
    for name, data in CONTENTS.items():
        file = File.objects.create(name=name, type="t")
        file.putfile(io.BytesIO(data), blob_size=4 * KIB)
        made[file.pk] = data
    return made


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("chunkfiles_export", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def read(alias: str, name: str) -> bytes:
    with storages[alias].open(name) as fh:
        return bytes(fh.read())


def listing(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(params=["bucket", "exports"])
def alias(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["one PUT", "multipart"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Small files through the blob store's PUT, or all through ``Storage.save``."""
    if request.param == "multipart":
        monkeypatch.setattr(exportstore, "SMALL_FILE", 0)
    return str(request.param)


class TestExportToStorage:
    def test_every_file_lands_under_the_prefix_and_a_rerun_resumes(
        self, stores: Stores, alias: str, path: str, tmp_path: Path
    ) -> None:
        files = stored()
        manifest = tmp_path / "manifest.jsonl"
        out, err = run(
            "--all", "--storage", alias, "--prefix", "exp/2026", "--verify",
            "--manifest", str(manifest),
        )  # fmt: skip
        assert err == ""
        assert out.startswith(f"Exported 5 file(s), 21.0\xa0KB, to storage {alias!r}")
        assert "under 'exp/2026/' (0 skipped, 0 failed of 5 selected)" in out
        lines = [json.loads(line) for line in manifest.read_text().splitlines()]
        assert sorted(line["id"] for line in lines) == sorted(files)
        for line in lines:
            # Named by id, then the file's name made safe ("../" cannot climb out).
            assert line["path"].startswith(f"exp/2026/{line['id']}/"), line
            assert ".." not in line["path"].split("/")
            assert read(alias, line["path"]) == files[line["id"]]
            assert line["status"] == "written"
        if alias == "exports":
            # Nothing outside the prefix, nothing but the five files.
            found = listing(Path(storages[alias].location))
            assert sorted(found) == sorted(line["path"] for line in lines)

        # Run again: every file is there with its size, nothing is rewritten.
        before = {line["path"]: storages[alias].get_modified_time(line["path"]) for line in lines}
        out, _ = run("--all", "--storage", alias, "--prefix", "exp/2026/")
        assert "(5 skipped, 0 failed of 5 selected)" in out and out.startswith("Exported 0 ")
        after = {name: storages[alias].get_modified_time(name) for name in before}
        assert after == before
        # A file cut short (a worker killed mid-write on a disk) is written again.
        victim = next(line for line in lines if line["name"] == "big/multi.bin")
        storages[alias].delete(victim["path"])
        storages[alias].save(victim["path"], io.BytesIO(b"partial"))
        out, _ = run("--all", "--storage", alias, "--prefix", "exp/2026")
        assert out.startswith("Exported 1 file(s)") and "(4 skipped" in out
        assert read(alias, victim["path"]) == files[victim["id"]]
        # --overwrite writes everything again.
        out, _ = run("--all", "--storage", alias, "--prefix", "exp/2026", "--overwrite")
        assert out.startswith("Exported 5 file(s)")

    def test_selection_and_no_prefix(self, stores: Stores) -> None:
        files = stored()
        big = File.objects.get(name="big/multi.bin")
        out, _ = run("--name", "big/*", "--storage", "bucket")
        assert out.startswith("Exported 1 file(s)") and "to storage 'bucket' (" in out
        assert read("bucket", f"{big.pk}/big/multi.bin") == files[big.pk]
        assert set(stores.etags(f"{big.pk}/")) == {f"{big.pk}/big/multi.bin"}

    def test_a_broken_file_stops_the_export_and_leaves_no_partial_object(
        self, stores: Stores, alias: str, path: str
    ) -> None:
        files = stored()
        big = File.objects.get(name="big/multi.bin")
        # Its third blob (offset 8 KiB) is gone from the disk.
        third = FileBlob.objects.get(fileblobindex__file=big, fileblobindex__offset=8 * KIB)
        stores.by_alias["disk"].remove(str(third.path))
        with pytest.raises(CommandError) as caught:
            run("--all", "--storage", alias, "--prefix", "exp")
        message = str(caught.value)
        assert "\n" not in message
        assert f"file {big.pk} failed" in message and str(third.checksum) in message
        assert "offset 8192" in message
        assert all(not name.startswith(f"exp/{big.pk}/") for name in self.names(alias, stores)), (
            "a partial object was left"
        )

        # --keep-going: the others are exported, the broken one is reported, exit 1.
        err = io.StringIO()
        with pytest.raises(CommandError, match="1 problem"):
            call_command(
                "chunkfiles_export", "--all", "--storage", alias, "--prefix", "exp",
                "--keep-going", stdout=io.StringIO(), stderr=err,
            )  # fmt: skip
        assert err.getvalue().startswith(f"file {big.pk} ('big/multi.bin') failed: ")
        names = self.names(alias, stores)
        assert not [n for n in names if n.startswith(f"exp/{big.pk}/")]
        assert len(names) == len(files) - 1

    @staticmethod
    def names(alias: str, stores: Stores) -> list[str]:
        if alias == "bucket":
            return list(stores.etags(""))
        return list(listing(Path(storages[alias].location)))

    def test_verify_catches_a_row_whose_blobs_are_not_its_content(
        self, stores: Stores, alias: str, path: str
    ) -> None:
        stored()
        big = File.objects.get(name="big/multi.bin")
        # The blobs are sound (each checks against its SHA-256), the row is wrong.
        File.objects.filter(pk=big.pk).update(checksum=hashlib.sha1(b"other").hexdigest())
        with pytest.raises(CommandError, match=f"file {big.pk} failed: .*content SHA-1"):
            run("--all", "--storage", alias, "--verify")
        assert not [n for n in self.names(alias, stores) if n.startswith(f"{big.pk}/")]
        # Without --verify the blobs' own checks pass and the bytes are exported.
        out, _ = run("--id", str(big.pk), "--storage", alias)
        assert out.startswith("Exported 1 file(s)")


class TestProgress:
    def test_the_bar_counts_every_byte_once(self, stores: Stores) -> None:
        class Terminal(io.StringIO):
            def isatty(self) -> bool:
                return True

        stored()
        err = Terminal()
        call_command("chunkfiles_export", "--all", "--storage", "bucket",
                     stdout=io.StringIO(), stderr=err)  # fmt: skip
        assert "5 files" in err.getvalue() and "21.0k/21.0k" in err.getvalue()
        # Run again: the skipped files fill the bar too.
        err = Terminal()
        call_command("chunkfiles_export", "--all", "--storage", "bucket",
                     stdout=io.StringIO(), stderr=err)  # fmt: skip
        assert "21.0k/21.0k" in err.getvalue()


class TestRefused:
    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--prefix", "p"], "--prefix needs --storage ALIAS"),
            (["--storage", "bucket", "--output", "x"], "exactly one of"),
            (["--storage", "nowhere"], "unknown storage alias 'nowhere'"),
            (["--storage", "bucket", "--prefix", "../up"], "must be a relative path"),
            (["--storage", "bucket", "--prefix", "/abs"], "must be a relative path"),
            (["--storage", "bucket", "--prefix", "a//b"], "must be a relative path"),
            (["--storage", "bucket", "--prefix", "a\\b"], "must be a relative path"),
            (["--storage", "disk", "--prefix", "chunkfiles/x"], "overlaps"),
            (["--storage", "disk", "--prefix", "chunk"], None),  # "chunk/1/..." is not a blob
            (["--storage", "bucket", "--parents"], "--parents and --fsync need --output"),
            (["--output", "x", "--celery"], "--celery needs --storage ALIAS"),
            (["--storage", "bucket", "--celery", "--manifest", "m"], "not available with"),
        ],
    )
    def test_bad_destinations_fail_in_one_line(
        self, stores: Stores, args: list[str], message: str | None
    ) -> None:
        stored()
        if message is None:
            out, _ = run("--all", *args)
            assert out.startswith("Exported 5 file(s)")
            return
        with pytest.raises(CommandError, match=message) as caught:
            run("--all", *args)
        assert "\n" not in str(caught.value)
        assert stores.etags("") == {}

    @pytest.mark.parametrize(
        ("blob_prefix", "prefix", "overlaps"),
        [
            ("chunkfiles/", "", False),
            ("chunkfiles/", "chunkfiles/", True),
            ("chunkfiles/", "chunkfiles/old/", True),
            ("chunkfiles/", "chunk/", False),
            ("blobs/7", "blobs/", True),  # "blobs/7x/..." could be blob names
            ("blobs/7/", "blobs/", True),
            ("blobs/x", "blobs/", False),
            ("7", "", True),
            ("", "anything/", False),  # no prefix: orphan collection never runs
        ],
    )
    def test_overlap_with_the_blob_prefix(
        self, stores: Stores, blob_prefix: str, prefix: str, overlaps: bool
    ) -> None:
        with override_settings(CHUNKFILES={"STORAGE": "disk", "BLOB_PREFIX": blob_prefix}):
            if overlaps:
                with pytest.raises(ValueError, match="overlaps"):
                    storage_target("disk", prefix)
            else:
                assert storage_target("disk", prefix) in (prefix, "")

    def test_the_python_api_takes_ids_or_a_queryset(self, stores: Stores) -> None:
        files = stored()
        ids = sorted(files)[:2]
        by_id = [(e.item.id, e.status) for e in export_to_storage(ids, "bucket", "a")]
        rows = File.objects.filter(pk__in=ids)
        by_rows = [(e.item.id, e.status) for e in export_to_storage(rows, "bucket", "a/")]
        assert by_id == [(i, "written") for i in ids]
        assert by_rows == [(i, "skipped") for i in ids]
