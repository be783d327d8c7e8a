"""Workflows that talk to their callers: signals, queries, updates, continue-as-new."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from streams import ApplicationError, ChildWorkflowError, activity, workflow


@activity.defn
async def provision(step: str) -> str:
    await asyncio.sleep(0.3)
    return step


@activity.defn
async def fail(_: str) -> str:
    raise ApplicationError("it failed", non_retryable=True)


@workflow.defn
class Onboarding:
    """The seed's multi-day onboarding, in seconds: steps, a status query, a cancel signal."""

    def __init__(self) -> None:
        self.status = "starting"
        self.canceled = False
        self.plan = "basic"

    @workflow.run
    async def run(self, steps: int) -> str:
        for i in range(steps):
            if self.canceled:
                self.status = "canceled by customer"
                return f"stopped after {i} steps"
            self.status = f"step {i + 1} of {steps}"
            await workflow.execute_activity(
                provision, f"step-{i}", start_to_close_timeout=timedelta(seconds=10)
            )
        self.status = "done"
        return f"onboarded on {self.plan}"

    @workflow.signal
    def cancel_subscription(self) -> None:
        self.canceled = True

    @workflow.query
    def progress(self) -> str:
        return self.status

    @workflow.update
    def change_plan(self, plan: str) -> str:
        old, self.plan = self.plan, plan
        return f"{old} -> {plan}"

    @change_plan.validator
    def valid_plan(self, plan: str) -> None:
        if plan not in ("basic", "pro", "enterprise"):
            raise ApplicationError(f"unknown plan {plan!r}", type="InvalidPlan")


@workflow.defn
class Collector:
    def __init__(self) -> None:
        self.items: list[int] = []
        self.finished = False

    @workflow.run
    async def run(self) -> list[int]:
        await workflow.wait_condition(lambda: self.finished)
        return self.items

    @workflow.signal
    def add(self, item: int) -> None:
        self.items.append(item)

    @workflow.signal
    def finish(self) -> None:
        self.finished = True

    @workflow.update
    def count(self) -> int:
        return len(self.items)


@workflow.defn
class Generations:
    @workflow.run
    async def run(self, n: int, last: int) -> str:
        await workflow.sleep(timedelta(milliseconds=1))
        if n < last:
            workflow.continue_as_new(n + 1, last)
        return f"generation {n} from {workflow.info().continued_from_run_id}"


@workflow.defn
class Quick:
    @workflow.run
    async def run(self, should_fail: bool) -> str:
        if should_fail:
            await workflow.execute_activity(fail, "x", start_to_close_timeout=timedelta(seconds=5))
        return "ok"


@workflow.defn
class Child:
    @workflow.run
    async def run(self, mode: str) -> str:
        if mode == "fail":
            raise ApplicationError("the child gave up", type="ChildGaveUp")
        if mode == "sleep":
            await workflow.sleep(timedelta(minutes=10))
        return f"child {workflow.info().workflow_id} done"


@workflow.defn
class Parent:
    @workflow.run
    async def run(self, mode: str, child_ids: list[str], policy: str) -> str:
        if mode == "ok":
            results = [
                await workflow.execute_child_workflow(Child, "ok", id=cid) for cid in child_ids
            ]
            return "; ".join(results)
        if mode == "fail":
            try:
                await workflow.execute_child_workflow(Child, "fail", id=child_ids[0])
            except ChildWorkflowError as e:
                return f"caught: {e.cause}"
            return "no failure"
        handle = await workflow.start_child_workflow(
            Child, "sleep", id=child_ids[0], parent_close_policy=workflow.ParentClosePolicy(policy)
        )
        await workflow.sleep(timedelta(minutes=10))
        return handle.run_id
