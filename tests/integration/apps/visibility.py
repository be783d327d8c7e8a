"""Workflows that show what the run index and an operator see: search attributes set at
start and by the code, carried across continue-as-new, and a run waiting in a sleep."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from streams import activity, workflow

DUE = datetime(2026, 1, 1, 12, 30, tzinfo=UTC)


@activity.defn
async def pack(order: str) -> str:
    return f"packed {order}"


@workflow.defn
class Shipment:
    """Marks its stage in search attributes, packs, and hands over to a next run."""

    @workflow.run
    async def run(self, order: str, rounds: int) -> dict[str, object]:
        workflow.upsert_search_attributes(
            {
                "Stage": "packing",
                "Items": 3,
                "Amount": 12.5,
                "Vip": True,
                "Due": DUE,
                "Tags": ["fragile", "eu"],
                "Notes": workflow.Text("leave at the door"),
            }
        )
        packed = await workflow.execute_activity(
            pack, order, start_to_close_timeout=timedelta(seconds=10)
        )
        workflow.upsert_search_attributes({"Stage": "shipped", "Vip": None})
        if rounds > 1:
            workflow.continue_as_new(order, rounds - 1)
        seen = {k: str(v) for k, v in workflow.info().search_attributes.items()}
        return {"packed": packed, "seen": seen}


@workflow.defn
class Napper:
    """Sleeps for an hour: a run whose stack shows the line of its sleep."""

    @workflow.run
    async def run(self) -> None:
        await workflow.sleep(timedelta(hours=1))
