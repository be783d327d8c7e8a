"""A three-node KRaft cluster on this machine, for fault tests.

`LocalCluster` runs three JVMs, each broker and controller, with their own loopback ports and
data dirs and a static controller quorum. Topics default to replication factor 3 and
min.insync.replicas 2, so one node can be killed while `acks=all` producers carry on.
"""

from __future__ import annotations

import logging
import signal
import tempfile
import time
import weakref
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from types import TracebackType

from streams.dev.broker import ensure_kafka_libs, find_java
from streams.dev.node import (
    _free_port,
    _kafka_uuid,
    _KafkaNode,
    _node_properties,
    _release,
    _seconds,
    _stop_nodes,
    _wait_until_ready,
)
from streams.dev.secure import (
    ADMIN_USER,
    SecureMaterial,
    scram_arguments,
    secure_material,
    secure_properties,
)
from streams.errors import BrokerError

log = logging.getLogger(__name__)

NODES = 3

# C1-only JIT: three JVMs warm up faster on a small machine; throughput is not the point here.
_JVM_OPTIONS = [
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:TieredStopAtLevel=1",
    "-XX:+ExitOnOutOfMemoryError",
]


class LocalCluster:
    """Three KRaft nodes (broker+controller each) on 127.0.0.1, numbered 0, 1, 2.

    Node `i` has `node.id` i + 1, its own port and `<base_dir>/node<i>`. An existing
    `base_dir` is reused with its data; without one a temporary dir is deleted on `close()`.
    A majority (two nodes) must run for the cluster to accept writes.
    """

    def __init__(
        self,
        base_dir: str | Path | None = None,
        *,
        heap: str = "-Xmx384m -Xms64m",
        hosts: Sequence[str] | None = None,
        command_prefixes: Sequence[Sequence[str]] | None = None,
        properties: Mapping[str, str] | None = None,
        secure: bool = False,
    ) -> None:
        """`hosts`: each node's listen address (all 127.0.0.1 by default, then on free
        ports; with distinct hosts every node uses ports 9092 and 9093). `command_prefixes`:
        what each node's JVM is started through (e.g. `ip netns exec <ns>`, for a node in a
        network namespace of its own). `properties` are added to every node's config.
        `secure`: SASL_SSL for clients and between brokers, ACLs enforced, as
        `LocalKafka(secure=True)` (loopback hosts only: the certificate names 127.0.0.1)."""
        if secure and hosts:
            raise BrokerError("a secure cluster runs on 127.0.0.1 only (its certificate's name)")
        self.secure = secure
        self.material: SecureMaterial | None = None
        owned = None if base_dir is not None else Path(tempfile.mkdtemp(prefix="everflow-kafka3-"))
        self.base_dir: Path = owned or Path(base_dir or ".")
        self.hosts = list(hosts or ["127.0.0.1"] * NODES)
        if hosts:
            self.ports, controller_ports = [9092] * NODES, [9093] * NODES
        else:
            self.ports = [_free_port() for _ in range(NODES)]
            controller_ports = [_free_port() for _ in range(NODES)]
        self._controller_ports = controller_ports
        voters = ",".join(f"{i + 1}@{self.hosts[i]}:{p}" for i, p in enumerate(controller_ports))
        self._nodes: list[_KafkaNode] = []
        for i in range(NODES):
            directory = self.base_dir / f"node{i}"
            node_properties = _node_properties(
                i + 1,
                self.ports[i],
                controller_ports[i],
                directory / "data",
                replication=NODES,
                host=self.hosts[i],
            )
            node_properties["controller.quorum.voters"] = voters  # static quorum
            node_properties.update(properties or {})
            self._nodes.append(
                _KafkaNode(
                    directory,
                    node_properties,
                    [*heap.split(), *_JVM_OPTIONS],
                    name=f"node {i}",
                    command_prefix=command_prefixes[i] if command_prefixes else (),
                )
            )
        self._finalizer = weakref.finalize(self, _release, self._nodes, owned)

    @property
    def bootstrap(self) -> str:
        """`bootstrap.servers` naming all three nodes."""
        return ",".join(f"{host}:{port}" for host, port in zip(self.hosts, self.ports, strict=True))

    def client_settings(self, user: str = ADMIN_USER) -> dict[str, str]:
        """librdkafka settings (besides `bootstrap.servers`) to connect as `user`: none for
        a plaintext cluster; SASL_SSL with the user's password and the CA for a secure one."""
        if not self.secure:
            return {}
        if self.material is None:
            raise BrokerError("the secure cluster's credentials exist once it was started")
        return self.material.client_settings(user)

    def _secure(self, java: str) -> list[str]:
        """With `secure`: the TLS material and users made (or read back), every node's
        config switched to SASL_SSL; returns the format arguments that create the users."""
        if not self.secure:
            return []
        directory = self.base_dir / "secure"
        if any(n.formatted for n in self._nodes) and not (directory / "credentials.json").is_file():
            raise BrokerError(
                f"{self.base_dir} holds a cluster formatted without --secure: its SCRAM users "
                "do not exist; use another data dir for a secure cluster"
            )
        self.material = secure_material(directory, java)
        for node, port, controller_port in zip(
            self._nodes, self.ports, self._controller_ports, strict=True
        ):
            node.properties.update(secure_properties(self.material, port, controller_port))
        return scram_arguments(self.material)

    def log_path(self, i: int) -> Path:
        """Node `i`'s console output (WARN and above, plus the startup line)."""
        return self._nodes[i].log_path

    def pid(self, i: int) -> int | None:
        """Node `i`'s JVM process id while it runs."""
        process = self._nodes[i].process
        return process.pid if process is not None and self._nodes[i].running() else None

    def start(self, timeout: float | timedelta = 90) -> LocalCluster:
        """Start all three nodes (formatting new data dirs) and wait until all serve clients.

        Raises `BrokerError` naming the node and cause (port in use, JVM exited, not ready
        within `timeout`); every node is stopped before the error is raised.
        """
        started = time.monotonic()
        java, libs = _installation()
        for node in self._nodes:
            if not node.running():
                node.check_ports()
        users = self._secure(java)
        if not all(node.formatted for node in self._nodes):
            cluster_id = _kafka_uuid()  # the same id on every node, or they refuse to talk
            for node in self._nodes:
                node.format(java, libs, cluster_id, standalone=False, extra=users)
        for node in self._nodes:  # all at once: no node finishes starting without a quorum
            node.launch(java, libs)
        try:
            _wait_until_ready(
                self._nodes,
                self.bootstrap,
                brokers=NODES,
                timeout=_seconds(timeout),
                client_settings=self.client_settings(),
            )
        except BaseException:
            self._kill_all()
            raise
        log.info(
            "Kafka cluster ready at %s in %.1f s (data %s)",
            self.bootstrap,
            time.monotonic() - started,
            self.base_dir,
        )
        return self

    def stop(self, grace: float | timedelta = 30) -> None:
        """Stop every node cleanly (SIGTERM to all, SIGKILL after `grace`); idempotent."""
        _stop_nodes(self._nodes, _seconds(grace))

    def stop_node(self, i: int, grace: float | timedelta = 30) -> None:
        """Stop node `i` cleanly; its data is kept for `start_node(i)`."""
        _stop_nodes([self._nodes[i]], _seconds(grace))

    def kill_node(self, i: int) -> None:
        """SIGKILL node `i`, as a crash would."""
        node = self._nodes[i]
        node.signal(signal.SIGKILL)
        node.reap(time.monotonic() + 30)

    def start_node(self, i: int, timeout: float | timedelta = 60) -> None:
        """Start node `i` again with its data and wait until it has rejoined the cluster."""
        node = self._nodes[i]
        if node.running():
            return
        node.launch(*_installation())
        try:
            _wait_until_ready(
                [node],
                self.bootstrap,
                brokers=NODES,
                timeout=_seconds(timeout),
                client_settings=self.client_settings(),
            )
        except BaseException:
            self.kill_node(i)
            raise
        log.info("Kafka cluster node %d is back at %s:%d", i, self.hosts[i], self.ports[i])

    def close(self) -> None:
        """Stop the cluster and delete its data if it lives in a temporary dir."""
        self._finalizer()

    def _kill_all(self) -> None:
        for i in range(NODES):
            self.kill_node(i)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _installation() -> tuple[str, Path]:
    """The java binary and the broker jars, provisioned if need be."""
    libs = ensure_kafka_libs()
    return find_java(), libs
