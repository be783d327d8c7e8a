"""The run index's store on a SQLite file: URLs, a batch and its offsets in one transaction,
rows read back as written, and errors that say how to get an index."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.errors import VisibilityUnavailableError
from streams.visibility.records import ActivityRow, RunRow
from streams.visibility.store import StoreLocation, open_store, parse_url
from streams.wire.records import SearchAttributeType


def test_store_urls() -> None:
    assert parse_url("sqlite:///var/ix.sqlite") == StoreLocation("sqlite", "/var/ix.sqlite")
    assert parse_url("sqlite:////var/ix.sqlite") == StoreLocation("sqlite", "/var/ix.sqlite")
    assert parse_url("postgresql://ix@db/ix") == StoreLocation(
        "postgresql", "postgresql://ix@db/ix"
    )
    assert parse_url("ix.sqlite").target == str(Path("ix.sqlite").resolve())
    with pytest.raises(VisibilityUnavailableError, match="three slashes"):
        parse_url("sqlite://relative.sqlite")
    with pytest.raises(VisibilityUnavailableError, match="postgresql://"):
        parse_url("mysql://db/ix")


def test_a_reader_of_a_missing_index_is_told_how_to_start_the_projector(tmp_path: Path) -> None:
    with pytest.raises(VisibilityUnavailableError, match=r"everflow worker.*everflow visibility"):
        open_store(str(tmp_path / "none.sqlite"), create=False)
    assert not (tmp_path / "none.sqlite").exists()


def test_a_batch_writes_rows_types_and_offsets_and_offsets_never_move_back(
    tmp_path: Path,
) -> None:
    store = open_store(f"sqlite://{tmp_path}/ix.sqlite")
    open_store(f"sqlite://{tmp_path}/ix.sqlite").close()  # creating the tables is idempotent
    row = RunRow(
        "r1", "wf", "Order", "q", "Running", 1000, 3, search_attributes={"At": 5000},
        activities=(ActivityRow(1, "charge", 2, 5, "declined", 9000),),
    )  # fmt: skip
    store.write_batch([row], {"At": SearchAttributeType.DATETIME}, {("h", 0): 7, ("h", 1): 2})
    store.write_batch([], {}, {("h", 0): 4})
    assert store.offsets("h") == {0: 7, 1: 2}
    assert store.load_rows(["r1", "r2"]) == {"r1": row}
    (listed,) = store.list_runs()
    assert listed.search_attributes["At"].timestamp() == 5  # type: ignore[attr-defined]
    assert (listed.history_length, listed.pending_activity_count) == (3, 1)
    described = store.describe_run("r1")
    assert described is not None and described.pending_activities[0].attempt == 2
    assert store.count_runs(group_by_status=True).groups == {"Running": 1}


def test_a_batch_that_fails_before_commit_leaves_nothing(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "ix.sqlite"))
    row = RunRow("r1", "wf", "Order", "q", "Running", 1000, 1)

    def crash() -> None:
        raise RuntimeError("killed mid-batch")

    with pytest.raises(RuntimeError):
        store.write_batch([row], {}, {("h", 0): 1}, before_commit=crash)
    assert store.offsets("h") == {} and store.load_rows(["r1"]) == {}


def test_an_unreachable_postgresql_index_is_unavailable_without_showing_the_password() -> None:
    with pytest.raises(VisibilityUnavailableError, match="cannot reach the run index") as e:
        open_store("postgresql://ix:s3cret@127.0.0.1:1/ix", create=False)
    assert "s3cret" not in str(e.value) and "everflow visibility" in str(e.value)
