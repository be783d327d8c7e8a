"""The seed's workflows: a money transfer, and its saga variant that refunds a withdrawal
whose deposit failed for good."""

from datetime import timedelta

from streams import ActivityError, ApplicationError, RetryPolicy, workflow

with workflow.unsafe.imports_passed_through():
    from examples.seed.activities import deposit, refund, withdraw

RETRY_POLICY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=10,
    non_retryable_error_types=["InvalidAccountError"],
)


@workflow.defn
class MoneyTransferWorkflow:
    @workflow.run
    async def run(self, source: str, target: str, amount: int) -> str:
        withdrawn = await workflow.execute_activity(
            withdraw,
            args=[source, amount],
            start_to_close_timeout=timedelta(seconds=5),
            retry_policy=RETRY_POLICY,
        )
        deposited = await workflow.execute_activity(
            deposit,
            args=[target, amount],
            start_to_close_timeout=timedelta(seconds=5),
            retry_policy=RETRY_POLICY,
        )
        return f"Transfer complete (transactions {withdrawn}, {deposited})"


@workflow.defn
class MoneyTransferSagaWorkflow:
    @workflow.run
    async def run(self, source: str, target: str, amount: int) -> str:
        withdrawn = await workflow.execute_activity(
            withdraw,
            args=[source, amount],
            start_to_close_timeout=timedelta(seconds=5),
            retry_policy=RETRY_POLICY,
        )
        try:
            deposited = await workflow.execute_activity(
                deposit,
                args=[target, amount],
                start_to_close_timeout=timedelta(seconds=5),
                retry_policy=RETRY_POLICY,
            )
        except ActivityError as deposit_error:
            workflow.logger.warning("deposit failed, refunding %d to %s", amount, source)
            await workflow.execute_activity(
                refund,
                args=[source, amount],
                start_to_close_timeout=timedelta(seconds=5),
                retry_policy=RETRY_POLICY,
            )
            raise ApplicationError(
                f"transfer failed and was refunded: {deposit_error.cause}",
                non_retryable=True,
            ) from deposit_error
        return f"Transfer complete (transactions {withdrawn}, {deposited})"
