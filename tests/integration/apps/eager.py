"""Three regular activities in a row, each attempt noted in a journal file (one JSON line per
execution, with the process that ran it), so a test counts how often each attempt ran."""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta

from streams import activity, workflow

STEP_TIMEOUT = timedelta(seconds=8)


@activity.defn
def note(step: str) -> str:
    info = activity.info()
    line = {
        "key": info.idempotency_key,
        "attempt": info.attempt,
        "pid": os.getpid(),
        "at": time.time(),
        "step": step,
    }
    with open(os.environ["EVERFLOW_JOURNAL"], "a") as journal:
        journal.write(json.dumps(line) + "\n")
    time.sleep(float(os.environ.get("EVERFLOW_STEP_DELAY", "0")))
    return step


@workflow.defn
class ThreeSteps:
    @workflow.run
    async def run(self, name: str) -> list[str]:
        done = []
        for step in ("reserve", "charge", "ship"):
            done.append(
                await workflow.execute_activity(
                    note, f"{name}:{step}", start_to_close_timeout=STEP_TIMEOUT
                )
            )
        return done


@workflow.defn
class Nap:
    """A durable timer, then a close: the batch that fires it consumes no command."""

    @workflow.run
    async def run(self, seconds: float) -> str:
        await workflow.sleep(timedelta(seconds=seconds))
        return "awake"
