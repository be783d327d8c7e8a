"""Workflow and run IDs with any character, "/" included, survive a round trip through a
link and the router (`streams.ui.paths`)."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from streams.ui.paths import SegmentPaths, segment
from streams.ui.run import run_path


async def echo(request: Request) -> Response:
    return JSONResponse(dict(request.path_params))


APP = Starlette(
    routes=[
        Route("/runs/{workflow_id:segment}", echo),
        Route("/runs/{workflow_id:segment}/{run_id:segment}", echo),
        Route("/runs/{workflow_id:segment}/{run_id:segment}/signal", echo, methods=["POST"]),
    ]
)
APP.add_middleware(SegmentPaths)


@pytest.mark.parametrize(
    "workflow_id",
    ["order/42", "a/b/c", "with space", "quote'd \"x\"", "hash#tag", "what?", "100%", "ü/c", "/"],
)
def test_an_id_is_one_segment_whatever_it_holds(workflow_id: str) -> None:
    client = TestClient(APP)
    assert "/" not in segment(workflow_id)
    got = client.get(run_path(workflow_id, "run/1")).json()
    assert got == {"workflow_id": workflow_id, "run_id": "run/1"}
    assert client.get(f"/runs/{segment(workflow_id)}").json() == {"workflow_id": workflow_id}
    posted = client.post(run_path(workflow_id, "r") + "/signal").json()
    assert posted == {"workflow_id": workflow_id, "run_id": "r"}


def test_a_plain_slash_still_separates_segments() -> None:
    assert TestClient(APP).get("/runs/a/b").json() == {"workflow_id": "a", "run_id": "b"}
