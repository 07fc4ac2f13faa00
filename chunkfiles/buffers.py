"""A fresh ``bytes`` object filled in place, so big reads copy each byte once.

``read()`` must return ``bytes``, and joining blobs (or filling a bytearray
and converting it) holds the data twice at the peak. CPython lets us fill a
new, not yet shared ``bytes`` object directly, as its own ``FileIO.readall``
does; elsewhere we fall back to a bytearray and one copy.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable

_CPYTHON = sys.implementation.name == "cpython"
if _CPYTHON:
    _from_size = ctypes.pythonapi.PyBytes_FromStringAndSize
    _from_size.restype = ctypes.py_object
    _from_size.argtypes = (ctypes.c_void_p, ctypes.c_ssize_t)
    # Offset of the character array inside a bytes object (after the header).
    _DATA_OFFSET = sys.getsizeof(b"") - 1


def filled(size: int, fill: Callable[[memoryview], None]) -> bytes:
    """A ``bytes`` of ``size`` bytes written by ``fill(view)`` into a writable view of it.

    ``fill`` must write the whole view or raise; the object is not visible to
    anyone else until it returns.
    """
    if size <= 1 or not _CPYTHON:
        buffer = bytearray(size)
        fill(memoryview(buffer))
        return bytes(buffer)
    result: bytes = _from_size(None, size)
    # The object is new and unhashed; nobody else holds it while we write.
    view = memoryview((ctypes.c_char * size).from_address(id(result) + _DATA_OFFSET)).cast("B")
    try:
        fill(view)
    finally:
        view.release()
    return result
