"""The streamed ZIP writer: readable by zipfile, zip64, memory bounded."""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest

from chunkfiles.zipstream import Member, zip_stream

WHEN = datetime(2024, 6, 1, 12, 30, 14, tzinfo=timezone.utc)


def test_members_round_trip() -> None:
    members = [
        Member("a.txt", WHEN, lambda: [b"hello ", b"world"]),
        Member("dir/b.bin", WHEN, lambda: [bytes(range(256)) * 10]),
        Member("empty", WHEN, lambda: []),
    ]

    body = b"".join(zip_stream(members))

    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.testzip() is None
        assert archive.namelist() == ["a.txt", "dir/b.bin", "empty"]
        assert archive.read("a.txt") == b"hello world"
        assert archive.read("dir/b.bin") == bytes(range(256)) * 10
        info = archive.getinfo("a.txt")
        assert info.date_time == (2024, 6, 1, 12, 30, 14)
        assert info.compress_type == zipfile.ZIP_STORED
        # The local header carries the zip64 extra field, so a member may pass 4 GiB.
        start = info.header_offset
        name_len, extra_len = struct.unpack("<HH", body[start + 26 : start + 30])
        local_extra = body[start + 30 + name_len : start + 30 + name_len + extra_len]
        assert ZIP64_EXTRA in extra_ids(local_extra)


ZIP64_EXTRA = 0x0001


def extra_ids(extra: bytes) -> list[int]:
    """Header ids of a zip extra field (id, size, data)*."""
    ids = []
    while len(extra) >= 4:
        header, size = struct.unpack("<HH", extra[:4])
        ids.append(header)
        extra = extra[4 + size :]
    return ids


def test_output_is_bounded_by_the_chunk_size() -> None:
    chunk = b"x" * (256 * 1024)
    opened: list[str] = []

    def chunks(name: str) -> Iterator[bytes]:
        opened.append(name)
        for _ in range(64):  # 16 MiB per member
            yield chunk

    stream = zip_stream(Member(f"m{n}", WHEN, lambda n=n: chunks(f"m{n}")) for n in range(3))
    sizes = []
    for piece in stream:
        sizes.append(len(piece))
        # Members are opened one at a time, as the archive reaches them.
        assert len(opened) <= 1 + sum(sizes) // (16 * 2**20)

    assert max(sizes) < len(chunk) + 1024
    assert sum(sizes) > 3 * 16 * 2**20


def test_a_failing_member_propagates() -> None:
    def broken() -> Iterator[bytes]:
        yield b"start"
        raise OSError("blob gone")

    stream = zip_stream([Member("ok", WHEN, lambda: [b"x"]), Member("bad", WHEN, broken)])

    with pytest.raises(OSError, match="blob gone"):
        b"".join(stream)
