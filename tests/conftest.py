"""Shared fixtures: a real SeaweedFS S3 server and storage parametrisation.

Every storage-facing test takes the ``storage`` fixture and so runs twice:
once on the filesystem and once on S3 served by SeaweedFS.
"""

from __future__ import annotations

import os
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from testproject.seaweed import SeaweedS3

BUCKET = "chunkfiles-test"
COLLISIONS = (
    Path(__file__).resolve().parent.parent.parent / "shared" / "testdata" / "sha1-collisions"
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # SQLite serialises writers, so race tests prove nothing there; they run
    # in the PostgreSQL and MariaDB matrices (.ci/run) instead of being skipped.
    from django.conf import settings

    engine = settings.DATABASES["default"]["ENGINE"]
    # The Sentry import reads Sentry's own database, which is PostgreSQL:
    # those tests run in the PostgreSQL matrix.
    unsupported = {"race"} if engine.endswith("sqlite3") else set()
    if not engine.endswith("postgresql"):
        unsupported.add("postgresql")
    out = [i for i in items if any(i.get_closest_marker(m) for m in unsupported)]
    if out:
        config.hook.pytest_deselected(items=out)
        items[:] = [i for i in items if i not in out]


@pytest.fixture(scope="session")
def seaweed() -> Iterator[SeaweedS3]:
    """One SeaweedFS for the whole run, with the test bucket created."""
    with SeaweedS3() as server:
        server.create_bucket(BUCKET)
        yield server


@dataclass
class StorageSetup:
    """What a test needs to know about the blob storage it runs against."""

    kind: str  # "fs" or "s3"
    alias: str
    options: dict[str, Any]
    server: SeaweedS3 | None = None
    location: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def object_names(self) -> list[str]:
        """Every blob object currently stored, as storage names."""
        if self.kind == "fs":
            root = Path(self.options["location"])
            return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
        assert self.server is not None
        client = self.server.client()
        try:
            pages = client.get_paginator("list_objects_v2").paginate(
                Bucket=BUCKET, Prefix=self.location + "/"
            )
            return sorted(
                obj["Key"][len(self.location) + 1 :]
                for page in pages
                for obj in page.get("Contents", [])
            )
        finally:
            client.close()

    def corrupt(self, name: str, data: bytes) -> None:
        """Overwrite a stored object behind chunkfiles' back."""
        if self.kind == "fs":
            Path(self.options["location"], name).write_bytes(data)
        else:
            self._client_call("put_object", Key=f"{self.location}/{name}", Body=data)

    def remove(self, name: str) -> None:
        if self.kind == "fs":
            Path(self.options["location"], name).unlink()
        else:
            self._client_call("delete_object", Key=f"{self.location}/{name}")

    def _client_call(self, method: str, **kwargs: Any) -> None:
        assert self.server is not None
        client = self.server.client()
        try:
            getattr(client, method)(Bucket=BUCKET, **kwargs)
        finally:
            client.close()


def s3_options(server: SeaweedS3, location: str, endpoint_url: str | None = None) -> dict[str, Any]:
    return {**server.storage_options(BUCKET, endpoint_url), "location": location}


def _storage_setup(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[StorageSetup]:
    if kind == "fs":
        options: dict[str, Any] = {"location": str(tmp_path / "blobs")}
        setup = StorageSetup("fs", "blobs", options)
        backend = "django.core.files.storage.FileSystemStorage"
    else:
        server = request.getfixturevalue("seaweed")
        location = f"t-{uuid.uuid4().hex[:12]}"
        options = s3_options(server, location)
        setup = StorageSetup("s3", "blobs", options, server=server, location=location)
        backend = "storages.backends.s3.S3Storage"
    storages = {
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        },
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        "blobs": {"BACKEND": backend, "OPTIONS": options},
    }
    with override_settings(STORAGES=storages, CHUNKFILES={"STORAGE": "blobs"}):
        yield setup


@pytest.fixture(params=["fs", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StorageSetup]:
    """Blob storage for one test: a fresh directory, or a fresh S3 key prefix."""
    yield from _storage_setup(request.param, request, tmp_path)


@pytest.fixture
def s3_storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StorageSetup]:
    """Only the SeaweedFS S3 half, for tests of the S3 fast path."""
    yield from _storage_setup("s3", request, tmp_path)


@pytest.fixture
def fs_storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StorageSetup]:
    """Only the filesystem half."""
    yield from _storage_setup("fs", request, tmp_path)


#: getfile() keyword arguments of each read mode.
MODES: dict[str, dict[str, Any]] = {
    "default": {},
    "lazy": {"readahead": False},
    "prefetch": {"prefetch": True},
    "readahead": {"readahead": 3},
}


@pytest.fixture(params=list(MODES))
def mode(request: pytest.FixtureRequest) -> str:
    """Runs a test once per read mode."""
    return str(request.param)


@pytest.fixture
def temp_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "tmp"
    directory.mkdir()
    return directory


@pytest.fixture
def collisions() -> Path:
    if not COLLISIONS.is_dir():
        pytest.fail(f"test vectors missing: {COLLISIONS} (shared/testdata beside the checkout)")
    return COLLISIONS


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Every reader and upload must leave no worker thread behind."""
    before = {t.ident for t in threading.enumerate()}
    yield
    leaked = [
        t
        for t in threading.enumerate()
        if t.ident not in before and t.name.startswith("chunkfiles-") and t.is_alive()
    ]
    assert not leaked, f"threads left running: {[t.name for t in leaked]}"


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("CHUNKFILES_TEST", "1")


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix: None) -> None:
    """On SQLite, the test database is a file (on tmpfs where there is one), not memory.

    Celery workers and the killed move of test_celery.py / test_move.py are
    other processes: they must open the same test database as the tests.
    """
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        folder = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
        name = os.path.join(folder, f"chunkfiles-test-{os.getpid()}.sqlite3")
        db["TEST"] = {**db.get("TEST", {}), "NAME": name}
