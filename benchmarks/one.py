"""Run ONE variant in this (fresh) process: ``python -m benchmarks.one``.

Protocol with ``benchmarks.run`` over stdin/stdout, one line each:
parent sends ``{"spec": ..., "variant": ...}``; child prepares, prints
``@@ready``; parent zeroes the proxy's request counts and sends ``go``; child
runs the timed part and prints ``@@result {json}``.

Peak memory: right before the timed part the kernel's high-water mark is
reset to the current RSS (``/proc/self/clear_refs`` = 5, Linux >= 4.0), and
afterwards ``VmHWM`` is read, so the growth is exactly the peak the variant
itself added, including short spikes that sampling would miss. Where the
reset is not allowed it falls back to ``ru_maxrss``, which then includes the
startup peak (reported as ``rss_exact: 0``).
"""

from __future__ import annotations

import gc
import json
import resource
import sys
import time

from .environment import Spec, configure_django
from .variants import VARIANTS

READY = "@@ready"
RESULT = "@@result "


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(field)


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        return True
    except OSError:
        return False


def main() -> None:
    request = json.loads(sys.stdin.readline())
    spec = Spec.from_json(request["spec"])
    configure_django(spec)
    run = VARIANTS[request["variant"]](spec)
    gc.collect()
    print(READY, flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    exact = _reset_peak()
    base_kib = _status_kib("VmRSS")
    start = time.perf_counter()
    extras = run()
    seconds = time.perf_counter() - start
    peak_kib = _status_kib("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {
        "seconds": seconds,
        "rss_growth": max(0, peak_kib - base_kib) * 1024,
        "rss_exact": int(exact),
        **extras,
    }
    print(RESULT + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
