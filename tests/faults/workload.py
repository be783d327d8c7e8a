"""The fault suite's workload: one worker app with four kinds of runs, and the ledgers that let
the history checker see what really happened outside Kafka.

Load it as a worker app (`everflow worker tests.faults.workload --task-queue faults`). The
transfer and the saga are the seed's own workflows (`examples.money_transfer`); their
activities are registered here under the seed's names, wrapping the seed's functions, so that
every execution attempt is appended to an fsynced JSON-lines *attempts ledger*
(`EVERFLOW_FAULT_LEDGER`): which run, activity, attempt, and its outcome. The seed's bank
(`EVERFLOW_BANK_LEDGER`) keeps the money. `TimerRun` sleeps, then notes the wall clock of the
fire in the attempts ledger; `SignalRun` returns the signals it got, in arrival order.
`tests.faults.driver` starts these runs, `tests.faults.checker` judges them.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson

from examples import money_transfer as seed
from examples.money_transfer import MoneyTransferSaga, MoneyTransferWorkflow, TransferOrder
from streams import activity, workflow

QUEUE = "faults"
LEDGER_ENV = "EVERFLOW_FAULT_LEDGER"


def attempts_ledger() -> Path:
    return Path(os.environ.get(LEDGER_ENV, "/tmp/everflow-fault-attempts.jsonl"))


def append_line(path: Path, row: dict[str, Any]) -> None:
    """Appends one JSON line, fsynced before returning, under an exclusive lock (several
    worker processes share a ledger)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(orjson.dumps(row) + b"\n")
        f.flush()
        os.fsync(f.fileno())


def read_lines(path: Path) -> list[dict[str, Any]]:
    """Every complete JSON line of a ledger (a torn last line of a killed writer is skipped)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_bytes().splitlines():
        if line.strip():
            try:
                rows.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue
    return rows


def _recorded(fn: Callable[..., Any], *args: Any) -> Any:
    """Runs one attempt of an activity and appends it, with its outcome, to the ledger."""
    info = activity.info()
    row: dict[str, Any] = {
        "key": info.idempotency_key,
        "workflow_id": info.workflow_id,
        "run_id": info.run_id,
        "activity_id": info.activity_id,
        "activity": info.activity_type,
        "attempt": info.attempt,
    }
    try:
        result = fn(*args)
    except Exception as e:
        append_line(attempts_ledger(), {**row, "outcome": "error", "error": f"{e}"})
        raise
    append_line(attempts_ledger(), {**row, "outcome": "ok", "result": result})
    return result


@activity.defn(name="withdraw")
def withdraw(order: TransferOrder) -> str:
    return str(_recorded(seed.withdraw, order))


@activity.defn(name="deposit")
def deposit(order: TransferOrder) -> str:
    return str(_recorded(seed.deposit, order))


@activity.defn(name="refund")
def refund(order: TransferOrder) -> str:
    return str(_recorded(seed.refund, order))


def _fire_note(due_ms: int) -> dict[str, int]:
    return {"due_ms": due_ms, "fired_at_ms": time.time_ns() // 1_000_000}


@activity.defn
def note_fire(due_ms: int) -> dict[str, int]:
    """Notes the wall clock after a timer fired (the checker compares it with the due time)."""
    result: dict[str, int] = _recorded(_fire_note, due_ms)
    return result


def _millis(t: Any) -> int:
    return int(t.timestamp() * 1000)


@workflow.defn
class TimerRun:
    """Sleeps `seconds`; returns the due time it computed and the time it woke up (ms)."""

    @workflow.run
    async def run(self, seconds: float) -> dict[str, int]:
        due = workflow.now() + timedelta(seconds=seconds)
        await workflow.sleep(timedelta(seconds=seconds))
        fired = workflow.now()
        await workflow.execute_activity(
            note_fire, _millis(due), start_to_close_timeout=seed.STEP, retry_policy=seed.RETRY
        )
        return {"due_ms": _millis(due), "fired_ms": _millis(fired)}


@workflow.defn
class SignalRun:
    """Waits for `count` signals; returns their payloads in the order they arrived."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []

    @workflow.run
    async def run(self, count: int) -> list[dict[str, Any]]:
        await workflow.wait_condition(lambda: len(self.received) >= count)
        return self.received

    @workflow.signal
    def deliver(self, payload: dict[str, Any]) -> None:
        self.received.append(payload)


WORKFLOWS = [MoneyTransferWorkflow, MoneyTransferSaga, TimerRun, SignalRun]
ACTIVITIES = [withdraw, deposit, refund, note_fire]
