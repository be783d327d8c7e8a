"""(built by the page's change)"""

from __future__ import annotations

from starlette.routing import BaseRoute

from streams.ui.context import Ui


def routes(ui: Ui) -> list[BaseRoute]:
    return []
