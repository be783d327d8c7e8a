"""The processor's timer heap: earliest first, a budget per call, held and dropped partitions."""

from __future__ import annotations

from processors.workflow_processor.timer_heap import TimerHeap
from streams.wire.records import Timer, TimerKind


def _timer(workflow_id: str, fire_at: int) -> Timer:
    return Timer(workflow_id, "run", TimerKind.USER_TIMER, 1, 0, fire_at)


def test_due_timers_come_out_earliest_first_and_later_ones_stay() -> None:
    heap = TimerHeap()
    heap.push(0, _timer("c", 300))
    heap.push(1, _timer("a", 100))
    heap.push(0, _timer("b", 200))
    assert heap.next_due() == 100
    due = heap.due(now=250, limit=10)
    assert [(p, t.workflow_id) for p, t in due] == [(1, "a"), (0, "b")]
    assert len(heap) == 1 and heap.next_due() == 300
    assert heap.due(now=299, limit=10) == []


def test_timers_due_at_the_same_time_fire_in_the_order_they_were_set() -> None:
    heap = TimerHeap()
    for name in ("first", "second", "third"):
        heap.push(0, _timer(name, 100))
    assert [t.workflow_id for _, t in heap.due(100, 10)] == ["first", "second", "third"]


def test_a_call_takes_at_most_its_limit_and_the_rest_waits() -> None:
    heap = TimerHeap()
    for i in range(5):
        heap.push(0, _timer(f"t{i}", i))
    assert [t.workflow_id for _, t in heap.due(100, 2)] == ["t0", "t1"]
    assert [t.workflow_id for _, t in heap.due(100, 10)] == ["t2", "t3", "t4"]
    assert len(heap) == 0 and heap.next_due() is None


def test_timers_of_held_partitions_stay_due_for_a_later_call() -> None:
    heap = TimerHeap()
    heap.push(0, _timer("held", 100))
    heap.push(1, _timer("free", 150))
    assert [(p, t.workflow_id) for p, t in heap.due(200, 10, held={0})] == [(1, "free")]
    assert len(heap) == 1 and heap.next_due() == 100
    assert [(p, t.workflow_id) for p, t in heap.due(200, 10)] == [(0, "held")]


def test_discard_drops_every_timer_of_the_given_partitions() -> None:
    heap = TimerHeap()
    heap.push(0, _timer("a", 300))
    heap.push(1, _timer("b", 100))
    heap.push(2, _timer("c", 200))
    heap.push(1, _timer("d", 400))
    heap.discard({1})
    assert len(heap) == 2 and heap.next_due() == 200
    assert [(p, t.workflow_id) for p, t in heap.due(1000, 10)] == [(2, "c"), (0, "a")]
