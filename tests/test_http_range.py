"""Range and If-Range parsing (RFC 9110), without Django."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from chunkfiles.http_range import ByteRange, Unsatisfiable, if_range_matches, parse_range

SIZE = 1000


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-99", ByteRange(0, 99)),
        ("bytes=500-", ByteRange(500, 999)),
        ("bytes=-1", ByteRange(999, 999)),
        ("bytes=-5000", ByteRange(0, 999)),
        ("bytes=900-5000", ByteRange(900, 999)),
        ("BYTES = 1-2", ByteRange(1, 2)),
        ("bytes=1000-", Unsatisfiable(SIZE)),
        ("bytes=1000-1001", Unsatisfiable(SIZE)),
        ("bytes=-0", Unsatisfiable(SIZE)),
        (None, None),
        ("", None),
        ("bytes=0-1,5-6", None),
        ("bytes=5-1", None),
        ("bytes=-", None),
        ("bytes=a-b", None),
        ("bytes=1-2-3", None),
        ("chars=0-1", None),
        ("bytes 0-1", None),
    ],
)
def test_parse_range(header: str | None, expected: object) -> None:
    assert parse_range(header, SIZE) == expected


def test_empty_representation_is_unsatisfiable() -> None:
    assert parse_range("bytes=-10", 0) == Unsatisfiable(0)
    assert parse_range("bytes=0-", 0) == Unsatisfiable(0)


def test_content_range_values() -> None:
    assert ByteRange(0, 99).content_range(SIZE) == "bytes 0-99/1000"
    assert ByteRange(0, 99).length == 100
    assert Unsatisfiable(SIZE).content_range() == "bytes */1000"


def test_huge_offsets_past_4_gib() -> None:
    size = 5 * 2**30
    assert parse_range(f"bytes={2**32}-", size) == ByteRange(2**32, size - 1)


MODIFIED = datetime(2024, 6, 1, 12, 30, 15, 500_000, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        (None, True),
        ('"abc"', True),
        ('"abd"', False),
        ('W/"abc"', False),
        ("Sat, 01 Jun 2024 12:30:15 GMT", True),
        ("Sat, 01 Jun 2024 12:30:16 GMT", False),
        ("not a date", False),
    ],
)
def test_if_range(header: str | None, matches: bool) -> None:
    assert if_range_matches(header, '"abc"', MODIFIED) is matches
