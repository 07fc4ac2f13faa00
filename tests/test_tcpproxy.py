"""The latency/counting/fault proxy that the S3 tests and benchmarks rely on.

Checked against a real SeaweedFS so that what boto3 actually sends (Expect:
100-continue, keep-alive, Content-Length bodies) is what gets parsed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from testproject.httpcount import HttpRequestCounter
from testproject.seaweed import SeaweedS3
from testproject.tcpproxy import TcpProxy

BUCKET = "proxy-tests"
ClientFactory = Callable[..., Any]


@pytest.fixture(scope="module")
def proxied_bucket(seaweed: SeaweedS3) -> str:
    """A bucket of its own on the session's SeaweedFS (see conftest)."""
    seaweed.create_bucket(BUCKET)
    return BUCKET


@pytest.fixture
def make_client(seaweed: SeaweedS3, proxied_bucket: str) -> Iterator[ClientFactory]:
    """boto3 clients against a proxy, closed afterwards (no leaked sockets)."""
    clients: list[Any] = []

    def make(proxy: TcpProxy, attempts: int = 3, **config: Any) -> Any:
        import boto3
        from botocore.config import Config

        client = boto3.client(
            "s3",
            endpoint_url=proxy.endpoint_url,
            aws_access_key_id=seaweed.access_key,
            aws_secret_access_key=seaweed.secret_key,
            region_name="us-east-1",
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": attempts, "mode": "standard"},
                **config,
            ),
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def proxy(seaweed: SeaweedS3) -> Iterator[TcpProxy]:
    with TcpProxy("127.0.0.1", seaweed.port) as p:
        yield p


def test_forwards_a_multi_mib_object_byte_exact(
    proxy: TcpProxy, make_client: ClientFactory
) -> None:
    client = make_client(proxy)
    data = os.urandom(9 * 1024 * 1024 + 12345)
    client.put_object(Bucket=BUCKET, Key="big", Body=data)
    body = client.get_object(Bucket=BUCKET, Key="big")["Body"].read()
    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    assert len(body) == len(data)


def test_latency_adds_two_delays_per_round_trip(
    seaweed: SeaweedS3, make_client: ClientFactory
) -> None:
    latency = 0.05
    with TcpProxy("127.0.0.1", seaweed.port, latency=latency) as slow:
        client = make_client(slow)
        client.put_object(Bucket=BUCKET, Key="small", Body=b"x" * 100)
        timings = []
        for _ in range(3):  # on a warm keep-alive connection
            start = time.perf_counter()
            client.get_object(Bucket=BUCKET, Key="small")["Body"].read()
            timings.append(time.perf_counter() - start)
        assert min(timings) >= 2 * latency
        assert slow.connections == 1


def test_latency_is_a_pipeline_not_a_throttle() -> None:
    """Chunks sent 10 ms apart arrive 10 ms apart, each ``latency`` late."""
    latency, messages, gap = 0.2, 30, 0.01
    listener = socket.create_server(("127.0.0.1", 0))

    def talk() -> None:
        conn, _ = listener.accept()
        with conn:
            for _ in range(messages):
                conn.sendall(b"m" * 100)
                time.sleep(gap)

    sender = threading.Thread(target=talk)
    sender.start()
    try:
        with (
            TcpProxy("127.0.0.1", listener.getsockname()[1], latency=latency) as p,
            socket.create_connection(("127.0.0.1", p.port)) as sock,
        ):
            start = time.perf_counter()
            received = 0
            while received < messages * 100:
                received += len(sock.recv(65536))
            elapsed = time.perf_counter() - start
    finally:
        sender.join()
        listener.close()
    # A per-chunk sleep would take messages * latency = 6 s.
    assert latency + messages * gap * 0.9 <= elapsed < latency + messages * gap + 1.5


def test_counts_every_request_over_keep_alive(proxy: TcpProxy, make_client: ClientFactory) -> None:
    client = make_client(proxy)
    n = 12
    # Sizes straddle the proxy's read size so bodies span several reads.
    sizes = [0, 1, 1000, 1024 * 1024 - 1, 1024 * 1024 + 7, 3 * 1024 * 1024] * 2
    for i, size in enumerate(sizes):
        client.put_object(Bucket=BUCKET, Key=f"k{i}", Body=os.urandom(size))
    for i in range(n):
        client.get_object(Bucket=BUCKET, Key=f"k{i}")["Body"].read()
    client.head_object(Bucket=BUCKET, Key="k0")
    assert proxy.counts() == {"PUT": n, "GET": n, "HEAD": 1}
    assert proxy.requests[:2] == [("PUT", f"/{BUCKET}/k0"), ("PUT", f"/{BUCKET}/k1")]
    assert proxy.requests[n] == ("GET", f"/{BUCKET}/k0")
    assert proxy.connections == 1
    proxy.reset_counts()
    assert proxy.requests == []


def test_counter_parses_chunked_bodies_fed_byte_by_byte() -> None:
    stream = (
        b"PUT /b/k HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nGET /\r\n3;ext=1\r\nabc\r\n0\r\nx-amz-checksum-crc32: AAAA\r\n\r\n"
        b"POST /b/k?uploads HTTP/1.1\r\nContent-Length: 4\r\n\r\nPUT "
        b"GET /b/k HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    counter = HttpRequestCounter()
    found = []
    for i in range(len(stream)):
        found += counter.feed(stream[i : i + 1])
    assert found == [("PUT", "/b/k"), ("POST", "/b/k?uploads"), ("GET", "/b/k")]
    assert not counter.lost


def test_counter_gives_up_on_non_http() -> None:
    counter = HttpRequestCounter()
    assert counter.feed(b"\x16\x03\x01 tls hello\r\n\r\nGET / HTTP/1.1\r\n\r\n") == []
    assert counter.lost


def test_fail_after_bytes_breaks_a_download(proxy: TcpProxy, make_client: ClientFactory) -> None:
    from botocore.exceptions import BotoCoreError

    client = make_client(proxy, attempts=2)
    client.put_object(Bucket=BUCKET, Key="victim", Body=os.urandom(2 * 1024 * 1024))
    proxy.fail_after_bytes(64 * 1024)
    with pytest.raises(BotoCoreError):
        client.get_object(Bucket=BUCKET, Key="victim")["Body"].read()
    # The budget stays spent: a retry on a new connection fails too.
    with pytest.raises(BotoCoreError):
        client.head_object(Bucket=BUCKET, Key="victim")
    proxy.heal()
    assert len(client.get_object(Bucket=BUCKET, Key="victim")["Body"].read()) == 2 * 1024 * 1024


def test_fail_requests_kills_only_matching_ones(
    proxy: TcpProxy, make_client: ClientFactory
) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    client = make_client(proxy, attempts=2)
    client.put_object(Bucket=BUCKET, Key="kept", Body=b"ok")
    proxy.fail_requests(lambda method, target: method == "PUT")
    with pytest.raises(BotoCoreError):
        client.put_object(Bucket=BUCKET, Key="lost", Body=b"no")
    assert client.get_object(Bucket=BUCKET, Key="kept")["Body"].read() == b"ok"
    # Killed requests are counted (botocore retried) but never reached SeaweedFS.
    assert proxy.counts()["PUT"] >= 1 + 2
    with pytest.raises(ClientError):
        client.head_object(Bucket=BUCKET, Key="lost")
    proxy.heal()
    client.put_object(Bucket=BUCKET, Key="lost", Body=b"yes")


def test_refuse_drops_new_connections(proxy: TcpProxy, make_client: ClientFactory) -> None:
    from botocore.exceptions import BotoCoreError

    proxy.refuse()
    client = make_client(proxy, attempts=2)
    with pytest.raises(BotoCoreError):
        client.list_objects_v2(Bucket=BUCKET)
    assert proxy.requests == []
    proxy.heal()
    client.list_objects_v2(Bucket=BUCKET)


def test_closed_connections_are_forgotten(seaweed: SeaweedS3, make_client: ClientFactory) -> None:
    with TcpProxy("127.0.0.1", seaweed.port, latency=0.005) as p:
        for _ in range(3):
            client = make_client(p)
            client.list_objects_v2(Bucket=BUCKET)
            client.close()
        deadline = time.monotonic() + 5
        while p.open_connections and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (p.connections, p.open_connections) == (3, 0)


def test_connections_beyond_the_limit_are_reset(seaweed: SeaweedS3) -> None:
    with (
        TcpProxy("127.0.0.1", seaweed.port, max_connections=1) as p,
        socket.create_connection(("127.0.0.1", p.port)) as first,
        socket.create_connection(("127.0.0.1", p.port)) as second,
    ):
        second.settimeout(5)
        with contextlib.suppress(ConnectionResetError):
            assert second.recv(1) == b""
        first.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        first.settimeout(5)
        assert first.recv(12).startswith(b"HTTP/1.1")
        assert p.counts() == {"GET": 1}


def test_stop_closes_open_connections(seaweed: SeaweedS3) -> None:
    p = TcpProxy("127.0.0.1", seaweed.port).start()
    with socket.create_connection(("127.0.0.1", p.port)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.2)
        p.stop()
        sock.settimeout(5)
        # The proxy resets its side: the client sees EOF or a reset, not a hang.
        with contextlib.suppress(ConnectionResetError):
            while sock.recv(65536):
                pass
    p.stop()  # idempotent


def test_a_request_waiting_before_the_upstream_connects_is_forwarded() -> None:
    """Bytes read from the client before the upstream exists are kept, not dropped.

    Python 3.10 (and early 3.11 releases) ignores ``pause_reading()`` in
    ``connection_made()`` (CPython gh-103607), so a request already in the
    client's socket when the proxy accepts is read at once: this lost boto3's
    requests on Python 3.10.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    blocked, release = threading.Event(), threading.Event()

    def block_the_loop() -> None:
        blocked.set()
        release.wait(10)

    with (
        listener,
        TcpProxy("127.0.0.1", listener.getsockname()[1]) as p,
    ):
        # Hold the proxy's loop until the request sits in the client socket, so
        # the accept and the first read are handled in one go (no race to lose).
        assert p._loop is not None
        p._loop.call_soon_threadsafe(block_the_loop)
        assert blocked.wait(10)
        with socket.create_connection(("127.0.0.1", p.port), timeout=10) as client:
            client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            release.set()
            upstream, _ = listener.accept()
            with upstream:
                upstream.settimeout(5)
                received = b""
                with contextlib.suppress(TimeoutError):
                    while not received.endswith(b"\r\n\r\n"):
                        chunk = upstream.recv(65536)
                        if not chunk:
                            break
                        received += chunk
    assert received == b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    assert p.counts() == {"GET": 1}
