"""The fault suite's driver: starts the workload's runs with the Everflow client, sends the
signals, waits for the runs to close, and logs every operation, Jepsen-style, as JSON lines.

Each line is `{t, type, f, workflow_id, value}`: `type` is `invoke` before an operation,
then `ok` (it took effect), `fail` (it did not) or `info` (unknown: it timed out or the
broker failed in a way that may still let it take effect); `f` is `start`, `signal` or
`result`. `tests.faults.checker` reads this log with the topics and the ledgers.

    driver = Driver(config, tmp_path / "ops.jsonl")
    thread = threading.Thread(target=driver.run, kwargs={"n_runs": 1000})
    thread.start()          # inject faults meanwhile; driver.closes counts closed runs
    thread.join()

The mix is 40% transfers, 20% sagas, 20% timers, 20% signal runs. Broker outages are
expected: a start or signal that fails indeterminately is retried with backoff (each attempt
logged); a start is retried with `use_existing` / `reject_duplicate`, so a retry never makes
a second run of an ID.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import KafkaException

from examples.money_transfer import MoneyTransferSaga, MoneyTransferWorkflow, TransferOrder
from streams import Client
from streams.errors import (
    EverflowError,
    WorkflowAlreadyStartedError,
    WorkflowFailureError,
    WorkflowNotRunningError,
)
from streams.kafka.config import KafkaConfig
from tests.faults.workload import QUEUE, SignalRun, TimerRun

# ten runs: four transfers, two sagas, two timer runs, two signal runs
KINDS = ("transfer",) * 4 + ("saga",) * 2 + ("timer",) * 2 + ("signals",) * 2
SENDERS = ("a", "b")
# errors after which a start or a signal may or may not have taken effect
INDETERMINATE = (EverflowError, KafkaException, BufferError, TimeoutError, OSError)


@dataclass(frozen=True, slots=True)
class Plan:
    """One run the driver starts: its workflow ID, kind and argument."""

    workflow_id: str
    kind: str
    arg: Any


@dataclass
class DriverResult:
    """What the driver saw: runs planned, starts acknowledged, runs closed, ops logged."""

    planned: int
    started: int
    closed: int
    ops: int
    seconds: float


@dataclass
class Driver:
    """Runs the workload against a deployment; usable from a thread while faults run.

    `closes` lists (workflow_id, wall-clock seconds) of every close the driver saw, in
    order; `on_close` is called with the same two values. `stop()` ends `run` early.
    """

    config: KafkaConfig
    log_path: Path
    seed: int = 15
    accounts: int = 10
    timer_seconds: tuple[float, float] = (1.0, 15.0)
    signal_count: tuple[int, int] = (5, 20)
    concurrency: int = 64
    request_timeout: timedelta = timedelta(seconds=10)
    on_close: Callable[[str, float], None] | None = None
    prefix: str = "run"
    closes: list[tuple[str, float]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _ops: int = 0
    _started: int = 0

    def plan(self, n_runs: int) -> list[Plan]:
        """The runs of this workload, reproducible from `seed`."""
        rnd = random.Random(self.seed)
        plans = []
        for i in range(n_runs):
            kind = KINDS[i % len(KINDS)]
            wid = f"{self.prefix}-{kind}-{i}"
            arg: Any
            if kind in ("transfer", "saga"):
                src, dst = rnd.sample(range(self.accounts), 2)
                to = f"closed-{dst}" if kind == "saga" and rnd.random() < 0.5 else f"acct-{dst}"
                arg = TransferOrder(f"acct-{src}", to, rnd.randint(1, 100), wid)
            elif kind == "timer":
                arg = round(rnd.uniform(*self.timer_seconds), 3)
            else:
                arg = rnd.randint(*self.signal_count)
            plans.append(Plan(wid, kind, arg))
        return plans

    def stop(self) -> None:
        self._stop.set()

    def run(
        self,
        n_runs: int = 1000,
        deadline: timedelta = timedelta(minutes=5),
        open_at_once: int | None = None,
        start_for: timedelta | None = None,
    ) -> DriverResult:
        """Starts `n_runs` runs and waits until all closed, `deadline` passed, or stop().

        By default every run is started at once (a burst). A sustained workload instead keeps
        at most `open_at_once` runs open, starting the next as one closes, and starts none
        after `start_for`: runs of the plan not started by then are left out."""
        began = time.monotonic()
        plans = self.plan(n_runs)
        start_until = None if start_for is None else began + start_for.total_seconds()
        with open(self.log_path, "ab") as log:
            self._log_file = log
            asyncio.run(
                self._main(plans, began + deadline.total_seconds(), open_at_once, start_until)
            )
        return DriverResult(
            n_runs, self._started, len(self.closes), self._ops, time.monotonic() - began
        )

    # ---- operations ----------------------------------------------------------------------------
    def _log(self, type_: str, f: str, workflow_id: str, value: Any) -> None:
        row = {"t": time.time(), "type": type_, "f": f, "workflow_id": workflow_id, "value": value}
        with self._lock:
            self._log_file.write(orjson.dumps(row, default=_plain) + b"\n")
            self._log_file.flush()
            self._ops += 1

    async def _main(
        self,
        plans: list[Plan],
        deadline: float,
        open_at_once: int | None = None,
        start_until: float | None = None,
    ) -> None:
        client = await self._connect(deadline)
        if client is None:
            return
        gate = asyncio.Semaphore(self.concurrency)
        room = asyncio.Semaphore(open_at_once or max(1, len(plans)))
        tasks: list[asyncio.Task[None]] = []
        try:
            for plan in plans:
                await room.acquire()
                late = start_until is not None and time.monotonic() >= start_until
                if late or self._stop.is_set():
                    break
                task = asyncio.create_task(self._drive(client, plan, gate, deadline))
                task.add_done_callback(lambda _: room.release())
                tasks.append(task)
            await asyncio.gather(*tasks)
        finally:
            await asyncio.to_thread(client.close)

    async def _connect(self, deadline: float) -> Client | None:
        backoff = 0.2
        while time.monotonic() < deadline and not self._stop.is_set():
            try:
                return await asyncio.to_thread(Client, self.config)
            except INDETERMINATE:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        return None

    async def _drive(
        self, client: Client, plan: Plan, gate: asyncio.Semaphore, deadline: float
    ) -> None:
        async with gate:
            handle = await self._start(client, plan, deadline)
        if handle is None:
            return
        senders = []
        if plan.kind == "signals":
            state = {"acked": 0, "closed": False}
            senders = [
                asyncio.create_task(self._send_signals(handle, s, plan.arg, state, deadline))
                for s in SENDERS
            ]
        await self._await_close(client, handle, plan, deadline)
        for task in senders:
            task.cancel()
        await asyncio.gather(*senders, return_exceptions=True)

    async def _start(self, client: Client, plan: Plan, deadline: float) -> Any:
        workflow = {
            "transfer": MoneyTransferWorkflow,
            "saga": MoneyTransferSaga,
            "timer": TimerRun,
            "signals": SignalRun,
        }[plan.kind]
        value = {"kind": plan.kind, "arg": plan.arg}
        backoff = 0.2
        while time.monotonic() < deadline and not self._stop.is_set():
            self._log("invoke", "start", plan.workflow_id, value)
            try:
                handle = await client.start_workflow(
                    workflow,
                    plan.arg,
                    id=plan.workflow_id,
                    task_queue=QUEUE,
                    id_conflict_policy="use_existing",
                    id_reuse_policy="reject_duplicate",
                    request_timeout=self.request_timeout,
                )
            except WorkflowAlreadyStartedError as e:
                # an earlier, indeterminate attempt started it, and it has already closed
                self._log("fail", "start", plan.workflow_id, {**value, "error": str(e)})
                return client.get_workflow_handle(plan.workflow_id)
            except INDETERMINATE as e:
                self._log("info", "start", plan.workflow_id, {**value, "error": repr(e)})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            self._log("ok", "start", plan.workflow_id, {**value, "run_id": handle.run_id})
            self._started += 1
            return handle
        return None

    async def _send_signals(
        self, handle: Any, sender: str, count: int, state: dict[str, Any], deadline: float
    ) -> None:
        seq, backoff = 0, 0.2
        while state["acked"] < count and not state["closed"] and time.monotonic() < deadline:
            if self._stop.is_set():
                return
            seq += 1
            value = {"sender": sender, "seq": seq}
            self._log("invoke", "signal", handle.id, value)
            try:
                await handle.signal(SignalRun.deliver, value, timeout=self.request_timeout)
            except asyncio.CancelledError:
                # the run closed meanwhile: this signal may or may not have been recorded
                self._log("info", "signal", handle.id, {**value, "error": "canceled"})
                raise
            except WorkflowNotRunningError:
                self._log("fail", "signal", handle.id, value)
                state["closed"] = True
                return
            except INDETERMINATE as e:
                self._log("info", "signal", handle.id, {**value, "error": repr(e)})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            self._log("ok", "signal", handle.id, value)
            state["acked"] += 1
            backoff = 0.2

    async def _await_close(self, client: Client, handle: Any, plan: Plan, deadline: float) -> None:
        while not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._log("invoke", "result", plan.workflow_id, None)
            try:
                result = await handle.result(timeout=timedelta(seconds=min(remaining, 30)))
                outcome: dict[str, Any] = {"status": "COMPLETED", "result": result}
            except WorkflowFailureError as e:
                outcome = {"status": e.status, "failure": str(e)}
            except INDETERMINATE as e:
                self._log("info", "result", plan.workflow_id, {"error": repr(e)})
                # a handle that describes first (its completion watch may be gone)
                handle = client.get_workflow_handle(plan.workflow_id)
                await asyncio.sleep(0.5)
                continue
            self._log("ok", "result", plan.workflow_id, outcome)
            now = time.time()
            with self._lock:
                self.closes.append((plan.workflow_id, now))
            if self.on_close is not None:
                self.on_close(plan.workflow_id, now)
            return


def _plain(obj: Any) -> Any:
    if isinstance(obj, TransferOrder):
        return {
            "from_account": obj.from_account,
            "to_account": obj.to_account,
            "amount": obj.amount,
            "reference": obj.reference,
        }
    raise TypeError(f"cannot log a {type(obj).__name__}")


def read_ops(path: Path) -> list[dict[str, Any]]:
    """The operations a driver logged, in order."""
    if not path.exists():
        return []
    return [orjson.loads(x) for x in path.read_bytes().splitlines() if x.strip()]
