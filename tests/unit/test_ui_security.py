"""The Web UI's sign-in and cross-site protection, through Starlette's test client (no
broker: these routes need none, so the app's lifespan, which connects a Client, is not run).
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

import streams.ui
from streams.errors import ConfigError
from streams.kafka.config import KafkaConfig
from streams.settings import UiSettings, parse_listen
from streams.ui import create_app
from streams.ui.security import CSRF_COOKIE, safe_next

CONFIG = KafkaConfig(bootstrap="127.0.0.1:1", topic_prefix="ui-test.")
LOCAL = "http://127.0.0.1:8233"  # the UI without sign-in answers to loopback names only


def client(**settings: object) -> TestClient:
    app = create_app(CONFIG, UiSettings(**settings))
    return TestClient(app, follow_redirects=False, base_url=LOCAL)


def test_loopback_needs_no_sign_in() -> None:
    assert client().get("/api/health").json() == {"status": "ok", "prefix": "ui-test."}


def test_listening_beyond_loopback_without_sign_in_is_refused() -> None:
    with pytest.raises(ConfigError, match="EVERFLOW_UI_TOKEN"):
        UiSettings(host="0.0.0.0")
    assert UiSettings(host="0.0.0.0", token="s3cret").token == "s3cret"
    assert UiSettings(host="0.0.0.0", basic_auth="ann:pw").basic_auth == "ann:pw"
    with pytest.raises(ConfigError, match="user:password"):
        UiSettings(basic_auth="no-colon")


def test_settings_come_from_the_environment() -> None:
    env = {"EVERFLOW_UI_LISTEN": "0.0.0.0:9000", "EVERFLOW_UI_TOKEN": "t"}
    settings = UiSettings.from_env(env)
    assert (settings.host, settings.port, settings.token) == ("0.0.0.0", 9000, "t")
    assert settings.address == "http://0.0.0.0:9000"
    assert parse_listen(":8300") == ("127.0.0.1", 8300)
    assert parse_listen("8300") == ("127.0.0.1", 8300)
    assert parse_listen("[::1]:8300") == ("::1", 8300)
    with pytest.raises(ConfigError, match="host:port"):
        parse_listen("localhost:http")


def test_a_token_is_required_as_bearer_or_cookie() -> None:
    c = client(token="s3cret")
    # past the sign-in, an unknown path is a 404; before it, a 401
    assert c.get("/api/nothing").status_code == 401
    assert c.get("/api/nothing", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.get("/api/nothing", headers={"Authorization": "Bearer s3cret"}).status_code == 404
    page = c.get("/runs/a%2Fb", headers={"Accept": "text/html"})
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=/runs/a%252Fb"  # the raw path, quoted
    # the sign-in page's stylesheet and the health check are served before signing in
    assert c.get("/static/everflow.css").status_code == 200
    assert c.get("/api/health").status_code == 200


def test_the_sign_in_page_sets_the_cookie_for_the_right_token_only() -> None:
    c = client(token="s3cret")
    wrong = c.post("/login", data={"token": "nope", "next": "/"})
    assert wrong.status_code == 401 and "not the one" in wrong.text
    right = c.post("/login", data={"token": "s3cret", "next": "/workers"})
    assert right.status_code == 303 and right.headers["location"] == "/workers"
    assert "s3cret" not in right.headers["set-cookie"]  # a digest, not the token
    assert c.get("/api/nothing").status_code == 404  # the cookie now signs in
    # never sends the browser to another site after signing in
    assert safe_next("//evil.example/") == "/" and safe_next("https://x/") == "/"


def test_basic_auth() -> None:
    c = client(basic_auth="ann:pw")
    refused = c.get("/api/nothing")
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Basic")
    good = base64.b64encode(b"ann:pw").decode()
    bad = base64.b64encode(b"ann:nope").decode()
    assert c.get("/api/nothing", headers={"Authorization": f"Basic {good}"}).status_code == 404
    assert c.get("/api/nothing", headers={"Authorization": f"Basic {bad}"}).status_code == 401


@pytest.mark.parametrize("token", ["ab/c+d==", 'with "quotes"; and=semicolons', "ünïcode"])
def test_any_token_signs_in_through_the_cookie(token: str) -> None:
    c = client(token=token)
    assert c.post("/login", data={"token": token, "next": "/"}).status_code == 303
    assert c.get("/api/nothing").status_code == 404


def test_without_sign_in_only_this_machines_names_are_served() -> None:
    for host in ("127.0.0.1:8233", "localhost:8233", "[::1]:8233", "LOCALHOST"):
        assert client().get("/api/health", headers={"Host": host}).status_code == 200
    # DNS rebinding: another site's name resolved to 127.0.0.1 gets nothing, not even a page
    # to read the CSRF token from
    rebound = client().get("/", headers={"Host": "evil.example:8233"})
    assert rebound.status_code == 403 and "answers to 127.0.0.1" in rebound.text
    assert "csrf" not in rebound.text
    # with a sign-in, any name is served (the cookie of another name is not sent)
    signed = client(token="t").get("/api/health", headers={"Host": "ui.example.org"})
    assert signed.status_code == 200


def test_pages_set_a_csrf_cookie_and_embed_its_token() -> None:
    c = client()
    response = c.get("/no-such-page")
    assert response.status_code == 404
    token = response.cookies.get(CSRF_COOKIE)
    assert token and f'content="{token}"' in response.text
    assert "samesite=strict" in response.headers["set-cookie"].lower()


def test_static_files_are_packaged_and_name_no_other_site() -> None:
    c = client()
    package = Path(streams.ui.__file__).parent
    static = sorted((package / "static").iterdir())
    assert {p.suffix for p in static} == {".js", ".css"}
    for path in static:
        served = c.get(f"/static/{path.name}")
        assert served.status_code == 200 and served.text == path.read_text()
    # nothing a page loads or links to comes from another site (no CDN, no fonts)
    for path in [*static, *(package / "templates").iterdir()]:
        text = path.read_text()
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), path.name
