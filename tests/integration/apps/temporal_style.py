"""A workflow called the way temporalio's users call theirs: arguments as args=[...],
handlers passed as methods, results typed by the annotations, an activity that is a method
of a registered instance."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from streams import activity, workflow


@dataclass(frozen=True)
class Tally:
    name: str
    total: int
    items: list[int]


class Adder:
    """Activities as methods of a class, its instance registered (temporalio's idiom for
    activities that share a client or a connection)."""

    def __init__(self, bonus: int) -> None:
        self.bonus = bonus

    @activity.defn
    async def add_up(self, items: list[int], start: int) -> int:
        return start + sum(items) + self.bonus


ACTIVITIES = [Adder(bonus=1000).add_up]


@workflow.defn
class Ledger:
    """Collects items by signal until an update closes it; its child totals them."""

    def __init__(self) -> None:
        self.items: list[int] = []
        self.closed = False

    @workflow.run
    async def run(self, name: str, start: int) -> Tally:
        await workflow.wait_condition(lambda: self.closed)
        child = await workflow.execute_child_workflow(
            Totals.run, args=[self.items, start], id=f"{workflow.info().workflow_id}-totals"
        )
        assert isinstance(child, Tally), child  # typed by Totals.run's annotation
        return Tally(name, child.total, child.items)

    @workflow.signal
    def add(self, item: int, times: int) -> None:
        self.items.extend([item] * times)

    @workflow.query
    def snapshot(self, label: str) -> Tally:
        return Tally(label, sum(self.items), list(self.items))

    @workflow.update
    def close(self, reason: str) -> str:
        self.closed = True
        return f"closed: {reason}"


@workflow.defn
class Totals:
    @workflow.run
    async def run(self, items: list[int], start: int) -> Tally:
        total = await workflow.execute_activity_method(
            Adder.add_up, args=[items, start], start_to_close_timeout=timedelta(seconds=10)
        )
        return Tally("totals", total, items)
