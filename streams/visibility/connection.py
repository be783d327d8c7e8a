"""Where the run index lives and how to connect to it: a store URL parsed into a
`StoreLocation` (SQLite file or PostgreSQL DSN), and the connection each dialect gets.

SQLite runs in WAL mode with a busy timeout, so readers never block the projector; one
connection serves the threads that share a `Store`. PostgreSQL needs the `postgres` extra
(psycopg, imported on first use). Every failure is a VisibilityUnavailableError that says
what to do; a DSN's password is never shown.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.errors import VisibilityUnavailableError
from streams.visibility.schema import Dialect

HOW_TO_START = (
    "the run index is written by a projector: `everflow worker` runs one by default, "
    "or start `everflow visibility` with the same --visibility URL"
)


@dataclass(frozen=True, slots=True)
class StoreLocation:
    """A parsed store URL: the dialect and what to connect to (a path or a DSN)."""

    dialect: Dialect
    target: str

    @property
    def path(self) -> Path | None:
        return Path(self.target) if self.dialect == "sqlite" else None


def parse_url(url: str) -> StoreLocation:
    """`sqlite:///abs/path`, a bare path, or `postgresql://…` (also `postgres://`)."""
    if url.startswith(("postgresql://", "postgres://")):
        return StoreLocation("postgresql", url)
    if url.startswith("sqlite://"):
        path = url.removeprefix("sqlite://")
        if not path.startswith("/"):
            raise VisibilityUnavailableError(
                f"store URL {url!r} is not sqlite:///absolute/path (three slashes)"
            )
        return StoreLocation("sqlite", "/" + path.lstrip("/"))  # sqlite:////abs works too
    if "://" in url:
        raise VisibilityUnavailableError(
            f"store URL {url!r}: use sqlite:///path, a file path, or postgresql://…"
        )
    return StoreLocation("sqlite", str(Path(url).expanduser().resolve()))


def shown(location: StoreLocation) -> str:
    if location.dialect == "sqlite":
        return location.target
    return location.target.split("@")[-1]  # never echo a password


def connect_sqlite(location: StoreLocation, create: bool) -> sqlite3.Connection:
    path = Path(location.target)
    if not create and not path.exists():
        raise VisibilityUnavailableError(f"no run index at {path}; {HOW_TO_START}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # autocommit (isolation_level None): transactions are the explicit BEGINs below;
        # one connection serves the threads that share a Store, under its lock
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA synchronous=NORMAL")
    except (OSError, sqlite3.Error) as e:
        raise VisibilityUnavailableError(f"cannot open the run index at {path}: {e}") from e
    return conn


def connect_postgresql(location: StoreLocation) -> Any:
    try:
        import psycopg
    except ImportError as e:
        raise VisibilityUnavailableError(
            "a postgresql:// run index needs psycopg: pip install 'everflow[postgres]'"
        ) from e
    try:
        return psycopg.connect(location.target, autocommit=True, connect_timeout=10)
    except psycopg.Error as e:
        raise VisibilityUnavailableError(
            f"cannot reach the run index at {shown(location)}: {e}; {HOW_TO_START}"
        ) from e
