"""Every variant a child process can run, by name (``benchmarks.one`` looks them up here).

A suite that brings its own variants (e.g. an export benchmark) adds its
module's ``VARIANTS`` below.
"""

from __future__ import annotations

from . import celery_bench, export_bench, reads, uploads
from .workload import Variant

VARIANTS: dict[str, Variant] = {
    **reads.VARIANTS,
    **uploads.VARIANTS,
    **export_bench.VARIANTS,
    **celery_bench.VARIANTS,
}
