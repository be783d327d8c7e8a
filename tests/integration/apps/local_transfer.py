"""The seed's money transfer with local activities: the same withdraw and deposit on the
same ledger, run by the worker that hosts the run instead of through a tasks topic."""

from __future__ import annotations

from examples.money_transfer import (
    RETRY,
    STEP,
    MoneyTransferWorkflow,
    TransferOrder,
    deposit,
    withdraw,
)
from streams import workflow


@workflow.defn
class LocalTransferWorkflow:
    """Withdraw, then deposit, each a local activity retried until the flaky API lets it."""

    @workflow.run
    async def run(self, order: TransferOrder) -> str:
        w = await workflow.execute_local_activity(
            withdraw, order, start_to_close_timeout=STEP, retry_policy=RETRY
        )
        d = await workflow.execute_local_activity(
            deposit, order, start_to_close_timeout=STEP, retry_policy=RETRY
        )
        return f"{w}; {d}"


# a worker of this module runs both, so a test compares them on one worker
__all__ = ["LocalTransferWorkflow", "MoneyTransferWorkflow", "deposit", "withdraw"]
