"""Fast path for django-storages' S3 backend.

``S3Storage.open()`` issues a HEAD and reads through a spooled temp file, and
its boto3 resources are per-thread. For blobs we know the size and checksum
already, so one GET (or one PUT) per blob is enough, and a single boto3
*client* (documented as thread-safe) with a large enough connection pool
serves every worker thread.
"""

from __future__ import annotations

import base64
import threading
from typing import Any

from .storage import new_blob_name

try:  # django-storages is optional (extra "s3")
    from botocore.config import Config
    from botocore.exceptions import ClientError
    from storages.backends.s3 import S3Storage
    from storages.utils import clean_name
except ImportError:  # pragma: no cover - exercised only without the extra
    S3Storage = None

#: Connection pool size of the shared client unless a caller needs more.
MIN_POOL = 32

_lock = threading.Lock()
#: The shared store lives on its storage instance, so both are freed together
#: when Django rebuilds its storages (a dict keyed by storage would pin them).
_STORE_ATTRIBUTE = "_chunkfiles_blob_store"


def is_s3_storage_class(cls: object) -> bool:
    """True for the S3Storage class (either of its import paths) and subclasses."""
    return S3Storage is not None and isinstance(cls, type) and issubclass(cls, S3Storage)


def is_s3_storage(storage: object) -> bool:
    """True for ``storages.backends.s3.S3Storage`` and subclasses (incl. ``S3Boto3Storage``)."""
    return S3Storage is not None and isinstance(storage, S3Storage)


def _not_found(error: ClientError) -> bool:
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    code = error.response.get("Error", {}).get("Code")
    return status == 404 or code in ("NoSuchKey", "404", "NotFound")


class S3BlobStore:
    """One GET or PUT per blob through a client shared by all threads."""

    def __init__(self, storage: Any, pool_size: int) -> None:
        self.storage = storage
        self.bucket = storage.bucket_name
        self.pool_size = pool_size
        # Same credentials, endpoint and client options as the storage itself,
        # but a client (thread-safe) instead of its per-thread resources.
        session = storage._create_session()
        self.client = session.client(
            "s3",
            region_name=storage.region_name,
            use_ssl=storage.use_ssl,
            endpoint_url=storage.endpoint_url,
            config=storage.client_config.merge(
                Config(
                    max_pool_connections=pool_size,
                    # Readers verify SHA-256 themselves; a CRC32 pass over
                    # every GET body on top of that is wasted CPU.
                    response_checksum_validation="when_required",
                )
            ),
            verify=storage.verify,
        )

    @classmethod
    def for_storage(cls, storage: Any, connections: int) -> S3BlobStore:
        """The shared store of ``storage``, grown if ``connections`` exceeds its pool."""
        with _lock:
            store: S3BlobStore | None = getattr(storage, _STORE_ATTRIBUTE, None)
            if store is None or store.pool_size < connections:
                store = cls(storage, max(MIN_POOL, connections))
                setattr(storage, _STORE_ATTRIBUTE, store)
            return store

    def key(self, name: str) -> str:
        # django-storages' own mapping of a storage name to a key (adds LOCATION).
        return str(self.storage._normalize_name(clean_name(name)))

    def get(self, name: str) -> bytes:
        key = self.key(name)
        params = {
            k: v
            for k, v in self.storage.get_object_parameters(key).items()
            if k.startswith("SSECustomer")  # the only write parameters a GET needs
        }
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key, **params)
        except ClientError as error:
            if _not_found(error):
                raise FileNotFoundError(
                    f"no S3 object {key!r} in bucket {self.bucket!r}"
                ) from error
            raise
        body = response["Body"]
        try:
            return bytes(body.read())
        finally:
            body.close()

    def put(self, data: bytes, checksum: str) -> str:
        name = new_blob_name()
        key = self.key(name)
        params = self.storage.get_object_parameters(key)
        params.setdefault("ContentType", "application/octet-stream")
        if "ACL" not in params and self.storage.default_acl:
            params["ACL"] = self.storage.default_acl
        # The SHA-256 we already have lets the server reject bytes damaged in
        # transit (BadDigest), and spares botocore computing a CRC32 of its own.
        params["ChecksumSHA256"] = base64.b64encode(bytes.fromhex(checksum)).decode()
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, **params)
        return name

    def delete(self, name: str) -> None:
        # S3 DELETE of a missing key succeeds, which is what we want.
        self.client.delete_object(Bucket=self.bucket, Key=self.key(name))
