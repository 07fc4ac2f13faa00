"""HTTP Range requests (RFC 9110 section 14) for one representation of known size.

Only what download managers and media players need: one byte range answers
206, a range starting past the end answers 416, and anything else (a
malformed header, several ranges, a stale ``If-Range``) falls back to the
whole representation with 200, which RFC 9110 allows a server to do for
any Range request. Pure functions: no Django, no I/O.
"""

from __future__ import annotations

import re
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import NamedTuple

_SPEC = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")


class ByteRange(NamedTuple):
    """Bytes ``start`` to ``end`` inclusive, as in ``Content-Range``."""

    start: int
    end: int

    @property
    def length(self) -> int:
        """How many bytes the range holds."""
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        """The ``Content-Range`` value of a 206 answer."""
        return f"bytes {self.start}-{self.end}/{size}"


class Unsatisfiable(NamedTuple):
    """The range starts at or after the end: the answer is 416."""

    size: int

    def content_range(self) -> str:
        """The ``Content-Range`` value of a 416 answer."""
        return f"bytes */{self.size}"


def parse_range(header: str | None, size: int) -> ByteRange | Unsatisfiable | None:
    """The one range ``header`` asks of ``size`` bytes, or None to send them all.

    ``bytes=0-99`` (first bytes), ``bytes=100-`` (from an offset),
    ``bytes=-500`` (the last bytes) are served; an end past the last byte
    is clipped. Multiple ranges are answered with the whole file: a
    multipart/byteranges body costs more to build than it saves.
    """
    if not header:
        return None
    unit, sep, specs = header.partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in specs:
        return None
    match = _SPEC.match(specs)
    if match is None:
        return None
    first, last = match.groups()
    if not first:
        if not last:
            return None  # "bytes=-" is malformed
        suffix = int(last)
        if suffix == 0 or size == 0:
            return Unsatisfiable(size)
        return ByteRange(max(0, size - suffix), size - 1)
    start = int(first)
    if last and int(last) < start:
        return None  # invalid: RFC 9110 says ignore the header
    if start >= size:
        return Unsatisfiable(size)
    end = int(last) if last else size - 1
    return ByteRange(start, min(end, size - 1))


def if_range_matches(header: str | None, etag: str, last_modified: datetime) -> bool:
    """Whether a Range may be honoured given ``If-Range`` (absent: yes).

    An entity tag must match strongly (weak tags never do); a date must equal
    ``Last-Modified`` to the second, as HTTP dates carry no fraction.
    """
    if header is None:
        return True
    value = header.strip()
    if value.startswith(('"', "W/")):
        return value == etag
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return False
    if when.tzinfo is None or last_modified.tzinfo is None:
        return False
    return int(when.timestamp()) == int(last_modified.timestamp())
