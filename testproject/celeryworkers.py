"""Real Celery worker processes, against Redis or RabbitMQ on loopback (tests, benchmarks).

Each worker is its own process (``-P threads -c 1``: one batch at a time, and
the process still answers ``inspect`` while it runs one, so a test can see
that it is busy before killing it with SIGKILL). It is started with the
environment its caller hands over (``CHUNKFILES_SETTINGS_JSON``: the tests'
``tests.processes.child_env``, the benchmark's own database and storages),
and on queues of its own, so parallel runs on the same servers never take
each other's tasks: all workers consume ``queue``, and each one also its
``own_queues[name]``, so work can go to one worker alone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REDIS = "redis://127.0.0.1:6379/0"
RABBITMQ = "amqp://guest:guest@127.0.0.1:5672//"
#: Seconds after which Redis hands an unacknowledged batch (its worker died) to another.
VISIBILITY = 4


class Workers:
    """``count`` worker processes on one broker; a context manager that stops them."""

    def __init__(
        self,
        broker: str,
        count: int,
        logs: Path,
        env: dict[str, str],
        visibility: float = VISIBILITY,
        storages: dict[int, dict[str, Any]] | None = None,
        queue_prefix: str = "chunkfiles-test",
    ) -> None:
        """``env``: the workers' environment, with ``CHUNKFILES_SETTINGS_JSON``.

        ``storages``: worker index -> the ``STORAGES`` that worker sees instead of ``env``'s.
        """
        from testproject.celery_app import make_app

        self.broker = broker
        self.visibility = visibility
        self.queue = f"{queue_prefix}-{uuid.uuid4().hex[:8]}"
        self.names = [f"w{i}-{self.queue}@localhost" for i in range(count)]
        self.own_queues = {name: f"{self.queue}-w{i}" for i, name in enumerate(self.names)}
        # The app ``dispatch`` uses in this process (celery.current_app).
        self.app = make_app(broker, self.queue)
        self.logs = logs
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.storages = storages or {}
        self.env = env

    def __enter__(self) -> Workers:
        self.app.set_current()
        self.app.set_default()
        try:
            self.start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def start(self) -> None:
        env = {
            **self.env,
            "CHUNKFILES_CELERY_BROKER": self.broker,
            "CHUNKFILES_CELERY_QUEUE": self.queue,
            "CHUNKFILES_CELERY_VISIBILITY": str(self.visibility),
        }
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        for index, name in enumerate(self.names):
            worker_env = env
            if index in self.storages:
                shared = json.loads(env["CHUNKFILES_SETTINGS_JSON"])
                own = {**shared, "STORAGES": self.storages[index]}
                worker_env = {**env, "CHUNKFILES_SETTINGS_JSON": json.dumps(own)}
            # The child keeps its own descriptor of the log.
            with open(self.logs / f"{name.split('@')[0]}.log", "wb") as log:
                self.processes[name] = subprocess.Popen(
                    [
                        *(sys.executable, "-m", "celery", "-A", "testproject.celery_app"),
                        *("worker", "-P", "threads", "-c", "1", "-n", name),
                        *("-Q", f"{self.queue},{self.own_queues[name]}"),
                        *("-l", "INFO", "--without-gossip", "--without-mingle"),
                        "--without-heartbeat",
                    ],
                    cwd=ROOT,
                    env=worker_env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
        self.wait_ready(self.names)

    def wait_ready(self, names: list[str], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        waiting = set(names)
        while waiting:
            for name in waiting:
                if self.processes[name].poll() is not None:
                    raise RuntimeError(f"worker {name} exited: {self.log(name)}")
            replies = self.app.control.ping(destination=list(waiting), timeout=0.5)
            waiting -= {host for reply in replies for host in reply}
            if time.monotonic() > deadline:
                raise TimeoutError(f"workers not ready: {waiting}")

    def log(self, name: str, tail: int = 3000) -> str:
        """The last ``tail`` characters of the worker's log (0: all of it)."""
        text = (self.logs / f"{name.split('@')[0]}.log").read_text(errors="replace")
        return text[-tail:] if tail else text

    def running(self, name: str) -> list[str]:
        """Ids of the tasks the worker is running right now."""
        active = self.app.control.inspect([name], timeout=0.5).active() or {}
        return [task["id"] for task in active.get(name, [])]

    def kill(self, name: str) -> None:
        """SIGKILL: no chance to acknowledge, requeue or clean anything up."""
        process = self.processes[name]
        process.send_signal(signal.SIGKILL)
        process.wait()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        # Drop anything left on our queue (a failed test) so no later worker finds it.
        try:
            with self.app.connection_for_write() as conn:
                for queue in [self.queue, *self.own_queues.values()]:
                    conn.default_channel.queue_delete(queue)
        except Exception:
            pass
        self.app.close()
