"""Benchmarks of django-chunkfiles against boto3 and a Sentry-style baseline.

Run ``python -m benchmarks.run --help``. A real SeaweedFS serves S3 behind a
latency-injecting proxy that also counts requests; every measured variant
runs in a fresh child process (``benchmarks.one``) so its peak memory is its
own and the proxy never competes with it for the GIL.
"""
