"""The admin pages through Django's test client: changelists, file and blob pages,
upload, delete, the ZIP and verify actions, a custom AdminSite and a routed database.
"""

from __future__ import annotations

import datetime
import io
import re
import zipfile
from typing import TYPE_CHECKING, Any

import pytest
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connections
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from chunkfiles.exceptions import BlobMissingError
from chunkfiles.models import File, FileBlob, FileBlobIndex
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

FILES = reverse("admin:chunkfiles_file_changelist")
BLOBS = reverse("admin:chunkfiles_fileblob_changelist")


def text(response: Any) -> str:
    return re.sub(r"[ \t\r\n]+", " ", response.content.decode())


def counted_get(client: Client, url: str, using: str = "default", **params: Any) -> tuple[Any, int]:
    with CaptureQueriesContext(connections[using]) as queries:
        response = client.get(url, params)
    assert response.status_code == 200
    return response, len(queries)


def many_files(count: int, blob: FileBlob, blobs_each: int = 3) -> None:
    """``count`` files of ``blobs_each`` index rows each, without storage traffic."""
    files = File.objects.bulk_create(
        File(
            name=f"bulk-{n:05}.bin",
            type="bulk",
            size=blobs_each * (blob.size or 0),
            checksum="0" * 40,
        )
        for n in range(count)
    )
    FileBlobIndex.objects.bulk_create(
        FileBlobIndex(file=f, blob=blob, offset=i * (blob.size or 0))
        for f in files
        for i in range(blobs_each)
    )


class TestFileChangelist:
    def test_columns(self, fs_storage: StorageSetup, admin_client: Client) -> None:
        report = store("report.pdf", payload(3 * BLOB_SIZE + 10), "application/pdf")
        store("notes.txt", b"hello\n", "text/plain")

        response = admin_client.get(FILES)

        rows = {obj.name: obj for obj in response.context["cl"].result_list}
        assert set(rows) == {"report.pdf", "notes.txt"}
        assert (rows["report.pdf"].blob_total, rows["notes.txt"].blob_total) == (4, 1)
        html = text(response)
        assert '<td class="field-size_display">192.0\xa0KB</td>' in html
        assert '<td class="field-size_display">6\xa0bytes</td>' in html
        assert '<td class="field-blob_count">4</td>' in html
        assert f'<code title="{report.checksum}">{report.checksum[:12]}</code>' in html
        assert html.count('class="chunkfiles-download"') == 2
        assert response.context["cl"].show_full_result_count is False

    def test_query_count_is_the_same_at_10_and_1000_rows(
        self, fs_storage: StorageSetup, admin_client: Client
    ) -> None:
        blob = FileBlob.from_file(io.BytesIO(b"shared blob"))
        many_files(10, blob)
        counted_get(admin_client, FILES)  # warm caches (content types, session)
        _, at_10 = counted_get(admin_client, FILES)
        many_files(990, blob)
        response, at_1000 = counted_get(admin_client, FILES)

        assert at_1000 == at_10
        assert len(response.context["cl"].result_list) == 100
        assert {f.blob_total for f in response.context["cl"].result_list} == {3}
        # Sorting by size and filtering by type keep it.
        assert counted_get(admin_client, FILES, o="3")[1] == at_10
        assert counted_get(admin_client, FILES, type="bulk")[1] == at_10

    @pytest.mark.parametrize("by", ["name", "sha1", "blob sha256"])
    def test_search(self, fs_storage: StorageSetup, admin_client: Client, by: str) -> None:
        alpha = store("alpha.bin", payload(BLOB_SIZE + 5, seed=1))
        store("beta.bin", payload(10, seed=2))
        term = {
            "name": "alp",
            "sha1": alpha.checksum,
            "blob sha256": alpha.blob_refs()[1].checksum.upper(),
        }[by]

        response = admin_client.get(FILES, {"q": term})

        assert [f.name for f in response.context["cl"].result_list] == ["alpha.bin"]


class TestFilePage:
    def test_fields_and_paged_blobs(self, fs_storage: StorageSetup, admin_client: Client) -> None:
        file = store("many.bin", payload(150 * 512), "application/x-thing", blob_size=512)
        small = store("one.bin", b"1")
        url = reverse("admin:chunkfiles_file_change", args=[file.pk])
        counted_get(admin_client, reverse("admin:chunkfiles_file_change", args=[small.pk]))
        _, small_queries = counted_get(
            admin_client, reverse("admin:chunkfiles_file_change", args=[small.pk])
        )

        response, queries = counted_get(admin_client, url)

        assert queries == small_queries + 1  # the total count, only when there are more
        html = text(response)
        offsets = re.findall(r'<td class="field-offset">(\d+)</td>', html)
        assert offsets == [str(i * 512) for i in range(100)]
        refs = file.blob_refs()
        assert refs[99].checksum in html and refs[100].checksum not in html
        assert f"{BLOBS}?file={file.pk}" in html
        assert "Showing the first 100 of 150 blobs" in html
        assert "75.0 KB (76,800 bytes)" in html.replace("\xa0", " ")
        assert "&quot;Content-Type&quot;: &quot;application/x-thing&quot;" in html
        assert download_url(file) in html
        assert "7@" not in html and f"{file.pk}@" not in html
        assert 'name="_save"' not in html and 'name="name"' not in html
        # The blob changelist filtered by the file lists all of them.
        blobs = admin_client.get(BLOBS, {"file": file.pk})
        assert blobs.context["cl"].result_count == 150

    def test_change_post_is_refused(self, fs_storage: StorageSetup, admin_client: Client) -> None:
        file = store("five.bin", b"12345")
        url = reverse("admin:chunkfiles_file_change", args=[file.pk])

        assert admin_client.post(url, {"name": "renamed"}).status_code == 403
        file.refresh_from_db()
        assert file.name == "five.bin"

    @pytest.mark.parametrize(
        ("content_type", "served"),
        [
            ("image/png", "image/png"),
            ("text/plain", "text/plain; charset=utf-8"),
            ("text/html", "text/plain; charset=utf-8"),
            ("image/svg+xml", None),
            ("application/pdf", None),
        ],
    )
    def test_preview(
        self, fs_storage: StorageSetup, admin_client: Client, content_type: str, served: str | None
    ) -> None:
        data = b"<script>alert(1)</script>"
        file = store("thing", data, content_type)
        page = text(admin_client.get(reverse("admin:chunkfiles_file_change", args=[file.pk])))
        url = reverse("admin:chunkfiles_file_preview", args=[file.pk])

        response = admin_client.get(url)

        if served is None:
            assert response.status_code == 404
            assert url not in page
            return
        assert url in page
        assert response.status_code == 200
        assert response["Content-Type"] == served
        assert response["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in response["Content-Security-Policy"]
        assert response["Content-Disposition"].startswith("inline")
        assert streamed(response) == data

    def test_no_preview_over_the_size_limit(
        self, fs_storage: StorageSetup, admin_client: Client
    ) -> None:
        file = store("huge.txt", b"a" * (2 * 1024 * 1024 + 1), "text/plain", blob_size=1024 * 1024)

        assert (
            admin_client.get(reverse("admin:chunkfiles_file_preview", args=[file.pk])).status_code
            == 404
        )


class TestUpload:
    def test_add_form_stores_the_upload(
        self, fs_storage: StorageSetup, admin_client: Client
    ) -> None:
        data = payload(3 * 1024 * 1024 + 17)
        upload = SimpleUploadedFile("report.csv", data, content_type="text/csv")

        response = admin_client.post(
            reverse("admin:chunkfiles_file_add"), {"upload": upload, "name": "", "type": "upload"}
        )

        file = File.objects.get()
        assert response.status_code == 302
        assert response["Location"] == reverse("admin:chunkfiles_file_change", args=[file.pk])
        assert (file.name, file.type, file.size) == ("report.csv", "upload", len(data))
        assert file.headers == {"Content-Type": "text/csv"}
        with file.getfile() as fp:
            assert fp.read() == data

    def test_name_and_content_type_can_be_set(
        self, fs_storage: StorageSetup, admin_client: Client
    ) -> None:
        upload = SimpleUploadedFile("x.bin", b"{}")

        admin_client.post(
            reverse("admin:chunkfiles_file_add"),
            {
                "upload": upload,
                "name": "config.json",
                "type": "cfg",
                "content_type": "application/json",
            },
        )

        file = File.objects.get()
        assert (file.name, file.type, file.headers) == (
            "config.json",
            "cfg",
            {"Content-Type": "application/json"},
        )

    def test_without_add_permission_403(
        self, fs_storage: StorageSetup, django_user_model: Any
    ) -> None:
        client = staff_client(django_user_model, "chunkfiles.view_file")
        upload = SimpleUploadedFile("x.bin", b"data")

        assert (
            client.post(reverse("admin:chunkfiles_file_add"), {"upload": upload}).status_code == 403
        )
        assert not File.objects.exists()

    def test_blob_add_is_forbidden(self, fs_storage: StorageSetup, admin_client: Client) -> None:
        assert admin_client.get(reverse("admin:chunkfiles_fileblob_add")).status_code == 403


class TestDelete:
    def test_short_confirmation_and_blobs_left_for_gc(
        self, fs_storage: StorageSetup, admin_client: Client
    ) -> None:
        file = store("many.bin", payload(300 * 256), blob_size=256)
        url = reverse("admin:chunkfiles_file_delete", args=[file.pk])

        page = admin_client.get(url)

        html = text(page)
        assert "300 blob index rows" in html
        assert html.count("<li>") < 10
        assert "garbage collection" in html
        admin_client.post(url, {"post": "yes"})
        assert not File.objects.exists() and not FileBlobIndex.objects.exists()
        assert FileBlob.objects.count() == 300
        assert FileBlob.objects.unreferenced().count() == 300

    def test_bulk_delete_confirmation_is_short(
        self, fs_storage: StorageSetup, admin_client: Client
    ) -> None:
        files = [store(f"f{n}.bin", payload(40 * 256, seed=n), blob_size=256) for n in range(3)]
        data = {"action": "delete_selected", "_selected_action": [f.pk for f in files]}

        html = text(admin_client.post(FILES, data))

        assert "120 blob index rows" in html and html.count("<li>") < 10
        admin_client.post(FILES, {**data, "post": "yes"})
        assert not File.objects.exists() and FileBlob.objects.count() == 120

    def test_view_only_staff_cannot_delete(
        self, fs_storage: StorageSetup, django_user_model: Any
    ) -> None:
        file = store("keep.bin", b"x")
        client = staff_client(django_user_model, "chunkfiles.view_file")

        url = reverse("admin:chunkfiles_file_delete", args=[file.pk])
        assert client.post(url, {"post": "yes"}).status_code == 403
        assert File.objects.filter(pk=file.pk).exists()


class TestActions:
    def test_zip_of_selected(self, storage: StorageSetup, admin_client: Client) -> None:
        a = store("report.pdf", payload(3 * BLOB_SIZE + 1, seed=1))
        b = store("report.pdf", payload(100, seed=2))  # same name: made unique
        c = store("../../etc/passwd", b"root:x:0:0\n")
        e = store("empty", b"")

        response = admin_client.post(
            FILES, {"action": "download_zip", "_selected_action": [a.pk, b.pk, c.pk, e.pk]}
        )

        assert response["Content-Type"] == "application/zip"
        assert response["Content-Disposition"] == 'attachment; filename="files.zip"'
        body = streamed(response)
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            assert archive.testzip() is None
            names = archive.namelist()
            assert sorted(names) == sorted(
                ["report.pdf", f"report~{b.pk}.pdf", "etc/passwd", "empty"]
            )
            assert archive.read("report.pdf") == payload(3 * BLOB_SIZE + 1, seed=1)
            assert archive.read(f"report~{b.pk}.pdf") == payload(100, seed=2)
            assert archive.read("etc/passwd") == b"root:x:0:0\n"
            assert archive.read("empty") == b""

    def test_zip_with_a_broken_blob_fails_mid_archive(
        self, fs_storage: StorageSetup, admin_client: Client
    ) -> None:
        good = store("a-good.bin", payload(BLOB_SIZE, seed=1))
        bad = store("b-bad.bin", payload(8 * BLOB_SIZE, seed=2))
        fs_storage.remove(bad.blob_refs()[6].path)

        response = admin_client.post(
            FILES, {"action": "download_zip", "_selected_action": [good.pk, bad.pk]}
        )
        received = bytearray()
        with pytest.raises(BlobMissingError):
            for chunk in chunks(response):
                received += chunk

        # The archive has no central directory: no tool takes it for a whole one.
        assert 2 * BLOB_SIZE < len(received) < 8 * BLOB_SIZE
        with pytest.raises(zipfile.BadZipFile):
            zipfile.ZipFile(io.BytesIO(bytes(received)))

    def test_verify_reports_each_file(self, storage: StorageSetup, admin_client: Client) -> None:
        good = store("good.bin", payload(2 * BLOB_SIZE, seed=1))
        bad = store("bad.bin", payload(2 * BLOB_SIZE, seed=2))
        broken = bad.blob_refs()[1]
        storage.corrupt(broken.path, b"\0" * BLOB_SIZE)

        response = admin_client.post(
            FILES,
            {"action": "verify_integrity", "_selected_action": [good.pk, bad.pk]},
            follow=True,
        )

        found = [(m.level_tag, m.message) for m in get_messages(response.wsgi_request)]
        assert ("success", "good.bin: intact (2 blobs verified)") in found
        errors = [msg for tag, msg in found if tag == "error"]
        assert any(msg.startswith("bad.bin:") and broken.checksum in msg for msg in errors)
        assert "Verified 2 files: 1 intact, 1 broken." in errors

    def test_view_only_staff_can_zip(
        self, fs_storage: StorageSetup, django_user_model: Any
    ) -> None:
        file = store("a.txt", b"hello")
        client = staff_client(django_user_model, "chunkfiles.view_file")

        response = client.post(FILES, {"action": "download_zip", "_selected_action": [file.pk]})

        with zipfile.ZipFile(io.BytesIO(streamed(response))) as archive:
            assert archive.read("a.txt") == b"hello"


class TestBlobs:
    def test_changelist_usage_gc_storage_and_dedupe(
        self, fs_storage: StorageSetup, admin_client: Client
    ) -> None:
        data = payload(2 * BLOB_SIZE + 5)
        store("one.bin", data)
        store("copy.bin", data)  # same blobs: deduplicated
        loose = FileBlob.from_file(io.BytesIO(b"nobody uses me"))
        loose.unused_since = timezone.now() - datetime.timedelta(hours=1)
        loose.save()

        response = admin_client.get(BLOBS)

        rows = {b.checksum: b for b in response.context["cl"].result_list}
        assert len(rows) == 4
        assert rows[loose.checksum].use_count == 0
        assert sorted(b.use_count for b in rows.values()) == [0, 2, 2, 2]
        html = text(response).replace("\xa0", " ")
        assert "unreferenced" in html
        due = timezone.localtime(loose.unused_since + datetime.timedelta(days=1))
        assert f"{due:%Y-%m-%d %H:%M}" in html
        # 2 x 128.0 KB held by files, 128.0 KB + 14 bytes stored.
        store_summary = response.context["store"]
        assert store_summary["storages"] == [{"alias": "blobs", "blobs": 4, "size": "128.0\xa0KB"}]
        assert store_summary["saved_percent"] == "50%"
        assert "Deduplication saves" in html and "blobs: 4 blobs" in html

    def test_storage_filter_and_totals_count_rows_without_a_storage_under_it(
        self, fs_storage: StorageSetup, admin_client: Client
    ) -> None:
        store("one.bin", payload(2 * BLOB_SIZE + 5))
        legacy, elsewhere = FileBlob.objects.order_by("pk")[:2]
        # A row other code wrote without a storage, and one in another alias.
        FileBlob.objects.filter(pk=legacy.pk).update(storage="")
        FileBlob.objects.filter(pk=elsewhere.pk).update(storage="archive")

        response = admin_client.get(BLOBS)
        in_blobs = admin_client.get(BLOBS, {"storage": "blobs"})
        in_archive = admin_client.get(BLOBS, {"storage": "archive"})

        assert [s["alias"] for s in response.context["store"]["storages"]] == ["archive", "blobs"]
        assert [s["blobs"] for s in response.context["store"]["storages"]] == [1, 2]
        [storage_filter] = [f for f in response.context["cl"].filter_specs if f.title == "storage"]
        assert [value for value, _ in storage_filter.lookup_choices] == ["archive", "blobs"]
        assert sorted(b.pk for b in in_blobs.context["cl"].result_list) == sorted(
            set(FileBlob.objects.values_list("pk", flat=True)) - {elsewhere.pk}
        )
        assert [b.pk for b in in_archive.context["cl"].result_list] == [elsewhere.pk]
        assert '<td class="field-storage_display">blobs</td>' in text(in_blobs)

    def test_unreferenced_filter_and_search(
        self, fs_storage: StorageSetup, admin_client: Client
    ) -> None:
        store("one.bin", b"used")
        loose = FileBlob.from_file(io.BytesIO(b"loose"))

        unreferenced = admin_client.get(BLOBS, {"usage": "unreferenced"})
        found = admin_client.get(BLOBS, {"q": loose.checksum})

        assert [b.pk for b in unreferenced.context["cl"].result_list] == [loose.pk]
        assert [b.pk for b in found.context["cl"].result_list] == [loose.pk]

    def test_query_count_is_the_same_at_10_and_1000_rows(
        self, fs_storage: StorageSetup, admin_client: Client
    ) -> None:
        def blobs(n: int, start: int) -> None:
            FileBlob.objects.bulk_create(
                FileBlob(checksum=f"{i:064x}", size=10, path=f"p/{i}")
                for i in range(start, start + n)
            )

        blobs(10, 0)
        counted_get(admin_client, BLOBS)
        _, at_10 = counted_get(admin_client, BLOBS)
        blobs(990, 10)
        _, at_1000 = counted_get(admin_client, BLOBS)

        assert at_1000 == at_10

    def test_blob_page_lists_the_files_using_it(
        self, fs_storage: StorageSetup, admin_client: Client
    ) -> None:
        a = store("a.bin", b"same bytes")
        b = store("b.bin", b"same bytes")
        blob = FileBlob.objects.get()

        html = text(admin_client.get(reverse("admin:chunkfiles_fileblob_change", args=[blob.pk])))

        for file in (a, b):
            assert reverse("admin:chunkfiles_file_change", args=[file.pk]) in html
            assert file.name in html
        assert 'name="_save"' not in html

    def test_blob_rows_cannot_be_deleted(
        self, fs_storage: StorageSetup, admin_client: Client
    ) -> None:
        store("kept.bin", b"referenced bytes")
        blob = FileBlob.objects.get()

        url = reverse("admin:chunkfiles_fileblob_delete", args=[blob.pk])
        assert admin_client.post(url, {"post": "yes"}).status_code == 403
        assert FileBlob.objects.filter(pk=blob.pk).exists()


@override_settings(ROOT_URLCONF="tests.custom_site")
def test_custom_admin_site(fs_storage: StorageSetup, admin_client: Client) -> None:
    file = store("custom.bin", payload(BLOB_SIZE + 1))

    changelist = text(admin_client.get("/ops/chunkfiles/file/"))
    page = text(admin_client.get(f"/ops/chunkfiles/file/{file.pk}/change/"))
    response = admin_client.get(download_url(file, site="ops"), HTTP_RANGE="bytes=0-9")

    assert f"/ops/chunkfiles/file/{file.pk}/download/" in changelist
    assert (
        "/ops/chunkfiles/fileblob/" in page
        and "/admin/" not in page.split("<body")[1].split("logout")[0]
    )
    assert response.status_code == 206
    assert streamed(response) == payload(BLOB_SIZE + 1)[:10]


@pytest.mark.django_db(databases=["default", "files"])
def test_tables_on_another_database(fs_storage: StorageSetup, admin_client: Client) -> None:
    with override_settings(DATABASE_ROUTERS=["testproject.routers.ChunkfilesRouter"]):
        file = store("routed.bin", payload(2 * BLOB_SIZE + 3))
        assert file._state.db == "files"

        response, _ = counted_get(admin_client, FILES)
        assert [f.blob_total for f in response.context["cl"].result_list] == [3]
        page = admin_client.get(reverse("admin:chunkfiles_file_change", args=[file.pk]))
        assert page.status_code == 200 and file.blob_refs()[2].checksum in text(page)
        download = admin_client.get(download_url(file), HTTP_RANGE="bytes=-3")
        assert streamed(download) == payload(2 * BLOB_SIZE + 3)[-3:]
        blobs = admin_client.get(BLOBS)
        assert blobs.context["store"]["storages"][0]["blobs"] == 3
    assert not File.objects.using("default").exists()
