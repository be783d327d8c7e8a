"""Version 1 of a workflow whose code a test changes under a running run."""

from __future__ import annotations

import os
import time
from datetime import timedelta

from streams import activity, workflow


@activity.defn
def send_email(to: str) -> str:
    return f"emailed {to}"


@activity.defn
def create_account(user: str) -> str:
    # slow, so a test can swap the worker's code while the run waits on it
    time.sleep(float(os.environ.get("ONBOARDING_ACCOUNT_DELAY", "0")))
    return f"account for {user}"


@workflow.defn(name="Onboarding")
class Onboarding:
    @workflow.run
    async def run(self, user: str) -> str:
        step = timedelta(seconds=30)
        a = await workflow.execute_activity(create_account, user, start_to_close_timeout=step)
        b = await workflow.execute_activity(send_email, user, start_to_close_timeout=step)
        return f"{a}, {b}"
