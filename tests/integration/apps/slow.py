"""An activity that outlasts the consumer's max.poll.interval.ms."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

from streams import activity, workflow


@activity.defn
def slow_report(seconds: float) -> str:
    marker = Path(os.environ["SLOW_MARKER_DIR"]) / f"run-{time.time_ns()}"
    marker.write_text("started")  # one file per execution: the test counts them
    time.sleep(seconds)
    return f"slept {seconds}"


@workflow.defn
class SlowReport:
    @workflow.run
    async def run(self, seconds: float) -> str:
        return await workflow.execute_activity(  # type: ignore[no-any-return]
            slow_report, seconds, start_to_close_timeout=timedelta(minutes=1)
        )
