"""The seed's money transfer with local activities: the same withdraw and deposit on the
same ledger, run by the worker that hosts the run instead of through a tasks topic."""

from __future__ import annotations

from examples.money_transfer import (
    RETRY,
    STEP,
    MoneyTransferWorkflow,
    TransferOrder,
    deposit,
    refund,
    withdraw,
)
from streams import ActivityError, ApplicationError, workflow


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


@workflow.defn
class LocalTransferSaga:
    """The seed's saga with local steps: if the deposit fails for good, refund."""

    @workflow.run
    async def run(self, order: TransferOrder) -> str:
        await workflow.execute_local_activity(
            withdraw, order, start_to_close_timeout=STEP, retry_policy=RETRY
        )
        try:
            await workflow.execute_local_activity(
                deposit, order, start_to_close_timeout=STEP, retry_policy=RETRY
            )
        except ActivityError as e:
            await workflow.execute_local_activity(
                refund, order, start_to_close_timeout=STEP, retry_policy=RETRY
            )
            raise ApplicationError(
                f"transfer {order.reference} compensated: {e.cause}",
                type="TransferCompensated",
                non_retryable=True,
            ) from None
        return f"transferred {order.amount}"


# a worker of this module runs the regular transfer too, so a test compares them on it
__all__ = [
    "LocalTransferSaga",
    "LocalTransferWorkflow",
    "MoneyTransferWorkflow",
    "deposit",
    "refund",
    "withdraw",
]
