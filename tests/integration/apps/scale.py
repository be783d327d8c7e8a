"""Runs of three types for the run index at scale: each sets typed search attributes, then
completes, fails or waits for a signal, as its number says (see `outcome`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from streams import ApplicationError, workflow

DUE = datetime(2026, 1, 1, tzinfo=UTC)


def outcome(n: int) -> str:
    """What run `n` does: fails, waits (a signal releases it), or completes."""
    return {0: "fail", 1: "wait"}.get(n % 5, "complete")


def attributes(n: int) -> dict[str, object]:
    """The search attributes run `n` upserts."""
    return {
        "Amount": float(n % 1000) / 4,
        "Priority": n % 7,
        "Region": ("eu", "us", "apac")[n % 3],
        "Vip": n % 11 == 0,
        "Due": DUE + timedelta(hours=n % 48),
        "Tags": ["big"] if n % 1000 >= 900 else ["small", f"t{n % 4}"],
        "Note": workflow.Text(f"order for {'gold' if n % 13 == 0 else 'plain'} customer"),
    }


class _Body:
    def __init__(self) -> None:
        self.released = False

    async def body(self, n: int) -> int:
        workflow.upsert_search_attributes(attributes(n))
        what = outcome(n)
        if what == "fail":
            raise ApplicationError(f"run {n} fails", non_retryable=True)
        if what == "wait":
            await workflow.wait_condition(lambda: self.released)
        return n


@workflow.defn
class Order(_Body):
    @workflow.run
    async def run(self, n: int) -> int:
        return await self.body(n)

    @workflow.signal
    def release(self) -> None:
        self.released = True


@workflow.defn
class Refund(Order):
    @workflow.run
    async def run(self, n: int) -> int:
        return await self.body(n)


@workflow.defn
class Audit(Order):
    @workflow.run
    async def run(self, n: int) -> int:
        return await self.body(n)
