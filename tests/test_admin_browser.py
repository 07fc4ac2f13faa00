"""The admin in a real headless Chromium, against pytest-django's live server.

Logs in, browses and searches the changelist, opens a file and its paged
blobs, downloads it through the browser and compares the bytes, resumes it
with a Range request, gets a ZIP of several files, verifies them, uploads a
file through the add form and reads it back; then logs out and checks that
the download URL no longer yields the bytes. A file whose first blob is gone
gets a 500; one that breaks mid-download is a failed download in the
browser, at once. The screenshots in docs/_static/ are taken here.
"""

from __future__ import annotations

import io
import os
import random
import re
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest
from django.urls import reverse

from chunkfiles.models import File
from testproject.demo import ClosingRequestHandlerMixin, gradient_png

if TYPE_CHECKING:  # conftest is not importable at run time without tests/__init__.py
    from playwright.sync_api import Browser, Page
    from pytest_django.live_server_helper import LiveServer

    from tests.conftest import StorageSetup

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Debian's build; Playwright's own browser downloads are not available here.
CHROMIUM = os.environ.get("CHUNKFILES_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "_static"
BLOB_SIZE = 256 * 1024
USERNAME, PASSWORD = "admin", "correct horse battery staple"


def unavailable(reason: str) -> NoReturn:
    """Fail in CI, where the browser is part of the environment; skip elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser tests cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the module."""
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"{CHROMIUM} is missing: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright package is not installed")
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        # Playwright's sync API keeps its event loop marked as running in this
        # thread, so Django refuses ORM calls here; the calls really are
        # synchronous (the loop only runs inside Playwright calls).
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(accept_downloads=True)
    context.set_default_timeout(10_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def store(
    name: str, data: bytes, content_type: str = "application/octet-stream", kind: str = "artifact"
) -> File:
    file = File.objects.create(name=name, type=kind, headers={"Content-Type": content_type})
    file.putfile(io.BytesIO(data), blob_size=BLOB_SIZE)
    return file


def release_notes() -> bytes:
    """About 600 KiB of text: three blobs, small enough for a preview."""
    lines = ["Release notes", "=============", ""]
    lines += [f"- {n:5}: fixed a thing that was broken in build {n - 1}." for n in range(12_000)]
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def closing_server(live_server: LiveServer) -> Iterator[LiveServer]:
    """The live server with the demo server's handling of a failure mid-body.

    Django's development server keeps the connection open after an app error
    once the headers are out, so the browser would wait for the rest of the
    body; the demo server (``testproject.demo``) closes it, as gunicorn does.
    """
    from django.test.testcases import QuietWSGIRequestHandler

    class Handler(ClosingRequestHandlerMixin, QuietWSGIRequestHandler):
        pass

    httpd = live_server.thread.httpd  # type: ignore[attr-defined]
    original = httpd.RequestHandlerClass
    httpd.RequestHandlerClass = Handler
    try:
        yield live_server
    finally:
        httpd.RequestHandlerClass = original


def changelist_rows(page: Page) -> list[str]:
    return page.locator("#result_list tbody th.field-name a").all_inner_texts()


def run_action(page: Page, action: str, names: list[str]) -> None:
    """Tick the rows named ``names`` and run ``action`` ("Go" submits the form)."""
    for name in names:
        page.locator("#result_list tbody tr", has_text=name).locator("input.action-select").check()
    page.select_option("select[name=action]", action)
    page.click("button[name=index]")


def wait_for_readers_closed(timeout: float = 5.0) -> None:
    """The server closes the reader (and its read-ahead threads) after the last byte."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(t.name.startswith("chunkfiles-") for t in threading.enumerate()):
            return
        time.sleep(0.05)
    names = [t.name for t in threading.enumerate() if t.name.startswith("chunkfiles-")]
    raise AssertionError(f"reader threads still running after the download: {names}")


def create_superuser(django_user_model: Any) -> None:
    django_user_model.objects.create_superuser(USERNAME, "admin@example.com", PASSWORD)


def log_in(page: Page, url: str) -> None:
    """Open ``url``, get sent to the login form, log in, and land back on ``url``."""
    page.goto(url)
    assert "/admin/login/" in page.url
    page.fill("#id_username", USERNAME)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(url)


def test_browse_search_download_and_logout(
    storage: StorageSetup,
    live_server: LiveServer,
    django_user_model: Any,
    page: Page,
    tmp_path: Path,
) -> None:
    data = random.Random(7).randbytes(3 * BLOB_SIZE + 4321)
    file = store("firmware-v2.bin", data)
    notes = store("release-notes.txt", release_notes(), "text/plain; charset=utf-8", kind="text")
    store("firmware-v2-copy.bin", data)  # every blob shared: the dedupe shows
    store("gradient.png", gradient_png(), "image/png", kind="image")
    create_superuser(django_user_model)
    base = live_server.url
    changelist = base + reverse("admin:chunkfiles_file_changelist")
    download_path = reverse("admin:chunkfiles_file_download", args=[file.pk])

    log_in(page, changelist)

    assert sorted(changelist_rows(page)) == [
        "firmware-v2-copy.bin",
        "firmware-v2.bin",
        "gradient.png",
        "release-notes.txt",
    ]
    row = page.locator("#result_list tbody tr", has_text="firmware-v2.bin").first
    assert row.locator("td.field-blob_count").inner_text() == "4"
    assert row.locator("td.field-size_display").inner_text() == "772.2\xa0KB"
    checksum = row.locator("td.field-checksum_display code")
    assert checksum.inner_text() == file.checksum[:12]
    assert checksum.get_attribute("title") == file.checksum
    # Styled, not bare HTML: the admin CSS came from the live server's static handler.
    assert page.request.get(base + "/static/admin/css/base.css").status == 200
    header_bg = page.eval_on_selector("#header", "e => getComputedStyle(e).backgroundColor")
    assert header_bg not in ("rgba(0, 0, 0, 0)", "transparent"), header_bg
    page.click("#toggle-nav-sidebar")  # more room for the columns in the screenshot
    page.set_viewport_size({"width": 1280, "height": 520})
    page.screenshot(path=str(SCREENSHOTS / "admin-changelist.png"))

    # Search by a blob's SHA-256 finds both files holding it.
    page.fill("#searchbar", file.blob_refs()[2].checksum)
    page.press("#searchbar", "Enter")
    page.wait_for_url("**q=**")
    assert sorted(changelist_rows(page)) == ["firmware-v2-copy.bin", "firmware-v2.bin"]
    page.fill("#searchbar", "firmware-v2.b")
    page.press("#searchbar", "Enter")
    page.wait_for_url("**q=firmware-v2.b**")
    assert changelist_rows(page) == ["firmware-v2.bin"]

    page.click("#result_list tbody th.field-name a")
    # The change URL carries the search as ?_changelist_filters=q%3D....
    page.wait_for_url(re.compile(rf"/chunkfiles/file/{file.pk}/change/"))
    offsets = page.locator("table.chunkfiles-blobs td.field-offset").all_inner_texts()
    assert offsets == [str(i * BLOB_SIZE) for i in range(4)]
    blobs = page.locator("table.chunkfiles-blobs td.field-blob").all_inner_texts()
    assert blobs == [ref.checksum for ref in file.blob_refs()]
    assert page.locator("input[name=_save]").count() == 0
    assert "772.2 KB (790,753 bytes)" in page.locator(".field-size_exact").inner_text().replace(
        "\xa0", " "
    )

    with page.expect_download() as info:
        page.click("a.chunkfiles-download")
    download = info.value
    assert download.suggested_filename == "firmware-v2.bin"
    target = tmp_path / "downloaded.bin"
    download.save_as(target)
    assert download.failure() is None
    assert target.read_bytes() == data
    wait_for_readers_closed()

    # Resuming: the second half through a Range request of the same session.
    half = len(data) // 2
    resumed = page.request.get(base + download_path, headers={"Range": f"bytes={half}-"})
    assert resumed.status == 206
    assert resumed.headers["content-range"] == f"bytes {half}-{len(data) - 1}/{len(data)}"
    assert resumed.body() == data[half:]
    wait_for_readers_closed()

    # A text file's page: a preview in a sandboxed frame, served as plain text.
    page.goto(base + reverse("admin:chunkfiles_file_change", args=[notes.pk]))
    frame = page.frame_locator("iframe.chunkfiles-preview")
    assert frame.locator("body").inner_text().startswith("Release notes")
    assert len(page.locator("table.chunkfiles-blobs tbody tr").all()) == 3
    page.set_viewport_size({"width": 1280, "height": 800})
    page.screenshot(path=str(SCREENSHOTS / "admin-file.png"), full_page=True)

    # The blob changelist: usage per blob and the store's dedupe saving.
    page.goto(base + reverse("admin:chunkfiles_fileblob_changelist"))
    assert "Deduplication saves" in page.locator(".chunkfiles-summary").inner_text()
    assert page.locator("td.field-used_by", has_text="2 files").count() == 4

    page.goto(changelist)
    page.click("#logout-form button[type=submit]")
    page.wait_for_url("**/admin/logout/")
    response = page.request.get(base + download_path, max_redirects=0)
    assert response.status == 302
    assert response.headers["location"].startswith(reverse("admin:login"))
    assert data[:64] not in response.body()
    page.goto(base + download_path)
    assert "/admin/login/" in page.url
    assert page.locator("#id_username").is_visible()


def test_zip_and_verify_actions(
    storage: StorageSetup, live_server: LiveServer, django_user_model: Any, page: Page
) -> None:
    one = random.Random(1).randbytes(2 * BLOB_SIZE + 5)
    two = random.Random(2).randbytes(BLOB_SIZE // 2)
    store("one.bin", one)
    store("dir/two.bin", two)
    store("left-out.bin", b"not selected")
    create_superuser(django_user_model)
    log_in(page, live_server.url + reverse("admin:chunkfiles_file_changelist"))

    with page.expect_download() as info:
        run_action(page, "download_zip", ["one.bin", "dir/two.bin"])
    download = info.value
    assert download.suggested_filename == "files.zip"
    assert download.failure() is None
    with zipfile.ZipFile(download.path()) as archive:
        assert sorted(archive.namelist()) == ["dir/two.bin", "one.bin"]
        assert archive.read("one.bin") == one
        assert archive.read("dir/two.bin") == two
    wait_for_readers_closed()

    page.goto(live_server.url + reverse("admin:chunkfiles_file_changelist"))
    run_action(page, "verify_integrity", ["one.bin", "dir/two.bin"])
    page.wait_for_selector("ul.messagelist")
    messages = page.locator("ul.messagelist li").all_text_contents()
    # The admin's template capitalises every message (capfirst).
    assert "One.bin: intact (3 blobs verified)" in messages
    assert "Dir/two.bin: intact (1 blob verified)" in messages
    assert "Verified 2 files: 2 intact, 0 broken." in messages
    wait_for_readers_closed()


def test_upload_through_the_add_form(
    storage: StorageSetup,
    live_server: LiveServer,
    django_user_model: Any,
    page: Page,
    tmp_path: Path,
) -> None:
    image = gradient_png()
    source = tmp_path / "gradient.png"
    source.write_bytes(image)
    create_superuser(django_user_model)
    log_in(page, live_server.url + reverse("admin:chunkfiles_file_add"))

    page.set_input_files("#id_upload", str(source))
    page.fill("#id_type", "image")
    page.click("input[name=_save]")
    page.wait_for_url(re.compile(r"/chunkfiles/file/\d+/change/"))

    file = File.objects.get()
    assert (file.name, file.type, file.size) == ("gradient.png", "image", len(image))
    assert file.headers == {"Content-Type": "image/png"}
    assert "Stored gradient.png" in page.locator("ul.messagelist").text_content()
    preview = page.locator("img.chunkfiles-preview")
    preview.wait_for()
    page.wait_for_function("() => document.querySelector('img.chunkfiles-preview').complete")
    assert preview.evaluate("img => img.naturalWidth") == 256
    with page.expect_download() as info:
        page.click("a.chunkfiles-download")
    target = tmp_path / "back.png"
    info.value.save_as(target)
    assert target.read_bytes() == image
    wait_for_readers_closed()


def test_a_blob_failing_mid_download_breaks_the_download_at_once(
    storage: StorageSetup, closing_server: LiveServer, django_user_model: Any, page: Page
) -> None:
    data = random.Random(9).randbytes(6 * BLOB_SIZE)
    file = store("breaks.bin", data)
    storage.remove(file.blob_refs()[3].path)
    create_superuser(django_user_model)
    log_in(page, closing_server.url + reverse("admin:chunkfiles_file_change", args=[file.pk]))

    started = time.monotonic()
    with page.expect_download() as info:
        page.click("a.chunkfiles-download")
    failure = info.value.failure()

    assert failure is not None  # a broken download, not a short "complete" file
    assert time.monotonic() - started < 10
    wait_for_readers_closed()


def test_download_with_a_missing_first_blob_is_a_server_error(
    storage: StorageSetup, live_server: LiveServer, django_user_model: Any, page: Page
) -> None:
    data = random.Random(8).randbytes(2 * BLOB_SIZE)
    file = store("broken.bin", data)
    storage.remove(file.blob_refs()[0].path)
    create_superuser(django_user_model)
    log_in(page, live_server.url + reverse("admin:chunkfiles_file_change", args=[file.pk]))

    # The read error comes before the first body byte, so the WSGI server can
    # still replace the 200 it was given with a 500. (A blob missing further
    # in can only cut the body short of its Content-Length.)
    response = page.request.get(
        live_server.url + reverse("admin:chunkfiles_file_download", args=[file.pk])
    )

    assert response.status == 500
    assert "attachment" not in response.headers.get("content-disposition", "")
    assert data[:64] not in response.body()
    wait_for_readers_closed()
