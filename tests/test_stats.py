"""chunkfiles_stats: counts, bytes and the dedupe ratio, human and JSON."""

from __future__ import annotations

import io
import json
import os
from typing import Any

import pytest
from django.core.management import call_command

from chunkfiles.models import File, FileBlob
from chunkfiles.stats import store_stats

pytestmark = pytest.mark.django_db

KIB = 1024


def store(name: str, data: bytes, type: str = "t") -> File:
    file = File.objects.create(name=name, type=type)
    file.putfile(io.BytesIO(data), blob_size=4 * KIB)
    return file


def stats_json(*args: str) -> dict[str, Any]:
    out = io.StringIO()
    call_command("chunkfiles_stats", "--json", *args, stdout=out)
    data: dict[str, Any] = json.loads(out.getvalue())
    return data


class TestStats:
    def test_empty_store(self, fs_storage: Any) -> None:
        data = stats_json()
        assert data["files"] == 0 and data["blobs"] == 0 and data["dedupe_ratio"] is None
        out = io.StringIO()
        call_command("chunkfiles_stats", stdout=out)
        assert "dedupe ratio" in out.getvalue()

    def test_counts_and_ratio(self, fs_storage: Any) -> None:
        shared = os.urandom(8 * KIB)
        store("a.bin", shared, type="art")
        store("b.bin", shared, type="art")
        store("c.txt", b"c" * KIB, type="doc")
        File.objects.create(name="never-stored", type="doc")
        orphan = store("gone", os.urandom(KIB))
        orphan_blob = FileBlob.objects.get(fileblobindex__file=orphan)
        orphan.delete()
        FileBlob.objects.filter(pk=orphan_blob.pk).mark_lost()
        data = stats_json("--largest", "2")
        assert data["files"] == 4 and data["files_not_stored"] == 1
        assert data["logical_bytes"] == 17 * KIB
        assert data["blobs"] == 4  # 2 shared + 1 for c.txt + the orphan
        assert data["referenced_blobs"] == 3 and data["referenced_bytes"] == 9 * KIB
        assert data["unreferenced_blobs"] == 1 and data["unreferenced_bytes"] == KIB
        assert data["lost_blobs"] == 1
        assert data["dedupe_ratio"] == pytest.approx(17 / 9)
        assert [f["name"] for f in data["largest"]] == ["a.bin", "b.bin"]
        assert data["types"] == [
            {"type": "art", "files": 2, "bytes": 16 * KIB},
            {"type": "doc", "files": 2, "bytes": KIB},
        ]
        assert data["storages"] == {"blobs": {"blobs": 4, "bytes": 10 * KIB}}

    def test_human_report(self, fs_storage: Any) -> None:
        store("x", b"x" * 100)
        store("y", b"x" * 100)
        out = io.StringIO()
        call_command("chunkfiles_stats", stdout=out)
        text = out.getvalue()
        assert "2.00x" in text and "largest files" in text and "per type" in text

    def test_query_count(self, fs_storage: Any, django_assert_max_num_queries: Any) -> None:
        for i in range(20):
            store(f"{i}", os.urandom(KIB))
        with django_assert_max_num_queries(6):
            assert store_stats().files == 20
