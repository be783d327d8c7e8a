"""The local broker: provisioning its jars, its lifecycle, its errors, and no orphan JVMs."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from streams.dev.broker import (
    KAFKA_VERSION,
    LocalKafka,
    ensure_kafka_libs,
    kafka_cache_dir,
    provision_broker,
)
from streams.errors import BrokerError
from tests.helpers import wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def create_topic(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)], operation_timeout=30)[topic].result(timeout=35)


def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    errors: list[KafkaError] = []

    def on_delivery(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            errors.append(error)

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for value in values:
        producer.produce(topic, value, on_delivery=on_delivery)
    assert producer.flush(30) == 0, "messages still in flight after 30 s"
    assert errors == []


def read_all(bootstrap: str, topic: str, count: int) -> list[bytes]:
    """The first `count` values of partition 0, read from the beginning."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"{topic}reader", "enable.auto.commit": False}
    )
    values: list[bytes] = []

    def read_some() -> bool:
        message = consumer.poll(0.2)
        if message is not None:
            assert message.error() is None, message.error()
            values.append(message.value() or b"")
        return len(values) >= count

    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        wait_until(read_some, timeout=30, interval=0, message=f"{count} messages in {topic}")
    finally:
        consumer.close()
    return values


def jvm_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited already


# --- provisioning -----------------------------------------------------------------------


def test_second_provisioning_reuses_the_cache_without_maven(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    libs = ensure_kafka_libs()
    marker = kafka_cache_dir() / "libs.complete"
    before = marker.stat().st_mtime_ns
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # were Maven needed, this would raise BrokerError

    assert ensure_kafka_libs() == libs
    assert marker.stat().st_mtime_ns == before
    assert (libs / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file()


def test_incomplete_cache_is_fetched_again_once_by_concurrent_processes(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    half_done = cache / "libs" / f"kafka_2.13-{KAFKA_VERSION}.jar"
    half_done.parent.mkdir(parents=True)
    half_done.write_bytes(b"truncated download")  # and no completion marker
    script = (
        "import logging; logging.basicConfig(level=logging.INFO)\n"
        "from streams.dev.broker import ensure_kafka_libs; print(ensure_kafka_libs())"
    )
    env = {**os.environ, "EVERFLOW_KAFKA_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=240) for p in processes]

    assert [p.returncode for p in processes] == [0, 0], outputs
    assert {out.strip() for out, _ in outputs} == {str(cache / "libs")}
    assert sum(err.count("fetching the Kafka") for _, err in outputs) == 1, outputs
    assert (cache / "libs.complete").is_file()
    assert zipfile.is_zipfile(half_done)


def test_missing_maven_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    java = shutil.which("java")
    assert java is not None
    monkeypatch.setenv("EVERFLOW_JAVA", java)
    monkeypatch.setenv("EVERFLOW_KAFKA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(BrokerError, match=r"Maven \(mvn\) is not on PATH"):
        ensure_kafka_libs()


# --- lifecycle ------------------------------------------------------------------------


def test_broker_keeps_messages_across_restart(tmp_path: Path, topic_prefix: str) -> None:
    topic = f"{topic_prefix}kept"
    kafka = LocalKafka(tmp_path / "kafka")
    try:
        kafka.start()
        create_topic(kafka.bootstrap, topic)
        produce(kafka.bootstrap, topic, [b"a", b"b", b"c"])
        port, pid = kafka.port, kafka.pid

        kafka.restart()

        assert kafka.port == port and kafka.pid != pid
        assert read_all(kafka.bootstrap, topic, 3) == [b"a", b"b", b"c"]
    finally:
        kafka.stop()


def test_broker_recovers_its_data_after_kill(tmp_path: Path, topic_prefix: str) -> None:
    topic = f"{topic_prefix}crash"
    kafka = LocalKafka(tmp_path / "kafka")
    try:
        kafka.start()
        create_topic(kafka.bootstrap, topic)
        produce(kafka.bootstrap, topic, [b"before crash"])
        pid = kafka.pid
        assert pid is not None

        kafka.kill()
        assert kafka.pid is None and not jvm_alive(pid)
        kafka.start()

        produce(kafka.bootstrap, topic, [b"after crash"])
        assert read_all(kafka.bootstrap, topic, 2) == [b"before crash", b"after crash"]
    finally:
        kafka.stop()
    kafka.stop()  # idempotent


def test_session_broker_serves_clients(kafka_bootstrap: str, topic_prefix: str) -> None:
    topic = f"{topic_prefix}session"
    create_topic(kafka_bootstrap, topic)
    produce(kafka_bootstrap, topic, [b"hello"])

    assert read_all(kafka_bootstrap, topic, 1) == [b"hello"]


def test_bootstrap_from_environment_starts_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVERFLOW_BOOTSTRAP", "kafka.example:9092")
    monkeypatch.setenv("EVERFLOW_KAFKA_CACHE", "/nonexistent")  # provisioning would fail

    with provision_broker() as bootstrap:
        assert bootstrap == "kafka.example:9092"


def test_dev_broker_command_serves_until_sigterm_then_cleans_up() -> None:
    command = [sys.executable, "-m", "streams.cli", "dev", "broker", "--port", "0"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT) as cli:
        try:
            assert cli.stdout is not None
            printed = {}
            for line in cli.stdout:  # bounded by the test timeout
                key, _, value = line.strip().partition(" ")
                printed[key] = value.strip()
                if key == "started":
                    break
            bootstrap = printed["bootstrap"].split()[0]
            data_dir = Path(printed["data"].split()[0])
            jvm_pid = int(printed["log"].rsplit("pid ", 1)[1].rstrip(")"))
            assert AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).brokers

            cli.send_signal(signal.SIGTERM)

            assert cli.wait(timeout=30) == 0
            assert not jvm_alive(jvm_pid)
            assert not data_dir.exists()  # a temporary data dir goes with the broker
        finally:
            cli.kill()


def test_dev_broker_runs_a_worker_and_the_web_ui_beside_it() -> None:
    command = [
        sys.executable, "-m", "streams.cli", "dev", "broker", "--port", "0",
        "--worker", "tests.integration.apps.messages", "-t", "devq", "--ui", "127.0.0.1:0",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EVERFLOW_TOPIC_PREFIX": "devui."}
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT) as cli:
        try:
            assert cli.stdout is not None
            printed = {}
            for line in cli.stdout:  # bounded by the test timeout
                key, _, value = line.strip().partition(" ")
                printed[key] = value.strip()
                if key == "web":
                    break
            assert printed["topics"] == "devui.* (task queue devq)"
            worker_pid = int(printed["worker"].rsplit("pid ", 1)[1].rstrip(")"))
            address = printed["web"].removeprefix("UI").strip()
            with urllib.request.urlopen(address + "api/health", timeout=10) as answer:
                assert json.loads(answer.read()) == {"status": "ok", "prefix": "devui."}
            os.kill(worker_pid, 0)  # the worker runs

            cli.send_signal(signal.SIGTERM)

            assert cli.wait(timeout=60) == 0
            with pytest.raises(ProcessLookupError):
                os.kill(worker_pid, 0)  # stopped (and reaped) with the broker
        finally:
            cli.kill()


# --- errors ---------------------------------------------------------------------------


def test_port_in_use_is_named() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with contextlib.closing(LocalKafka(port=port)) as kafka:
            with pytest.raises(
                BrokerError, match=rf"port {port} on 127\.0\.0\.1 .* already in use"
            ):
                kafka.start()
            assert kafka.pid is None


def test_missing_java_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVERFLOW_JAVA", str(tmp_path / "no-such-java"))

    with (
        contextlib.closing(LocalKafka()) as kafka,
        pytest.raises(BrokerError, match=r"no Java found \(EVERFLOW_JAVA points at .*no-such-java"),
    ):
        kafka.start()


def test_java_older_than_17_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old_java = tmp_path / "java"
    old_java.write_text("#!/bin/sh\necho 'openjdk version \"11.0.22\" 2024-01-16' >&2\n")
    old_java.chmod(0o755)
    monkeypatch.setenv("EVERFLOW_JAVA", str(old_java))

    with (
        contextlib.closing(LocalKafka()) as kafka,
        pytest.raises(BrokerError, match=r"is Java 11; Kafka .* needs Java 17"),
    ):
        kafka.start()


def test_broker_exiting_at_startup_reports_its_log(tmp_path: Path) -> None:
    data = tmp_path / "kafka" / "data"
    data.mkdir(parents=True)
    # formatted for another node: Kafka refuses to start on it
    (data / "meta.properties").write_text(
        "version=1\ncluster.id=x2Kg5WBoSmqVlKvLcTVPjw\n"
        "node.id=99\ndirectory.id=nZXKkxHUTq2mYyu3Ye-VLA\n"
    )
    kafka = LocalKafka(tmp_path / "kafka")

    with pytest.raises(BrokerError, match=r"(?s)exited with code \d+ during startup.*node"):
        kafka.start()
    assert kafka.pid is None


def test_broker_not_ready_in_time_reports_its_log_and_is_stopped(tmp_path: Path) -> None:
    kafka = LocalKafka(tmp_path / "kafka")

    with pytest.raises(BrokerError, match=r"(?s)did not log 'Kafka Server started' within 0.2 s"):
        kafka.start(timeout=0.2)  # a JVM cannot start Kafka that fast
    assert kafka.pid is None


# --- orphans --------------------------------------------------------------------------

STARTS_A_BROKER_AND_WAITS = """
import sys, time
from streams.dev.broker import LocalKafka
kafka = LocalKafka(sys.argv[1]).start()
print(kafka.pid, flush=True)
time.sleep(300)
"""


@pytest.mark.chaos
def test_no_jvm_outlives_its_python_parent_killed_with_sigkill(tmp_path: Path) -> None:
    command = [sys.executable, "-c", STARTS_A_BROKER_AND_WAITS, str(tmp_path / "kafka")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    jvm_pid = None
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as parent:
        try:
            assert parent.stdout is not None
            line = parent.stdout.readline()  # the broker is ready; bounded by the test timeout
            assert line.strip().isdigit(), f"the parent did not start a broker: {line!r}"
            jvm_pid = int(line)
            assert jvm_alive(jvm_pid)

            parent.send_signal(signal.SIGKILL)
            parent.wait(timeout=10)

            wait_until(
                lambda: not jvm_alive(jvm_pid),
                timeout=15,
                message=f"JVM {jvm_pid} outlived its SIGKILLed parent",
            )
        finally:
            parent.kill()
            if jvm_pid is not None and jvm_alive(jvm_pid):
                os.kill(jvm_pid, signal.SIGKILL)
