"""temporalio's calling conventions against a real broker and worker: args=[...] on start,
signal, query, update and children; results typed by annotations or result_type=."""

from __future__ import annotations

from datetime import timedelta

import pytest

from streams import Client, WorkflowFailureError
from tests.integration.apps.temporal_style import Ledger, Tally
from tests.integration.workers import WorkerProcesses, topics_for, with_client

pytestmark = pytest.mark.integration
Q = "ledgers"
MINUTE = timedelta(seconds=60)


def test_args_lists_reach_every_handler_and_results_come_back_as_dataclasses(
    kafka_bootstrap: str, topic_prefix: str, workers: WorkerProcesses
) -> None:
    config = topics_for(kafka_bootstrap, topic_prefix, Q)
    workers.start("w1", "tests.integration.apps.temporal_style", task_queue=Q)

    async def body(client: Client) -> None:
        handle = await client.start_workflow(
            Ledger.run, args=["books", 100], id="l-1", task_queue=Q
        )
        await handle.signal(Ledger.add, args=[3, 2])
        await handle.signal("add", 4, 1)  # positional, by name: as before
        with pytest.raises(TypeError, match="both positionally and as args"):
            await handle.signal(Ledger.add, 5, args=[1])
        assert await handle.query(Ledger.snapshot, args=["now"], timeout=MINUTE) == Tally(
            "now", 10, [3, 3, 4]
        )
        # by name there is no annotation to go by: the JSON as it came, unless told
        assert await handle.query("snapshot", args=["raw"]) == {
            "name": "raw",
            "total": 10,
            "items": [3, 3, 4],
        }
        assert await handle.query("snapshot", args=["told"], result_type=Tally) == Tally(
            "told", 10, [3, 3, 4]
        )
        assert await handle.execute_update(Ledger.close, args=["enough"]) == "closed: enough"
        # 100 to start, 10 signalled, 1000 from the registered Adder instance
        expected = Tally("books", 1110, [3, 3, 4])
        assert await handle.result(timeout=MINUTE) == expected  # Ledger.run's annotation
        again = client.get_workflow_handle("l-1")
        assert await again.result() == {"name": "books", "total": 1110, "items": [3, 3, 4]}
        # a second result() of the same handle asks again (it waited forever before)
        assert await again.result(result_type=Tally, timeout=MINUTE) == expected
        typed = client.get_workflow_handle_for(Ledger.run, "l-1")
        assert await typed.result(timeout=MINUTE) == expected
        # a workflow started by name, told its result type once at the start
        second = await client.start_workflow(
            "Ledger", args=["empty", 7], id="l-2", task_queue=Q, result_type=Tally
        )
        await second.execute_update("close", args=["at once"])
        assert await second.result(timeout=MINUTE) == Tally("empty", 1007, [])
        # execute_workflow takes start_workflow's options, as temporalio's does
        with pytest.raises(WorkflowFailureError) as late:
            await client.execute_workflow(
                Ledger.run,
                args=["never closed", 0],
                id="l-3",
                task_queue=Q,
                execution_timeout=timedelta(seconds=1),
                id_conflict_policy="use_existing",
                timeout=MINUTE,
            )
        assert late.value.status == "TIMED_OUT"

    with_client(config, body)
