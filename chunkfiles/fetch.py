"""The seam between stores and readers: fetch a blob, verify it, name what failed.

A ``Fetch`` maps a ``BlobRef`` to the object's raw bytes. Whoever opens a
file builds one from the stores (``storage_fetch``) and hands it down;
sources never build their own. ``load_blob`` is the one place every byte a
reader returns passes through: it checks size and SHA-256, fetches again
when the bytes are damaged, and turns any failure into an ``OSError``
subclass that names the file, the blob and the offset.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .exceptions import BlobCorruptError, BlobMissingError, BlobReadError
from .refs import BlobRef
from .retry import RetryPolicy, retrying
from .storage import BlobStore, ObjectCorruptError, blob_store, check_bytes

#: Fetches a blob's raw bytes (``FileNotFoundError`` if the object is absent).
Fetch = Callable[[BlobRef], bytes]


def load_blob(
    ref: BlobRef, fetch: Fetch, file_id: int | None, policy: RetryPolicy | None = None
) -> bytes:
    """Fetch one blob and verify it; bytes that fail the check are fetched again."""
    where: dict[str, Any] = {
        "file_id": file_id,
        "checksum": ref.checksum,
        "offset": ref.offset,
        "path": ref.path,
    }
    if ref.path is None:
        raise BlobMissingError(**where, detail="no storage name recorded")

    def attempt(deadline: float) -> bytes:
        data = fetch(ref)
        problem = check_bytes(data, ref.size, ref.checksum)
        if problem:
            raise ObjectCorruptError(problem)
        return data

    try:
        return retrying(
            policy or RetryPolicy.from_settings(),
            attempt,
            lambda exc: isinstance(exc, ObjectCorruptError),
        )
    except BlobReadError:
        raise
    except FileNotFoundError as exc:
        raise BlobMissingError(**where, detail=str(exc)) from exc
    except ObjectCorruptError as exc:
        raise BlobCorruptError(**where, detail=str(exc)) from exc
    except Exception as exc:
        # Any failure (network, credentials, a storage bug) must reach the
        # caller as a read error; a worker thread must never hide it.
        raise BlobReadError(**where, detail=f"{type(exc).__name__}: {exc}") from exc


def storage_fetch(connections: int = 1) -> Fetch:
    """A ``Fetch`` reading each blob from the storage its row names.

    Stores are built once per alias and shared by every thread of the reader.
    """
    stores: dict[str, BlobStore] = {}

    def fetch(ref: BlobRef) -> bytes:
        store = stores.get(ref.storage)
        if store is None:
            store = stores.setdefault(ref.storage, blob_store(ref.storage or None, connections))
        assert ref.path is not None  # load_blob checks before fetching
        return store.get(ref.path)

    return fetch
