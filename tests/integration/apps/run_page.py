"""Runs for the run page's tests: a charge whose first two attempts fail (the third waits
for a long backoff), and a workflow that sleeps for as long as it is told."""

from __future__ import annotations

from datetime import timedelta

from streams import RetryPolicy, activity, workflow


@activity.defn
def flaky_charge(amount: int) -> str:
    if activity.info().attempt < 3:
        raise ConnectionError(f"card network unreachable (attempt {activity.info().attempt})")
    return f"charged {amount}"


@workflow.defn
class FlakyCharge:
    @workflow.run
    async def run(self, amount: int) -> str:
        return await workflow.execute_activity(  # type: ignore[no-any-return]
            flaky_charge,
            amount,
            start_to_close_timeout=timedelta(seconds=10),
            # attempt 2 comes after 0.2 s, attempt 3 only after 20 s: the page sees it waiting
            retry_policy=RetryPolicy(
                initial_interval=timedelta(milliseconds=200),
                backoff_coefficient=100.0,
                maximum_interval=timedelta(minutes=5),
                maximum_attempts=100,
            ),
        )


@workflow.defn
class Sleeper:
    @workflow.run
    async def run(self, seconds: float) -> str:
        await workflow.sleep(timedelta(seconds=seconds))  # the line the run page shows
        return f"slept {seconds} s"
