"""The seed's client: a transfer that goes through, and one whose deposit cannot."""

import asyncio

from examples.seed.shared import TASK_QUEUE
from examples.seed.workflows import MoneyTransferSagaWorkflow, MoneyTransferWorkflow
from streams import Client, WorkflowFailureError


async def main() -> None:
    client = await Client.connect()  # the Kafka cluster of EVERFLOW_BOOTSTRAP

    result = await client.execute_workflow(
        MoneyTransferWorkflow.run,
        args=["alice", "bob", 100],
        id="money-transfer-alice-bob",
        task_queue=TASK_QUEUE,
    )
    print(f"Result: {result}")

    try:
        await client.execute_workflow(
            MoneyTransferSagaWorkflow.run,
            args=["alice", "dave", 100],
            id="money-transfer-alice-dave",
            task_queue=TASK_QUEUE,
        )
    except WorkflowFailureError as e:
        print(f"Failed: {e.cause}")


if __name__ == "__main__":
    asyncio.run(main())
