"""Fast path for django-storages' S3 backend: one request per blob operation.

``S3Storage.open()`` issues a HEAD and reads through a spooled temp file, and
its boto3 resources are per-thread. For blobs we know the size and checksum
already, so one GET (or one PUT) per blob is enough, and a single boto3
*client* (documented as thread-safe) with a large enough connection pool
serves every worker thread. Retries are ``chunkfiles.storage``'s: the client
makes one attempt per call, so deadlines add up to what the settings say.
"""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from . import buffers

try:  # django-storages is optional (extra "s3")
    from botocore import handlers
    from botocore.config import Config
    from botocore.exceptions import (
        ClientError,
        HTTPClientError,
        IncompleteReadError,
        ResponseStreamingError,
    )
    from storages.backends.s3 import S3Storage
    from storages.utils import clean_name
    from urllib3.exceptions import HTTPError as Urllib3Error
except ImportError:  # pragma: no cover - exercised only without the extra
    S3Storage = None

#: Connection pool size of the shared client unless a caller needs more.
MIN_POOL = 32
#: Bytes read from a response body per socket read (between deadline checks).
BODY_CHUNK = 256 * 1024
#: Error codes S3 (and compatible servers) use for faults worth retrying.
TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "InternalError",
        "ServiceUnavailable",
        "BadDigest",  # the body was damaged in transit: send it again
        "XAmzContentSHA256Mismatch",
    }
)

_lock = threading.Lock()
#: The shared store lives on its storage instance, so both are freed together
#: when Django rebuilds its storages (a dict keyed by storage would pin them).
_STORE_ATTRIBUTE = "_chunkfiles_raw_store"


def is_s3_storage_class(cls: object) -> bool:
    """True for the S3Storage class (either of its import paths) and subclasses."""
    return S3Storage is not None and isinstance(cls, type) and issubclass(cls, S3Storage)


def is_s3_storage(storage: object) -> bool:
    """True for ``storages.backends.s3.S3Storage`` and subclasses (incl. ``S3Boto3Storage``)."""
    return S3Storage is not None and isinstance(storage, S3Storage)


def _status(error: ClientError) -> tuple[int | None, str | None]:
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status, error.response.get("Error", {}).get("Code")


class S3RawStore:
    """One GET, PUT or DELETE per call through a client shared by all threads."""

    def __init__(
        self, storage: Any, pool_size: int, connect_timeout: float, read_timeout: float
    ) -> None:
        self.storage = storage
        self.bucket = storage.bucket_name
        self.pool_size = pool_size
        self.timeouts = (connect_timeout, read_timeout)
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
                    connect_timeout=connect_timeout,
                    read_timeout=read_timeout,
                    # One attempt per call: chunkfiles.storage retries, and
                    # also retries what botocore cannot (a body cut mid-read).
                    retries={"total_max_attempts": 1, "mode": "standard"},
                    tcp_keepalive=True,
                    # Readers verify SHA-256 themselves; a CRC32 pass over
                    # every GET body on top of that is wasted CPU.
                    response_checksum_validation="when_required",
                )
            ),
            verify=storage.verify,
        )
        # botocore sends "Expect: 100-continue" with file-like PUT bodies, and
        # a server that answers "100 Continue" and then closes makes its header
        # loop spin forever. Our bodies are small and in memory: skip it.
        self.client.meta.events.unregister("before-call.s3", handlers.add_expect_header)

    @classmethod
    def for_storage(
        cls, storage: Any, connections: int, *, connect_timeout: float, read_timeout: float
    ) -> S3RawStore:
        """The shared store of ``storage``, rebuilt if it needs a larger pool or other timeouts."""
        with _lock:
            store: S3RawStore | None = getattr(storage, _STORE_ATTRIBUTE, None)
            if (
                store is None
                or store.pool_size < connections
                or store.timeouts != (connect_timeout, read_timeout)
            ):
                pool = max(MIN_POOL, connections, store.pool_size if store else 0)
                store = cls(storage, pool, connect_timeout, read_timeout)
                setattr(storage, _STORE_ATTRIBUTE, store)
            return store

    def key(self, name: str) -> str:
        # django-storages' own mapping of a storage name to a key (adds LOCATION).
        return str(self.storage._normalize_name(clean_name(name)))

    def name(self, key: str) -> str:
        """The storage name of ``key`` (drops LOCATION)."""
        location = self.storage.location.strip("/")
        return key[len(location) + 1 :] if location else key

    def get(self, name: str, deadline: float) -> bytes:
        key = self.key(name)
        params = {
            k: v
            for k, v in self.storage.get_object_parameters(key).items()
            if k.startswith("SSECustomer")  # the only write parameters a GET needs
        }
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key, **params)
        except ClientError as error:
            status, code = _status(error)
            if status == 404 or code in ("NoSuchKey", "404", "NotFound"):
                raise FileNotFoundError(
                    f"no S3 object {key!r} in bucket {self.bucket!r}"
                ) from error
            raise
        body = response["Body"]
        try:
            return buffers.filled(
                int(response["ContentLength"]), lambda view: _read_body(body, view, deadline)
            )
        finally:
            body.close()

    def put(self, name: str, data: bytes, checksum: str) -> str:
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

    def exists(self, name: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.key(name))
        except ClientError as error:
            status, code = _status(error)
            if status == 404 or code in ("NoSuchKey", "404", "NotFound"):
                return False
            raise
        return True

    def iter_objects(self, prefix: str) -> Iterator[tuple[str, datetime]]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.key(prefix).rstrip("/") + "/"
        )
        for page in pages:
            for item in page.get("Contents", []):
                yield self.name(item["Key"]), item["LastModified"]

    def is_transient(self, exc: BaseException) -> bool:
        if isinstance(exc, ClientError):
            status, code = _status(exc)
            return (status is not None and status >= 500) or code in TRANSIENT_CODES
        # Connection refused/reset/closed, timeouts, a body cut mid-stream.
        return isinstance(
            exc,
            HTTPClientError
            | ResponseStreamingError
            | IncompleteReadError
            | Urllib3Error
            | ConnectionError
            | socket.timeout
            | EOFError,
        )


def _read_body(body: Any, view: memoryview, deadline: float) -> None:
    """Fill ``view`` from ``body``; each socket read is bounded by the client's
    read timeout and the whole body by ``deadline`` (a server trickling bytes)."""
    # read1() returns after one socket read; read(n) would wait for n bytes
    # and a trickle of one byte per timeout would never reach a deadline check.
    read = getattr(getattr(body, "_raw_stream", None), "read1", None) or body.read
    filled = 0
    while filled < len(view):
        if time.monotonic() > deadline:
            raise TimeoutError(f"deadline passed after {filled} of {len(view)} body bytes")
        chunk = read(min(BODY_CHUNK, len(view) - filled))
        if not chunk:
            raise IncompleteReadError(actual_bytes=filled, expected_bytes=len(view))
        view[filled : filled + len(chunk)] = chunk
        filled += len(chunk)
