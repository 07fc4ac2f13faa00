"""Fill the demo database with a few sample files and a ``demo`` superuser, then serve it.

Run as ``python -m testproject.demo [--serve HOST:PORT]`` after ``manage.py
migrate`` (``make demo [PORT=8123]`` does both). Running it again adds
nothing: samples whose name is already stored are skipped, and the
superuser's password is reset to ``demo``. With ``--serve`` it then runs
Django's development server (port 0 picks a free one) and prints the URL
it actually listens on.

The server is ``runserver``'s, with one change: when a response fails after
its headers went out (a blob breaking mid-download), the connection is
closed. Django's own keeps it open for the next request, so the browser
waits minutes for the rest of a body that never comes; gunicorn, uWSGI and
mod_wsgi close it, as this does.
"""

from __future__ import annotations

import argparse
import io
import os
import random
from collections.abc import Callable
from typing import Any

import django
from django.core.servers.basehttp import ServerHandler, WSGIRequestHandler

USERNAME = PASSWORD = "demo"
MIB = 1024 * 1024


def readme_text() -> bytes:
    """A few KiB of README-like text."""
    lines = ["django-chunkfiles demo", "======================", ""]
    for n in range(1, 61):
        lines.append(
            f"{n:2}. Every file is cut into blobs of BLOB_SIZE bytes; identical blobs are "
            "stored once and shared by every file that contains them."
        )
    return ("\n".join(lines) + "\n").encode()


def gradient_png() -> bytes:
    """A 256x256 RGB gradient, encoded as PNG."""
    from PIL import Image

    image = Image.new("RGB", (256, 256))
    image.putdata([(x, y, 255 - (x + y) // 2) for y in range(256) for x in range(256)])
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def random_bytes() -> bytes:
    """5 MiB and a bit of seeded pseudo-random data: five full blobs and a short one."""
    return random.Random(20240601).randbytes(5 * MIB + 123_456)


#: (name, type, Content-Type, contents). The last is a copy of the one before,
#: so its blobs are all shared: the dedupe shows in the summary.
SAMPLES: list[tuple[str, str, str, Callable[[], bytes]]] = [
    ("README.txt", "text", "text/plain; charset=utf-8", readme_text),
    ("gradient.png", "image", "image/png", gradient_png),
    ("random.bin", "artifact", "application/octet-stream", random_bytes),
    ("random-copy.bin", "artifact", "application/octet-stream", random_bytes),
]


def ensure_bucket() -> None:
    """Create the S3 bucket of the blob storage if settings select S3 and it is missing."""
    from chunkfiles.s3 import is_s3_storage
    from chunkfiles.storage import blob_storage

    storage = blob_storage()
    if not is_s3_storage(storage):
        return
    client = storage.connection.meta.client  # type: ignore[attr-defined]
    bucket = storage.bucket_name  # type: ignore[attr-defined]
    try:
        client.head_bucket(Bucket=bucket)
    except client.exceptions.ClientError:
        client.create_bucket(Bucket=bucket)


def store_samples() -> None:
    """Store every sample whose name is not in the database yet."""
    from chunkfiles.models import File

    for name, kind, content_type, contents in SAMPLES:
        if File.objects.filter(name=name).exists():
            print(f"kept    {name} (already stored)")
            continue
        file = File.objects.create(name=name, type=kind, headers={"Content-Type": content_type})
        # 1 MiB blobs, not the 8 MiB default, so the sample files show several.
        file.putfile(io.BytesIO(contents()), blob_size=MIB)
        print(f"stored  {name}")


def reset_superuser() -> None:
    """Create the ``demo`` superuser, or make it one again with password ``demo``."""
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(username=USERNAME)
    user.is_staff = user.is_superuser = user.is_active = True
    user.set_password(PASSWORD)
    user.save()


def print_summary() -> None:
    """One row per sample, then the bytes the files hold against the bytes stored."""
    from django.db.models import Count, Sum

    from chunkfiles.models import File, FileBlob, FileBlobIndex

    files = (
        File.objects.filter(name__in=[name for name, *_ in SAMPLES])
        .annotate(blob_total=Count("blobs"))
        .order_by("name")
    )
    print(f"\n{'file':<20} {'size':>12} {'blobs':>6}")
    for name, size, blobs in files.values_list("name", "size", "blob_total"):
        print(f"{name:<20} {size or 0:>12,} {blobs:>6}")
    total = files.aggregate(total=Sum("size"))["total"] or 0
    used = FileBlobIndex.objects.filter(file__in=files).values("blob_id")
    unique = FileBlob.objects.filter(pk__in=used).aggregate(total=Sum("size"))["total"] or 0
    saved = 1 - unique / total if total else 0.0
    print(f"{'total':<20} {total:>12,}")
    print(f"{'unique blob bytes':<20} {unique:>12,}  (dedupe saves {saved:.0%})")


class ClosingServerHandler(ServerHandler):
    """Closes the connection when the application fails after sending headers."""

    def handle_error(self) -> None:
        if self.headers_sent:
            # The body is cut short of its Content-Length: only closing the
            # connection tells the client the download failed.
            self.request_handler.close_connection = True  # type: ignore[attr-defined]
        super().handle_error()


class ClosingRequestHandlerMixin:
    """``WSGIRequestHandler.handle_one_request`` with ``ClosingServerHandler``."""

    def handle_one_request(self: Any) -> None:
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.requestline = self.request_version = self.command = ""
            self.send_error(414)
            return
        if not self.parse_request():  # an error code has been sent
            return
        handler = ClosingServerHandler(
            self.rfile, self.wfile, self.get_stderr(), self.get_environ()
        )
        handler.request_handler = self
        handler.run(self.server.get_app())


class ClosingRequestHandler(ClosingRequestHandlerMixin, WSGIRequestHandler):
    """The demo server's request handler."""


def serve(address: str) -> None:
    """Serve the project (and its static files) on ``HOST:PORT`` until Ctrl-C."""
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.core.servers.basehttp import ThreadedWSGIServer
    from django.core.wsgi import get_wsgi_application

    host, _, port = address.rpartition(":")
    httpd = ThreadedWSGIServer((host or "127.0.0.1", int(port)), ClosingRequestHandler)
    httpd.daemon_threads = True
    httpd.set_app(StaticFilesHandler(get_wsgi_application()))  # type: ignore[no-untyped-call]
    bound_host, bound_port = httpd.server_address[:2]
    print(
        f"\nAdmin: http://{bound_host}:{bound_port}/admin/"
        f"  (user {USERNAME!r}, password {PASSWORD!r}); Ctrl-C stops the server",
        flush=True,
    )
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()


def print_export_example() -> None:
    """An export command that works on this demo, to paste into another terminal."""
    import shlex
    import sys

    from django.conf import settings

    env = [f"{k}={os.environ[k]}" for k in sorted(os.environ) if k.startswith("CHUNKFILES_")]

    def short(path: str) -> str:  # relative to where make runs, if inside it
        inside = os.path.abspath(path).startswith(os.getcwd() + os.sep)
        return os.path.relpath(path) if inside else os.path.abspath(path)

    python = short(sys.executable)
    target = short(os.path.join(settings.VAR_DIR, "export"))
    command = [python, "manage.py", "chunkfiles_export", "--all", "--output", target]
    print("\nExport the files (again: --skip-existing resumes, --archive demo.zip for a zip):")
    print("  " + shlex.join([*env, *command, "--parents", "--skip-existing"]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--serve", metavar="HOST:PORT", help="then serve the admin there")
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
    django.setup()
    ensure_bucket()
    store_samples()
    reset_superuser()
    print_summary()
    print_export_example()
    if args.serve:
        serve(args.serve)
    else:
        print(f"\nLog in as {USERNAME!r} with password {PASSWORD!r}.")


if __name__ == "__main__":
    main()
