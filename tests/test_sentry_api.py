"""Code written against Sentry's File / FileBlob API keeps working on chunkfiles.

Each test follows what Sentry's own code does (the chunk-upload flow of
``sentry.tasks.assemble``, ``FileBlob.from_file``, ``File.save_to``) on both
the filesystem and SeaweedFS S3.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone

from chunkfiles.assemble import AssembleChecksumMismatch
from chunkfiles.exceptions import BlobMissingError, ChecksumMismatchError
from chunkfiles.models import File, FileBlob, FileBlobIndex

pytestmark = pytest.mark.django_db

#: Sentry clients (sentry-cli) upload chunks of 8 MiB.
CHUNK = 8 * 1024 * 1024


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def payload(size: int, seed: int = 12) -> bytes:
    return random.Random(seed).randbytes(size)


def upload_chunks(chunks: list[bytes]) -> list[FileBlob]:
    """What Sentry's chunk-upload endpoint does: each chunk with its SHA-1."""
    return FileBlob.from_files([(ContentFile(c), sha1(c)) for c in chunks])


def test_chunk_upload_then_assemble(storage, temp_dir):
    data = payload(2 * CHUNK + 1000)
    chunks = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]
    blobs = upload_chunks(chunks)
    assert [b.size for b in blobs] == [CHUNK, CHUNK, 1000]

    file = File.objects.create(name="bundle.zip", type="artifact.bundle")
    with file.assemble_from_file_blob_ids(
        [b.id for b in blobs], sha1(data), temp_dir=str(temp_dir)
    ) as tmp:
        assert tmp.read() == data
    assert list(temp_dir.iterdir()) == []

    stored = File.objects.get(pk=file.pk)
    assert (stored.size, stored.checksum) == (len(data), sha1(data))
    assert [r.offset for r in stored.blob_refs()] == [0, CHUNK, 2 * CHUNK]
    with stored.getfile() as fp:
        assert fp.read() == data


def test_duplicate_chunk_in_one_request_is_stored_once_and_linked_twice(storage):
    a, b = payload(1000, seed=1), payload(700, seed=2)
    blobs = upload_chunks([a, b, a])
    assert blobs[0].pk == blobs[2].pk != blobs[1].pk
    assert FileBlob.objects.count() == 2
    assert len(storage.object_names()) == 2

    file = File.objects.create(name="twice.bin", type="default")
    file.assemble_from_file_blob_ids([x.id for x in blobs], sha1(a + b + a)).close()
    assert [r.offset for r in file.blob_refs()] == [0, 1000, 1700]
    with file.getfile() as fp:
        assert fp.read() == a + b + a


def test_wrong_whole_file_checksum_links_nothing(storage, temp_dir):
    chunks = [payload(500, seed=3), payload(300, seed=4)]
    blobs = upload_chunks(chunks)
    file = File.objects.create(name="bad.bin", type="default")

    with pytest.raises(AssembleChecksumMismatch) as caught:
        file.assemble_from_file_blob_ids(
            [b.id for b in blobs], sha1(b"something else"), temp_dir=str(temp_dir)
        )
    # Sentry's callers catch IOError (OSError) around the assemble step.
    assert isinstance(caught.value, OSError)
    assert isinstance(caught.value, ChecksumMismatchError)
    assert caught.value.actual == sha1(b"".join(chunks))
    assert not FileBlobIndex.objects.filter(file=file).exists()
    assert File.objects.values_list("size", "checksum").get(pk=file.pk) == (None, None)
    assert list(temp_dir.iterdir()) == []


def test_assemble_accepts_a_sha256_whole_file_checksum(storage):
    data = payload(900, seed=5)
    blobs = upload_chunks([data[:400], data[400:]])
    file = File.objects.create(name="s.bin", type="default")
    file.assemble_from_file_blob_ids(
        [b.id for b in blobs], hashlib.sha256(data).hexdigest().upper()
    ).close()
    # File.checksum stays Sentry's SHA-1 whatever the caller sent.
    assert File.objects.get(pk=file.pk).checksum == sha1(data)


def test_unknown_blob_id_links_nothing(storage):
    blobs = upload_chunks([payload(100, seed=6)])
    file = File.objects.create(name="gone.bin", type="default")
    missing = max(b.id for b in blobs) + 1000
    with pytest.raises(FileBlob.DoesNotExist, match=str(missing)):
        file.assemble_from_file_blob_ids([blobs[0].id, missing], sha1(b"x"))
    assert not FileBlobIndex.objects.filter(file=file).exists()


def test_blob_whose_object_is_gone_is_named_with_its_offset(storage):
    first, second = payload(100, seed=7), payload(200, seed=8)
    blobs = upload_chunks([first, second])
    storage.remove(blobs[1].path)
    file = File.objects.create(name="half.bin", type="default")
    with pytest.raises(BlobMissingError) as caught:
        file.assemble_from_file_blob_ids([b.id for b in blobs], sha1(first + second))
    assert caught.value.offset == 100
    assert caught.value.checksum == blobs[1].checksum
    assert not FileBlobIndex.objects.filter(file=file).exists()


def test_assembling_again_replaces_the_content_and_revives_unused_blobs(storage):
    old, new = payload(300, seed=9), payload(400, seed=10)
    old_blobs, new_blobs = upload_chunks([old]), upload_chunks([new])
    FileBlob.objects.filter(pk=new_blobs[0].pk).update(unused_since=timezone.now())
    file = File.objects.create(name="v.bin", type="default")
    file.assemble_from_file_blob_ids([old_blobs[0].id], sha1(old)).close()
    file.assemble_from_file_blob_ids([new_blobs[0].id], sha1(new)).close()
    with file.getfile() as fp:
        assert fp.read() == new
    assert FileBlobIndex.objects.filter(file=file).count() == 1
    assert FileBlob.objects.get(pk=new_blobs[0].pk).unused_since is None


def test_from_file_reads_a_django_file_from_its_start_every_time(storage):
    content = ContentFile(b"sentry chunk")
    first = FileBlob.from_file(content)
    second = FileBlob.from_file(content)  # position is at EOF after the first call
    assert second.pk == first.pk
    assert (second.size, second.checksum) == (12, hashlib.sha256(b"sentry chunk").hexdigest())
    assert FileBlob.objects.count() == 1


def test_from_files_checksum_mismatch_is_an_oserror(storage):
    with pytest.raises(OSError, match="checksum mismatch"):
        FileBlob.from_files([(ContentFile(b"real"), sha1(b"claimed"))])
    assert FileBlob.objects.count() == 0
    assert storage.object_names() == []


def test_save_to_creates_missing_directories(storage, tmp_path: Path):
    data = payload(3000, seed=11)
    file = File.objects.create(name="deep.bin", type="default")
    file.putfile(ContentFile(data), blob_size=1024)
    target = tmp_path / "cache" / "2026" / "11" / "deep.bin"
    written = file.save_to(target)
    assert Path(written) == target
    assert target.read_bytes() == data
    assert sorted(p.name for p in target.parent.iterdir()) == ["deep.bin"]


def test_generate_unique_path_gives_fresh_names_under_the_blob_prefix(settings):
    settings.CHUNKFILES = {"BLOB_PREFIX": "blobs/"}
    names = {FileBlob.generate_unique_path() for _ in range(100)}
    assert len(names) == 100
    assert all(name.startswith("blobs/") and len(name) > len("blobs/") + 30 for name in names)
