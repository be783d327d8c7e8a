"""librdkafka's own log lines never reach a terminal raw (`%4|...|CONFWARN|...`): not in
`make demo`'s output, not in the CLI's, not in a worker's; `--log-level debug` shows them
through Python logging.

Every client here is given a consumer setting (EVERFLOW_KAFKA_CHECK_CRCS=false, its default
value), so every producer and admin client has a warning to log: librdkafka's CONFWARN,
"a consumer property ... will be ignored by this producer instance".
"""

from __future__ import annotations

import gc
import logging
import os
import re
import subprocess
import sys

import pytest

from streams import kafka
from streams.kafka.config import KafkaConfig
from tests.helpers import wait_until
from tests.integration.workers import ROOT, WorkerProcesses, everflow

pytestmark = pytest.mark.integration

RAW = re.compile(r"(?m)^%\d\|")  # how librdkafka prints a line: %<syslog level>|<time>|...
NOISY = {"EVERFLOW_KAFKA_CHECK_CRCS": "false"}


def test_make_demo_prints_no_librdkafka_line(kafka_bootstrap: str) -> None:
    env = {**os.environ, "EVERFLOW_BOOTSTRAP": kafka_bootstrap, **NOISY}
    demo = subprocess.run(
        [sys.executable, "-m", "examples.demo"],  # what `make demo` runs
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=240,
    )
    output = demo.stdout + demo.stderr
    assert demo.returncode == 0, output
    assert "demo done" in demo.stdout, output
    assert RAW.search(output) is None, output
    assert "CONFWARN" not in output, output  # and not as a bare log line either


def test_the_cli_shows_librdkafka_lines_through_logging_at_debug_only(
    worker_env: dict[str, str],
) -> None:
    env = {**worker_env, **NOISY}
    quiet = everflow(env, "topics", "create", "--task-queue", "transfers")
    assert quiet.returncode == 0, quiet.stderr
    assert RAW.search(quiet.stdout + quiet.stderr) is None, quiet.stderr
    assert "CONFWARN" not in quiet.stderr, quiet.stderr

    told = everflow(env, "--log-level", "debug", "topics", "create", "--task-queue", "transfers")
    assert told.returncode == 0, told.stderr
    assert RAW.search(told.stdout + told.stderr) is None, told.stderr
    assert re.search(
        r"(?m)^\S+ \S+ WARNING streams\.kafka\.librdkafka: CONFWARN \[rdkafka#producer-\d+\] .*"
        r"check\.crcs is a consumer property",
        told.stderr,
    ), told.stderr


def test_a_worker_logs_no_librdkafka_line_unless_at_debug(workers: WorkerProcesses) -> None:
    quiet = workers.start("quiet", extra_env=NOISY)
    loud = workers.start("loud", extra_env=NOISY, options=["--log-level", "debug"])
    for proc in (quiet, loud):
        wait_until(lambda: "running task queue" in workers.log_of(proc), timeout=60)  # noqa: B023
    workers.stop_all()
    assert (quiet.returncode, loud.returncode) == (0, 0), workers.logs()
    assert RAW.search(workers.logs()) is None, workers.logs()
    assert "CONFWARN" not in workers.log_of(quiet), workers.log_of(quiet)
    assert "streams.kafka.librdkafka: CONFWARN" in workers.log_of(loud), workers.log_of(loud)


def test_an_admin_client_nobody_polls_still_hands_its_lines_to_logging(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="streams.kafka.librdkafka")
    # nothing listens on port 1: librdkafka logs each refused connection (FAIL, an error)
    admin = kafka.admin(KafkaConfig(bootstrap="127.0.0.1:1"))
    failed = wait_until(
        lambda: [r for r in caplog.records if "Connection refused" in r.getMessage()],
        timeout=30,
        message="no librdkafka line reached logging from an admin client nobody polls",
    )
    assert failed[0].name == "streams.kafka.librdkafka"
    assert failed[0].levelno == logging.ERROR  # syslog level 3
    assert failed[0].getMessage().startswith("FAIL [rdkafka#producer-")
    del admin
    gc.collect()  # its error callback makes a cycle: collected, it stops knocking
