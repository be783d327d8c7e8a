"""`Ui`: what every page of the Web UI shares.

One `Ui` per application: the Kafka connection settings, a `Client` (created when the
server starts, on the server's event loop, closed when it stops), the run index's store
(opened on first use; the index may not exist yet), and the Jinja2 templates. Pages render
through `Ui.page` (a whole page, in `base.html`) and `Ui.fragment` (a part the scripts swap
in); both pass the request's CSRF token so every form carries it.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from streams.client import Client
from streams.encryption import configured_converter
from streams.kafka.config import KafkaConfig
from streams.kafka.topics import Topics
from streams.payload import DataConverter
from streams.settings import UiSettings, visibility_url
from streams.ui import security
from streams.ui.paths import segment
from streams.visibility.store import Store, open_store

NAVIGATION = (
    ("runs", "/", "Runs"),
    ("workers", "/workers", "Workers"),
    ("dead_letters", "/dead-letters", "Dead letters"),
)
"""The top bar: (page key, path, label)."""


class Ui:
    """The Web UI's shared state; see the module docstring."""

    def __init__(
        self,
        config: KafkaConfig,
        settings: UiSettings,
        converter: DataConverter | None = None,
    ) -> None:
        self.config = config
        self.settings = settings
        self.converter = converter or configured_converter()
        self.topics = Topics(config.topic_prefix)
        self.visibility_url = visibility_url(config.topic_prefix, settings.visibility)
        self._client: Client | None = None
        self._store: Store | None = None
        self._lock = threading.Lock()
        self._closers: list[Callable[[], None]] = []
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("streams.ui", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters["segment"] = segment
        self.templates.filters["instant"] = format_instant
        self.templates.filters["millis"] = format_millis
        self.templates.filters["duration"] = format_duration

    # ---- life cycle (the application's lifespan) ---------------------------------------------
    async def start(self) -> None:
        self._client = await asyncio.to_thread(
            functools.partial(  # the UI shows a deployment, never makes one: no topics
                Client,
                self.config,
                self.converter,
                visibility=self.settings.visibility,
                create_topics=False,
            )
        )

    def on_close(self, closer: Callable[[], None]) -> None:
        """Calls `closer` (blocking, in a thread) when the server stops: a page's own
        resources, e.g. Kafka consumers it keeps."""
        self._closers.append(closer)

    async def close(self) -> None:
        for closer in self._closers:
            await asyncio.to_thread(closer)
        client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(client.close)
        with self._lock:
            store, self._store = self._store, None
        if store is not None:
            store.close()

    @property
    def client(self) -> Client:
        if self._client is None:
            raise RuntimeError("the UI's client is not started (the app's lifespan did not run)")
        return self._client

    def store(self) -> Store:
        """The run index (VisibilityUnavailableError if there is none yet)."""
        with self._lock:
            if self._store is None:
                self._store = open_store(self.visibility_url, create=False)
            return self._store

    # ---- rendering ----------------------------------------------------------------------------
    def render(self, request: Request, template: str, context: Mapping[str, Any]) -> str:
        values = {
            "request": request,
            "csrf_token": security.csrf_token(request),
            "prefix": self.config.topic_prefix,
            "navigation": NAVIGATION,
            **context,
        }
        return self.templates.get_template(template).render(values)

    def page(
        self, request: Request, template: str, context: Mapping[str, Any], status: int = 200
    ) -> Response:
        """A whole page: `template` extends `base.html`; `context["page"]` marks the nav."""
        return security.with_csrf_cookie(
            request, HTMLResponse(self.render(request, template, context), status_code=status)
        )

    def fragment(self, request: Request, template: str, context: Mapping[str, Any]) -> str:
        """The HTML of a part of a page (swapped in by the scripts, or sent over SSE)."""
        return self.render(request, template, context)


def format_instant(value: datetime | None) -> str:
    """An instant as UTC `YYYY-MM-DD HH:MM:SS.mmm` (the scripts show it in local time)."""
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond // 1000:03d}"


def format_millis(value: int | None) -> str:
    """Epoch milliseconds as `format_instant` shows an instant."""
    if value is None or value < 0:
        return ""
    return format_instant(datetime.fromtimestamp(value / 1000, UTC))


def format_duration(seconds: float | None) -> str:
    """A duration as people say it: 850 ms, 12.3 s, 4 min 05 s, 3 h 12 min, 30 d 4 h."""
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"
