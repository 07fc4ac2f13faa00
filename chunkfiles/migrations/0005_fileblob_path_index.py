"""An index on ``FileBlob.path``: orphan collection asks which of a batch of
object names some row names (``path IN (...)``), and without one each batch
scans the whole blob table.

MySQL and MariaDB cannot index a whole TEXT column, so there the index covers
the first 255 characters (blob names are far shorter). PostgreSQL builds it
``CONCURRENTLY``, so a large table keeps taking uploads meanwhile; InnoDB
adds a secondary index online by itself.
"""

from django.db import migrations, models

NAME = "chunkfiles_blob_path"
INDEX = models.Index(fields=["path"], name=NAME)


def create_index(apps, schema_editor):
    FileBlob = apps.get_model("chunkfiles", "FileBlob")
    table = schema_editor.quote_name(FileBlob._meta.db_table)
    name, path = schema_editor.quote_name(NAME), schema_editor.quote_name("path")
    vendor = schema_editor.connection.vendor
    if vendor == "mysql":
        schema_editor.execute(f"CREATE INDEX {name} ON {table} ({path}(255))")
    elif vendor == "postgresql":
        # This migration runs again only if a run was interrupted, which can
        # leave an INVALID index behind: build it afresh rather than keep that.
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        schema_editor.execute(f"CREATE INDEX CONCURRENTLY {name} ON {table} ({path})")
    else:
        schema_editor.add_index(FileBlob, INDEX)


def drop_index(apps, schema_editor):
    FileBlob = apps.get_model("chunkfiles", "FileBlob")
    schema_editor.remove_index(FileBlob, INDEX)


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [
        ("chunkfiles", "0004_file_size_type_indexes"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(create_index, drop_index, atomic=False)],
            state_operations=[migrations.AddIndex(model_name="fileblob", index=INDEX)],
        ),
    ]
