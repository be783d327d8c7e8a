"""Kafka KRaft nodes as child processes on this machine: config, JVM launch, readiness, stop.

`LocalKafka` (one node) and `LocalCluster` (three) are built on it. Every JVM started here
dies with the Python process that started it, even on SIGKILL (Linux `PR_SET_PDEATHSIG`).
The kernel ties that to the *thread* that forked the JVM, so start nodes from a thread that
lives as long as they should (normally the main thread). An atexit hook stops nodes still
running when the interpreter exits.
"""

from __future__ import annotations

import atexit
import base64
import ctypes
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from streams.errors import BrokerError

log = logging.getLogger(__name__)


_STARTED_LINE = b"Kafka Server started"
_TAIL_LINES = 40

_LOG4J2_YAML = """\
Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: STDOUT
    Logger:
      # logs "Kafka Server started", the readiness signal
      - name: kafka.server.KafkaRaftServer
        level: INFO
"""


def _kafka_uuid() -> str:
    """A random Kafka cluster id, as `kafka-storage random-uuid` prints it (no JVM needed)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):  # Kafka rejects ids that look like an option
            return text


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _check_port_free(port: int, what: str) -> None:
    with socket.socket() as s:
        # SO_REUSEADDR as the JVM sets it: our own broker's TIME_WAIT sockets are no conflict
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            raise BrokerError(
                f"port {port} on 127.0.0.1 (the {what}) is already in use "
                f"({e.strerror}); pick another port or stop what holds it"
            ) from e


def _tail(text: str, lines: int = _TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that makes the child get SIGKILL when the forking thread exits."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork: the child only calls
    pr_set_pdeathsig, sigkill, parent = 1, int(signal.SIGKILL), os.getpid()

    def set_pdeathsig() -> None:
        prctl(pr_set_pdeathsig, sigkill)  # survives exec, so it applies to the JVM
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    if threading.current_thread() is not threading.main_thread():
        log.warning(
            "starting a Kafka JVM from thread %s: it will be killed when that thread exits",
            threading.current_thread().name,
        )
    return set_pdeathsig


def _node_properties(
    node_id: int,
    port: int,
    controller_port: int,
    data: Path,
    replication: int,
    host: str = "127.0.0.1",
) -> dict[str, str]:
    """The server.properties of one KRaft broker+controller, sized for tests and dev."""
    rf, min_isr = str(replication), str(min(replication, 2))
    listeners = f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}"
    return {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "listeners": listeners,
        "advertised.listeners": listeners,
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data),
        "num.partitions": "1",
        "default.replication.factor": rf,
        "min.insync.replicas": min_isr,
        "auto.create.topics.enable": "false",
        # internal topics sized to the cluster: transactions hang if these cannot be met
        "offsets.topic.replication.factor": rf,
        "offsets.topic.num.partitions": "1" if replication == 1 else "3",
        "transaction.state.log.replication.factor": rf,
        "transaction.state.log.min.isr": min_isr,
        "transaction.state.log.num.partitions": "1" if replication == 1 else "3",
        "share.coordinator.state.topic.replication.factor": rf,
        "share.coordinator.state.topic.min.isr": min_isr,
        "group.initial.rebalance.delay.ms": "0",
        # small footprint; the cleaner's dedupe buffer (128 MiB by default) is on the heap
        "num.network.threads": "2",
        "num.io.threads": "2",
        "background.threads": "2",
        "log.cleaner.dedupe.buffer.size": "16777216",
        "log.cleaner.backoff.ms": "500",
        "log.segment.delete.delay.ms": "1000",
        # A node back from a crash cannot register until its old broker session expires (9 s
        # by default; the controller sees DUPLICATE_BROKER_REGISTRATION till then), and a
        # dead node stays in every ISR, holding up acks=all writes, for that long too.
        "broker.session.timeout.ms": "3000",
        "broker.heartbeat.interval.ms": "500",
        # the coordinator looks for timed-out transactions this often (10 s by default): a
        # paused or crashed processor's open transaction is aborted soon after it times out,
        # so the partitions' new owner waits less for it
        "transaction.abort.timed.out.transaction.cleanup.interval.ms": "1000",
    }


class _KafkaNode:
    """One KRaft broker+controller JVM: its directory, config, process and log."""

    def __init__(
        self,
        directory: Path,
        properties: Mapping[str, str],
        jvm_options: Iterable[str],
        name: str,
        command_prefix: Iterable[str] = (),
    ) -> None:
        self.directory = directory
        self.properties = dict(properties)
        self.jvm_options = list(jvm_options)
        self.name = name
        # run the JVM through this (e.g. `ip netns exec <ns>`, which execs it: same pid)
        self.command_prefix = list(command_prefix)
        self.process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    @property
    def log_path(self) -> Path:
        return self.directory / "kafka.log"

    @property
    def formatted(self) -> bool:
        return (Path(self.properties["log.dirs"]) / "meta.properties").exists()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ports(self) -> dict[str, int]:
        found = re.findall(r"(\w+)://[^:]+:(\d+)", self.properties["listeners"])
        return {f"{listener.lower()} port of {self.name}": int(port) for listener, port in found}

    def check_ports(self) -> None:
        if self.command_prefix:  # its ports are in another network namespace
            return
        for what, port in self.ports().items():
            _check_port_free(port, what)

    def _write_config(self) -> tuple[Path, Path]:
        self.directory.mkdir(parents=True, exist_ok=True)
        config, log4j = self.directory / "server.properties", self.directory / "log4j2.yaml"
        config.write_text("".join(f"{k}={v}\n" for k, v in self.properties.items()))
        log4j.write_text(_LOG4J2_YAML)
        return config, log4j

    def _java_command(self, java: str, libs: Path, main: str, *args: str) -> list[str]:
        _, log4j = self._write_config()
        return [
            java,
            *self.jvm_options,
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}",
            f"-Dkafka.logs.dir={self.directory}",
            "-cp",
            str(libs / "*"),
            main,
            *args,
        ]

    def format(
        self, java: str, libs: Path, cluster_id: str, *, standalone: bool, extra: Iterable[str] = ()
    ) -> None:
        """Format the data dir (once: an already formatted dir keeps its data); `extra`
        arguments go to `kafka-storage format` (`--add-scram ...`)."""
        if self.formatted:
            log.debug("%s: %s already formatted, keeping its data", self.name, self.directory)
            return
        config = self.directory / "server.properties"
        args = ["format", "-t", cluster_id, "-c", str(config), *extra]
        command = self._java_command(
            java, libs, "kafka.tools.StorageTool", *args, *(["--standalone"] if standalone else [])
        )
        try:
            result = subprocess.run(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=120,
                check=False,
                preexec_fn=_die_with_parent(),
            )
        except subprocess.TimeoutExpired as e:
            raise BrokerError(
                f"formatting the Kafka data dir of {self.name} took over 120 s: {' '.join(command)}"
            ) from e
        if result.returncode != 0:
            raise BrokerError(
                f"formatting the Kafka data dir of {self.name} failed "
                f"(exit {result.returncode}):\n{_tail(result.stdout)}"
            )

    def launch(self, java: str, libs: Path) -> None:
        """Start the JVM (not waiting for it); its output goes to `log_path`."""
        if self.running():
            return
        self.check_ports()
        config = str(self.directory / "server.properties")
        command = [*self.command_prefix, *self._java_command(java, libs, "kafka.Kafka", config)]
        with open(self.log_path, "ab") as out:
            self._log_offset = out.tell()
            # own session: a terminal's Ctrl-C reaches Python, which then stops the JVM in order
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent(),
            )
        _RUNNING.add(self)
        log.debug("%s: JVM pid %d, log %s", self.name, self.process.pid, self.log_path)

    def started(self) -> bool:
        """Whether this run of the JVM logged "Kafka Server started"; raises if it exited."""
        if self.process is None:
            raise BrokerError(f"{self.name} was never started")
        code = self.process.poll()
        if code is not None:
            _RUNNING.discard(self)
            raise BrokerError(
                f"Kafka {self.name} exited with code {code} during startup; "
                f"last lines of {self.log_path}:\n{self.log_tail()}"
            )
        with open(self.log_path, "rb") as f:
            f.seek(self._log_offset)
            return _STARTED_LINE in f.read()

    def log_tail(self) -> str:
        """The last lines this run of the JVM logged."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(self._log_offset, f.seek(0, os.SEEK_END) - 16384))
                return _tail(f.read().decode(errors="replace")) or "(nothing logged yet)"
        except FileNotFoundError:
            return "(no log written)"

    def signal(self, signum: signal.Signals) -> None:
        if self.running():
            assert self.process is not None
            self.process.send_signal(signum)

    def reap(self, deadline: float) -> bool:
        """Wait until the JVM exits or the deadline passes; whether it exited."""
        if self.process is None:
            return True
        try:
            self.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return False
        _RUNNING.discard(self)
        return True


def _stop_nodes(nodes: Iterable[_KafkaNode], grace: float) -> None:
    """SIGTERM all nodes at once (a quorum stays up while they shut down), SIGKILL stragglers."""
    nodes = [n for n in nodes if n.running()]
    for node in nodes:
        node.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for node in nodes:
        if not node.reap(deadline):
            log.warning("%s did not stop within %.0f s of SIGTERM; killing it", node.name, grace)
            node.signal(signal.SIGKILL)
            node.reap(time.monotonic() + 30)


def _wait_until_ready(
    nodes: Iterable[_KafkaNode],
    bootstrap: str,
    brokers: int,
    timeout: float,
    client_settings: Mapping[str, str] | None = None,
) -> None:
    """Wait for each node's "Kafka Server started" line, then for `brokers` in the metadata
    (asked with `client_settings` on top: a secured listener's)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    nodes = list(nodes)
    deadline = time.monotonic() + timeout
    waiting = list(nodes)
    while waiting:
        waiting = [n for n in waiting if not n.started()]
        if waiting and time.monotonic() > deadline:
            node = waiting[0]
            raise BrokerError(
                f"Kafka {node.name} did not log 'Kafka Server started' within "
                f"{timeout:g} s; last lines of {node.log_path}:\n{node.log_tail()}"
            )
        time.sleep(0.05 if waiting else 0)
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        # where every client's librdkafka lines go (`streams.kafka.logs`, by name: dev/
        # imports no Kafka I/O module)
        "logger": logging.getLogger("streams.kafka.librdkafka"),
    }
    config.update(client_settings or {})
    admin = AdminClient(config)
    while True:
        for node in nodes:
            node.started()  # raises if a JVM exited
        try:
            seen = len(admin.list_topics(timeout=1).brokers)
        except KafkaException as e:
            seen, problem = 0, str(e)
        else:
            problem = f"{seen} of {brokers} brokers in the metadata"
        if seen >= brokers:
            return
        if time.monotonic() > deadline:
            raise BrokerError(
                f"Kafka at {bootstrap} did not answer within {timeout:g} s "
                f"({problem}); last lines of {nodes[0].log_path}:\n"
                f"{nodes[0].log_tail()}"
            )
        time.sleep(0.1)


_RUNNING: set[_KafkaNode] = set()


@atexit.register
def _stop_running_nodes() -> None:
    _stop_nodes(list(_RUNNING), grace=10)


def _release(nodes: list[_KafkaNode], owned_dir: Path | None) -> None:
    _stop_nodes(nodes, grace=10)
    if owned_dir is not None:
        shutil.rmtree(owned_dir, ignore_errors=True)
