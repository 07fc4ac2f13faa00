"""``python -m benchmarks.run``: chunkfiles vs boto3 vs Sentry, through a slow link.

Starts SeaweedFS and the latency proxy, stores the test file, then measures
every variant once per run, interleaved (the order rotates each run), each in
a fresh process (``benchmarks.one``), and prints one table of medians.
Progress goes to stderr, the report to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from .environment import (
    BUCKET,
    MIB,
    ONE_OBJECT_KEY,
    WARMUP_KEY,
    Spec,
    configure_django,
    machine_info,
    s3_client,
    servers,
    write_random_file,
)
from .one import READY, RESULT
from .report import Run, Sample, table

ROOT = Path(__file__).resolve().parent.parent
READS = ["lazy", "prefetch", "readahead", "sentry", "download_fileobj", "raw_get"]
UPLOADS = ["putfile", "sequential", "upload_fileobj"]
#: A child that takes longer than this is stuck, not slow.
CHILD_TIMEOUT = 1800.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument(
        "--size-mib", type=int, help="test file size (256; 32 with --quick, 4096 with --big)"
    )
    parser.add_argument("--blob-mib", type=float, default=1, help="blob size (1)")
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=10,
        help="added per direction by the proxy, so RTT is twice this (10)",
    )
    parser.add_argument(
        "--runs", type=int, help="interleaved runs, reported as medians (3; 1 with --quick/--big)"
    )
    parser.add_argument("--readahead", type=int, default=16, help="read-ahead depth K (16)")
    parser.add_argument(
        "--workers",
        type=int,
        default=16,
        help="threads W for prefetch, putfile and the raw GET limit (16)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="32 MiB, 1 run: a smoke test (~30 s)")
    mode.add_argument(
        "--big", action="store_true", help="4 GiB of 1 MiB blobs, prefetch only: peak RSS (slow)"
    )
    args = parser.parse_args(argv)
    # The modes only change defaults: `--quick --runs 2` means two quick runs.
    if args.size_mib is None:
        args.size_mib = 32 if args.quick else 4096 if args.big else 256
    if args.runs is None:
        args.runs = 1 if args.quick or args.big else 3
    return args


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def prepare(spec: Spec, direct_url: str, one_object: bool) -> Spec:
    """Create the schema and store the test file as blobs (and as one object).

    Runs in this process against SeaweedFS directly, not through the proxy:
    it is not measured, and the latency would only make it slower.
    """
    from django.core.management import call_command

    configure_django(spec, endpoint_url=direct_url)
    # run_syncdb: works whether or not the app has migrations yet.
    call_command("migrate", run_syncdb=True, verbosity=0)
    from chunkfiles.models import File

    source = os.path.join(spec.workdir, "read-source.bin")
    write_random_file(source, spec.size)
    client = s3_client(spec, endpoint_url=direct_url)
    try:
        client.put_object(Bucket=BUCKET, Key=WARMUP_KEY, Body=b"warm")
        f = File.objects.create(name="bench.bin", type="bench")
        with open(source, "rb") as fh:
            f.putfile(fh, workers=spec.workers)
        if one_object:
            client.upload_file(source, BUCKET, ONE_OBJECT_KEY)
    finally:
        client.close()
        os.remove(source)  # blobs and object hold the bytes now; save the disk
    return spec.replace(file_id=f.pk)


def _read_until(stream: IO[str], prefix: str) -> str:
    for line in stream:
        if line.startswith(prefix):
            return line[len(prefix) :]
    raise RuntimeError(f"benchmark child ended before {prefix.strip()!r}")


def measure(spec: Spec, variant: str, proxy: Any) -> Sample:
    """Run ``variant`` in a fresh process; count only the requests of its timed part."""
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    child = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.one"],
        cwd=ROOT,
        env=env,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        child.stdin.write(json.dumps({"spec": spec.to_json(), "variant": variant}) + "\n")
        child.stdin.flush()
        _read_until(child.stdout, READY)
        proxy.reset_counts()
        child.stdin.write("go\n")
        child.stdin.flush()
        result = json.loads(_read_until(child.stdout, RESULT))
        counts = dict(proxy.counts())
        if child.wait(CHILD_TIMEOUT) != 0:
            raise RuntimeError(f"{variant}: child exited with {child.returncode}")
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        child.stdin.close()
        child.stdout.close()
    extras = {k: v for k, v in result.items() if k not in ("seconds", "rss_growth")}
    return Sample(result["seconds"], result["rss_growth"], counts, extras)


def rotated(items: list[str], by: int) -> list[str]:
    by %= len(items)
    return items[by:] + items[:by]


def bench(args: argparse.Namespace) -> tuple[Spec, list[Run]]:
    with servers(args.latency_ms / 1000) as (weed, proxy, workdir):
        spec = Spec(
            workdir=workdir,
            endpoint_url=proxy.endpoint_url,
            access_key=weed.access_key,
            secret_key=weed.secret_key,
            blob_size=int(args.blob_mib * MIB),
            size=args.size_mib * MIB,
            workers=args.workers,
            readahead=args.readahead,
        )
        log(f"storing {args.size_mib} MiB as {spec.blobs} blobs ...")
        started = time.monotonic()
        spec = prepare(spec, weed.endpoint_url, one_object=not args.big)
        log(f"  stored in {time.monotonic() - started:.1f} s")
        runs: list[Run] = []
        for r in range(args.runs):
            run: Run = {}
            reads = ["prefetch"] if args.big else rotated(READS, r)
            for variant in reads:
                run[variant] = _measured(spec, variant, proxy, r, args.runs)
            if not args.big:
                # Fresh bytes every run, so putfile really uploads; then the
                # same bytes again, which must upload nothing.
                source = os.path.join(workdir, f"upload-{r}.bin")
                write_random_file(source, spec.size)
                upload_spec = spec.replace(source_path=source)
                for variant in [*rotated(UPLOADS, r), "putfile_again"]:
                    run[variant] = _measured(upload_spec, variant, proxy, r, args.runs)
                os.remove(source)
            runs.append(run)
        return spec, runs


def _measured(spec: Spec, variant: str, proxy: Any, r: int, runs: int) -> Sample:
    sample = measure(spec, variant, proxy)
    counts = ", ".join(f"{n} {m}" for m, n in sorted(sample.counts.items()))
    log(
        f"run {r + 1}/{runs}  {variant:<17} {sample.seconds:7.2f} s  "
        f"RSS +{sample.rss_growth / MIB:.0f} MiB  [{counts}]"
    )
    return sample


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join(["python", "-m", "benchmarks.run", *sys.argv[1:]])
    started = time.monotonic()
    spec, runs = bench(args)
    rtt = 2 * args.latency_ms
    lines = [
        f"$ {command}",
        *machine_info(),
        f"file: {args.size_mib} MiB in {spec.blobs} blobs of {args.blob_mib:g} MiB; "
        f"proxy latency {args.latency_ms:g} ms each way ({rtt:g} ms RTT); "
        f"W={args.workers} K={args.readahead}",
        f"medians of {args.runs} interleaved run(s); ratios are medians of per-run ratios; "
        "each variant in a fresh process; RSS = peak growth during the timed part",
        "",
        table(spec, runs, args.big),
        "",
        f"(total {time.monotonic() - started:.0f} s)",
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
