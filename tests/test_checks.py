"""System checks flag a broken CHUNKFILES or STORAGES setting."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from chunkfiles.checks import check_settings

FS = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
S3 = "storages.backends.s3.S3Storage"


def ids(**chunkfiles) -> set[str]:
    with override_settings(CHUNKFILES=chunkfiles):
        return {message.id for message in check_settings()}


def test_default_configuration_is_clean():
    assert ids() == set()
    assert ids(STORAGE="default", BLOB_SIZE=4 * 1024 * 1024, READAHEAD=4) == set()


def test_missing_storage_alias():
    assert ids(STORAGE="nope") == {"chunkfiles.E001"}


@pytest.mark.parametrize("value", [0, -1, "1MiB", 1.5, True, None])
def test_nonsense_blob_size(value):
    assert "chunkfiles.E002" in ids(BLOB_SIZE=value)


def test_blob_size_limits():
    assert ids(BLOB_SIZE=6 * 1024**3) == {"chunkfiles.E003"}
    assert ids(BLOB_SIZE=128 * 1024**2) == {"chunkfiles.W002"}


@pytest.mark.parametrize("key", ["UPLOAD_WORKERS", "PREFETCH_WORKERS", "READAHEAD"])
def test_worker_counts(key):
    assert ids(**{key: 0}) == {"chunkfiles.E004"}
    assert ids(**{key: "8"}) == {"chunkfiles.E004"}
    assert ids(**{key: 1000}) == {"chunkfiles.W003"}


def test_unknown_key_is_a_typo_warning():
    assert ids(BLOBSIZE=1) == {"chunkfiles.W001"}


@pytest.mark.parametrize("prefix", ["/abs/", "../up/", 3])
def test_blob_prefix_must_be_relative(prefix):
    assert ids(BLOB_PREFIX=prefix) == {"chunkfiles.E005"}


def test_unimportable_backend():
    storages = {"default": FS, "blobs": {"BACKEND": "no.such.Storage"}}
    with override_settings(STORAGES=storages, CHUNKFILES={"STORAGE": "blobs"}):
        assert {m.id for m in check_settings()} == {"chunkfiles.E006"}


@pytest.mark.parametrize("backend", [S3, "storages.backends.s3boto3.S3Boto3Storage"])
def test_s3_storage_without_bucket(backend):
    storages = {"default": FS, "blobs": {"BACKEND": backend, "OPTIONS": {}}}
    with override_settings(STORAGES=storages, CHUNKFILES={"STORAGE": "blobs"}):
        assert {m.id for m in check_settings()} == {"chunkfiles.E007"}
    storages["blobs"]["OPTIONS"] = {"bucket_name": "b"}
    with override_settings(STORAGES=storages, CHUNKFILES={"STORAGE": "blobs"}):
        assert check_settings() == []
    storages["blobs"]["OPTIONS"] = {}
    with override_settings(
        STORAGES=storages, CHUNKFILES={"STORAGE": "blobs"}, AWS_STORAGE_BUCKET_NAME="b"
    ):
        assert check_settings() == []


def test_checks_run_with_manage_py_check():
    with (
        override_settings(CHUNKFILES={"STORAGE": "missing"}),
        pytest.raises(SystemCheckError, match=r"chunkfiles\.E001"),
    ):
        call_command("check")
