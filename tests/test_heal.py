"""A read that finds an object gone marks its blob lost; the next upload heals it.

And a reader whose index was loaded before a blob moved follows the blob.
"""

from __future__ import annotations

import io
import os

import pytest

from chunkfiles.exceptions import BlobMissingError
from chunkfiles.models import File, FileBlob

from .conftest import MODES

pytestmark = pytest.mark.django_db
BLOB = 4096


def test_missing_object_is_marked_lost_then_healed_by_upload(storage, mode):
    data = os.urandom(4 * BLOB)
    old = File.objects.create(name="old", type="t")
    old.putfile(io.BytesIO(data), blob_size=BLOB)
    victim = old.blobs.order_by("fileblobindex__offset")[2]
    storage.remove(victim.path)

    with pytest.raises(BlobMissingError) as info, old.getfile(**MODES[mode]) as fp:
        fp.read()
    assert info.value.offset == 2 * BLOB
    victim.refresh_from_db()
    assert victim.lost_at is not None
    assert FileBlob.objects.lost().count() == 1

    new = File.objects.create(name="new", type="t")
    new.putfile(io.BytesIO(data), blob_size=BLOB)  # writes the lost blob again
    victim.refresh_from_db()
    assert victim.lost_at is None and victim.path in storage.object_names()
    assert FileBlob.objects.count() == 4, "healing reuses the row"
    for f in (old, new):
        with File.objects.get(pk=f.pk).getfile(**MODES[mode]) as fp:
            assert fp.read() == data


def test_reader_follows_a_blob_that_moved_after_it_opened(storage, mode):
    from chunkfiles.reader import open_refs
    from chunkfiles.refs import relocate
    from chunkfiles.storage import blob_store, new_blob_name

    data = os.urandom(3 * BLOB)
    f = File.objects.create(name="moving", type="t")
    f.putfile(io.BytesIO(data), blob_size=BLOB)
    stale = f.blob_refs()  # as a reader opened before the move holds them
    opened = f.getfile(**MODES[mode]) if mode != "prefetch" else None
    # Move blob 1 to a new name (as chunkfiles_move_storage does), then drop the old object.
    blob = f.blobs.order_by("fileblobindex__offset")[1]
    store = blob_store()
    moved = store.put(new_blob_name(), store.get(blob.path), blob.checksum)
    FileBlob.objects.filter(pk=blob.pk).update(path=moved)
    store.delete(blob.path)

    if opened is not None:  # getfile() wires the relocation in
        with opened as fp:
            assert fp.read() == data
    with open_refs(stale, relocate=lambda ref: relocate(ref, "default"), **MODES[mode]) as fp:
        assert fp.read() == data
    # Without relocation the stale ref is just missing.
    with pytest.raises(BlobMissingError), open_refs(stale, **MODES[mode]) as fp:
        fp.read()
    blob.refresh_from_db()
    assert blob.lost_at is None, "a moved blob must not be marked lost"
