"""Worker processes for integration tests: real processes, killed for real."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from streams import Client, kafka
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import ensure_topics, topic_specs
from streams.payload import DataConverter

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcesses:
    """Starts `everflow worker` processes and stops every one of them at teardown."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[Any] = []
        self._log_paths: dict[int, Path] = {}

    def start(
        self,
        instance_id: str,
        *targets: str,
        task_queue: str = "transfers",
        extra_env: dict[str, str] | None = None,
        options: Sequence[str] = (),
        module: str = "streams.cli",
    ) -> subprocess.Popen[bytes]:
        """`python -m <module> worker <targets> ...` (`options` after the others)."""
        log = open(self.log_dir / f"worker-{instance_id}-{len(self.procs)}.log", "wb")
        self._logs.append(log)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                module,
                "worker",
                *(targets or ("examples.money_transfer",)),
                "--task-queue",
                task_queue,
                "--instance-id",
                instance_id,
                *options,
            ],
            cwd=ROOT,
            env={**self.env, **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        self._log_paths[proc.pid] = Path(log.name)
        return proc

    def start_program(
        self, name: str, *argv: str, extra_env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """`python <argv>`: a worker program of the user's own (`-m examples.seed.run_worker`),
        logged and stopped like the others."""
        log = open(self.log_dir / f"program-{name}-{len(self.procs)}.log", "wb")
        self._logs.append(log)
        proc = subprocess.Popen(
            [sys.executable, *argv],
            cwd=ROOT,
            env={**self.env, **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        self._log_paths[proc.pid] = Path(log.name)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for log in self._logs:
            log.close()

    def log_of(self, proc: subprocess.Popen[bytes]) -> str:
        return self._log_paths[proc.pid].read_text(errors="replace")

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("*.log")))


@pytest.fixture
def workers(worker_env: dict[str, str], tmp_path: Path) -> Iterator[WorkerProcesses]:
    procs = WorkerProcesses(worker_env, tmp_path)
    try:
        yield procs
    finally:
        procs.stop_all()


@pytest.fixture
def worker_env(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "EVERFLOW_BOOTSTRAP": kafka_bootstrap,
        "EVERFLOW_TOPIC_PREFIX": topic_prefix,
        "EVERFLOW_PARTITIONS": "4",
        "EVERFLOW_BANK_LEDGER": str(tmp_path / "bank.jsonl"),
        "EVERFLOW_BANK_STEP_TIMEOUT": "5",
        "PYTHONPATH": str(ROOT),
    }


def topics_for(bootstrap: str, prefix: str, *queues: str, partitions: int = 4) -> KafkaConfig:
    """A configuration with its topics (and the task queues' topics) created."""
    config = KafkaConfig(bootstrap=bootstrap, topic_prefix=prefix, partitions=partitions)
    ensure_topics(kafka.admin(config), topic_specs(config, list(queues)))
    return config


def with_client(
    config: KafkaConfig,
    body: Callable[[Client], Awaitable[Any]],
    converter: DataConverter | None = None,
) -> Any:
    """Runs `body(client)` with a connected client (with `converter`, else the configured
    one), closed afterwards."""

    async def main() -> Any:
        client = await asyncio.to_thread(Client, config, converter)
        try:
            return await body(client)
        finally:
            client.close()

    return asyncio.run(main())


def everflow(
    env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Runs the `everflow` command line as a user would; its output as text."""
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        cwd=ROOT,
        env=env,
        text=True,
        capture_output=True,
        timeout=timeout,
    )
