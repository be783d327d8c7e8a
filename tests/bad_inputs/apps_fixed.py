"""`apps.Busy` fixed: the same workflow type, now waiting with await. Deployed in place of
`tests.bad_inputs.apps`, it resumes the runs the deadlock detector blocked."""

from __future__ import annotations

from streams import workflow


@workflow.defn(name="Busy")
class Busy:
    @workflow.run
    async def run(self) -> str:
        await workflow.sleep(0.01)
        return "fixed"
