"""The core's command handlers (`processors.run.commands`), driven without a broker: each
command type reaches its handler, and requests for an unknown workflow get one answer."""

from __future__ import annotations

from datetime import timedelta

from processors.run.commands import handle_command
from processors.run.effects import Effects
from processors.run.state import Run
from processors.workflow_code.registry import Registry
from streams import activity, workflow
from streams.payload import DataConverter
from streams.wire.commands import (
    CancelWorkflow,
    Command,
    CommandBody,
    CompleteActivity,
    ControlActivity,
    DescribeWorkflow,
    HeartbeatActivity,
    QueryWorkflow,
    ResetWorkflow,
    SignalWorkflow,
    StartActivity,
    StartWorkflow,
    TerminateWorkflow,
    UnblockWorkflow,
    UpdateWorkflow,
)
from streams.wire.records import (
    ActivityCancelRequest,
    NotFound,
    Reply,
    ReplyBody,
    RunDescription,
    RunStatus,
    StartAccepted,
)

conv = DataConverter()


@activity.defn
def greet(name: str) -> str:
    return f"hello {name}"


@workflow.defn
class Greeter:
    def __init__(self) -> None:
        self.name = "nobody"

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.name != "nobody")
        return await workflow.execute_activity(
            greet,
            self.name,
            start_to_close_timeout=timedelta(seconds=5),
            schedule_to_start_timeout=timedelta(seconds=5),
        )

    @workflow.signal
    def named(self, name: str) -> None:
        self.name = name


REG = Registry([Greeter], [greet])


class Runs(dict[str, Run]):
    """A partition's runs, with made-up storage facts."""

    def history(self, run: Run) -> tuple[list[bytes], int]:
        return [b"event"] * len(run.events), 42


class Outbox:
    def __init__(self) -> None:
        self.fx = Effects()
        self.replies: list[Reply] = []

    def effects(self, run: Run) -> Effects:
        return self.fx

    def partition_effects(self, partition: int) -> Effects:
        return self.fx

    def reply(self, to: str | None, request_id: str, body: ReplyBody) -> None:
        if to:
            self.replies.append(Reply(to, request_id, body))


def send(runs: Runs, body: CommandBody, now: int = 1000, workflow_id: str = "g-1") -> Outbox:
    out = Outbox()
    handle_command(Command(f"cmd-{now}", workflow_id, now, body), runs, 0, now, REG, out)
    return out


def kinds(out: Outbox) -> list[str]:
    return [type(e.attributes).__name__ for e in out.fx.events]


def test_requests_for_an_unknown_workflow_all_answer_not_found() -> None:
    runs = Runs()
    bodies: list[CommandBody] = [
        SignalWorkflow("named", [], reply_to="c"),
        QueryWorkflow("q", [], None, "c"),
        UpdateWorkflow("u", [], "u-1", "c"),
        CancelWorkflow("", "c"),
        TerminateWorkflow("", "c"),
        DescribeWorkflow("c"),
        ResetWorkflow(1, "r-2", "", "c"),
        ControlActivity(1, "pause", "", "c"),
        UnblockWorkflow("", "c"),
    ]
    for body in bodies:
        out = send(runs, body, workflow_id="ghost")
        [reply] = out.replies
        assert reply.body == NotFound("no run of workflow 'ghost' is known"), body
        assert out.fx.events == []


def test_each_command_type_reaches_its_handler() -> None:
    runs = Runs()
    out = send(runs, StartWorkflow("r-1", "Greeter", "q", reply_to="c"))
    assert [r.body for r in out.replies] == [StartAccepted("r-1")]
    assert kinds(out) == ["WorkflowStarted"]
    out = send(runs, SignalWorkflow("named", conv.to_payloads(["ada"]), reply_to="c"), 2000)
    assert kinds(out) == ["SignalReceived", "ActivityScheduled"]
    [described] = [r.body for r in out.replies]
    assert isinstance(described, RunDescription) and described.first_offset == 42
    (_, task), *_ = out.fx.tasks
    assert kinds(send(runs, StartActivity("r-1", task.activity_id, 1), 2100)) == ["ActivityStarted"]
    beat = send(runs, HeartbeatActivity("r-1", task.activity_id, 1, [], "runner"), 2200)
    assert kinds(beat) == ["ActivityHeartbeatRecorded"] and beat.replies == []
    done = send(runs, CompleteActivity("r-1", task.activity_id, 1, conv.to_payload("hi")), 2300)
    assert kinds(done) == ["ActivityCompleted", "WorkflowCompleted"]
    assert runs["g-1"].status is RunStatus.COMPLETED
    # a heartbeat nobody waits for any more is told to stop
    late = send(runs, HeartbeatActivity("r-1", task.activity_id, 1, [], "runner"), 2400)
    assert [r.body for r in late.replies] == [
        ActivityCancelRequest("g-1", "r-1", task.activity_id, 1)
    ]
    described_with_history = send(runs, DescribeWorkflow("c", include_history=True), 2500)
    [body] = [r.body for r in described_with_history.replies]
    assert isinstance(body, RunDescription) and len(body.history) == 7 == body.history_length
