"""Version 2: the steps were reordered without versioning, so running v1 histories no
longer replay on it."""

from __future__ import annotations

from datetime import timedelta

from streams import workflow
from tests.integration.apps.onboarding_v1 import create_account, send_email


@workflow.defn(name="Onboarding")
class Onboarding:
    @workflow.run
    async def run(self, user: str) -> str:
        step = timedelta(seconds=30)
        b = await workflow.execute_activity(send_email, user, start_to_close_timeout=step)
        a = await workflow.execute_activity(create_account, user, start_to_close_timeout=step)
        return f"{a}, {b}"


ACTIVITIES = [create_account, send_email]
