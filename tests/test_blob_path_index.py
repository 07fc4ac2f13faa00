"""The index on ``FileBlob.path`` that orphan collection's name look-ups need.

Migration 0005 builds it by hand on each database (a 255-character prefix
index on MySQL/MariaDB, ``CONCURRENTLY`` on PostgreSQL); these tests show it
is there and that the look-up orphan collection runs (``path IN (...)``)
uses it, instead of scanning every blob row once per batch of names.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from chunkfiles.gc import named_paths
from chunkfiles.models import FileBlob

pytestmark = pytest.mark.django_db(transaction=True)

NAME = "chunkfiles_blob_path"


def path_indexes() -> dict[str, Any]:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, FileBlob._meta.db_table)
    return {
        name: info
        for name, info in constraints.items()
        if info["index"] and info["columns"] == ["path"]
    }


def make_blobs(count: int) -> list[str]:
    paths = [f"chunkfiles/{i:02x}/{i:08x}" for i in range(count)]
    FileBlob.objects.bulk_create(
        FileBlob(path=path, size=1, checksum=f"{i:064x}", storage="blobs")
        for i, path in enumerate(paths)
    )
    return paths


class TestBlobPathIndex:
    def test_the_migration_builds_it_and_takes_it_back(self) -> None:
        assert list(path_indexes()) == [NAME]
        executor = MigrationExecutor(connection)
        executor.migrate([("chunkfiles", "0004_file_size_type_indexes")])
        try:
            assert path_indexes() == {}
        finally:
            executor = MigrationExecutor(connection)
            executor.loader.build_graph()
            executor.migrate(executor.loader.graph.leaf_nodes("chunkfiles"))
        assert list(path_indexes()) == [NAME]

    def test_orphan_lookups_use_it(self) -> None:
        paths = make_blobs(3000)
        wanted = [paths[7], paths[2500], "chunkfiles/no/such-object"]
        assert named_paths("default", wanted) == {paths[7], paths[2500]}
        rows = FileBlob.objects.filter(path__in=wanted).values_list("path", flat=True)
        if connection.vendor == "postgresql":
            # A table this small could be read whole just as fast; ask for the
            # plan the planner gives a large one.
            with connection.cursor() as cursor:
                cursor.execute("SET enable_seqscan = off")
            try:
                plan = rows.explain()
            finally:
                with connection.cursor() as cursor:
                    cursor.execute("RESET enable_seqscan")
        elif connection.vendor == "mysql":
            with connection.cursor() as cursor:
                cursor.execute(f"ANALYZE TABLE {FileBlob._meta.db_table}")
            plan = rows.explain()
        else:
            plan = rows.explain()
        assert NAME in plan, plan

    @pytest.mark.postgresql
    def test_an_interrupted_concurrent_build_is_built_again(self) -> None:
        # CREATE INDEX CONCURRENTLY, interrupted, leaves the index INVALID:
        # unused by the planner, and kept by CREATE INDEX ... IF NOT EXISTS.
        executor = MigrationExecutor(connection)
        executor.migrate([("chunkfiles", "0004_file_size_type_indexes")])
        table = FileBlob._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE INDEX {NAME} ON {table} (size)")
            cursor.execute(
                "UPDATE pg_index SET indisvalid = false WHERE indexrelid = %s::regclass", [NAME]
            )
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes("chunkfiles"))
        assert list(path_indexes()) == [NAME]
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT indisvalid FROM pg_index WHERE indexrelid = %s::regclass", [NAME]
            )
            assert cursor.fetchone() == (True,)
