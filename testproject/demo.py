"""Fill the demo database with a few sample files and a ``demo`` superuser.

Run as ``python -m testproject.demo`` after ``manage.py migrate`` (``make demo``
does both). Running it again adds nothing: samples whose name is already
stored are skipped, and the superuser's password is reset to ``demo``.
"""

from __future__ import annotations

import io
import os
import random
from collections.abc import Callable

import django

ADMIN_URL = "http://127.0.0.1:8000/admin/"
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
        file.putfile(io.BytesIO(contents()))
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


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
    django.setup()
    ensure_bucket()
    store_samples()
    reset_superuser()
    print_summary()
    print(f"\nAdmin: {ADMIN_URL}  (user {USERNAME!r}, password {PASSWORD!r})")


if __name__ == "__main__":
    main()
