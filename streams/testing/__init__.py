"""Testing workflows: a time-skipping environment in this process, or a worker on Kafka.

    from streams.testing import WorkflowEnvironment

    async with await WorkflowEnvironment.start_time_skipping(
        workflows=[Reminder], activities=[fake_send]
    ) as env:
        result = await env.client.execute_workflow(
            Reminder.run, "ada", id="r-1", task_queue=env.task_queue
        )

`start_time_skipping` runs the run core and the workflow code of a worker here, with no
broker, on a virtual clock that jumps over idle time while the test awaits a result;
`start_local` / `from_client` run a real worker on a Kafka cluster behind the same
interface, so the same test can run on both. `ActivityEnvironment` calls one activity
function in an activity's context (info, heartbeats, cancellation), with no workflow at all.

A composition root, like `streams.worker`: it joins the user API to the engine
(`processors.run`, `processors.workflow_code`, the activity runner's attempt) and is the
only other user-side package that may import `processors`. `streams` never imports it.
"""

from streams.testing.activity_environment import ActivityEnvironment
from streams.testing.environment import WorkflowEnvironment

__all__ = ["ActivityEnvironment", "WorkflowEnvironment"]
