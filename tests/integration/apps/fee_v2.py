"""The billing workflow, second version: a fee, guarded by workflow.patched so runs that
started on version 1 keep charging without it."""

from __future__ import annotations

from datetime import timedelta

from streams import workflow
from tests.integration.apps.fee_v1 import charge, charge_with_fee

__all__ = ["Billing", "charge", "charge_with_fee"]


@workflow.defn(name="Billing")
class Billing:
    def __init__(self) -> None:
        self.approved = False

    @workflow.run
    async def run(self, amount: int) -> str:
        step = timedelta(seconds=10)
        if workflow.patched("fee"):
            result: str = await workflow.execute_activity(
                charge_with_fee, amount, start_to_close_timeout=step
            )
        else:
            result = await workflow.execute_activity(charge, amount, start_to_close_timeout=step)
        await workflow.wait_condition(lambda: self.approved)
        return result

    @workflow.signal
    def approve(self) -> None:
        self.approved = True
