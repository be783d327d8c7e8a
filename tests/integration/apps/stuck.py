"""An activity that always fails and waits an hour between attempts: a run to describe while
it waits on its next retry."""

from __future__ import annotations

from datetime import timedelta

from streams import RetryPolicy, activity, workflow


@activity.defn
def reach_gateway(order: str) -> str:
    raise ConnectionError(f"payment gateway unreachable for {order}")


@workflow.defn
class Stuck:
    @workflow.run
    async def run(self, order: str) -> str:
        return await workflow.execute_activity(  # type: ignore[no-any-return]
            reach_gateway,
            order,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(initial_interval=timedelta(hours=1), maximum_attempts=5),
        )
