"""A run that reports the cyclic GC's state of the worker process that runs its activity."""

from __future__ import annotations

import gc
from datetime import timedelta

from streams import activity, workflow


@activity.defn
def gc_state() -> dict[str, int | list[int]]:
    return {"threshold": list(gc.get_threshold()), "frozen": gc.get_freeze_count()}


@workflow.defn
class GcProbe:
    @workflow.run
    async def run(self) -> dict[str, int | list[int]]:
        return await workflow.execute_activity(  # type: ignore[no-any-return]
            gc_state, start_to_close_timeout=timedelta(seconds=30)
        )
