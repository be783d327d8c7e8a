"""A real Apache Kafka broker on this machine, for tests, `make demo` and `everflow dev`.

The broker jars come from Maven Central (`docker/kafka/pom.xml`) into a cache outside the
work tree; the broker runs as one KRaft broker+controller JVM on loopback ports, with its
data on disk so a restart keeps it. `provision_broker()` picks the broker to use: one named
by `EVERFLOW_BOOTSTRAP`, else a Docker container, else a `LocalKafka`.

The JVM dies with the Python process that started it, even on SIGKILL; call `start()` from
a thread that lives as long as the broker should (normally the main thread): see
`streams.dev.node`, whose node machinery runs it.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import gc
import importlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
import weakref
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from streams.dev.node import (
    _free_port,
    _kafka_uuid,
    _KafkaNode,
    _node_properties,
    _release,
    _seconds,
    _stop_nodes,
    _tail,
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

KAFKA_VERSION = "4.3.1"
"""The Apache Kafka release `LocalKafka` and `LocalCluster` run."""

MIN_JAVA_VERSION = 17
CP_KAFKA_IMAGE = "confluentinc/cp-kafka:7.6.0"
"""The image for the Docker path; testcontainers' KafkaContainer only drives cp-kafka images."""

_POM = Path(__file__).resolve().parents[2] / "docker" / "kafka" / "pom.xml"
_MARKER = "libs.complete"
_MVN_TIMEOUT_S = 900.0


def kafka_cache_dir(version: str = KAFKA_VERSION) -> Path:
    """The cache directory for one Kafka version; its jars live in `<dir>/libs`.

    `EVERFLOW_KAFKA_CACHE` replaces the default `~/.cache/everflow/kafka-<version>`.
    """
    override = os.environ.get("EVERFLOW_KAFKA_CACHE")
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "everflow" / f"kafka-{version}"


def ensure_kafka_libs(version: str = KAFKA_VERSION) -> Path:
    """Return the directory holding the broker jars, fetching them with Maven if needed.

    Maven runs only when the cache has no completion marker (a half-finished download is
    redone). A file lock serialises processes provisioning at the same time. Raises
    `BrokerError` when Java or Maven is missing or Maven fails.
    """
    cache = kafka_cache_dir(version)
    libs = cache / "libs"
    if _libs_complete(cache, version):
        log.debug("Kafka %s jars cached in %s", version, libs)
        return libs
    cache.mkdir(parents=True, exist_ok=True)
    with _file_lock(cache / ".lock"):
        if _libs_complete(cache, version):  # another process fetched them while we waited
            return libs
        jars = _fetch_libs(libs, version)
        marker = cache / _MARKER
        partial = marker.with_suffix(".tmp")
        partial.write_text(json.dumps({"version": version, "jars": jars}))
        os.replace(partial, marker)  # the marker appears whole or not at all
    return libs


def _libs_complete(cache: Path, version: str) -> bool:
    try:
        marker = json.loads((cache / _MARKER).read_text())
    except (OSError, ValueError):
        return False
    jars = marker.get("jars") or []
    return marker.get("version") == version and all((cache / "libs" / j).is_file() for j in jars)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "a") as lock_file:  # flock is released when the file closes, even on a crash
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process to finish provisioning %s", path.parent)
            fcntl.flock(lock_file, fcntl.LOCK_EX)
        yield


def _fetch_libs(libs: Path, version: str) -> list[str]:
    find_java()  # Maven needs it too, and this names the problem better than Maven does
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError(
            f"Maven (mvn) is not on PATH; it is needed once to fetch the Kafka {version} jars "
            f"into {libs}. Install Maven (e.g. `apt-get install maven`), start Docker, or set "
            "EVERFLOW_BOOTSTRAP to a running Kafka cluster"
        )
    if not _POM.is_file():
        raise BrokerError(
            f"{_POM} is missing; the local broker is provisioned from a source checkout of "
            "Everflow. Set EVERFLOW_BOOTSTRAP to a running Kafka cluster instead"
        )
    shutil.rmtree(libs, ignore_errors=True)  # no stale jars from a half-finished run
    command = [
        mvn,
        "-q",
        "-B",
        "-Dstyle.color=never",
        "-f",
        str(_POM),
        "dependency:copy-dependencies",
        f"-Dlibs.dir={libs}",
        f"-Dkafka.version={version}",
    ]
    log.info("fetching the Kafka %s jars into %s with Maven", version, libs)
    started = time.monotonic()
    try:
        result = subprocess.run(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=_MVN_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise BrokerError(
            f"Maven did not finish fetching the Kafka {version} jars within "
            f"{_MVN_TIMEOUT_S:.0f} s: {' '.join(command)}"
        ) from e
    if result.returncode != 0:
        raise BrokerError(
            f"Maven failed (exit {result.returncode}) fetching the Kafka {version} jars: "
            f"{' '.join(command)}\n{_tail(result.stdout)}"
        )
    jars = sorted(p.name for p in libs.glob("*.jar"))
    if f"kafka_2.13-{version}.jar" not in jars:
        raise BrokerError(
            f"Maven finished but {libs} has no kafka_2.13-{version}.jar; "
            f"check {_POM}\n{_tail(result.stdout)}"
        )
    log.info(
        "fetched %d Kafka %s jars into %s in %.1f s",
        len(jars),
        version,
        libs,
        time.monotonic() - started,
    )
    return jars


def find_java() -> str:
    """The `java` binary to run Kafka with: `EVERFLOW_JAVA`, else `$JAVA_HOME/bin/java`, else PATH.

    Raises `BrokerError` when it does not exist or is older than Java 17.
    """
    if os.environ.get("EVERFLOW_JAVA"):
        java, source = os.environ["EVERFLOW_JAVA"], "EVERFLOW_JAVA"
    elif os.environ.get("JAVA_HOME"):
        java, source = os.path.join(os.environ["JAVA_HOME"], "bin", "java"), "JAVA_HOME"
    else:
        java, source = shutil.which("java") or "", "PATH"
    if not java or not os.access(java, os.X_OK):
        found = f" ({source} points at {java!r})" if java else " on PATH"
        raise BrokerError(
            f"no Java found{found}; the local Kafka broker needs Java {MIN_JAVA_VERSION}+. "
            "Install OpenJDK 17 (e.g. `apt-get install openjdk-17-jre-headless`), set "
            "EVERFLOW_JAVA to a java binary, or set EVERFLOW_BOOTSTRAP to a running Kafka cluster"
        )
    major = _java_major_version(java)
    if major < MIN_JAVA_VERSION:
        raise BrokerError(
            f"{java} is Java {major}; Kafka {KAFKA_VERSION} needs Java "
            f"{MIN_JAVA_VERSION}+. Install OpenJDK 17 or set EVERFLOW_JAVA"
        )
    return java


@functools.cache
def _java_major_version(java: str) -> int:
    result = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    output = result.stderr + result.stdout
    match = re.search(r'version "(\d+)(?:\.(\d+))?', output)
    if result.returncode != 0 or match is None:
        raise BrokerError(f"cannot tell the Java version of {java}:\n{_tail(output)}")
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major  # "1.8.0_392" is Java 8


class LocalKafka:
    """A single-node KRaft Kafka (broker and controller in one JVM) on 127.0.0.1.

    `data_dir` keeps the config, the log (`log_path`) and the data; an already formatted
    dir is reused, so its topics survive. Without one, a temporary dir is used and deleted
    on `close()` (or context exit, garbage collection, interpreter exit). The JVM dies with
    this process even on SIGKILL; `start()` it from a long-lived thread (see the module doc).

    `secure=True` serves clients on SASL_SSL (SCRAM-SHA-512) instead of PLAINTEXT, with a CA,
    keystore and users made under `<data_dir>/secure` (kept with the data dir, so a restart
    is fast) and ACLs enforced (`streams.dev.secure`); `material` then holds the users'
    passwords and the CA, `client_settings()` what a client needs to connect.
    """

    def __init__(
        self,
        data_dir: str | Path | None = None,
        *,
        port: int | None = None,
        controller_port: int | None = None,
        heap: str = "-Xmx512m -Xms128m",
        secure: bool = False,
    ) -> None:
        self.secure = secure
        self.material: SecureMaterial | None = None
        owned = None if data_dir is not None else Path(tempfile.mkdtemp(prefix="everflow-kafka-"))
        self.data_dir: Path = owned or Path(data_dir or ".")
        self.port = port or _free_port()
        self.controller_port = controller_port or _free_port()
        properties = _node_properties(
            1, self.port, self.controller_port, self.data_dir / "data", replication=1
        )
        properties["controller.quorum.bootstrap.servers"] = f"127.0.0.1:{self.controller_port}"
        options = [
            *heap.split(),
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
        ]
        self._node = _KafkaNode(self.data_dir, properties, options, name="broker")
        self._finalizer = weakref.finalize(self, _release, [self._node], owned)

    @property
    def bootstrap(self) -> str:
        """`bootstrap.servers` for clients: "127.0.0.1:<port>"."""
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        """The broker's console output (WARN and above, plus the startup line)."""
        return self._node.log_path

    @property
    def pid(self) -> int | None:
        """The JVM's process id while it runs."""
        return self._node.process.pid if self._node.running() and self._node.process else None

    def client_settings(self, user: str = ADMIN_USER) -> dict[str, str]:
        """librdkafka settings (besides `bootstrap.servers`) to connect as `user`: none for
        a plaintext broker; for a secure one, SASL_SSL with that user's password (`admin`,
        the super user, by default; also `worker`, `client`, `ui`) and the CA."""
        if not self.secure:
            return {}
        if self.material is None:
            raise BrokerError("the secure broker's credentials exist once it was started")
        return self.material.client_settings(user)

    def child_environment(self, user: str = ADMIN_USER) -> dict[str, str]:
        """The environment of a child process that connects as `user`: this process's, with
        EVERFLOW_BOOTSTRAP and, for a secure broker, the user's EVERFLOW_KAFKA_* settings."""
        return {**os.environ, **self.client_environment(user)}

    def client_environment(self, user: str = ADMIN_USER) -> dict[str, str]:
        """EVERFLOW_BOOTSTRAP and the EVERFLOW_KAFKA_* settings that connect as `user`."""
        if not self.secure:
            return {"EVERFLOW_BOOTSTRAP": self.bootstrap}
        if self.material is None:
            raise BrokerError("the secure broker's credentials exist once it was started")
        return self.material.environment(user, self.bootstrap)

    def start(self, timeout: float | timedelta = 60) -> LocalKafka:
        """Start the broker (formatting a new data dir first) and wait until it serves clients.

        Provisions the jars on first use. Raises `BrokerError` naming the cause: no Java,
        a port in use, the JVM exiting, or no readiness within `timeout`; the JVM is
        stopped before the error is raised.
        """
        if self._node.running():
            return self
        started = time.monotonic()
        libs = ensure_kafka_libs()
        java = find_java()
        self._node.check_ports()
        self._node.format(java, libs, _kafka_uuid(), standalone=True, extra=self._secure(java))
        self._node.launch(java, libs)
        try:
            _wait_until_ready(
                [self._node],
                self.bootstrap,
                brokers=1,
                timeout=_seconds(timeout),
                client_settings=self.client_settings(),
            )
        except BaseException:
            self.kill()
            raise
        log.info(
            "Kafka broker ready at %s in %.1f s (data %s)",
            self.bootstrap,
            time.monotonic() - started,
            self.data_dir,
        )
        return self

    def _secure(self, java: str) -> list[str]:
        """With `secure`: the TLS material and users made (or read back), the node's config
        switched to SASL_SSL; returns the format arguments that create the users."""
        if not self.secure:
            return []
        directory = self.data_dir / "secure"
        if self._node.formatted and not (directory / "credentials.json").is_file():
            raise BrokerError(
                f"{self.data_dir} holds a broker formatted without --secure: its SCRAM users "
                "do not exist; use another data dir for a secure broker"
            )
        self.material = secure_material(directory, java)
        self._node.properties.update(
            secure_properties(self.material, self.port, self.controller_port)
        )
        return scram_arguments(self.material)

    def stop(self, grace: float | timedelta = 20) -> None:
        """Stop the broker cleanly (SIGTERM, then SIGKILL after `grace`); data is kept.

        Idempotent: stopping a stopped broker does nothing.
        """
        _stop_nodes([self._node], _seconds(grace))

    def kill(self) -> None:
        """SIGKILL the broker, as a crash would; the next `start()` recovers its data."""
        self._node.signal(signal.SIGKILL)
        self._node.reap(time.monotonic() + 30)

    def restart(self, timeout: float | timedelta = 60) -> LocalKafka:
        """Stop and start again on the same ports and data dir."""
        self.stop()
        return self.start(timeout)

    def close(self) -> None:
        """Stop the broker and delete its data dir if it is a temporary one."""
        self._finalizer()

    def __enter__(self) -> LocalKafka:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@contextlib.contextmanager
def provision_broker() -> Iterator[str]:
    """Yield the bootstrap servers of a broker to use, started if needed and stopped after.

    In order: `EVERFLOW_BOOTSTRAP` (nothing is started); a Docker engine that answers
    (a testcontainers Kafka container; `EVERFLOW_NO_DOCKER=1` skips it); a `LocalKafka`.
    """
    bootstrap = os.environ.get("EVERFLOW_BOOTSTRAP")
    if bootstrap:
        log.info("using the Kafka cluster at %s (EVERFLOW_BOOTSTRAP)", bootstrap)
        yield bootstrap
    elif os.environ.get("EVERFLOW_NO_DOCKER", "") in ("", "0") and _docker_answers():
        with _kafka_container() as bootstrap:
            log.info("using a Kafka container (%s) at %s", CP_KAFKA_IMAGE, bootstrap)
            yield bootstrap
    else:
        with LocalKafka() as kafka:
            log.info(
                "using a local Kafka %s broker at %s (Docker skipped or not answering)",
                KAFKA_VERSION,
                kafka.bootstrap,
            )
            yield kafka.bootstrap


def _docker_answers() -> bool:
    try:  # by name: for mypy and ruff, the repo's docker/ directory shadows the package
        docker: Any = importlib.import_module("docker")
    except ImportError:
        log.debug("the docker package is not installed; not using Docker")
        return False
    # When no engine listens, docker-py drops its socket unclosed; collect it here, quietly,
    # rather than let a ResourceWarning surface later in whatever code runs the GC.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            return _ping_docker(docker)
        finally:
            gc.collect()


def _ping_docker(docker: Any) -> bool:
    DockerException = docker.errors.DockerException
    try:
        client = docker.from_env(timeout=3)
    except DockerException as e:
        log.debug("no Docker engine: %s", e)
        return False
    try:
        return bool(client.ping())
    except (DockerException, OSError) as e:  # requests' ConnectionError is an OSError
        log.debug("the Docker engine does not answer: %s", e)
        return False
    finally:
        client.close()


@contextlib.contextmanager
def _kafka_container() -> Iterator[str]:
    try:
        from testcontainers.community.kafka import KafkaContainer
    except ImportError:  # testcontainers < 4.15
        from testcontainers.kafka import KafkaContainer
    container = (
        KafkaContainer(CP_KAFKA_IMAGE)
        .with_kraft()
        .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
    )
    with container as kafka:
        yield kafka.get_bootstrap_server()
