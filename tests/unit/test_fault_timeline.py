"""Recovery time as the fault table reports it: the longest stall of a busy partition."""

from tests.faults.harness import Timeline


def test_a_cut_scores_the_stall_after_its_heal_on_partitions_busy_before_it() -> None:
    timeline = Timeline(events=[(100.0, "inject", "cut"), (120.0, "heal", "cut healed")])
    progress = {
        0: [97.0, 99.0, 99.5, 123.0, 124.0],  # busy, stalled by the cut, back 3 s after heal
        1: [98.0, 99.9, 121.0],  # busy, back 1 s after the heal
        2: [50.0, 130.0],  # idle before the cut: its late record is not counted
    }

    assert timeline.recoveries(progress) == [23.0, 3.0]


def test_a_fault_that_stalls_nothing_scores_the_usual_gap() -> None:
    timeline = Timeline(events=[(10.0, "inject", "worker paused")])
    progress = {0: [9.0, 9.5, 10.05, 10.1], 1: [9.8, 10.02]}

    assert [round(r, 2) for r in timeline.recoveries(progress)] == [0.05]
