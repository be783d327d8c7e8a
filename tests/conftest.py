"""Fixtures for every test: one real broker per session, one topic prefix per test."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# Lets a bare `.venv/bin/pytest` import `streams` and `tests.helpers` before the package is
# installed (`make test` installs it editable; then this is a no-op).
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)


@pytest.fixture(scope="session", autouse=True)
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """EVERFLOW_DATA_DIR for the session: the workers' run indexes (and anything else kept
    on disk by default) go to a temporary directory, never the user's ~/.cache."""
    import os

    path = tmp_path_factory.mktemp("everflow-data")
    before = os.environ.get("EVERFLOW_DATA_DIR")
    os.environ["EVERFLOW_DATA_DIR"] = str(path)
    try:
        yield path
    finally:
        if before is None:
            os.environ.pop("EVERFLOW_DATA_DIR", None)
        else:
            os.environ["EVERFLOW_DATA_DIR"] = before


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers of a broker for the whole session (see `provision_broker`)."""
    from streams.dev.broker import provision_broker

    with provision_broker() as bootstrap:
        yield bootstrap


@pytest.fixture
def topic_prefix() -> str:
    """A prefix unique to this test, so tests never see each other's topics."""
    return f"t-{uuid.uuid4().hex[:8]}."


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """DSN of a real PostgreSQL server for the whole session (see tests/postgres.py)."""
    from tests.postgres import local_postgres

    with local_postgres() as dsn:
        yield dsn


@pytest.fixture
def postgres_dsn(postgres_server: str) -> str:
    """DSN of a fresh, empty database on the session's PostgreSQL server."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # a name made here, not user input
    return postgres_server.rsplit("/", 1)[0] + "/" + name


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Prints the bad-input table (tests/bad_inputs) and the fault table (tests/faults) when
    their tests ran, and writes them to tests/reports/."""
    from tests.bad_inputs.table import REPORT, ROWS, render

    if ROWS:
        text = render(ROWS)
        REPORT.parent.mkdir(exist_ok=True)
        REPORT.write_text(text)
        terminalreporter.section(f"bad input: {len(ROWS)} kinds")
        terminalreporter.write(text)
    faults = sys.modules.get("tests.faults.test_faults")
    if faults is not None and faults.REPORTS:
        from tests.faults.checker import render as render_faults

        notes = [f"- {r.fault}: " + ", ".join(f"{k} {v}" for k, v in r.notes.items())
                 for r in faults.REPORTS]  # fmt: skip
        text = render_faults(faults.REPORTS) + "\n\n" + "\n".join(notes) + "\n"
        path = REPORT.parent / "faults.md"
        path.write_text(text)
        terminalreporter.section(f"faults: {len(faults.REPORTS)} rounds")
        terminalreporter.write(text)
