"""Client helpers of the bad-input tests: waiting for a run to be blocked."""

from __future__ import annotations

import asyncio

from streams import Client
from streams.wire.records import Failure, RunDescription, RunStatus


async def blocked(client: Client, workflow_id: str) -> Failure:
    """Waits until the run is blocked; its reason."""
    handle = client.get_workflow_handle(workflow_id)
    for _ in range(600):
        d: RunDescription = await handle.describe()
        if d.blocked is not None:
            return d.blocked
        assert d.status is RunStatus.RUNNING, f"{workflow_id} closed {d.status}"
        await asyncio.sleep(0.1)
    raise AssertionError(f"{workflow_id} never blocked")
