"""Who may use the Web UI, and protection of its actions against cross-site requests.

Sign-in: on loopback (the default) no sign-in is needed, and then the UI answers only to
the names of this machine (127.0.0.1, localhost, [::1] in the Host header), so a page of
another site whose name was made to resolve to 127.0.0.1 (DNS rebinding) gets nothing.
Elsewhere `UiSettings` insists on a token or basic auth (the server refuses to start
without one). With a token, a request carries it as `Authorization: Bearer <token>` or in
the `everflow_token` cookie the sign-in page (`/login`) sets (a digest of the token, not
the token); with basic auth, the browser's own dialog asks. Comparisons are constant-time.
`/login`, `/static/` and `/api/health` are served before signing in.

Cross-site requests: every request that changes something (POST) must
- carry the CSRF token, in the `csrf_token` form field or the `X-Everflow-CSRF` header,
  equal to the `everflow_csrf` cookie (SameSite=Strict, set with the first page), and
- if the browser says where it comes from (`Origin`, `Sec-Fetch-Site`), come from this
  server's own origin.
A page from another site can make the browser send a POST but can read neither the cookie
nor a page, so it cannot know the token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from urllib.parse import quote, urlsplit

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from streams.settings import UiSettings

CSRF_COOKIE = "everflow_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-everflow-csrf"
TOKEN_COOKIE = "everflow_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


class CsrfError(Exception):
    """A state-changing request without a valid CSRF token or from another origin."""


def csrf_token(request: Request) -> str:
    """This browser's CSRF token: its cookie's, or a new one (set on the response by
    `with_csrf_cookie`)."""
    token = request.cookies.get(CSRF_COOKIE)
    if token and len(token) >= 32:
        return token
    state = request.state
    if not getattr(state, "new_csrf_token", None):
        state.new_csrf_token = secrets.token_urlsafe(32)
    return str(state.new_csrf_token)


def with_csrf_cookie(request: Request, response: Response) -> Response:
    """`response`, setting the CSRF cookie when this request made a new token."""
    new = getattr(request.state, "new_csrf_token", None)
    if new:
        response.set_cookie(CSRF_COOKIE, new, httponly=True, samesite="strict", path="/")
    return response


def check_csrf(request: Request, form: Mapping[str, object] | None = None) -> None:
    """Raise CsrfError unless the request carries this browser's CSRF token (form field or
    header) and, where the browser names its origin, comes from this server."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = request.headers.get(CSRF_HEADER) or (form or {}).get(CSRF_FIELD) or ""
    if not cookie or not isinstance(sent, str) or not hmac.compare_digest(cookie, sent):
        raise CsrfError(
            "this request lacks the page's security token (reload the page and try again)"
        )
    if request.headers.get("sec-fetch-site") not in (None, "same-origin", "none"):
        raise CsrfError("refused: the request comes from another site")
    origin = request.headers.get("origin")
    if origin and origin != "null":
        host = request.headers.get("host", "")
        if urlsplit(origin).netloc != host:
            raise CsrfError(f"refused: the request comes from {origin}, not from this server")


class SignInMiddleware:
    """ASGI middleware: every request signs in as `UiSettings` asks (see the module
    docstring); unsigned requests get the sign-in page, a 401, or basic auth's challenge."""

    def __init__(self, app: ASGIApp, settings: UiSettings) -> None:
        self.app = app
        self.token = settings.token
        self.basic = settings.basic_auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not (self.token or self.basic) and not _loopback_host(Headers(scope=scope)):
            # Without a sign-in the UI serves this machine only, by name too: a page of
            # another site whose name was made to resolve here (DNS rebinding) is refused.
            await PlainTextResponse(
                "this UI, which has no sign-in, answers to 127.0.0.1, localhost and [::1]"
                " only; to serve other names, give it a token (EVERFLOW_UI_TOKEN)",
                status_code=403,
            )(scope, receive, send)
            return
        if self.allowed(scope):
            await self.app(scope, receive, send)
            return
        await self.refusal(scope)(scope, receive, send)

    def allowed(self, scope: Scope) -> bool:
        if not (self.token or self.basic):
            return True
        path: str = scope["path"]
        if path in ("/login", "/api/health") or path.startswith("/static/"):
            return True
        headers = Headers(scope=scope)
        return self.accepts(headers.get("authorization", ""), _cookie(headers, TOKEN_COOKIE))

    def accepts(self, authorization: str, cookie: str) -> bool:
        """Whether an `Authorization` header or the token cookie signs in."""
        scheme, _, value = authorization.partition(" ")
        if self.token:
            if scheme.lower() == "bearer" and _same(value.strip(), self.token):
                return True
            if cookie and _same(cookie, token_cookie_value(self.token)):
                return True
        if self.basic and scheme.lower() == "basic":
            try:
                given = base64.b64decode(value.strip(), validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                return False
            return _same(given, self.basic)
        return False

    def refusal(self, scope: Scope) -> Response:
        headers = Headers(scope=scope)
        if self.basic and not self.token:
            return PlainTextResponse(
                "sign in to the Everflow UI",
                status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="everflow", charset="UTF-8"'},
            )
        wants_page = scope["method"] == "GET" and "text/html" in headers.get("accept", "")
        if wants_page:
            raw = scope.get("raw_path") or scope["path"].encode()
            target = raw.decode("latin-1") + (
                "?" + scope["query_string"].decode("latin-1") if scope["query_string"] else ""
            )
            return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
        return PlainTextResponse(
            "sign in: send Authorization: Bearer <token>",
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="everflow"'},
        )


def login_page(error: str = "", next_path: str = "/") -> HTMLResponse:
    """The sign-in form (plain HTML: it is shown before anything else is allowed)."""
    from html import escape

    message = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    return HTMLResponse(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Sign in · Everflow"
        '</title><link rel=stylesheet href="/static/everflow.css"></head><body class=login>'
        "<main><h1>Everflow</h1><form method=post action=/login>"
        f'<input type=hidden name=next value="{escape(next_path)}">'
        "<label>Access token <input type=password name=token autofocus required></label>"
        f"{message}<button type=submit>Sign in</button></form></main></body></html>",
        status_code=401 if error else 200,
    )


def safe_next(path: str) -> str:
    """Where to go after signing in: a path on this server only (never another site)."""
    if not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path


def token_cookie_value(token: str) -> str:
    """What the sign-in cookie holds for `token`: a digest (plain hex, so no cookie quoting
    can alter it, and the token itself never sits in the browser's cookie store)."""
    return hashlib.sha256(b"everflow-ui-sign-in:" + token.encode()).hexdigest()


def _loopback_host(headers: Headers) -> bool:
    host = headers.get("host", "")
    name = host[1:].partition("]")[0] if host.startswith("[") else host.rpartition(":")[0] or host
    return name.lower() in LOOPBACK_NAMES


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _cookie(headers: Headers, name: str) -> str:
    for part in headers.get("cookie", "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return ""
