"""The admin through Django's test client, on the filesystem and on S3.

Browsing is read-only; the download view streams a file's verified bytes to
users with view permission and to nobody else.
"""

from __future__ import annotations

import io
import random
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.http import FileResponse
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from chunkfiles.exceptions import BlobCorruptError, BlobMissingError
from chunkfiles.models import File, FileBlob

if TYPE_CHECKING:  # conftest is not importable at run time without tests/__init__.py
    from tests.conftest import StorageSetup

pytestmark = pytest.mark.django_db

BLOB_SIZE = 64 * 1024


def store(name: str, data: bytes, content_type: str = "application/octet-stream") -> File:
    file = File.objects.create(name=name, type="artifact", headers={"Content-Type": content_type})
    file.putfile(io.BytesIO(data), blob_size=BLOB_SIZE)
    return file


def payload(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def download_url(file: File | int) -> str:
    pk = file.pk if isinstance(file, File) else file
    return reverse("admin:chunkfiles_file_download", args=[pk])


def chunks(response: Any) -> Iterator[bytes]:
    """The body of a download, as the WSGI server would iterate it."""
    assert isinstance(response, FileResponse)
    content = response.streaming_content
    assert isinstance(content, Iterator)
    return content


def streamed(response: Any) -> bytes:
    return b"".join(chunks(response))


def staff_client(django_user_model: Any, *perms: str) -> Client:
    user = django_user_model.objects.create_user("staff", password="pw", is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    client = Client()
    client.force_login(user)
    return client


def test_file_changelist_lists_files_with_human_size_and_blob_count(
    storage: StorageSetup, admin_client: Client
) -> None:
    store("report.pdf", payload(3 * BLOB_SIZE + 10), "application/pdf")
    store("notes.txt", b"hello\n", "text/plain")

    response = admin_client.get(reverse("admin:chunkfiles_file_changelist"))

    assert response.status_code == 200
    rows = {obj.name: obj for obj in response.context["cl"].result_list}
    assert set(rows) == {"report.pdf", "notes.txt"}
    assert (rows["report.pdf"].blob_total, rows["notes.txt"].blob_total) == (4, 1)
    html = response.content.decode()
    assert '<td class="field-human_size">192.0\xa0KB</td>' in html
    assert '<td class="field-human_size">6\xa0bytes</td>' in html
    assert '<td class="field-blob_count">4</td>' in html
    assert html.count('class="chunkfiles-download"') == 2


def test_file_changelist_search_by_name(storage: StorageSetup, admin_client: Client) -> None:
    store("alpha.bin", b"a")
    store("beta.bin", b"b")

    response = admin_client.get(reverse("admin:chunkfiles_file_changelist"), {"q": "alp"})

    assert [f.name for f in response.context["cl"].result_list] == ["alpha.bin"]


def change_page(client: Client, file: File) -> tuple[Any, int]:
    """The file's change page and the number of queries it took."""
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("admin:chunkfiles_file_change", args=[file.pk]))
    return response, len(queries)


def test_change_page_shows_blob_index_inline_read_only(
    storage: StorageSetup, admin_client: Client
) -> None:
    file = store("five.bin", payload(5 * BLOB_SIZE))
    checksums = [ref.checksum for ref in file.blob_refs()]
    one = store("one.bin", b"1")
    change_page(admin_client, one)  # warms the content type cache
    _, small_queries = change_page(admin_client, one)

    response, queries = change_page(admin_client, file)

    assert queries == small_queries, "the inline runs a query per blob row"

    assert response.status_code == 200
    html = re.sub(r"\s+", " ", response.content.decode())
    rows = re.findall(
        r'<td class="field-offset"> <p>(\d+)</p> </td> <td class="field-blob"> '
        r'<p><a href="[^"]+">([0-9a-f]{64})</a></p>',
        html,
    )
    assert rows == [(str(i * BLOB_SIZE), c) for i, c in enumerate(checksums)]
    # Nothing editable: no save button, no form field for any inline column.
    assert 'name="_save"' not in html
    assert 'name="fileblobindex_set-0-offset"' not in html
    assert 'name="name"' not in html
    assert download_url(file) in html
    # Posting a change is refused too, and changes nothing.
    url = reverse("admin:chunkfiles_file_change", args=[file.pk])
    assert admin_client.post(url, {"name": "renamed"}).status_code == 403
    file.refresh_from_db()
    assert file.name == "five.bin"


def test_add_view_is_forbidden(storage: StorageSetup, admin_client: Client) -> None:
    assert admin_client.get(reverse("admin:chunkfiles_file_add")).status_code == 403
    assert admin_client.get(reverse("admin:chunkfiles_fileblob_add")).status_code == 403


def test_download_streams_the_stored_bytes(storage: StorageSetup, admin_client: Client) -> None:
    data = payload(7 * BLOB_SIZE + 321)
    file = store("build output.tar", data, "application/x-tar")

    response = admin_client.get(download_url(file))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-tar"
    assert response["Content-Disposition"] == 'attachment; filename="build output.tar"'
    assert response["Content-Length"] == str(len(data))
    assert streamed(response) == data


def test_download_of_an_empty_file(storage: StorageSetup, admin_client: Client) -> None:
    file = store("empty", b"")

    response = admin_client.get(download_url(file))

    assert response["Content-Length"] == "0"
    assert streamed(response) == b""


def test_download_non_ascii_name_uses_rfc_5987(storage: StorageSetup, admin_client: Client) -> None:
    file = store("résumé.txt", b"bonjour\n", "text/plain")

    response = admin_client.get(download_url(file))

    assert response["Content-Disposition"] == "attachment; filename*=utf-8''r%C3%A9sum%C3%A9.txt"
    assert streamed(response) == b"bonjour\n"


def test_anonymous_download_redirects_to_login(storage: StorageSetup, client: Client) -> None:
    file = store("secret.bin", payload(100))
    url = download_url(file)

    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('admin:login')}?next={url}"
    assert not isinstance(response, FileResponse)
    assert payload(100) not in response.content


def test_staff_without_view_permission_gets_403(
    storage: StorageSetup, django_user_model: Any
) -> None:
    file = store("secret.bin", payload(100))
    client = staff_client(django_user_model)

    response = client.get(download_url(file))

    assert response.status_code == 403
    assert not isinstance(response, FileResponse)
    assert payload(100) not in response.content


def test_staff_with_view_permission_downloads(
    storage: StorageSetup, django_user_model: Any
) -> None:
    data = payload(2 * BLOB_SIZE + 1)
    file = store("shared.bin", data)
    client = staff_client(django_user_model, "chunkfiles.view_file")

    response = client.get(download_url(file))

    assert response.status_code == 200
    assert streamed(response) == data
    # View permission only: the change page is still read-only.
    change = client.get(reverse("admin:chunkfiles_file_change", args=[file.pk]))
    assert change.status_code == 200
    assert 'name="_save"' not in change.content.decode()


def test_download_of_a_missing_file_is_404(storage: StorageSetup, admin_client: Client) -> None:
    file = store("gone.bin", b"x")
    missing = file.pk + 1000

    assert admin_client.get(download_url(missing)).status_code == 404


def test_download_of_a_non_numeric_id_is_404(storage: StorageSetup, admin_client: Client) -> None:
    url = reverse("admin:chunkfiles_file_download", args=["not-a-number"])

    assert admin_client.get(url).status_code == 404


def test_download_with_missing_first_blob_fails_before_the_response(
    storage: StorageSetup, admin_client: Client
) -> None:
    file = store("broken.bin", payload(3 * BLOB_SIZE))
    storage.remove(file.blob_refs()[0].path)

    # The view reads the first blob before answering, so no 200 goes out:
    # the test client re-raises what a WSGI server turns into a 500.
    with pytest.raises(BlobMissingError) as info:
        admin_client.get(download_url(file))
    assert isinstance(info.value, OSError)
    assert info.value.file_id == file.pk and info.value.offset == 0


def test_download_with_missing_middle_blob_sends_only_a_correct_prefix(
    storage: StorageSetup, admin_client: Client
) -> None:
    data = payload(4 * BLOB_SIZE)
    file = store("broken.bin", data)
    storage.remove(file.blob_refs()[2].path)

    response = admin_client.get(download_url(file))
    received = bytearray()
    with pytest.raises(BlobMissingError) as info:
        for chunk in chunks(response):
            received += chunk

    assert info.value.offset == 2 * BLOB_SIZE
    # Never a wrong byte: what came before the error is the file's own prefix,
    # and it is short of Content-Length, so the client sees a truncated body.
    assert len(received) <= 2 * BLOB_SIZE
    assert data.startswith(received)
    assert int(response["Content-Length"]) == len(data)


def test_download_with_corrupt_first_blob_fails_before_the_response(
    storage: StorageSetup, admin_client: Client
) -> None:
    data = payload(2 * BLOB_SIZE)
    file = store("rotten.bin", data)
    first = file.blob_refs()[0]
    storage.corrupt(first.path, b"\0" * BLOB_SIZE)

    with pytest.raises(BlobCorruptError):
        admin_client.get(download_url(file))


def test_fileblob_changelist_lists_blobs(storage: StorageSetup, admin_client: Client) -> None:
    data = payload(2 * BLOB_SIZE + 5)
    store("one.bin", data)
    store("copy.bin", data)  # same blobs: dedupe means no new rows

    response = admin_client.get(reverse("admin:chunkfiles_fileblob_changelist"))

    assert response.status_code == 200
    listed = {blob.checksum: blob for blob in response.context["cl"].result_list}
    assert set(listed) == set(FileBlob.objects.values_list("checksum", flat=True))
    assert sorted(blob.size for blob in listed.values()) == [5, BLOB_SIZE, BLOB_SIZE]
    html = response.content.decode()
    assert '<td class="field-human_size">64.0\xa0KB</td>' in html
    assert all(c in html for c in listed)
    blob = next(iter(listed.values()))
    page = admin_client.get(reverse("admin:chunkfiles_fileblob_change", args=[blob.pk]))
    assert page.status_code == 200
    assert blob.checksum in page.content.decode()
    assert 'name="_save"' not in page.content.decode()


def test_blob_rows_cannot_be_deleted_from_the_admin(
    storage: StorageSetup, admin_client: Client
) -> None:
    store("kept.bin", b"referenced bytes")
    blob = FileBlob.objects.get()

    response = admin_client.post(
        reverse("admin:chunkfiles_fileblob_delete", args=[blob.pk]), {"post": "yes"}
    )

    # Deleting the row would orphan its object; only garbage collection may.
    assert response.status_code == 403
    assert FileBlob.objects.filter(pk=blob.pk).exists()
