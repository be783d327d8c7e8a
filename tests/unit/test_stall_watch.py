"""The stall check's rules (`streams.kafka.stall.StallWatch`), on a clock the test moves:
a partition is stalled when its position stood still for the whole period while records
waited past it; standing still at its end, or while the broker cannot be asked, is not."""

from __future__ import annotations

import pytest

from streams.kafka.stall import Stall, StallWatch


class Partitions:
    """Positions and ends the test sets; counts the end queries (they cost a request)."""

    def __init__(self) -> None:
        self.positions: dict[int, int] = {}
        self.ends: dict[int, int | None] = {}
        self.asked: list[int] = []

    def position(self, p: int) -> int:
        return self.positions[p]

    def end(self, p: int) -> int | None:
        self.asked.append(p)
        return self.ends[p]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def watch(parts: Partitions, clock: Clock, seconds: float = 30.0) -> StallWatch:
    return StallWatch(parts.position, parts.end, seconds, interval=5.0, clock=clock)


def run(w: StallWatch, clock: Clock, owned: list[int], until: float) -> list[Stall]:
    """Checks every second up to `until` seconds from now; the stalls found on the way."""
    found = []
    end = clock.now + until
    while clock.now < end:
        clock.now += 1.0
        found.extend(w.check(owned))
    return found


def test_a_partition_standing_still_with_records_waiting_is_stalled_after_the_period() -> None:
    parts, clock = Partitions(), Clock()
    parts.positions, parts.ends = {0: 40, 1: 10}, {0: 90, 1: 10}
    w = watch(parts, clock)
    assert run(w, clock, [0, 1], 30) == []  # first seen, then not yet still for 30 s
    stalls = run(w, clock, [0, 1], 6)
    assert [(s.partition, s.position, s.end) for s in stalls] == [(0, 40, 90)]
    assert stalls[0].seconds >= 30
    assert str(stalls[0]).startswith("partition 0: position 40, records up to 90 waiting")


def test_a_partition_read_to_its_end_or_moving_is_never_stalled() -> None:
    parts, clock = Partitions(), Clock()
    parts.positions, parts.ends = {0: 7, 1: 0}, {0: 7, 1: 500}
    w = watch(parts, clock)
    for _ in range(20):  # partition 1 moves a little between checks, partition 0 is at its end
        parts.positions[1] += 1
        assert run(w, clock, [0, 1], 5) == []
    # the still partition was asked for its end (and found at it); the moving one never was
    assert parts.asked and set(parts.asked) == {0}


def test_the_end_is_asked_only_of_still_partitions_and_at_most_once_per_interval() -> None:
    parts, clock = Partitions(), Clock()
    parts.positions, parts.ends = {3: 5}, {3: 5}
    w = watch(parts, clock)
    run(w, clock, [3], 100)
    # still since the first check; asked once it was still 30 s, then every 30 s (nothing
    # to read restarts the count), never on every call
    assert 2 <= len(parts.asked) <= 4


def test_an_unanswered_end_query_concludes_nothing() -> None:
    parts, clock = Partitions(), Clock()
    parts.positions, parts.ends = {0: 3}, {0: None}
    w = watch(parts, clock)
    assert run(w, clock, [0], 120) == []
    parts.ends[0] = 9  # the broker answers again: the partition has been still all along
    assert {s.partition for s in run(w, clock, [0], 6)} == {0}


def test_no_position_yet_with_records_to_read_is_a_stall_and_a_new_owner_starts_over() -> None:
    parts, clock = Partitions(), Clock()
    parts.positions, parts.ends = {2: -1}, {2: 4}
    w = watch(parts, clock)
    stalls = run(w, clock, [2], 40)
    assert stalls and str(stalls[0]).startswith("partition 2: no position, records up to 4")
    # revoked and given back: the count starts again from the first sight
    assert run(w, clock, [], 5) == []
    assert run(w, clock, [2], 20) == []


def test_no_position_yet_stands_at_the_committed_offset() -> None:
    parts, clock = Partitions(), Clock()
    parts.positions, parts.ends = {0: -1, 1: -1}, {0: 12, 1: 12}
    committed = {0: 12, 1: 8}  # partition 0 was read to its end by the last owner
    w = StallWatch(parts.position, parts.end, 30.0, 5.0, clock, committed=committed.__getitem__)
    stalls = run(w, clock, [0, 1], 40)
    assert {(s.partition, s.position, s.end) for s in stalls} == {(1, 8, 12)}


def test_forget_restarts_the_count() -> None:
    parts, clock = Partitions(), Clock()
    parts.positions, parts.ends = {0: 1}, {0: 2}
    w = watch(parts, clock)
    run(w, clock, [0], 25)
    w.forget()  # rewound to the committed offsets: a fresh start
    assert run(w, clock, [0], 25) == []
    assert {s.partition for s in run(w, clock, [0], 15)} == {0}


def test_a_period_of_zero_or_less_is_refused() -> None:
    with pytest.raises(ValueError, match="seconds must be > 0"):
        StallWatch(lambda p: 0, lambda p: 0, 0)
