"""The test PostgreSQL server is real: a cluster started from the distribution's package."""

from __future__ import annotations

import psycopg


def test_each_test_gets_its_own_empty_database_on_a_real_server(postgres_dsn: str) -> None:
    with psycopg.connect(postgres_dsn) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
    assert version is not None and int(version[0].split(".")[0]) >= 13
    assert tables == (0,)
