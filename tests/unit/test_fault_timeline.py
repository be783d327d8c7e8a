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


def test_repeated_events_are_summed_up_with_their_count_median_and_longest() -> None:
    from tests.faults.test_faults import recoveries_by_event

    timeline = Timeline(
        events=[
            (0.0, "inject", "SIGKILL worker w1"),
            (1.0, "heal", "worker w1 restarted"),
            (2.0, "inject", "SIGKILL worker w1"),
            (3.0, "heal", "worker w1 restarted"),
            (4.0, "inject", "SIGKILL worker w1"),
            (5.0, "inject", "cut"),
        ]
    )

    summary = recoveries_by_event(timeline, [4.0, None, 9.0, 1.0, 6.0, None])

    assert summary == {
        "inject 'SIGKILL worker w1'": "3x p50 6.0 s max 9.0 s",
        "heal 'worker w1 restarted'": "2x p50 1.0 s max 1.0 s (1 -)",
        "inject 'cut'": "-",
    }
