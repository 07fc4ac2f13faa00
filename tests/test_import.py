"""chunkfiles_import, and import -> export round trips on the filesystem and S3."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from chunkfiles.importing import import_paths
from chunkfiles.models import File

KIB = 1024


def run(command: str, *args: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    call_command(command, *args, stdout=out, stderr=err)
    return out.getvalue()


def make_tree(root: Path) -> dict[str, bytes]:
    files = {
        "a.txt": b"alpha\n",
        "nested/b.md": b"# bee\n" * 50,
        "nested/deeper/still/c.bin": os.urandom(33 * KIB),
        "nested/empty": b"",
        "empty-top": b"",
        "multi/big.bin": os.urandom(3 * 1024 * KIB + 1),
        "unicode/héllo wörld.txt": "ünï".encode(),
    }
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (root / "emptydir").mkdir()
    return files


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.django_db(transaction=True)
class TestImport:
    def test_round_trip(self, storage: Any, tmp_path: Path) -> None:
        src = tmp_path / "src"
        files = make_tree(src)
        stdout = run("chunkfiles_import", str(src), "--type", "tree", "--workers", "3")
        assert f"Imported {len(files)} file(s)" in stdout
        assert set(File.objects.values_list("name", flat=True)) == set(files)
        assert set(File.objects.values_list("type", flat=True)) == {"tree"}
        out = tmp_path / "out"
        run("chunkfiles_export", "--all", "--output", str(out), "--parents")
        assert tree(out) == files

    def test_dedupe_counts(self, fs_storage: Any, tmp_path: Path) -> None:
        data = os.urandom(20 * KIB)
        (tmp_path / "one").mkdir()
        (tmp_path / "one" / "x.bin").write_bytes(data)
        (tmp_path / "one" / "y.bin").write_bytes(data)  # same bytes: deduplicated
        (tmp_path / "z.bin").write_bytes(b"z")
        stdout = run("chunkfiles_import", str(tmp_path / "one"), str(tmp_path / "z.bin"),
                     "--workers", "1")  # fmt: skip
        assert "Imported 3 file(s), 40.0\xa0KB: 2 file(s) and 20.0\xa0KB new" in stdout
        assert "1 file(s) and 20.0\xa0KB deduplicated" in stdout
        again = run("chunkfiles_import", str(tmp_path / "z.bin"))
        assert "0 file(s) and 0\xa0bytes new, 1 file(s)" in again
        assert File.objects.filter(name="z.bin").count() == 2

    def test_headers_from_mimetype(self, fs_storage: Any, tmp_path: Path) -> None:
        (tmp_path / "page.html").write_bytes(b"<p>")
        (tmp_path / "data.json.gz").write_bytes(b"\x1f\x8b")
        run("chunkfiles_import", str(tmp_path), "--headers-from-mimetype")
        headers = dict(File.objects.values_list("name", "headers"))
        assert headers["page.html"] == {"Content-Type": "text/html"}
        assert headers["data.json.gz"] == {
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        }

    def test_symlinks_and_missing_paths(self, fs_storage: Any, tmp_path: Path) -> None:
        src = tmp_path / "src"
        src.mkdir()
        (src / "real.txt").write_bytes(b"real")
        (src / "link.txt").symlink_to(tmp_path / "outside.txt")
        (tmp_path / "outside.txt").write_bytes(b"secret")
        os.mkfifo(src / "fifo")
        stdout = run("chunkfiles_import", str(src))
        assert "Imported 1 file(s)" in stdout and "2 skipped" in stdout
        assert list(File.objects.values_list("name", flat=True)) == ["real.txt"]
        with pytest.raises(CommandError, match="no such file or directory"):
            run("chunkfiles_import", str(tmp_path / "missing"))

    @pytest.mark.django_db(transaction=True, databases=["default", "files"])
    def test_api_on_second_database(self, fs_storage: Any, tmp_path: Path) -> None:
        (tmp_path / "a").write_bytes(b"a")
        done = list(import_paths([str(tmp_path)], using="files", workers=2))
        assert [(d.name, d.size, d.new_bytes) for d in done] == [("a", 1, 1)]
        assert File.objects.using("files").get().name == "a"
        assert not File.objects.using("default").exists()
