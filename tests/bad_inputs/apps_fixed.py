"""Other code for two workflow types of `tests.bad_inputs.apps`, deployed in its place:
`Busy` fixed (it waits with await: the runs the deadlock detector blocked resume), and
`Steps` changed incompatibly (its open runs no longer replay: they block)."""

from __future__ import annotations

from streams import workflow


@workflow.defn(name="Busy")
class Busy:
    @workflow.run
    async def run(self) -> str:
        await workflow.sleep(0.01)
        return "fixed"


@workflow.defn(name="Steps")
class Steps:
    @workflow.run
    async def run(self) -> str:
        await workflow.sleep(3)  # moved before the activity: not what the history says
        return "b"
