"""The seed's two-step transfer with in-memory activities, so the benchmark measures the
engine (Kafka round trips, transactions, replay), not a toy bank's file I/O."""

from __future__ import annotations

from datetime import timedelta

from streams import activity, workflow


@activity.defn
async def withdraw(account: str, amount: int) -> str:
    return f"withdrew {amount} from {account}"


@activity.defn
async def deposit(account: str, amount: int) -> str:
    return f"deposited {amount} into {account}"


@workflow.defn
class BenchTransfer:
    @workflow.run
    async def run(self, source: str, target: str, amount: int) -> str:
        step = timedelta(seconds=10)
        w = await workflow.execute_activity(withdraw, source, amount, start_to_close_timeout=step)
        d = await workflow.execute_activity(deposit, target, amount, start_to_close_timeout=step)
        return f"{w}; {d}"


@workflow.defn
class Parked:
    """An open run: waits for its release signal (recovery and memory benchmarks)."""

    def __init__(self) -> None:
        self.released = False

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.released)
        return "released"

    @workflow.signal
    def release(self) -> None:
        self.released = True


@workflow.defn
class BenchLocalTransfer:
    """The same two steps as local activities: run by the worker that hosts the run."""

    @workflow.run
    async def run(self, source: str, target: str, amount: int) -> str:
        step = timedelta(seconds=10)
        w = await workflow.execute_local_activity(
            withdraw, source, amount, start_to_close_timeout=step
        )
        d = await workflow.execute_local_activity(
            deposit, target, amount, start_to_close_timeout=step
        )
        return f"{w}; {d}"


MODES: dict[str, tuple[type, dict[str, str]]] = {
    # the benchmark's modes: the workflow its runs start and the worker's extra environment.
    # Another way to run the same two steps is one more entry here, and one more row in the
    # benchmark's summary.
    "activities": (BenchTransfer, {}),  # regular activities, eager dispatch (the default)
    "activities-no-eager": (BenchTransfer, {"EVERFLOW_EAGER_ACTIVITIES": "off"}),
    "local": (BenchLocalTransfer, {}),
    # every payload AES-GCM encrypted, by the worker and the client (a key file the
    # benchmark makes in its temporary folder: KEY_FILE there)
    "encrypted": (BenchTransfer, {"EVERFLOW_PAYLOAD_KEYS": "{tmp}/bench.keys"}),
}


@workflow.defn
class Instant:
    """A run that closes at once."""

    @workflow.run
    async def run(self) -> str:
        return "done"
