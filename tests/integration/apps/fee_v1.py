"""A billing workflow, first version: charges, then waits for the books to close."""

from __future__ import annotations

from datetime import timedelta

from streams import activity, workflow


@activity.defn
async def charge(amount: int) -> str:
    return f"charged {amount}"


@activity.defn
async def charge_with_fee(amount: int) -> str:
    return f"charged {amount} + fee"


@workflow.defn(name="Billing")
class Billing:
    def __init__(self) -> None:
        self.approved = False

    @workflow.run
    async def run(self, amount: int) -> str:
        result: str = await workflow.execute_activity(
            charge, amount, start_to_close_timeout=timedelta(seconds=10)
        )
        await workflow.wait_condition(lambda: self.approved)
        return result

    @workflow.signal
    def approve(self) -> None:
        self.approved = True
