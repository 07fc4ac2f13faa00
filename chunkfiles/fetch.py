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

from .conf import blob_alias
from .exceptions import BlobCorruptError, BlobMissingError, BlobReadError
from .refs import BlobRef
from .retry import RetryPolicy
from .storage import ObjectCorruptError, blob_store, verified

#: Fetches a blob's raw bytes (``FileNotFoundError`` if the object is absent).
Fetch = Callable[[BlobRef], bytes]
#: Finds a missing blob's new location, or marks it lost and returns None
#: (``chunkfiles.refs.relocate``). Runs in the caller's thread: it queries.
Relocate = Callable[[BlobRef], "BlobRef | None"]


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

    try:
        return verified(
            lambda: fetch(ref), ref.size, ref.checksum, policy or RetryPolicy.from_settings()
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


def settle(
    load: Callable[[], bytes],
    ref: BlobRef,
    fetch: Fetch,
    file_id: int | None,
    relocate: Relocate | None,
    policy: RetryPolicy | None = None,
) -> bytes:
    """``load()`` (``load_blob`` of ``ref``, or a worker's result of it), following a move.

    A blob found missing may have moved to another storage since its ref was
    read: it is looked up again with ``relocate`` and fetched from there.
    """
    try:
        return load()
    except BlobMissingError:
        moved = relocate(ref) if relocate is not None else None
        if moved is None:
            raise
        return load_blob(moved, fetch, file_id, policy)


def storage_fetch(connections: int = 1) -> Fetch:
    """A ``Fetch`` reading each blob from the storage its row names.

    Every thread of the reader shares the storage's one client (``blob_store``).
    """

    def fetch(ref: BlobRef) -> bytes:
        assert ref.path is not None  # load_blob checks before fetching
        return blob_store(blob_alias(ref.storage), connections).get(ref.path)

    return fetch
