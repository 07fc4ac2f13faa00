"""The transaction of an upload: retried on deadlocks, never guessed at.

``commit_rows`` runs the row work in one transaction. A deadlock or a
serialization failure rolls the whole transaction back, so it is retried
(when the upload owns the transaction). Blobs that vanished under the
upload are written again and the transaction retried. A connection lost
while committing leaves the outcome unknown: the writer is told to delete
nothing, and the error reaches the caller.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from django.db import DatabaseError, IntegrityError, connections, transaction

from .conf import chunkfiles_settings
from .exceptions import BlobWriteError
from .writer import BlobWriter, VanishedError

if TYPE_CHECKING:
    from .models import FileBlob

logger = logging.getLogger(__name__)

R = TypeVar("R")

#: PostgreSQL SQLSTATEs of a transaction rolled back by a deadlock or serialization failure.
PG_RETRYABLE = frozenset({"40P01", "40001"})
#: MySQL/MariaDB error numbers: deadlock, lock wait timeout.
MYSQL_RETRYABLE = frozenset({1213, 1205})


def retryable(error: BaseException) -> bool:
    """Whether the database rolled the transaction back for a reason worth retrying."""
    cause = error.__cause__ or error
    state = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    if state in PG_RETRYABLE:
        return True
    args: tuple[object, ...] = getattr(cause, "args", ())
    return bool(args) and args[0] in MYSQL_RETRYABLE


def commit_rows(writer: BlobWriter, make_rows: Callable[[dict[str, FileBlob]], R]) -> R:
    """Save the writer's blob rows and ``make_rows(blobs)`` in one transaction.

    Deadlocks and vanished blobs each have their own budget of
    ``DB_RETRIES`` attempts: under a busy garbage collector an upload may
    meet both, and one must not use up the other's retries.
    """
    owns_transaction = not connections[writer.using].in_atomic_block
    budget = max(1, int(chunkfiles_settings.DB_RETRIES))
    conflicts = vanishings = 0
    while True:
        committing = False
        try:
            with transaction.atomic(using=writer.using):
                result = make_rows(writer.save_rows())
                committing = True
        except VanishedError as gone:
            vanishings += 1
            if vanishings >= budget:
                raise BlobWriteError(
                    gone.checksums[0], None, f"{gone} on each of {budget} attempts"
                ) from gone
            logger.info("rewriting %d blobs removed during the upload", len(gone.checksums))
            writer.rewrite(gone.checksums)
            continue
        except IntegrityError:
            # A blob row we linked was deleted between our lock and the foreign
            # key check (a database without row locks): check again and retry.
            conflicts += 1
            if conflicts >= budget or not owns_transaction:
                raise
            continue
        except DatabaseError as error:
            conflicts += 1
            if owns_transaction and retryable(error) and conflicts < budget:
                time.sleep(random.uniform(0, min(1.0, 0.02 * 2**conflicts)))  # jitter, not crypto
                continue
            if committing and owns_transaction and not retryable(error):
                writer.uncertain()
            raise
        writer.committed()
        writer.clear_unused_marks()
        return result
