"""Workflow and run IDs as URL path segments, any character allowed ("/" included).

Links quote an ID whole (`segment(id)`: "/" becomes %2F). The server decodes a path before
routing, which would split such an ID in two, so `SegmentPaths` re-reads the raw path: a
%2F inside a segment becomes a private-use character that routing leaves alone, and the
`segment` path convertor (`{workflow_id:segment}`) turns it back into "/".
"""

from __future__ import annotations

from urllib.parse import quote, unquote_to_bytes

from starlette.convertors import Convertor, register_url_convertor
from starlette.types import ASGIApp, Receive, Scope, Send

SLASH_IN_SEGMENT = "\ue000"


def segment(value: object) -> str:
    """`value` as one path segment: every reserved character quoted, "/" too."""
    return quote(str(value), safe="")


class SegmentConvertor(Convertor[str]):
    regex = "[^/]+"

    def convert(self, value: str) -> str:
        return value.replace(SLASH_IN_SEGMENT, "/")

    def to_string(self, value: str) -> str:
        return segment(value)


register_url_convertor("segment", SegmentConvertor())


class SegmentPaths:
    """ASGI middleware: keeps an encoded "/" (%2F) inside its path segment (see above)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path") if scope["type"] in ("http", "websocket") else None
        if raw and b"%2f" in raw.lower():
            parts = raw.split(b"?", 1)[0].split(b"/")
            decoded = (
                unquote_to_bytes(part).decode("utf-8", "replace").replace("/", SLASH_IN_SEGMENT)
                for part in parts
            )
            scope = {**scope, "path": "/".join(decoded)}
        await self.app(scope, receive, send)
