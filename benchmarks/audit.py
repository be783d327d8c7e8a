"""Audit and replay rates: `everflow audit` over a history topic of N events (default one
million), its wall time, events/s and peak memory (as a separate process), then the
Replayer's rate in runs/s over runs read back from the topic. Prints a table; never asserts.

    python -m benchmarks.audit [--events 1000000] [--replay-runs 10000]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time

from benchmarks.setup import ROOT, bench_config, process_env
from benchmarks.synthetic import EVENTS_PER_RUN, write_closed_history
from streams import Replayer, workflow
from streams.cli.history import histories_from_kafka
from streams.dev.broker import provision_broker


@workflow.defn(name="Archived")
class Archived:
    """The code of the synthetic runs: eight signals, then done."""

    def __init__(self) -> None:
        self.items = 0

    @workflow.run
    async def run(self, first: int) -> str:
        await workflow.wait_condition(lambda: self.items == EVENTS_PER_RUN - 2)
        return "done"

    @workflow.signal
    def add(self, item: int) -> None:
        self.items += 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--replay-runs", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=8)
    args = parser.parse_args()
    with provision_broker() as bootstrap:
        config = bench_config(bootstrap, args.partitions)
        began = time.perf_counter()
        written = write_closed_history(config, args.events // EVENTS_PER_RUN)
        print(f"wrote {written:,} history events in {time.perf_counter() - began:.1f}s")
        env = process_env(config)
        began = time.perf_counter()
        audit = subprocess.run(
            [sys.executable, "-m", "streams.cli", "audit"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - began
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(audit.stdout.splitlines()[0] if audit.stdout else audit.stderr[-500:])
        print(
            f"{'audit (whole process)':<28} {written / seconds:10,.0f} events/s  "
            f"({seconds:.1f}s for {written:,} events, exit {audit.returncode})"
        )
        print(f"{'audit peak memory':<28} {peak_mib:10.0f} MiB   (max RSS of the process)")
        histories = histories_from_kafka(config, "Archived", args.replay_runs)
        began = time.perf_counter()
        results = Replayer([Archived]).replay_all(histories)
        seconds = time.perf_counter() - began
        ok = sum(r.ok for r in results)
        print(
            f"{'replay':<28} {len(results) / seconds:10,.0f} runs/s    "
            f"({len(results):,} runs of {EVENTS_PER_RUN} events, {ok:,} ok)"
        )


if __name__ == "__main__":
    main()
