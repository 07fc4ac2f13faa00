"""The admin in a real headless Chromium, against pytest-django's live server.

Logs in, browses and searches the changelist, opens a file, downloads it
through the browser and compares the bytes; then logs out and checks that
the download URL no longer yields them. A file whose first blob is gone
gets a 500 from the real WSGI server, with none of its bytes.
"""

from __future__ import annotations

import io
import os
import random
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest
from django.urls import reverse

from chunkfiles.models import File

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
SCREENSHOT = Path("/tmp/chunkfiles-admin.png")
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


def store(name: str, data: bytes) -> File:
    file = File.objects.create(
        name=name, type="artifact", headers={"Content-Type": "application/octet-stream"}
    )
    file.putfile(io.BytesIO(data), blob_size=BLOB_SIZE)
    return file


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
    store("release-notes.txt", b"Nothing to see here.\n")
    create_superuser(django_user_model)
    base = live_server.url
    changelist = base + reverse("admin:chunkfiles_file_changelist")
    download_path = reverse("admin:chunkfiles_file_download", args=[file.pk])

    log_in(page, changelist)

    names = page.locator("#result_list tbody th.field-name a").all_inner_texts()
    assert sorted(names) == ["firmware-v2.bin", "release-notes.txt"]
    row = page.locator("#result_list tbody tr", has_text="firmware-v2.bin")
    assert row.locator("td.field-blob_count").inner_text() == "4"
    assert row.locator("td.field-human_size").inner_text() == "772.2\xa0KB"
    # Styled, not bare HTML: the admin CSS came from the live server's static handler.
    assert page.request.get(base + "/static/admin/css/base.css").status == 200
    header_bg = page.eval_on_selector("#header", "e => getComputedStyle(e).backgroundColor")
    assert header_bg not in ("rgba(0, 0, 0, 0)", "transparent"), header_bg
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    page.fill("#searchbar", "firmware")
    page.press("#searchbar", "Enter")
    page.wait_for_url("**q=firmware**")
    names = page.locator("#result_list tbody th.field-name a").all_inner_texts()
    assert names == ["firmware-v2.bin"]

    page.click("#result_list tbody th.field-name a")
    # The change URL carries the search as ?_changelist_filters=q%3Dfirmware.
    page.wait_for_url(re.compile(rf"/chunkfiles/file/{file.pk}/change/"))
    offsets = page.locator("#fileblobindex_set-group td.field-offset").all_inner_texts()
    assert offsets == [str(i * BLOB_SIZE) for i in range(4)]
    blobs = page.locator("#fileblobindex_set-group td.field-blob").all_inner_texts()
    assert blobs == [ref.checksum for ref in file.blob_refs()]
    assert page.locator("input[name=_save]").count() == 0

    with page.expect_download() as info:
        page.click("a.chunkfiles-download")
    download = info.value
    assert download.suggested_filename == "firmware-v2.bin"
    target = tmp_path / "downloaded.bin"
    download.save_as(target)
    assert download.failure() is None
    assert target.read_bytes() == data
    wait_for_readers_closed()

    page.click("#logout-form button[type=submit]")
    page.wait_for_url("**/admin/logout/")
    response = page.request.get(base + download_path, max_redirects=0)
    assert response.status == 302
    assert response.headers["location"].startswith(reverse("admin:login"))
    assert data[:64] not in response.body()
    page.goto(base + download_path)
    assert "/admin/login/" in page.url
    assert page.locator("#id_username").is_visible()


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
