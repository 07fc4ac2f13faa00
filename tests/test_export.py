"""chunkfiles_export through call_command and the Python API, on the filesystem and S3."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from chunkfiles.archive import export_to_archive
from chunkfiles.export import ExportError, select_files
from chunkfiles.exportdir import export_to_directory
from chunkfiles.models import File, FileBlob

from .test_safenames import HOSTILE

pytestmark = pytest.mark.django_db

KIB = 1024


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """An empty directory of the test's own (the fs storage lives beside it)."""
    directory = tmp_path / "work"
    directory.mkdir()
    return directory


def store(name: str, data: bytes, type: str = "t", blob_size: int = 4 * KIB) -> File:
    file = File.objects.create(name=name, type=type)
    file.putfile(io.BytesIO(data), blob_size=blob_size)
    return file


def storable(names: list[str]) -> list[str]:
    """The names this database can store (PostgreSQL text cannot hold NUL)."""
    from django.db import connection

    return [n for n in names if connection.vendor != "postgresql" or "\x00" not in n]


def content(file: File) -> bytes:
    with file.getfile() as fp:
        return fp.read()


def run(*args: str, **kwargs: Any) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("chunkfiles_export", *args, stdout=out, stderr=err, **kwargs)
    return out.getvalue(), err.getvalue()


def tree(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` by relative path (no temp files allowed)."""
    found = {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert not [p for p in found if ".part" in p], "temp file left behind"
    return found


TREE = {
    "top.txt": b"hello\n",
    "docs/readme.md": b"# readme\n" * 100,
    "docs/deep/er/still.bin": os.urandom(9 * KIB + 5),
    "empty.dat": b"",
    "docs/empty-too": b"",
    "big/multi.bin": os.urandom(3 * 1024 * KIB + 17),
}


class TestDirectory:
    def test_tree_round_trip(self, storage: Any, work: Path) -> None:
        for name, data in TREE.items():
            store(name, data, blob_size=256 * KIB)
        out = work / "out"
        stdout, _ = run("--all", "--output", str(out), "--parents", "--workers", "4")
        assert tree(out) == TREE
        assert "Exported 6 file(s)" in stdout

    def test_mtime_is_upload_time(self, storage: Any, work: Path) -> None:
        file = store("a.txt", b"abc")
        run("--all", "--output", str(work))
        assert (work / "a.txt").stat().st_mtime == pytest.approx(file.timestamp.timestamp())

    def test_hostile_names_stay_inside_and_unique(self, storage: Any, work: Path) -> None:
        outside = work / "etc"
        outside.mkdir()
        hostile = storable(HOSTILE)
        files = {store(name, f"{i}:{name!r}".encode()).pk: name for i, name in enumerate(hostile)}
        out = work / "out"
        manifest = work / "manifest.jsonl"
        run("--all", "--output", str(out), "--parents", "--manifest", str(manifest))
        assert list(outside.iterdir()) == []
        assert sorted(p.name for p in work.iterdir()) == ["etc", "manifest.jsonl", "out"]
        written = tree(out)
        assert len(written) == len(hostile)  # nothing overwrote anything
        records = [json.loads(line) for line in manifest.read_text().splitlines()]
        assert {r["id"] for r in records} == set(files)
        for record in records:
            data = (out / record["path"]).read_bytes()
            assert data == content(File.objects.get(pk=record["id"]))
            assert record["status"] == "written"
            assert record["name"] == files[record["id"]]
        # Case-insensitive filesystems would merge these; we never rely on case.
        assert len({p.casefold() for p in written}) == len(written)

    def test_symlink_in_output_is_not_followed(self, storage: Any, work: Path) -> None:
        victim = work / "victim"
        victim.mkdir()
        out = work / "out"
        out.mkdir()
        (out / "evil").symlink_to(victim)
        store("evil/passwd", b"owned")
        store("fine.txt", b"fine")
        with pytest.raises(CommandError, match="evil"):
            run("--all", "--output", str(out))
        assert list(victim.iterdir()) == []
        with pytest.raises(CommandError, match="1 problem"):
            run("--all", "--output", str(out), "--keep-going", "--skip-existing")
        assert list(victim.iterdir()) == []
        assert (out / "fine.txt").read_bytes() == b"fine"

    def test_existing_target(self, storage: Any, work: Path) -> None:
        store("a.txt", b"new")
        (work / "a.txt").write_bytes(b"old")
        with pytest.raises(CommandError, match="exists"):
            run("--all", "--output", str(work))
        assert (work / "a.txt").read_bytes() == b"old"
        stdout, _ = run("--all", "--output", str(work), "--skip-existing")
        assert (work / "a.txt").read_bytes() == b"old"
        assert "1 skipped" in stdout
        run("--all", "--output", str(work), "--overwrite")
        assert (work / "a.txt").read_bytes() == b"new"

    def test_missing_output_dir_needs_parents(self, storage: Any, work: Path) -> None:
        store("a.txt", b"x")
        with pytest.raises(CommandError, match="--parents"):
            run("--all", "--output", str(work / "nope"))
        assert not (work / "nope").exists()

    def test_broken_blob_stops_without_partial_file(self, storage: Any, work: Path) -> None:
        good = store("good.bin", os.urandom(20 * KIB))
        bad = store("bad.bin", os.urandom(20 * KIB))
        blob = FileBlob.objects.filter(fileblobindex__file=bad).order_by("pk").last()
        assert blob is not None and blob.path
        storage.corrupt(blob.path, b"garbage")
        out = work / "out"
        with pytest.raises(CommandError, match=f"file {bad.pk}"):
            run("--all", "--output", str(out), "--parents", "--workers", "2")
        assert "bad.bin" not in tree(out)
        with pytest.raises(CommandError, match="1 problem"):
            run("--all", "--output", str(out), "--keep-going", "--skip-existing")
        written = tree(out)
        assert written == {"good.bin": content(good)}

    def test_missing_blob_is_marked_lost(self, storage: Any, work: Path) -> None:
        bad = store("bad.bin", os.urandom(10 * KIB))
        blob = FileBlob.objects.filter(fileblobindex__file=bad).order_by("pk").first()
        assert blob is not None and blob.path
        storage.remove(blob.path)
        with pytest.raises(CommandError, match="missing"):
            run("--all", "--output", str(work))
        assert FileBlob.objects.lost().filter(pk=blob.pk).exists()
        assert tree(work) == {}

    def test_verify_catches_wrong_checksum(self, storage: Any, work: Path) -> None:
        file = store("a.bin", b"abc" * 1000)
        File.objects.filter(pk=file.pk).update(checksum="0" * 40)
        with pytest.raises(CommandError, match="SHA-1"):
            run("--all", "--output", str(work), "--verify")
        assert tree(work) == {}
        run("--all", "--output", str(work))  # without --verify the blobs are fine
        assert tree(work) == {"a.bin": b"abc" * 1000}

    def test_selection(self, storage: Any, work: Path) -> None:
        a = store("a.pdf", b"a", type="doc")
        store("b.txt", b"b", type="doc")
        c = store("c.pdf", b"c", type="img")
        run("--name", "*.pdf", "--type", "doc", "--output", str(work / "1"), "--parents")
        assert tree(work / "1") == {"a.pdf": b"a"}
        run("--id", str(c.pk), "--id", str(a.pk), "--output", str(work / "2"), "--parents")
        assert tree(work / "2") == {"a.pdf": b"a", "c.pdf": b"c"}
        with pytest.raises(CommandError, match="unknown file id"):
            run("--id", "999999", "--output", str(work))
        with pytest.raises(CommandError, match="bad glob"):
            run("--name", "[abc", "--output", str(work))
        with pytest.raises(CommandError, match="choose files"):
            run("--output", str(work))

    def test_shards_are_disjoint_and_cover(self, storage: Any, work: Path) -> None:
        names = {store(f"f{i}.txt", f"{i}".encode()).name for i in range(23)}
        seen: list[str] = []
        for i in (1, 2, 3):
            out = work / str(i)
            run("--all", "--shard", f"{i}/3", "--output", str(out), "--parents")
            seen.extend(tree(out))
        assert sorted(seen) == sorted(names)
        with pytest.raises(CommandError, match="shard"):
            run("--all", "--shard", "4/3", "--output", str(work))

    def test_queries_per_file(
        self, fs_storage: Any, work: Path, django_assert_max_num_queries: Any
    ) -> None:
        for i in range(300):
            store(f"{i}.txt", f"file {i}".encode())
        with django_assert_max_num_queries(3 + 300 // 100):
            run("--all", "--output", str(work))
        assert len(tree(work)) == 300

    def test_api_yields_outcomes(self, storage: Any, work: Path) -> None:
        store("x/y.txt", b"y")
        files = select_files(File.objects.all(), names=["x/*"])
        outcomes = list(export_to_directory(files, str(work), workers=2))
        assert [(o.path, o.status, o.bytes) for o in outcomes] == [("x/y.txt", "written", 1)]
        with pytest.raises(ExportError, match="exists"):
            list(export_to_directory(files, str(work)))


def read_tar(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as archive:
        members = archive.getmembers()
        result = {}
        for m in members:
            extracted = archive.extractfile(m)
            assert extracted is not None
            result[m.name] = extracted.read()
        return result


def read_zip(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        return {name: archive.read(name) for name in archive.namelist()}


class TestArchive:
    @pytest.mark.parametrize("suffix", [".tar", ".tar.gz", ".zip"])
    def test_formats_read_back(self, storage: Any, work: Path, suffix: str) -> None:
        for name, data in TREE.items():
            store(name, data, blob_size=256 * KIB)
        hostile = storable(HOSTILE)
        for name in hostile:
            store(name, name.encode())
        target = work / f"export{suffix}"
        stdout, _ = run("--all", "--archive", str(target), "--workers", "3")
        members = read_zip(target) if suffix == ".zip" else read_tar(target)
        for name, data in TREE.items():
            assert members[name] == data
        # Every hostile name is a distinct member (also ignoring case), none escapes.
        assert len(members) == len(TREE) + len(hostile)
        assert len({m.casefold() for m in members}) == len(members)
        assert all(not m.startswith("/") and ".." not in m.split("/") for m in members)
        assert all(len(part.encode()) <= 240 for m in members for part in m.split("/"))
        assert sorted(p.name for p in work.iterdir()) == [target.name]
        assert f"Exported {len(TREE) + len(hostile)} file(s)" in stdout

    def test_broken_file_leaves_no_archive(self, storage: Any, work: Path) -> None:
        store("good.bin", os.urandom(10 * KIB))
        bad = store("bad.bin", os.urandom(10 * KIB))
        blob = FileBlob.objects.filter(fileblobindex__file=bad).order_by("pk").last()
        assert blob is not None and blob.path
        storage.corrupt(blob.path, b"x")
        target = work / "a.zip"
        with pytest.raises(CommandError, match="corrupt"):
            run("--all", "--archive", str(target))
        assert list(work.iterdir()) == []

    def test_existing_archive(self, storage: Any, work: Path) -> None:
        store("a", b"a")
        target = work / "a.tar"
        target.write_bytes(b"old")
        with pytest.raises(CommandError, match="exists"):
            run("--all", "--archive", str(target))
        run("--all", "--archive", str(target), "--skip-existing")
        assert target.read_bytes() == b"old"
        run("--all", "--archive", str(target), "--overwrite")
        assert read_tar(target) == {"a": b"a"}

    def test_bad_suffix(self, storage: Any, work: Path) -> None:
        store("a", b"a")
        with pytest.raises(CommandError, match="must end in"):
            run("--all", "--archive", str(work / "a.rar"))

    def test_api_to_unseekable_zip(self, storage: Any, work: Path) -> None:
        from chunkfiles.archive import write_archive

        store("x.bin", os.urandom(50 * KIB))

        class Pipe(io.RawIOBase):
            def __init__(self) -> None:
                self.data = bytearray()

            def writable(self) -> bool:
                return True

            def write(self, b: Any) -> int:
                self.data += b
                return len(b)

        pipe = Pipe()
        list(write_archive(File.objects.all(), pipe, "zip", workers=2))  # type: ignore[arg-type]
        with zipfile.ZipFile(io.BytesIO(bytes(pipe.data))) as archive:
            assert archive.read("x.bin") == content(File.objects.get())
        target = work / "t.tgz"
        assert [o.path for o in export_to_archive(File.objects.all(), str(target))] == ["x.bin"]
        assert read_tar(target)["x.bin"] == content(File.objects.get())


class TestStdout:
    def test_one_file_to_stdout(self, storage: Any) -> None:
        data = os.urandom(30 * KIB)
        file = store("a.bin", data)
        raw = io.BytesIO()
        out = io.TextIOWrapper(raw)
        err = io.StringIO()
        call_command("chunkfiles_export", "--id", str(file.pk), "--output", "-", stdout=out,
                     stderr=err)  # fmt: skip
        out.flush()
        assert raw.getvalue() == data
        assert "to stdout" in err.getvalue()

    def test_stdout_needs_one_file(self, storage: Any) -> None:
        store("a", b"a")
        store("b", b"b")
        with pytest.raises(CommandError, match="exactly one"):
            run("--all", "--output", "-")


ROOT = Path(__file__).resolve().parent.parent


class Manage:
    """``python manage.py ...`` in a subprocess, on its own file-backed SQLite database."""

    def __init__(self, tmp_path: Path, **env: str) -> None:
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "testproject.settings",
            "CHUNKFILES_DB": "sqlite",
            "CHUNKFILES_VAR_DIR": str(tmp_path / "var"),
            "CHUNKFILES_MEDIA_ROOT": str(tmp_path / "media"),
            **env,
        }
        if "CHUNKFILES_S3_ENDPOINT" not in env:
            self.env.pop("CHUNKFILES_S3_ENDPOINT", None)
        self("migrate", "--verbosity", "0")

    def command(self, *args: str) -> list[str]:
        return [sys.executable, str(ROOT / "manage.py"), *args]

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.command(*args), env=self.env, cwd=ROOT, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(f"{args} exited {result.returncode}: {result.stderr}")
        return result

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args), env=self.env, cwd=ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


class TestSubprocess:
    def test_import_export_verify_stats(self, work: Path) -> None:
        manage = Manage(work)
        src = work / "src"
        write_tree(src, TREE)
        result = manage("chunkfiles_import", str(src), "--workers", "3")
        assert f"Imported {len(TREE)} file(s)" in result.stdout
        manage("chunkfiles_export", "--all", "--output", str(work / "out"), "--parents")
        assert tree(work / "out") == TREE
        manage("chunkfiles_export", "--all", "--archive", str(work / "all.tar.gz"))
        assert read_tar(work / "all.tar.gz") == TREE
        assert "0 with problems" in manage("chunkfiles_verify", "--blobs", "--files").stdout
        stats = json.loads(manage("chunkfiles_stats", "--json").stdout)
        assert stats["files"] == len(TREE)
        # An expected failure: one line on stderr, exit status 1, nothing written.
        failed = manage("chunkfiles_export", "--all", "--output", str(work / "out"), check=False)
        assert failed.returncode == 1
        assert failed.stderr.count("\n") == 1 and "exists" in failed.stderr
        one = manage("chunkfiles_export", "--name", "top.txt", "--output", "-")
        assert one.stdout == TREE["top.txt"].decode()

    def test_resume_after_sigkill(self, work: Path, seaweed: Any) -> None:
        from testproject.tcpproxy import TcpProxy

        bucket = f"kill-{os.urandom(4).hex()}"
        seaweed.create_bucket(bucket)
        files = {f"d{i % 4}/f{i:03}.bin": os.urandom(48 * KIB + i) for i in range(40)}
        src = work / "src"
        write_tree(src, files)
        with TcpProxy("127.0.0.1", seaweed.port) as proxy:
            manage = Manage(
                work,
                CHUNKFILES_S3_ENDPOINT=proxy.endpoint_url,
                CHUNKFILES_S3_BUCKET=bucket,
                CHUNKFILES_S3_ACCESS_KEY=seaweed.access_key,
                CHUNKFILES_S3_SECRET_KEY=seaweed.secret_key,
            )
            manage("chunkfiles_import", str(src), "--workers", "4")
            out = work / "out"
            proxy.latency = 0.05  # 100 ms per GET: the export takes seconds
            process = manage.popen("chunkfiles_export", "--all", "--output", str(out),
                                   "--parents", "--workers", "2")  # fmt: skip
            try:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and process.poll() is None:
                    if out.is_dir() and sum(1 for _ in out.rglob("*.bin")) >= 6:
                        break
                    time.sleep(0.02)
                assert process.poll() is None, "export finished before it could be killed"
                process.send_signal(signal.SIGKILL)
            finally:
                process.wait(timeout=30)
                assert process.stdout is not None and process.stderr is not None
                process.stdout.close()
                process.stderr.close()
            assert process.returncode == -signal.SIGKILL
            partial = tree(out)  # also asserts no temp file is left
            assert 6 <= len(partial) < len(files)
            assert all(files[name] == data for name, data in partial.items())
            proxy.latency = 0
            result = manage("chunkfiles_export", "--all", "--output", str(out), "--skip-existing")
            assert f"({len(partial)} skipped, 0 failed of {len(files)} selected)" in result.stdout
            assert tree(out) == files


class TestCommandBase:
    def test_progress_bar_on_a_terminal(self, fs_storage: Any, work: Path) -> None:
        class Terminal(io.StringIO):
            def isatty(self) -> bool:
                return True

        store("a", b"a" * 3000)
        store("b", b"b" * 2000)
        err = Terminal()
        call_command("chunkfiles_export", "--all", "--output", str(work / "1"), "--parents",
                     stdout=io.StringIO(), stderr=err)  # fmt: skip
        assert "2 files" in err.getvalue() and "4.88k/4.88k" in err.getvalue()
        quiet_out, quiet_err = Terminal(), Terminal()
        call_command("chunkfiles_export", "--all", "--output", str(work / "2"), "--parents",
                     "-v", "0", stdout=quiet_out, stderr=quiet_err)  # fmt: skip
        assert quiet_out.getvalue() == quiet_err.getvalue() == ""
        plain = io.StringIO()  # not a terminal: no bar
        call_command("chunkfiles_export", "--all", "--output", str(work / "3"), "--parents",
                     stdout=io.StringIO(), stderr=plain)  # fmt: skip
        assert plain.getvalue() == ""

    def test_verbose_lists_files(self, fs_storage: Any, work: Path) -> None:
        file = store("a/b.txt", b"x")
        stdout, _ = run("--all", "--output", str(work), "-v", "2")
        assert f"written: {file.pk} -> a/b.txt" in stdout

    def test_workers_must_be_positive(self, fs_storage: Any, work: Path) -> None:
        with pytest.raises(CommandError, match="--workers must be at least 1"):
            run("--all", "--output", str(work), "--workers", "0")

    @pytest.mark.django_db(databases=["default", "files"])
    def test_other_database(self, fs_storage: Any, work: Path) -> None:
        file = File.objects.using("files").create(name="elsewhere.txt", type="t")
        file.putfile(io.BytesIO(b"on files"))
        with pytest.raises(CommandError, match="unknown file id"):
            run("--id", str(file.pk), "--output", str(work), "--database", "default")
        run("--id", str(file.pk), "--output", str(work), "--database", "files")
        assert tree(work) == {"elsewhere.txt": b"on files"}
        with pytest.raises(CommandError, match="unknown database"):
            run("--all", "--output", str(work), "--database", "nope")


class TestAtomicFile:
    """Output files appear whole or not at all, with and without O_TMPFILE."""

    @pytest.mark.parametrize("tmpfile", [True, False])
    def test_publish_and_discard(
        self, tmp_path: Path, tmpfile: bool, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from chunkfiles import atomicfile

        if not tmpfile:
            monkeypatch.setattr(atomicfile, "_TMPFILE", 0)
        dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            out = atomicfile.AtomicFile(dir_fd)
            assert (out.temp is None) == tmpfile
            os.write(out.fd, b"new")
            assert [p.name for p in tmp_path.iterdir()] == ([] if tmpfile else [out.temp])
            out.publish("a", overwrite=False)
            assert [p.name for p in tmp_path.iterdir()] == ["a"]
            again = atomicfile.AtomicFile(dir_fd)
            os.write(again.fd, b"newer")
            with pytest.raises(FileExistsError):
                again.publish("a", overwrite=False)
            assert (tmp_path / "a").read_bytes() == b"new"
            third = atomicfile.AtomicFile(dir_fd)
            os.write(third.fd, b"newest")
            third.publish("a", overwrite=True)
            assert (tmp_path / "a").read_bytes() == b"newest"
            dropped = atomicfile.AtomicFile(dir_fd)
            os.write(dropped.fd, b"x")
            dropped.discard()
            assert [p.name for p in tmp_path.iterdir()] == ["a"]
        finally:
            os.close(dir_fd)
