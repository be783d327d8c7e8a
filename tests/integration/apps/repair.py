"""A checkout whose charge fails while the customer's account is locked (a lock file):
the seed's human-in-the-loop story. Every attempt is logged to a file for the tests."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from streams import ApplicationError, RetryPolicy, activity, workflow


def _log(what: str) -> None:
    with open(os.environ["EVERFLOW_REPAIR_LOG"], "a") as f:
        f.write(f"{what}\n")


@activity.defn
def reserve(order: str) -> str:
    _log(f"reserve {order}")
    return "reserved"


@activity.defn
def charge(order: str) -> str:
    _log(f"charge {order} attempt {activity.info().attempt}")
    if Path(os.environ["EVERFLOW_REPAIR_LOCK"]).exists():
        raise ApplicationError(f"account of {order} is locked", type="AccountLocked")
    return "charged"


@workflow.defn
class Checkout:
    @workflow.run
    async def run(self, order: str, attempts: int) -> str:
        step = timedelta(seconds=10)
        reserved = await workflow.execute_activity(reserve, order, start_to_close_timeout=step)
        policy = RetryPolicy(
            initial_interval=timedelta(milliseconds=100),
            maximum_interval=timedelta(milliseconds=200),
            maximum_attempts=attempts,
        )
        charged = await workflow.execute_activity(
            charge, order, start_to_close_timeout=step, retry_policy=policy
        )
        return f"{reserved}, {charged}"
