"""Deduplicated, chunked file storage for Django, after Sentry's file store.

The models (``chunkfiles.models.File``, ``FileBlob``, ``FileBlobIndex``) carry
the API: ``File.putfile()``, ``File.getfile()``, ``File.save_to()`` and
``FileBlob.from_files()``. They are not imported here, so importing this
package never needs the app registry.
"""

from .exceptions import (
    BlobCorruptError,
    BlobMissingError,
    BlobReadError,
    ChecksumMismatchError,
    ChunkfilesError,
)

__version__ = "0.1.0"

__all__ = [
    "BlobCorruptError",
    "BlobMissingError",
    "BlobReadError",
    "ChecksumMismatchError",
    "ChunkfilesError",
    "__version__",
]
