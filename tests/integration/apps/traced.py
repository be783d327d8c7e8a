"""A workflow for the tracing tests: activities and sleeps in turn, an activity whose first
attempt fails (so one of its activities has two attempts), and a child with one activity."""

from __future__ import annotations

from datetime import timedelta

from streams import RetryPolicy, activity, workflow

QUICK_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=100), maximum_attempts=3)
STEPS = 3  # activities `step` per run, then one `flaky`


@activity.defn
def step(n: int) -> int:
    return n + 1


@activity.defn
def flaky(n: int) -> int:
    if activity.info().attempt == 1:
        raise RuntimeError("first attempts fail")
    return n


@workflow.defn
class TracedShipment:
    @workflow.run
    async def run(self) -> int:
        return await workflow.execute_activity(  # type: ignore[no-any-return]
            step, 99, start_to_close_timeout=timedelta(seconds=30), retry_policy=QUICK_RETRY
        )


@workflow.defn
class TracedOrder:
    @workflow.run
    async def run(self, pause_ms: int) -> int:
        total = 0
        for n in range(STEPS):
            total += await workflow.execute_activity(
                step, n, start_to_close_timeout=timedelta(seconds=30), retry_policy=QUICK_RETRY
            )
            await workflow.sleep(timedelta(milliseconds=pause_ms))
        total += await workflow.execute_activity(
            flaky, 10, start_to_close_timeout=timedelta(seconds=30), retry_policy=QUICK_RETRY
        )
        shipped = await workflow.execute_child_workflow(
            TracedShipment, id=f"{workflow.info().workflow_id}-shipment"
        )
        return total + shipped
