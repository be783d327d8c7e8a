"""The seed's worker: hosts both workflows and the bank activities."""

import asyncio

from examples.seed.activities import deposit, refund, withdraw
from examples.seed.shared import TASK_QUEUE
from examples.seed.workflows import MoneyTransferSagaWorkflow, MoneyTransferWorkflow
from streams import Client, Worker


async def main() -> None:
    client = await Client.connect()  # the Kafka cluster of EVERFLOW_BOOTSTRAP
    worker = Worker(
        client,
        task_queue=TASK_QUEUE,
        workflows=[MoneyTransferWorkflow, MoneyTransferSagaWorkflow],
        activities=[withdraw, deposit, refund],
    )
    await worker.run()


if __name__ == "__main__":
    asyncio.run(main())
