"""Workflows that meet the payload limit."""

from __future__ import annotations

from datetime import timedelta

from streams import ActivityError, activity, workflow


@activity.defn
async def big_result(size: int) -> str:
    return "x" * size


@workflow.defn
class BigResult:
    @workflow.run
    async def run(self, size: int) -> str:
        try:
            await workflow.execute_activity(
                big_result, size, start_to_close_timeout=timedelta(seconds=10)
            )
        except ActivityError as e:
            return f"refused: {e.cause}"
        return "accepted"
