"""The upload variants, each ``spec -> timed closure`` (see ``benchmarks.workload``).

Every run uploads fresh random bytes (``spec.source_path``), so ``putfile``
really writes; ``putfile_again`` then stores the same bytes into another
``File``, where every blob must deduplicate. Worker counts and the blob size
come from the benchmark's ``CHUNKFILES`` settings, as a user would get them.
"""

from __future__ import annotations

import hashlib
import uuid

from .environment import BUCKET, WARMUP_KEY, Spec, s3_client
from .workload import Extras, Timed, Variant, warm_client, warm_store


def putfile(spec: Spec) -> Timed:
    """``File.putfile`` of new content, with the settings' blob size and workers."""
    from chunkfiles.models import File

    f = File.objects.create(name="upload.bin", type="bench")
    warm_store(spec)

    def run() -> Extras:
        with open(spec.source_path, "rb") as fh:
            f.putfile(fh)
        return {}

    return run


#: The same bytes again, into another File: every blob deduplicates.
putfile_again = putfile


def sequential(spec: Spec) -> Timed:
    """Sentry-style upload: hash a blob, ``storage.save()`` it, then the next."""
    from django.core.files.base import ContentFile

    from chunkfiles.storage import blob_storage

    storage = blob_storage()
    storage.exists(WARMUP_KEY)
    prefix = f"bench/sequential/{uuid.uuid4().hex}"

    def run() -> Extras:
        with open(spec.source_path, "rb") as fh:
            while data := fh.read(spec.blob_size):
                checksum = hashlib.sha256(data).hexdigest()
                storage.save(f"{prefix}/{checksum}", ContentFile(data))
        return {}

    return run


def upload_fileobj(spec: Spec) -> Timed:
    """boto3's transfer manager (default TransferConfig) uploading ONE object."""
    client = warm_client(s3_client(spec))

    def run() -> Extras:
        with open(spec.source_path, "rb") as fh:
            client.upload_fileobj(fh, BUCKET, f"bench/upload-{uuid.uuid4().hex}")
        return {}

    return run


VARIANTS: dict[str, Variant] = {
    "putfile": putfile,
    "putfile_again": putfile_again,
    "sequential": sequential,
    "upload_fileobj": upload_fileobj,
}
