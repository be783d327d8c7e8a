"""The processor's transactions: the fault hooks fire before the N-th commit, as configured."""

from __future__ import annotations

import signal
from typing import Any

import pytest

from processors.workflow_processor import transactions
from processors.workflow_processor.stats import Timing
from processors.workflow_processor.transactions import Transactions
from streams.settings import FaultSettings


class _Producer:
    def __init__(self) -> None:
        self.committed = 0

    def begin_transaction(self) -> None:
        pass

    def commit_transaction(self, timeout: float) -> None:
        self.committed += 1

    def flush(self, timeout: float) -> int:
        return 0

    def poll(self, timeout: float) -> int:
        return 0


def _run(faults: FaultSettings, count: int, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    sent: list[Any] = []
    monkeypatch.setattr(transactions.os, "kill", lambda pid, sig: sent.append(sig))
    producer = _Producer()
    timing = Timing()
    txns: Transactions[int] = Transactions(producer, timing, faults)  # type: ignore[arg-type]
    try:
        for n in range(count):
            txns.begin()
            txns.hand_off([], None, n)
            assert txns.settle() == n
    finally:
        txns.close()
    assert producer.committed == count and timing.commit >= 0
    return sent


def test_no_fault_is_injected_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _run(FaultSettings(), 3, monkeypatch) == []


def test_the_stop_hook_fires_once_before_the_nth_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _run(FaultSettings(stop_before_commit=2), 4, monkeypatch) == [signal.SIGSTOP]


def test_the_kill_hook_fires_before_the_nth_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _run(FaultSettings(kill_before_commit=1), 2, monkeypatch) == [signal.SIGKILL]


def test_the_stop_after_hook_fires_once_after_the_nth_commit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _run(FaultSettings(stop_after_commit=2), 4, monkeypatch) == [signal.SIGSTOP]
