"""The Web UI's Starlette application: `create_app(config, settings)`.

Routes come from the page modules (`runs`, `run`, `actions`, `workers`), each a
`routes(ui)` list; this module adds the static files, the sign-in page, a health check, the
sign-in middleware and the pages shown for errors (a refused cross-site request, an index
that does not exist yet, a page that failed).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from streams.errors import VisibilityUnavailableError
from streams.kafka.config import KafkaConfig
from streams.payload import DataConverter
from streams.settings import UiSettings
from streams.ui import actions, paths, run, runs, security, workers
from streams.ui.context import Ui

log = logging.getLogger(__name__)


def create_app(
    config: KafkaConfig, settings: UiSettings, *, converter: DataConverter | None = None
) -> Starlette:
    """The UI application for the deployment `config` names (its topic prefix), served as
    `settings` says (sign-in, the run index's store). Its lifespan connects a Client when
    the server starts and closes it when the server stops."""
    ui = Ui(config, settings, converter)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await ui.start()
        try:
            yield
        finally:
            await ui.close()

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "prefix": config.topic_prefix})

    async def login(request: Request) -> Response:
        if request.method == "GET":
            return security.login_page(next_path=request.query_params.get("next", "/"))
        form = await request.form()
        token = str(form.get("token", ""))
        target = security.safe_next(str(form.get("next", "/")))
        if not settings.token or not security.SignInMiddleware(app, settings).accepts(
            f"Bearer {token}", ""
        ):
            return security.login_page("That token is not the one this server expects.", target)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            security.TOKEN_COOKIE,
            security.token_cookie_value(token),
            httponly=True,
            # Lax: a link from elsewhere keeps the user signed in (CSRF has its own token)
            samesite="lax",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    async def refused(request: Request, exc: Exception) -> Response:
        return ui.page(
            request, "error.html", {"page": "", "title": "Refused", "message": str(exc)}, 403
        )

    async def no_index(request: Request, exc: Exception) -> Response:
        return ui.page(
            request,
            "error.html",
            {"page": "", "title": "No run index yet", "message": str(exc)},
            503,
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return ui.page(
            request,
            "error.html",
            {"page": "", "title": f"{exc.status_code}", "message": exc.detail},
            exc.status_code,
        )

    routes: list[BaseRoute] = [
        Mount("/static", StaticFiles(packages=[("streams.ui", "static")]), name="static"),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/api/health", health),
        *runs.routes(ui),
        *run.routes(ui),
        *actions.routes(ui),
        *workers.routes(ui),
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(paths.SegmentPaths),
            Middleware(security.SignInMiddleware, settings=settings),
        ],
        exception_handlers={
            security.CsrfError: refused,
            VisibilityUnavailableError: no_index,
            HTTPException: http_error,
        },
        lifespan=lifespan,
    )
    app.state.ui = ui
    return app
