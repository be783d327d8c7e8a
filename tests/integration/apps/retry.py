"""An activity that fails its first attempt and is retried after a long backoff."""

from __future__ import annotations

from datetime import timedelta

from streams import RetryPolicy, activity, workflow


@activity.defn
def charge(amount: int) -> str:
    if activity.info().attempt == 1:
        raise ConnectionError("payment gateway timed out")
    return f"charged {amount} on attempt {activity.info().attempt}"


@workflow.defn
class Charge:
    @workflow.run
    async def run(self, amount: int) -> str:
        return await workflow.execute_activity(  # type: ignore[no-any-return]
            charge,
            amount,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=3)),
        )
