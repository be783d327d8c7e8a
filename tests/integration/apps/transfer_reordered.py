"""The money transfer with its steps swapped: a change that must not meet old histories."""

from __future__ import annotations

from examples.money_transfer import RETRY, STEP, TransferOrder, deposit, withdraw
from streams import workflow


@workflow.defn(name="MoneyTransferWorkflow")
class MoneyTransferWorkflow:
    @workflow.run
    async def run(self, order: TransferOrder) -> str:
        d = await workflow.execute_activity(
            deposit, order, start_to_close_timeout=STEP, retry_policy=RETRY
        )
        w = await workflow.execute_activity(
            withdraw, order, start_to_close_timeout=STEP, retry_policy=RETRY
        )
        return f"{w}; {d}"
