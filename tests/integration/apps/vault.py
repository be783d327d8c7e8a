"""A card check whose argument, activity argument and result, signal and query answer all
carry the card number: the secret the encryption tests look for in the raw topics."""

from __future__ import annotations

from datetime import timedelta

from streams import activity, workflow


@activity.defn
def seal(card: str) -> str:
    return f"sealed:{card}"


@workflow.defn
class CardCheck:
    def __init__(self) -> None:
        self.sealed = ""
        self.approved: list[str] = []

    @workflow.run
    async def run(self, card: str) -> str:
        self.sealed = await workflow.execute_activity(
            seal, card, start_to_close_timeout=timedelta(seconds=10)
        )
        await workflow.wait_condition(lambda: bool(self.approved))
        return f"{self.sealed}|{self.approved[0]}"

    @workflow.signal
    def approve(self, by: str) -> None:
        self.approved.append(by)

    @workflow.query
    def stage(self) -> str:
        return self.sealed
