"""Signing in to a UI that listens beyond loopback, in a real browser: the sign-in page
refuses a wrong token with a message and lets the right one through to the page asked for.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from streams.kafka.config import KafkaConfig
from streams.settings import UiSettings
from streams.ui import UiServer
from tests.integration.workers import topics_for
from tests.ui.conftest import shot

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


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


def test_everflow_ui_serves_until_sigterm(kafka_bootstrap: str, topic_prefix: str) -> None:
    topics_for(kafka_bootstrap, topic_prefix, "default")
    env = {
        **os.environ,
        "EVERFLOW_BOOTSTRAP": kafka_bootstrap,
        "EVERFLOW_TOPIC_PREFIX": topic_prefix,
        "PYTHONPATH": str(ROOT),
    }
    command = [sys.executable, "-m", "streams.cli", "ui", "--listen", "127.0.0.1:0"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT) as cli:
        try:
            assert cli.stdout is not None
            line = cli.stdout.readline()
            assert line.startswith(f"Everflow UI for {topic_prefix}* on http://127.0.0.1:")
            address = line.split(" on ", 1)[1].split()[0]
            with urllib.request.urlopen(address + "api/health", timeout=10) as answer:
                assert json.loads(answer.read())["prefix"] == topic_prefix
            cli.send_signal(signal.SIGTERM)
            assert cli.wait(timeout=30) == 0
        finally:
            cli.kill()


def test_everflow_ui_refuses_to_listen_beyond_loopback_without_sign_in() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVERFLOW_UI_")}
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "ui", "--listen", "0.0.0.0:0"],
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "with no sign-in: set EVERFLOW_UI_TOKEN" in done.stderr
