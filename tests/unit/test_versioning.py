"""Versioning with workflow.patched / deprecate_patch (pure core + Replayer)."""

from __future__ import annotations

from datetime import timedelta

from processors.run.state import Effects, Run
from processors.workflow_code.patches import Patches, RecordMarker
from processors.workflow_code.registry import Registry
from streams import Replayer, activity, workflow
from streams.wire.events import ActivityScheduled, MarkerRecorded, WorkflowStarted
from tests.unit.test_run_core import conv

T = timedelta(seconds=5)


@activity.defn
def charge(amount: int) -> str:
    return f"charged {amount}"


@activity.defn
def charge_with_fee(amount: int) -> str:
    return f"charged {amount} + fee"


@workflow.defn(name="Fee")
class FeeV1:
    @workflow.run
    async def run(self, amount: int) -> str:
        result: str = await workflow.execute_activity(charge, amount, start_to_close_timeout=T)
        return result


@workflow.defn(name="Fee")
class FeeV2:
    @workflow.run
    async def run(self, amount: int) -> str:
        if workflow.patched("fee"):
            new: str = await workflow.execute_activity(
                charge_with_fee, amount, start_to_close_timeout=T
            )
            return new
        old: str = await workflow.execute_activity(charge, amount, start_to_close_timeout=T)
        return old


@workflow.defn(name="Fee")
class FeeV3:
    @workflow.run
    async def run(self, amount: int) -> str:
        workflow.deprecate_patch("fee")
        result: str = await workflow.execute_activity(
            charge_with_fee, amount, start_to_close_timeout=T
        )
        return result


ACTS = [charge, charge_with_fee]


def start(cls: type, run_id: str = "r") -> tuple[Run, Registry]:
    reg = Registry([cls], ACTS)
    run = Run("fee-1", run_id, 0, reg)
    run.start(WorkflowStarted("Fee", "q", conv.to_payloads([5]), "c"), 1000, Effects())
    return run, reg


def shape(run: Run) -> list[str]:
    out = []
    for e in run.events:
        a = e.attributes
        if isinstance(a, ActivityScheduled):
            out.append(f"ActivityScheduled({a.activity_type})")
        elif isinstance(a, MarkerRecorded):
            out.append(f"MarkerRecorded({a.patch_id}, deprecated={a.deprecated})")
        else:
            out.append(type(a).__name__)
    return out


def test_a_run_started_on_old_code_keeps_the_old_branch_under_new_code() -> None:
    old, _ = start(FeeV1)
    assert Replayer([FeeV2]).replay(list(old.events)).ok
    # the run goes on under V2: replayed first, then live; it stays on the old branch
    v2 = Registry([FeeV2], ACTS)
    restored = Run("fee-1", "r", 0, v2)
    for e in old.events:
        restored.apply(e)
    restored.complete_activity(1, 1, conv.to_payload("charged 5"), 2000, Effects())
    assert conv.from_payload(restored.result) == "charged 5"
    assert "MarkerRecorded(fee, deprecated=False)" not in shape(restored)


def test_a_new_run_takes_the_new_branch_and_records_a_marker() -> None:
    new, _ = start(FeeV2)
    assert shape(new) == [
        "WorkflowStarted",
        "MarkerRecorded(fee, deprecated=False)",
        "ActivityScheduled(charge_with_fee)",
    ]
    new.complete_activity(1, 1, conv.to_payload("charged 5 + fee"), 2000, Effects())
    history = list(new.events)
    assert Replayer([FeeV2]).replay(history).ok
    assert not Replayer([FeeV1]).replay(history).ok  # the old code cannot run it


def test_deprecated_patch_replays_both_marked_histories_and_records_the_marker() -> None:
    v2_new, _ = start(FeeV2)
    assert Replayer([FeeV3]).replay(list(v2_new.events)).ok
    v3_new, _ = start(FeeV3)
    assert shape(v3_new)[1] == "MarkerRecorded(fee, deprecated=True)"
    assert Replayer([FeeV2]).replay(list(v3_new.events)).ok  # V2 workers can still run it


def test_patched_is_answered_once_per_run() -> None:
    @workflow.defn(name="Twice")
    class Twice:
        @workflow.run
        async def run(self) -> list[bool]:
            return [workflow.patched("p"), workflow.patched("p")]

    reg = Registry([Twice], [])
    run = Run("t", "r", 0, reg)
    run.start(WorkflowStarted("Twice", "q", [], "c"), 1000, Effects())
    assert conv.from_payload(run.result) == [True, True]
    assert shape(run).count("MarkerRecorded(p, deprecated=False)") == 1


def test_a_patch_answered_on_replay_without_its_marker_keeps_the_old_branch_once_live() -> None:
    markers: list[RecordMarker] = []
    patches = Patches((), markers.append, lambda: "flow.py:7")
    assert patches.patched("fee", replaying=True) is False
    assert patches.patched("fee", replaying=False) is False  # the run went live meanwhile
    assert markers == []


def test_a_patch_replayed_with_its_marker_records_it_where_the_code_asks() -> None:
    markers: list[RecordMarker] = []
    patches = Patches({"fee"}, markers.append, lambda: "flow.py:7")
    assert patches.patched("fee", replaying=True) is True
    assert markers == [RecordMarker("fee", False, "flow.py:7")]


def test_a_deprecated_patch_replayed_without_its_marker_records_nothing() -> None:
    markers: list[RecordMarker] = []
    patches = Patches((), markers.append, lambda: "flow.py:7")
    patches.deprecate_patch("fee", replaying=True)
    patches.deprecate_patch("fee", replaying=False)  # answered once per run
    assert markers == []
    patches.deprecate_patch("tax", replaying=False)
    assert markers == [RecordMarker("tax", True, "flow.py:7")]
