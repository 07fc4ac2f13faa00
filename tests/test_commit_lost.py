"""A lost COMMIT reply must not delete committed blobs (PostgreSQL and MariaDB).

The proxy forwards COMMIT to the real server and drops the answer: the rows
are committed and the client sees a broken connection. Every object a
committed row names must survive, and the file must read back.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator

import pytest
from django.db import DatabaseError, connections

from chunkfiles.models import File, FileBlob
from testproject.dbproxy import CommitCuttingProxy

pytestmark = [
    pytest.mark.race,
    pytest.mark.django_db(transaction=True, databases=["default", "proxied"]),
]

BLOB = 4096


@pytest.fixture
def proxied_db() -> Iterator[CommitCuttingProxy]:
    """Points the ``proxied`` alias (a mirror of ``default``) through the proxy."""
    conn = connections["proxied"]
    original = dict(conn.settings_dict)
    conn.close()
    with CommitCuttingProxy(int(original["PORT"]), original["HOST"]) as proxy:
        conn.settings_dict.update(PORT=str(proxy.port), HOST="127.0.0.1")
        try:
            yield proxy
        finally:
            conn.close()
            conn.settings_dict.clear()
            conn.settings_dict.update(original)


@pytest.mark.parametrize("shared", [False, True], ids=["new-content", "partly-deduplicated"])
def test_lost_commit_reply_keeps_every_committed_object(storage, proxied_db, shared):
    data = os.urandom(6 * BLOB)
    if shared:  # half the blobs exist already: the upload links and writes
        File.objects.create(name="earlier", type="t").putfile(
            io.BytesIO(data[: 3 * BLOB]), blob_size=BLOB
        )
    f = File.objects.using("proxied").create(name="cut", type="t")
    proxied_db.cut_after_commit()
    with pytest.raises(DatabaseError):
        f.putfile(io.BytesIO(data), blob_size=BLOB)
    assert proxied_db.cuts == 1, "the proxy did not see the COMMIT"

    committed = File.objects.get(pk=f.pk)  # through the healthy connection
    assert committed.size == len(data), "the COMMIT did not reach the server"
    names = set(storage.object_names())
    for blob in FileBlob.objects.all():
        assert blob.path in names, f"committed blob {blob.checksum} lost its object"
    with committed.getfile() as fp:
        assert fp.read() == data


class InjectedError(Exception):
    pass


def test_failure_before_commit_removes_the_upload_objects(storage, proxied_db, monkeypatch):
    """The control case: a failure before COMMIT is a certain rollback, and the
    upload's objects are removed (their rows can never be committed)."""
    from chunkfiles.writer import BlobWriter

    save_rows = BlobWriter.save_rows

    def save_rows_then_fail(self: BlobWriter) -> object:
        save_rows(self)
        raise InjectedError

    monkeypatch.setattr(BlobWriter, "save_rows", save_rows_then_fail)
    f = File.objects.using("proxied").create(name="rolled-back", type="t")
    with pytest.raises(InjectedError):
        f.putfile(io.BytesIO(os.urandom(4 * BLOB)), blob_size=BLOB)
    assert FileBlob.objects.count() == 0
    assert storage.object_names() == []
