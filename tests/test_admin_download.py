"""The admin download through Django's test client: headers, Range, failures, permissions.

Runs on the filesystem and on SeaweedFS S3; fetches are counted through a
filesystem storage that counts the objects it opens.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from django.conf import settings
from django.core.files.storage import storages
from django.http import StreamingHttpResponse
from django.test import Client, override_settings
from django.urls import reverse
from django.utils.http import http_date

from chunkfiles.exceptions import BlobCorruptError, BlobMissingError
from chunkfiles.models import File
from tests.admin_helpers import (
    BLOB_SIZE,
    chunks,
    download_url,
    payload,
    staff_client,
    store,
    streamed,
)

if TYPE_CHECKING:
    from tests.conftest import StorageSetup

pytestmark = pytest.mark.django_db

SIZE = 8 * BLOB_SIZE + 1000  # nine blobs, the last one short
DATA = payload(SIZE, seed=3)


@pytest.fixture
def counting(tmp_path: Path) -> Any:
    """A filesystem blob storage that counts every object it opens (one per blob fetch)."""
    storages_setting = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        "blobs": {
            "BACKEND": "testproject.faults.FlakyFileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "blobs")},
        },
    }
    with override_settings(STORAGES=storages_setting, CHUNKFILES={"STORAGE": "blobs"}):
        yield storages["blobs"]


def test_download_headers(storage: StorageSetup, admin_client: Client) -> None:
    file = store("build output.tar", DATA, "application/x-tar")

    response = admin_client.get(download_url(file))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-tar"
    assert response["Content-Disposition"] == 'attachment; filename="build output.tar"'
    assert response["Content-Length"] == str(SIZE)
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["ETag"] == f'"{file.checksum}"'
    assert response["Last-Modified"] == http_date(file.timestamp.timestamp())
    assert response["Accept-Ranges"] == "bytes"
    assert streamed(response) == DATA


@override_settings(
    MIDDLEWARE=[m for m in settings.MIDDLEWARE if not m.endswith(".SecurityMiddleware")]
)
def test_nosniff_comes_from_the_view_not_the_middleware(
    fs_storage: StorageSetup, admin_client: Client
) -> None:
    file = store("page.html", b"<script>alert(1)</script>", "text/html")

    response = admin_client.get(download_url(file))

    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Disposition"].startswith("attachment;")
    streamed(response)


@pytest.mark.parametrize(
    ("name", "disposition"),
    [
        ("résumé.txt", "attachment; filename*=utf-8''r%C3%A9sum%C3%A9.txt"),
        ("../../etc/passwd", 'attachment; filename="passwd"'),
        ("dir\\evil\r\n.txt", 'attachment; filename="evil__.txt"'),
        ('say "hi".txt', 'attachment; filename="say \\"hi\\".txt"'),
    ],
)
def test_download_filename_is_rfc_6266_safe(
    fs_storage: StorageSetup, admin_client: Client, name: str, disposition: str
) -> None:
    file = store(name, b"x")

    response = admin_client.get(download_url(file))

    assert response["Content-Disposition"] == disposition
    streamed(response)


def test_unsafe_content_type_falls_back_to_octet_stream(
    fs_storage: StorageSetup, admin_client: Client
) -> None:
    file = store("x.bin", b"x", "text/html, text/plain<script>")

    response = admin_client.get(download_url(file))

    assert response["Content-Type"] == "application/octet-stream"
    streamed(response)


def test_download_of_an_empty_file(fs_storage: StorageSetup, admin_client: Client) -> None:
    file = store("empty", b"")

    response = admin_client.get(download_url(file))

    assert response.status_code == 200
    assert response["Content-Length"] == "0"
    assert streamed(response) == b""
    assert admin_client.get(download_url(file), HTTP_RANGE="bytes=0-0").status_code == 416


def test_if_none_match_answers_304(fs_storage: StorageSetup, admin_client: Client) -> None:
    file = store("cached.bin", DATA)

    response = admin_client.get(download_url(file), HTTP_IF_NONE_MATCH=f'"{file.checksum}"')

    assert response.status_code == 304
    assert response.content == b""


RANGES = {
    "first bytes": ("bytes=0-99", 0, 99),
    "middle": ("bytes=200000-200999", 200_000, 200_999),
    "suffix": ("bytes=-500", SIZE - 500, SIZE - 1),
    "open-ended": ("bytes=100-", 100, SIZE - 1),
    "crosses blobs": (
        f"bytes={BLOB_SIZE - 10}-{2 * BLOB_SIZE + 9}",
        BLOB_SIZE - 10,
        2 * BLOB_SIZE + 9,
    ),
    "end past the file": (f"bytes={SIZE - 10}-{SIZE + 5000}", SIZE - 10, SIZE - 1),
    "suffix longer than file": (f"bytes=-{SIZE * 2}", 0, SIZE - 1),
    "last byte": (f"bytes={SIZE - 1}-{SIZE - 1}", SIZE - 1, SIZE - 1),
}


@pytest.mark.parametrize("case", list(RANGES))
def test_single_range_answers_206(
    fs_storage: StorageSetup, admin_client: Client, case: str
) -> None:
    header, start, end = RANGES[case]
    file = store("movie.mp4", DATA, "video/mp4")

    response = admin_client.get(download_url(file), HTTP_RANGE=header)

    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes {start}-{end}/{SIZE}"
    assert response["Content-Length"] == str(end - start + 1)
    assert response["Content-Type"] == "video/mp4"
    assert streamed(response) == DATA[start : end + 1]


def test_range_across_blobs_on_s3(s3_storage: StorageSetup, admin_client: Client) -> None:
    file = store("movie.mp4", DATA, "video/mp4")
    start, end = BLOB_SIZE - 10, 3 * BLOB_SIZE + 9

    response = admin_client.get(download_url(file), HTTP_RANGE=f"bytes={start}-{end}")

    assert response.status_code == 206
    assert streamed(response) == DATA[start : end + 1]


@pytest.mark.parametrize("header", [f"bytes={SIZE}-", f"bytes={SIZE + 10}-{SIZE + 20}", "bytes=-0"])
def test_unsatisfiable_range_answers_416(
    fs_storage: StorageSetup, admin_client: Client, header: str
) -> None:
    file = store("short.bin", DATA)

    response = admin_client.get(download_url(file), HTTP_RANGE=header)

    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{SIZE}"
    assert not isinstance(response, StreamingHttpResponse)


@pytest.mark.parametrize(
    "header",
    [
        "bytes=0-99,200-299",
        "bytes=abc",
        "items=0-10",
        "bytes=20-10",
        "bytes=-",
        "bytes 0-10",
        "=0-1",
    ],
)
def test_malformed_or_multi_range_answers_200_with_everything(
    fs_storage: StorageSetup, admin_client: Client, header: str
) -> None:
    file = store("whole.bin", DATA)

    response = admin_client.get(download_url(file), HTTP_RANGE=header)

    assert response.status_code == 200
    assert "Content-Range" not in response
    assert streamed(response) == DATA


def test_if_range_with_current_etag_or_date_is_honoured(
    fs_storage: StorageSetup, admin_client: Client
) -> None:
    file = store("resume.bin", DATA)
    url = download_url(file)
    date = http_date(file.timestamp.timestamp())

    for validator in (f'"{file.checksum}"', date):
        response = admin_client.get(url, HTTP_RANGE="bytes=10-19", HTTP_IF_RANGE=validator)
        assert response.status_code == 206, validator
        assert streamed(response) == DATA[10:20]


@pytest.mark.parametrize("validator", ['"0000"', 'W/"{sha1}"', "Tue, 15 Nov 1994 08:12:31 GMT"])
def test_if_range_with_a_stale_validator_sends_the_whole_file(
    fs_storage: StorageSetup, admin_client: Client, validator: str
) -> None:
    file = store("changed.bin", DATA)

    response = admin_client.get(
        download_url(file),
        HTTP_RANGE="bytes=10-19",
        HTTP_IF_RANGE=validator.format(sha1=file.checksum),
    )

    assert response.status_code == 200
    assert streamed(response) == DATA


@pytest.mark.parametrize(
    ("header", "fetched"),
    [
        ("bytes=0-99", 1),
        (f"bytes={5 * BLOB_SIZE + 7}-{5 * BLOB_SIZE + 99}", 1),
        (f"bytes={BLOB_SIZE - 10}-{2 * BLOB_SIZE + 9}", 3),
        ("bytes=-500", 1),
        (None, 9),
    ],
)
def test_a_range_fetches_only_the_blobs_it_covers(
    counting: Any, admin_client: Client, header: str | None, fetched: int
) -> None:
    file = store("big.bin", DATA)
    counting.opens = 0
    extra = {"HTTP_RANGE": header} if header else {}

    response = admin_client.get(download_url(file), **extra)
    body = streamed(response)

    assert counting.opens == fetched
    assert len(body) == int(response["Content-Length"])


def test_first_blob_missing_fails_before_the_response(
    storage: StorageSetup, admin_client: Client
) -> None:
    file = store("broken.bin", DATA)
    storage.remove(file.blob_refs()[0].path)

    # No 200 goes out: the test client re-raises what a WSGI server turns into a 500.
    with pytest.raises(BlobMissingError) as info:
        admin_client.get(download_url(file))
    assert info.value.file_id == file.pk and info.value.offset == 0


def test_first_blob_of_a_range_corrupt_fails_before_the_response(
    fs_storage: StorageSetup, admin_client: Client
) -> None:
    file = store("rotten.bin", DATA)
    fs_storage.corrupt(file.blob_refs()[3].path, b"\0" * BLOB_SIZE)

    with pytest.raises(BlobCorruptError):
        admin_client.get(download_url(file), HTTP_RANGE=f"bytes={3 * BLOB_SIZE}-")


def test_mid_stream_failure_raises_from_the_body_and_is_logged(
    storage: StorageSetup, admin_client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    file = store("broken.bin", DATA)
    broken = file.blob_refs()[4]
    storage.remove(broken.path)

    response = admin_client.get(download_url(file))
    assert response.status_code == 200
    received = bytearray()
    with caplog.at_level(logging.ERROR, "chunkfiles.admin"), pytest.raises(BlobMissingError):
        for chunk in chunks(response):
            received += chunk

    # Raised, not swallowed: the server drops the connection short of Content-Length.
    assert DATA.startswith(bytes(received)) and len(received) <= broken.offset
    record = next(r for r in caplog.records if r.name == "chunkfiles.admin")
    message = record.getMessage()
    assert str(file.pk) in message and broken.checksum in message
    assert f"offset {broken.offset}" in message


def test_anonymous_download_redirects_to_login(fs_storage: StorageSetup, client: Client) -> None:
    file = store("secret.bin", DATA)
    url = download_url(file)

    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('admin:login')}?next={url}"
    assert DATA[:100] not in response.content


def test_staff_without_view_permission_gets_403_before_any_lookup(
    fs_storage: StorageSetup, django_user_model: Any
) -> None:
    file = store("secret.bin", DATA)
    client = staff_client(django_user_model)

    # Same answer for an id that exists and one that does not: nothing to probe.
    assert client.get(download_url(file)).status_code == 403
    assert client.get(download_url(file.pk + 1000)).status_code == 403
    assert client.get(download_url(file), HTTP_RANGE="bytes=0-9").status_code == 403


def test_staff_with_view_permission_downloads(
    fs_storage: StorageSetup, django_user_model: Any
) -> None:
    file = store("shared.bin", DATA)
    client = staff_client(django_user_model, "chunkfiles.view_file")

    response = client.get(download_url(file), HTTP_RANGE="bytes=5-9")

    assert response.status_code == 206
    assert streamed(response) == DATA[5:10]


def test_missing_or_malformed_id_is_404(fs_storage: StorageSetup, admin_client: Client) -> None:
    file = store("gone.bin", b"x")

    assert admin_client.get(download_url(file.pk + 1000)).status_code == 404
    url = reverse("admin:chunkfiles_file_download", args=["not-a-number"])
    assert admin_client.get(url).status_code == 404


def test_head_sends_headers_without_reading(counting: Any, admin_client: Client) -> None:
    file = store("head.bin", DATA)
    counting.opens = 0

    response = admin_client.head(download_url(file), HTTP_RANGE="bytes=0-9")

    assert response.status_code == 206
    assert response["Content-Length"] == "10"
    assert counting.opens == 0


def test_file_without_stored_content_is_404(fs_storage: StorageSetup, admin_client: Client) -> None:
    file = File.objects.create(name="pending.bin", type="artifact")

    assert admin_client.get(download_url(file)).status_code == 404
    page = admin_client.get(reverse("admin:chunkfiles_file_change", args=[file.pk]))
    assert page.status_code == 200
    assert "no stored content" in page.content.decode()


def test_a_response_closed_before_its_body_releases_the_reader(
    fs_storage: StorageSetup, admin_client: Client
) -> None:
    file = store("abandoned.bin", DATA)

    response = admin_client.get(download_url(file))
    # The read-ahead is running: the first chunk was read before answering.
    assert any(t.name.startswith("chunkfiles-") for t in threading.enumerate())
    response.close()  # as a WSGI server does when the client left at once

    # The autouse fixture checks that no chunkfiles thread is left; say it here too.
    deadline = time.monotonic() + 5
    while any(t.name.startswith("chunkfiles-") for t in threading.enumerate()):
        assert time.monotonic() < deadline, "reader threads still running"
        time.sleep(0.01)
