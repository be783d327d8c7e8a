"""Signing in to a UI that listens beyond loopback, in a real browser: the sign-in page
refuses a wrong token with a message and lets the right one through to the page asked for.
"""

from __future__ import annotations

from typing import Any

import pytest

from streams.kafka.config import KafkaConfig
from streams.settings import UiSettings
from streams.ui import UiServer
from tests.integration.workers import topics_for
from tests.ui.conftest import shot

pytestmark = pytest.mark.integration


def test_the_browser_signs_in_with_the_token(
    kafka_bootstrap: str, topic_prefix: str, page: Any
) -> None:
    config: KafkaConfig = topics_for(kafka_bootstrap, topic_prefix, "default")
    server = UiServer(config, UiSettings(host="127.0.0.1", port=0, token="open-sesame"))
    address = server.start()
    try:
        page.goto(address + "/workers")
        assert "/login" in page.url
        page.get_by_label("Access token").fill("wrong")
        page.get_by_role("button", name="Sign in").click()
        assert page.get_by_role("alert").inner_text() == (
            "That token is not the one this server expects."
        )
        shot(page, "sign-in-refused")
        page.get_by_label("Access token").fill("open-sesame")
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(address + "/workers")
        assert page.get_by_label("Access token").count() == 0
    finally:
        server.stop()
