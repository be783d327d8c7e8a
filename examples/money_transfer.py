"""The seed's money transfer: withdraw from one account, deposit into another, on a flaky
bank API; and its saga variant, where a failed deposit is compensated by a refund.

The "bank" is a small JSON-lines ledger file shared by worker processes, so tests and the demo
can check that every effect was applied exactly once even when a worker is killed mid-way.
Each operation carries the activity's idempotency key; the bank ignores a key it has seen.
"""

from __future__ import annotations

import fcntl
import os
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import orjson

from streams import ActivityError, ApplicationError, RetryPolicy, activity, workflow


@dataclass(frozen=True)
class TransferOrder:
    from_account: str
    to_account: str
    amount: int
    reference: str


def _ledger() -> Path:
    return Path(os.environ.get("EVERFLOW_BANK_LEDGER", "/tmp/everflow-bank.jsonl"))


class Bank:
    """A toy bank: an append-only ledger of (key, account, delta), de-duplicated by key."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or _ledger()

    def apply(self, key: str, account: str, delta: int) -> bool:
        """Applies a balance change once per key; False if the key was already applied."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.seek(0)
            if any(orjson.loads(line)["key"] == key for line in f if line.strip()):
                return False
            f.write(orjson.dumps({"key": key, "account": account, "delta": delta}) + b"\n")
            f.flush()
            os.fsync(f.fileno())
            return True

    def entries(self) -> list[dict[str, object]]:
        if not self.path.exists():
            return []
        return [orjson.loads(x) for x in self.path.read_bytes().splitlines() if x.strip()]

    def balance(self, account: str, opening: int = 0) -> int:
        total = opening
        for e in self.entries():
            if e["account"] == account:
                total += int(e["delta"])  # type: ignore[call-overload]
        return total


def _flaky(what: str) -> None:
    """Fails one call in three (EVERFLOW_BANK_FLAKY=0 turns it off), like the seed's API."""
    rate = int(os.environ.get("EVERFLOW_BANK_FLAKY", "3"))
    info = activity.info()
    # deterministic per attempt, so runs are reproducible: attempt 1 of every third key fails
    if rate and info.attempt == 1 and hash_key(info.idempotency_key) % rate == 0:
        raise ConnectionError(f"bank API unavailable during {what} (attempt {info.attempt})")


def hash_key(key: str) -> int:
    return sum(key.encode())


@activity.defn
def withdraw(order: TransferOrder) -> str:
    _flaky("withdraw")
    key = f"{activity.info().idempotency_key}:withdraw"
    Bank().apply(key, order.from_account, -order.amount)
    return f"withdrew {order.amount} from {order.from_account}"


@activity.defn
def deposit(order: TransferOrder) -> str:
    _flaky("deposit")
    # a slow bank (for demos and crash tests): time to kill a worker mid-transfer
    time.sleep(float(os.environ.get("EVERFLOW_BANK_DEPOSIT_DELAY", "0")))
    if order.to_account.startswith("closed-"):
        raise ApplicationError(
            f"account {order.to_account} is closed", type="AccountClosed", non_retryable=True
        )
    key = f"{activity.info().idempotency_key}:deposit"
    Bank().apply(key, order.to_account, order.amount)
    return f"deposited {order.amount} into {order.to_account}"


@activity.defn
def refund(order: TransferOrder) -> str:
    _flaky("refund")
    # the compensation's own failures (EVERFLOW_BANK_REFUND_FAILURES first attempts) retry
    if activity.info().attempt <= int(os.environ.get("EVERFLOW_BANK_REFUND_FAILURES", "0")):
        raise ConnectionError(f"bank API down during refund (attempt {activity.info().attempt})")
    key = f"{activity.info().idempotency_key}:refund"
    Bank().apply(key, order.from_account, order.amount)
    return f"refunded {order.amount} to {order.from_account}"


RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=50), maximum_interval=timedelta(seconds=1)
)
# an attempt lost with a crashed worker is retried after this long
STEP = timedelta(seconds=float(os.environ.get("EVERFLOW_BANK_STEP_TIMEOUT", "10")))


@workflow.defn
class MoneyTransferWorkflow:
    """Withdraw, then deposit; each step retried until the flaky API lets it through."""

    @workflow.run
    async def run(self, order: TransferOrder) -> str:
        w = await workflow.execute_activity(
            withdraw, order, start_to_close_timeout=STEP, retry_policy=RETRY
        )
        d = await workflow.execute_activity(
            deposit, order, start_to_close_timeout=STEP, retry_policy=RETRY
        )
        return f"{w}; {d}"


@workflow.defn
class MoneyTransferSaga:
    """Withdraw, then deposit; if the deposit fails for good, refund the withdrawal."""

    @workflow.run
    async def run(self, order: TransferOrder) -> str:
        await workflow.execute_activity(
            withdraw, order, start_to_close_timeout=STEP, retry_policy=RETRY
        )
        try:
            await workflow.execute_activity(
                deposit, order, start_to_close_timeout=STEP, retry_policy=RETRY
            )
        except ActivityError as e:
            await workflow.execute_activity(
                refund, order, start_to_close_timeout=STEP, retry_policy=RETRY
            )
            raise ApplicationError(
                f"transfer {order.reference} compensated: {e.cause}",
                type="TransferCompensated",
                non_retryable=True,
            ) from None
        return f"transferred {order.amount}"


WORKFLOWS = [MoneyTransferWorkflow, MoneyTransferSaga]
ACTIVITIES = [withdraw, deposit, refund]
