"""Worker processes for integration tests: real processes, killed for real."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcesses:
    """Starts `everflow worker` processes and stops every one of them at teardown."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[Any] = []

    def start(
        self,
        instance_id: str,
        *targets: str,
        task_queue: str = "transfers",
        extra_env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"worker-{instance_id}-{len(self.procs)}.log", "wb")
        self._logs.append(log)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streams.cli",
                "worker",
                *(targets or ("examples.money_transfer",)),
                "--task-queue",
                task_queue,
                "--instance-id",
                instance_id,
            ],
            cwd=ROOT,
            env={**self.env, **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
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
