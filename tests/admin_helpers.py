"""Helpers shared by the admin test modules."""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from typing import Any

from django.contrib.auth.models import Permission
from django.http import StreamingHttpResponse
from django.test import Client
from django.urls import reverse

from chunkfiles.models import File

BLOB_SIZE = 64 * 1024


def store(
    name: str,
    data: bytes,
    content_type: str = "application/octet-stream",
    blob_size: int = BLOB_SIZE,
    kind: str = "artifact",
) -> File:
    file = File.objects.create(name=name, type=kind, headers={"Content-Type": content_type})
    file.putfile(io.BytesIO(data), blob_size=blob_size)
    return file


def payload(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def download_url(file: File | int, site: str = "admin") -> str:
    pk = file.pk if isinstance(file, File) else file
    return reverse(f"{site}:chunkfiles_file_download", args=[pk])


def chunks(response: Any) -> Iterator[bytes]:
    """The body of a download, as the WSGI server would iterate it."""
    assert isinstance(response, StreamingHttpResponse), type(response)
    return iter(response.streaming_content)  # type: ignore[arg-type]


def streamed(response: Any) -> bytes:
    """The whole body; the test client closes the response after the last chunk."""
    return b"".join(chunks(response))


def staff_client(django_user_model: Any, *perms: str, username: str = "staff") -> Client:
    user = django_user_model.objects.create_user(username, password="pw", is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    client = Client()
    client.force_login(user)
    return client
