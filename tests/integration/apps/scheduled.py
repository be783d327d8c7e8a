"""Workflows that schedules start: a quick one, and one that runs until released."""

from __future__ import annotations

from streams import workflow


@workflow.defn
class Tick:
    @workflow.run
    async def run(self, label: str) -> str:
        return f"{label} {workflow.info().workflow_id}"


@workflow.defn
class Hold:
    def __init__(self) -> None:
        self.released = False

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.released)
        return "released"

    @workflow.signal
    def release(self) -> None:
        self.released = True
