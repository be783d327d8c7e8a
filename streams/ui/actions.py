"""The Web UI's actions on runs: signal, query, update, cancel, terminate, reset, unblock,
an activity's retry / pause / unpause, and cancel or terminate of every run a filter matches.

Each is a POST, refused without the page's CSRF token (`security.check_csrf`), and sent as a
command on `commands` through the UI's `Client`, so the run's history and the audit see it
like any other client's. The answer is a small HTML fragment (`actions_result.html`) when the
page's script sent the form (header `X-Everflow-CSRF`), else a redirect (303) back to the run
page with `?done=` or `?error=`. A client error (no such run, rejected, no answer in time, a
failing query, ...) becomes a sentence for people, never a server error.

Signals, updates, cancel, terminate, reset, unblock and activity controls act on a workflow's
current run: asked on a page of an older run, they are refused (rather than reach the newer
one unseen). Queries carry the run ID and may ask any run.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import orjson
from confluent_kafka import KafkaException
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from streams.client import WorkflowHandle
from streams.errors import (
    BrokerError,
    EverflowError,
    FailureError,
    FilterError,
    QueryError,
    RequestRejectedError,
    RPCTimeoutError,
    VisibilityUnavailableError,
    WorkflowNotFoundError,
    WorkflowNotRunningError,
)
from streams.ui import security
from streams.ui.context import Ui
from streams.ui.runs import split_order
from streams.visibility.records import WorkflowExecution

log = logging.getLogger(__name__)
T = TypeVar("T")

RUN_ROUTE = "/runs/{workflow_id:segment}/{run_id:segment}"

BATCH_CONCURRENCY = 32
"""How many runs a batch acts on at once."""
OPEN_STATUSES = ("Running", "Blocked")
"""The statuses a batch acts on (closed runs are left out of its filter)."""


class InputError(EverflowError, ValueError):
    """A form field that cannot be used as it is (bad JSON, no name, not a number)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an action did (ok) or why it did not: a sentence, an optional value to show
    (JSON text) and an optional link (the new run of a reset)."""

    ok: bool
    message: str
    value: str | None = None
    link: str | None = None
    link_text: str = ""
    status_code: int = 200
    redirect: str | None = None  # where a plain form post goes (default: the run page)


@dataclass(frozen=True, slots=True)
class Inputs:
    """An action's form, read and checked before anything is sent."""

    name: str = ""
    args: tuple[Any, ...] = ()
    reason: str = ""
    event_id: int = 0


Act = Callable[[WorkflowHandle, Inputs], Awaitable[Outcome]]


def routes(ui: Ui) -> list[BaseRoute]:
    """The action routes (POST only); see the module docstring. The Workers and Dead letters
    pages are in `streams.ui.workers`."""
    run_actions: dict[str, Act] = {
        "signal": _signal,
        "query": _query,
        "update": _update,
        "cancel": _cancel,
        "terminate": _terminate,
        "reset": _reset,
        "unblock": _unblock,
    }

    def run_route(path: str, name: str, act_for: Callable[[Request], Act]) -> Route:
        """POST `path`: the action `name` on the page's run, done by `act_for(request)`."""

        async def endpoint(request: Request) -> Response:
            form = await request.form()
            security.check_csrf(request, form)
            wf, run = request.path_params["workflow_id"], request.path_params["run_id"]
            act = act_for(request)

            async def checked_then_sent() -> Outcome:
                inputs = read_inputs(name, form)
                handle = ui.client.get_workflow_handle(wf, run)
                return await _on_current(handle, name, inputs, act)

            return answer(ui, request, wf, run, await _guarded(checked_then_sent))

        return Route(path, endpoint, methods=["POST"])

    def on_run(name: str, act: Act) -> Route:
        return run_route(f"{RUN_ROUTE}/{name}", name, lambda request: act)

    def on_activity(name: str) -> Route:
        def act_for(request: Request) -> Act:
            activity_id = request.path_params["activity_id"]

            async def act(h: WorkflowHandle, inputs: Inputs) -> Outcome:
                return await _activity(h, inputs, name, activity_id)

            return act

        return run_route(f"{RUN_ROUTE}/activities/{{activity_id:int}}/{name}", name, act_for)

    def on_batch(verb: str) -> Route:
        async def endpoint(request: Request) -> Response:
            form = await request.form()
            security.check_csrf(request, form)
            outcome = await _guarded(lambda: _batch(ui, verb, form))
            query = _text(form, "query")
            back = "/?" + urlencode({"q": query}) if query else "/"
            if request.headers.get(security.CSRF_HEADER):
                return _fragment(ui, request, outcome)
            key = "done" if outcome.ok else "error"
            joiner = "&" if "?" in back else "?"
            return RedirectResponse(
                f"{back}{joiner}{urlencode({key: outcome.message})}", status_code=303
            )

        return Route(f"/batch/{verb}", endpoint, methods=["POST"])

    return [
        *(on_run(name, act) for name, act in run_actions.items()),
        *(on_activity(name) for name in ("retry", "pause", "unpause")),
        on_batch("cancel"),
        on_batch("terminate"),
    ]


def answer(ui: Ui, request: Request, wf: str, run: str, outcome: Outcome) -> Response:
    """The fragment for the page's script, or a redirect (303) back for a plain form post."""
    if request.headers.get(security.CSRF_HEADER):
        return _fragment(ui, request, outcome)
    key = "done" if outcome.ok else "error"
    target = outcome.redirect or run_path(wf, run)
    return RedirectResponse(f"{target}?{urlencode({key: outcome.message})}", status_code=303)


def _fragment(ui: Ui, request: Request, outcome: Outcome) -> Response:
    html = ui.fragment(request, "actions_result.html", {"outcome": outcome})
    return HTMLResponse(html, status_code=outcome.status_code)


def run_path(workflow_id: str, run_id: str) -> str:
    """The run page's path."""
    return f"/runs/{quote(workflow_id, safe='')}/{quote(run_id, safe='')}"


_ANSWERS: tuple[tuple[type[Exception], str, int], ...] = (
    # the first matching class wins: specific errors first, EverflowError last
    (InputError, "{e}", 400),
    (WorkflowNotFoundError, "No such run: {e}", 404),
    (WorkflowNotRunningError, "The run is not running any more: {e}", 409),
    (RPCTimeoutError, "No answer in time: {e}", 504),
    (QueryError, "The query failed: {e}", 422),
    (RequestRejectedError, "Refused: {e}", 409),
    (FilterError, "That filter is not valid: {e}", 400),
    (VisibilityUnavailableError, "{e}", 503),
    (BrokerError, "Kafka did not answer as expected: {e}", 502),
    (EverflowError, "{name}: {e}", 409),
    (KafkaException, "Kafka refused the request: {e}", 502),
)
"""How a client error reads on the page, and its HTTP status."""


async def _guarded(act: Callable[[], Awaitable[Outcome]]) -> Outcome:
    """The action's outcome, or the client's error as a sentence with a fitting status."""
    try:
        return await act()
    except (EverflowError, KafkaException) as e:
        for kind, sentence, status in _ANSWERS:
            if isinstance(e, kind):
                message = sentence.format(e=e, name=type(e).__name__)
                return Outcome(False, message, status_code=status)
        raise


async def _on_current(handle: WorkflowHandle, name: str, inputs: Inputs, act: Act) -> Outcome:
    """`act`, unless the page's run is not the workflow's current run (queries excepted)."""
    if name != "query":
        current = await ui_current_run(handle)
        if current != handle.run_id:
            raise RequestRejectedError(
                f"run {handle.run_id} is not the current run of workflow {handle.id!r} "
                f"(that is {current}); open the current run to act on it"
            )
    return await act(handle, inputs)


async def ui_current_run(handle: WorkflowHandle) -> str:
    """The run ID of the workflow's current (latest) run."""
    latest = handle.client.get_workflow_handle(handle.id)
    return (await latest.describe()).run_id


# ---- the form fields ---------------------------------------------------------------------------
def _text(form: Mapping[str, Any], name: str) -> str:
    value = form.get(name, "")
    return value.strip() if isinstance(value, str) else ""


def handler_name(form: Mapping[str, Any], what: str) -> str:
    """The signal's / query's / update's name (typed, else chosen from the list the page
    offers); InputError if none was given."""
    name = _text(form, "name") or _text(form, "name_choice")
    if not name:
        raise InputError(f"give the {what}'s name")
    return name


def json_arguments(text: str) -> list[Any]:
    """The arguments typed as JSON: nothing, one value (one argument) or a JSON array (the
    arguments, in order). InputError says what is wrong, and nothing is sent."""
    if not text.strip():
        return []
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as e:
        raise InputError(
            f'the arguments are not valid JSON ({e}); quote text: "alice"; several '
            'arguments: a JSON array, e.g. ["alice", 3]'
        ) from None
    return value if isinstance(value, list) else [value]


def event_number(form: Mapping[str, Any]) -> int:
    """The reset's event ID: a whole number from 1."""
    text = _text(form, "event_id")
    if not whole_number(text) or int(text) < 1:
        raise InputError(f"the event ID must be a whole number from 1, not {text!r}")
    return int(text)


def whole_number(text: str) -> bool:
    """Whether `text` is ASCII digits only (what `int` reads; "²" and "٣" are digits to
    `str.isdigit` but not to `int`)."""
    return text.isascii() and text.isdigit()


def shown(value: Any) -> str:
    """A decoded answer as people read it: text as it is (a stack trace keeps its lines),
    anything else as indented JSON (what JSON cannot hold, as its repr)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, default=repr)


def read_inputs(action: str, form: Mapping[str, Any]) -> Inputs:
    """The fields `action` uses, checked (InputError says what is wrong; nothing is sent)."""
    reason = _text(form, "reason")
    if action in ("signal", "query", "update"):
        name = handler_name(form, action)
        return Inputs(name, tuple(json_arguments(_text(form, "args"))), reason)
    if action == "reset":
        return Inputs(reason=reason, event_id=event_number(form))
    return Inputs(reason=reason)


# ---- one run -----------------------------------------------------------------------------------
async def _signal(handle: WorkflowHandle, inputs: Inputs) -> Outcome:
    name = inputs.name
    await handle.signal(name, *inputs.args)
    return Outcome(True, f"Signal {name} sent to {handle.id} (recorded in its history).")


async def _query(handle: WorkflowHandle, inputs: Inputs) -> Outcome:
    name = inputs.name
    value = await handle.query(name, *inputs.args)
    return Outcome(True, f"Query {name} answered:", value=shown(value))


async def _update(handle: WorkflowHandle, inputs: Inputs) -> Outcome:
    name = inputs.name
    try:
        value = await handle.execute_update(name, *inputs.args)
    except FailureError as e:
        return Outcome(False, f"Update {name} rejected or failed: {e}", status_code=422)
    return Outcome(True, f"Update {name} done; its result:", value=shown(value))


async def _cancel(handle: WorkflowHandle, inputs: Inputs) -> Outcome:
    await handle.cancel(inputs.reason)
    return Outcome(True, f"Cancel requested for {handle.id}: its code may clean up first.")


async def _terminate(handle: WorkflowHandle, inputs: Inputs) -> Outcome:
    await handle.terminate(inputs.reason)
    return Outcome(True, f"Terminated {handle.id}.")


async def _reset(handle: WorkflowHandle, inputs: Inputs) -> Outcome:
    event_id = inputs.event_id
    new_run = await handle.reset(event_id, inputs.reason)
    path = run_path(handle.id, new_run)
    return Outcome(
        True,
        f"Reset {handle.id} to event {event_id}: new run {new_run}.",
        link=path,
        link_text=f"Open the new run {new_run}",
        redirect=path,
    )


async def _unblock(handle: WorkflowHandle, inputs: Inputs) -> Outcome:
    desc = await handle.unblock(inputs.reason)
    return Outcome(True, f"Unblocked {handle.id}: it is {desc.status.value} now.")


async def _activity(
    handle: WorkflowHandle, inputs: Inputs, action: str, activity_id: int
) -> Outcome:
    reason = inputs.reason
    if action == "retry":
        await handle.retry_activity(activity_id, reason)
        return Outcome(True, f"Activity {activity_id}: its next attempt starts now.")
    if action == "pause":
        await handle.pause_activity(activity_id, reason)
        return Outcome(True, f"Activity {activity_id} paused: no new attempt starts.")
    assert action == "unpause", action
    await handle.unpause_activity(activity_id, reason)
    return Outcome(True, f"Activity {activity_id} unpaused.")


# ---- every run a filter matches ----------------------------------------------------------------
def open_runs_of(query: str) -> str:
    """`query`'s condition narrowed to open runs, in an order a run keeps when it closes (so
    paging on while runs close skips none): closed runs are never asked, nor listed."""
    where, _ = split_order(query)  # the filter's own ORDER BY is replaced
    open_only = "ExecutionStatus IN (" + ", ".join(f"'{s}'" for s in OPEN_STATUSES) + ")"
    condition = f"({where}) AND {open_only}" if where else open_only
    return f"{condition} ORDER BY StartTime, RunId"


async def _batch(ui: Ui, verb: str, form: FormData) -> Outcome:
    """Cancels or terminates every open run `query` matches, BATCH_CONCURRENCY at a time,
    reading the matches page by page as it goes (never all at once). An empty filter (every
    run) only with the `all` box ticked."""
    query, reason = _text(form, "query"), _text(form, "reason")
    if not query and _text(form, "all") != "yes":
        raise InputError(f'an empty filter matches every run: tick "all runs" to {verb} them all')
    client = ui.client
    done = skipped = failed = 0
    failures: list[str] = []  # the first few, shown

    async def one(run: WorkflowExecution) -> None:
        nonlocal done, skipped, failed
        handle = client.get_workflow_handle(run.workflow_id, run.run_id)
        try:
            await (handle.cancel(reason) if verb == "cancel" else handle.terminate(reason))
            done += 1
        except WorkflowNotRunningError:
            skipped += 1  # closed since the index listed it
        except EverflowError as e:
            failed += 1
            if len(failures) < 50:
                failures.append(f"{run.workflow_id} / {run.run_id}: {e}")
        if (done + skipped + failed) % 1000 == 0:  # a long batch says how far it got
            log.info("batch %s query=%r: %d runs so far (%d %s, %d failed)", verb, query,
                     done + skipped + failed, done, verb, failed)  # fmt: skip

    matches = client.list_workflows(open_runs_of(query), page_size=BATCH_CONCURRENCY)
    matched = await each_bounded(matches, BATCH_CONCURRENCY, one)
    past = "canceled" if verb == "cancel" else "terminated"
    message = f"{matched} runs matched: {done} {past}, {skipped} already closed, {failed} failed."
    log.info("batch %s query=%r matched=%d done=%d failed=%d", verb, query, matched, done,
             failed)  # fmt: skip
    value = "\n".join(failures) if failures else None
    return Outcome(not failed, message, value=value, status_code=200 if not failed else 207)


async def each_bounded(
    items: AsyncIterator[T], limit: int, act: Callable[[T], Awaitable[None]]
) -> int:
    """Awaits `act(item)` for every item, at most `limit` at once, taking the next item only
    when one finishes (so a long listing is never held whole); returns how many there were.
    If the listing fails midway, what was started is awaited before the error goes on."""
    gate = asyncio.Semaphore(limit)
    running: set[asyncio.Task[None]] = set()
    count = 0

    async def gated(item: T) -> None:
        try:
            await act(item)
        finally:
            gate.release()

    try:
        async for item in items:
            await gate.acquire()
            count += 1
            task = asyncio.create_task(gated(item))
            running.add(task)
            task.add_done_callback(running.discard)
    finally:
        await asyncio.gather(*running)
    return count
