"""The Web UI's operations pages: Workers (who owns which partitions, lag, run cache,
restores, task queues' backlog; live) and Dead letters (poison records, re-published once
fixed).

Both read Kafka directly (`streams.kafka.ownership`, `streams.kafka.dead_letters`), never the
run index, so they work before any index exists. Those reads block: they run in a thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode

from confluent_kafka import KafkaException
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import BaseRoute, Route

from streams.errors import EverflowError
from streams.kafka.dead_letters import DeadLetter, read_dead_letters, republish
from streams.kafka.ownership import PROCESSOR_CLIENT_PREFIX, WorkersView, workers_view
from streams.kafka.topics import Topics
from streams.payload import DataConverter
from streams.ui import security
from streams.ui.actions import whole_number
from streams.ui.context import Ui
from streams.wire import wire
from streams.wire.history_json import event_to_json, record_to_json

log = logging.getLogger(__name__)
T = TypeVar("T")

LIVE_INTERVAL = 2.0
"""Seconds between two refreshes of the live Workers page."""
SNAPSHOT_MAX_AGE = 2.0
"""How old the workers view shown may be: one read of Kafka serves every page and stream
asking within this many seconds."""
PING_EVERY = 15.0
PAGE_SIZE = 25
PREVIEW_BYTES = 2048


def routes(ui: Ui) -> list[BaseRoute]:
    """`GET /workers`, `/api/workers`, `/live/workers`, `GET /dead-letters`,
    `POST /dead-letters/{partition}/{offset}/republish`."""

    snapshot = Snapshot(lambda: _view(ui), SNAPSHOT_MAX_AGE)

    async def workers_page(request: Request) -> Response:
        view, error = await snapshot.get()
        context = {"page": "workers", **workers_context(view, error)}
        return ui.page(request, "workers.html", context)

    async def workers_json(request: Request) -> Response:
        view, error = await snapshot.get()
        if view is None:
            return JSONResponse({"error": error}, status_code=502)
        return JSONResponse(view.to_dict())

    async def workers_live(request: Request) -> Response:
        return StreamingResponse(
            _live(ui, request, snapshot),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def dead_letters_page(request: Request) -> Response:
        start = _number(request.query_params.get("start", "0"))
        try:
            page = await asyncio.to_thread(read_dead_letters, ui.config, start, PAGE_SIZE)
        except (EverflowError, KafkaException) as e:
            failed: dict[str, Any] = {"page": "dead_letters", "error": str(e)}
            failed.update(letters=[], listing=None)
            return ui.page(request, "dead_letters.html", failed)
        letters = [shown_letter(d, ui.topics, ui.converter) for d in page.letters]
        context = {
            "page": "dead_letters",
            "error": "",
            "letters": letters,
            "listing": page,
            "done": request.query_params.get("done", ""),
            "failure": request.query_params.get("error", ""),
            "page_size": PAGE_SIZE,
        }
        return ui.page(request, "dead_letters.html", context)

    async def republish_one(request: Request) -> Response:
        form = await request.form()
        security.check_csrf(request, form)
        partition = request.path_params["partition"]
        offset = request.path_params["offset"]
        force = form.get("force") == "yes"
        try:
            to = await asyncio.to_thread(republish, ui.config, partition, offset, force=force)
            ok, message = True, f"Dead letter {partition}/{offset} re-published as {to}."
            log.info("dead letter re-published partition=%d offset=%d to=%s", partition, offset,
                     to)  # fmt: skip
        except (EverflowError, KafkaException) as e:
            ok, message = False, f"Not re-published: {e}"
        if request.headers.get(security.CSRF_HEADER):
            html = ui.fragment(request, "dead_letters_result.html", {"ok": ok, "message": message})
            return HTMLResponse(html, status_code=200 if ok else 409)
        key = "done" if ok else "error"
        return RedirectResponse(f"/dead-letters?{urlencode({key: message})}", status_code=303)

    return [
        Route("/workers", workers_page),
        Route("/api/workers", workers_json),
        Route("/live/workers", workers_live),
        Route("/dead-letters", dead_letters_page),
        Route(
            "/dead-letters/{partition:int}/{offset:int}/republish",
            republish_one,
            methods=["POST"],
        ),
    ]


def _number(text: str) -> int:
    if not whole_number(text):
        raise HTTPException(400, f"start must be a whole number, not {text!r}")
    return int(text)


# ---- workers -----------------------------------------------------------------------------------
class Snapshot(Generic[T]):
    """The latest answer of `read`, shared by everyone who asks: read again only once it is
    older than `max_age` seconds, and by one asker at a time (the others wait for that
    read and share it). Reading the workers opens an admin client and two consumers and
    reads a whole topic: every open Workers page asking for its own would add up."""

    def __init__(self, read: Callable[[], Awaitable[T]], max_age: float) -> None:
        self.read = read
        self.max_age = max_age
        self._lock = asyncio.Lock()
        self._value: T | None = None
        self._at = 0.0

    async def get(self) -> T:
        async with self._lock:
            if self._value is None or time.monotonic() - self._at >= self.max_age:
                self._value = await self.read()
                self._at = time.monotonic()
            return self._value


async def _view(ui: Ui) -> tuple[WorkersView | None, str]:
    try:
        return await asyncio.to_thread(workers_view, ui.config, 10.0), ""
    except EverflowError as e:
        return None, str(e)
    except KafkaException as e:  # librdkafka's own errors: shown (and logged), not a 500
        log.warning("reading the workers failed: %s", e)
        return None, f"Kafka did not answer: {e}"


def workers_context(view: WorkersView | None, error: str) -> dict[str, Any]:
    """What workers_body.html shows: processors (with their reports), activity runners,
    task queues, restores."""
    if view is None:
        return {"error": error, "processors": [], "runners": [], "queues": [], "restores": [],
                "updated": time.time()}  # fmt: skip
    reports = {s["instance_id"]: s for s in view.statuses}
    processors, runners = [], []
    for group in view.groups:
        for member in sorted(group.members, key=lambda m: m.client_id):
            row = {
                "group": group.group_id,
                "topic": group.topic,
                "client_id": member.client_id,
                "host": member.host,
                "partitions": [(p, group.lag.get(p, 0)) for p in member.partitions],
                "lag": member.lag,
                "report": None,
            }
            if member.client_id.startswith(PROCESSOR_CLIENT_PREFIX):
                row["report"] = reports.get(member.client_id.removeprefix(PROCESSOR_CLIENT_PREFIX))
                processors.append(row)
            else:
                runners.append(row)
    restores = [
        {"instance_id": s["instance_id"], **r} for s in view.statuses for r in s["restore_reports"]
    ]
    return {
        "error": "",
        "processors": processors,
        "runners": runners,
        "queues": view.task_queues,
        "restores": restores,
        "updated": time.time(),
    }


async def _live(
    ui: Ui, request: Request, snapshot: Snapshot[tuple[WorkersView | None, str]]
) -> AsyncIterator[str]:
    """`swap` of the page's body every LIVE_INTERVAL seconds (from the shared snapshot); a
    comment now and then keeps proxies from closing a quiet stream. Ends as soon as the
    browser goes."""
    last_ping = time.monotonic()
    while not await request.is_disconnected():
        view, error = await snapshot.get()
        html = ui.fragment(request, "workers_body.html", workers_context(view, error))
        yield f"event: swap\ndata: {json.dumps({'id': 'workers-body', 'html': html})}\n\n"
        waited = 0.0
        while waited < LIVE_INTERVAL:
            if await request.is_disconnected():
                return
            await asyncio.sleep(0.25)
            waited += 0.25
        if time.monotonic() - last_ping > PING_EVERY:
            last_ping = time.monotonic()
            yield ": ping\n\n"


# ---- dead letters ------------------------------------------------------------------------------
def shown_letter(letter: DeadLetter, topics: Topics, converter: DataConverter) -> dict[str, Any]:
    """A dead letter as the page shows it: key and value decoded where they can be."""
    decoded, kind = decode_value(letter, topics, converter)
    return {
        "letter": letter,
        "key": _text_preview(letter.key),
        "kind": kind,
        "value": decoded,
        "headers": [(k, _text_preview(v)) for k, v in letter.other_headers],
    }


def decode_value(letter: DeadLetter, topics: Topics, converter: DataConverter) -> tuple[str, str]:
    """(text, what it is): the value as an Everflow message (JSON) when it decodes as the one
    its source topic carries, else a text or hex preview."""
    value = letter.value
    if value is None:
        return "", "no value (a tombstone)"
    codecs = wire()
    source = letter.source_topic
    try:
        if source == topics.commands:
            return _json(record_to_json(codecs.command.decode(value), converter)), "command"
        if source == topics.history:
            return _json(event_to_json(codecs.event.decode(value), converter)), "history event"
        if source.startswith(topics.prefix + "tasks."):
            return _json(record_to_json(codecs.task.decode(value), converter)), "activity task"
    except Exception as e:  # poison is expected here: shown raw, with why it did not decode
        return _raw_preview(value), f"not an Everflow message ({type(e).__name__}: {e})"
    return _raw_preview(value), "raw"


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=repr)


def _text_preview(data: bytes | None) -> str:
    if data is None:
        return ""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return "hex " + data[:PREVIEW_BYTES].hex(" ")
    return text if text.isprintable() else repr(text)


def _raw_preview(data: bytes) -> str:
    more = f"\n… {len(data) - PREVIEW_BYTES} more bytes" if len(data) > PREVIEW_BYTES else ""
    head = data[:PREVIEW_BYTES]
    text = head.decode(errors="replace")
    if "\ufffd" not in text and all(c.isprintable() or c in "\n\r\t" for c in text):
        return text + more
    return "hex " + head.hex(" ") + more
