"""``python -m benchmarks.run``: chunkfiles vs boto3 vs Sentry, through a slow link.

Starts SeaweedFS behind a latency proxy, then runs each suite in ``SUITES``:
every measured variant runs in a fresh process (``benchmarks.one``), variants
are interleaved and their order rotates per run, and the report gives
medians, ratios of the same run, and every target with PASS/MISS. Progress
goes to stderr, the report (RST) to stdout.

Exit status: 1 when a read returned wrong bytes or a variant crashed (and,
with ``--strict``, when an exact count is missed: requests per blob, queries,
PUTs of stored content). Timing and memory MISSes are printed and never fail
a run, so ``--quick`` can gate CI on a shared, noisy machine.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable

from . import big, celery_bench, export_bench, opening, retries, sweep
from .environment import MIB, Spec, machine_info, servers
from .harness import Bench, log, prepare
from .report import CORRECTNESS, COUNT, MEASURE, Section

Suite = Callable[[Bench], Section]
#: Suites in report order; a new benchmark adds ``"name": module.run`` here.
SUITES: dict[str, Suite] = {
    "sweep": sweep.run,
    "opening": opening.run,
    "retries": retries.run,
    "export": export_bench.run,
}
#: Suites run only when named (``--suites big`` or ``--big``; ``--suites celery``:
#: needs PostgreSQL and Redis, ``make bench-celery``).
OPTIONAL: dict[str, Suite] = {"big": big.run, "celery": celery_bench.run}


def _defaults() -> dict[str, int]:
    from chunkfiles.conf import DEFAULTS

    return DEFAULTS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = _defaults()
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--size-mib", type=int, help="test file size (128; 32 with --quick)")
    parser.add_argument(
        "--blob-sizes",
        type=float,
        nargs="+",
        metavar="MIB",
        help="blob sizes of the sweep (1 2 4 8 16; 1 8 with --quick)",
    )
    parser.add_argument(
        "--default-blob-mib",
        type=float,
        default=defaults["BLOB_SIZE"] / MIB,
        help="the size the comparisons run at (BLOB_SIZE's default: %(default)g)",
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=10,
        help="added per direction by the proxy, so RTT is twice this (10)",
    )
    parser.add_argument("--runs", type=int, help="interleaved runs, reported as medians (3; 1)")
    parser.add_argument(
        "--readahead",
        type=int,
        default=defaults["READAHEAD"],
        help="READAHEAD, the read-ahead depth K (default setting: %(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=defaults["PREFETCH_WORKERS"],
        help="PREFETCH_WORKERS and UPLOAD_WORKERS, W; also the raw GET threads (%(default)s)",
    )
    parser.add_argument(
        "--suites",
        nargs="+",
        choices=[*SUITES, *OPTIONAL],
        default=list(SUITES),
        help="what to run (%(default)s)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="32 MiB, blob sizes 1 and 8, 1 run: for CI"
    )
    parser.add_argument(
        "--big", action="store_true", help=f"only the {big.BIG_MIB} MiB peak-memory suite (slow)"
    )
    parser.add_argument(
        "--celery-files",
        type=int,
        help=f"files of the celery suite ({celery_bench.FILES}; {celery_bench.QUICK_FILES} "
        "with --quick)",
    )
    parser.add_argument(
        "--celery-batch",
        type=int,
        default=celery_bench.BATCH,
        help="files per Celery task in the celery suite (%(default)s)",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 on a missed count target too")
    args = parser.parse_args(argv)
    # --quick only changes defaults: `--quick --runs 2` means two quick runs.
    args.size_mib = args.size_mib or (32 if args.quick else 128)
    args.blob_sizes = args.blob_sizes or ([1, 8] if args.quick else [1, 2, 4, 8, 16])
    args.runs = args.runs or (1 if args.quick else 3)
    args.default_blob_size = int(args.default_blob_mib * MIB)
    if args.big:
        args.suites = ["big"]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join(["python", "-m", "benchmarks.run", *sys.argv[1:]])
    started = time.monotonic()
    sections: list[Section] = []
    with servers(args.latency_ms / 1000) as (weed, proxy, workdir):
        spec = Spec(
            workdir=workdir,
            endpoint_url=proxy.endpoint_url,
            access_key=weed.access_key,
            secret_key=weed.secret_key,
            blob_size=args.default_blob_size,
            size=args.size_mib * MIB,
            workers=args.workers,
            readahead=args.readahead,
        )
        prepare(spec, weed.endpoint_url)
        bench = Bench(args, spec, weed, proxy)
        for name in args.suites:
            log(f"== {name}")
            sections.append({**SUITES, **OPTIONAL}[name](bench))
    checks = [c for s in sections for c in s.checks]
    missed = {
        kind: [c for c in checks if c.kind == kind and not c.passed]
        for kind in (CORRECTNESS, COUNT, MEASURE)
    }
    failed = bool(missed[CORRECTNESS] or bench.failures or (args.strict and missed[COUNT]))
    print(
        "\n".join(
            [
                f"$ {command}",
                *machine_info(),
                f"proxy latency {args.latency_ms:g} ms each way ({2 * args.latency_ms:g} ms RTT); "
                f"K={args.readahead} W={args.workers}; each variant in a fresh process; "
                "RSS = peak growth during the timed part; ratios = medians of per-run ratios",
                "",
                *(s.render() + "\n" for s in sections),
                f"{sum(c.passed for c in checks)} PASS; MISS: {len(missed[MEASURE])} time or "
                f"memory, {len(missed[COUNT])} count, {len(missed[CORRECTNESS])} correctness; "
                f"{len(bench.failures)} crashed variant(s); "
                f"total {time.monotonic() - started:.0f} s; {'FAILED' if failed else 'ok'}",
                *(f"  crashed: {f}" for f in bench.failures),
            ]
        )
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
