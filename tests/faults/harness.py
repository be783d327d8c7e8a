"""The fault lab: a three-broker KRaft cluster with each broker in a network namespace of its
own, worker processes in another, and the faults the tests inject into them.

`FaultLab` owns the pieces (see `network.Network` for the wiring); the fault scenarios at the
end are plain functions of a lab, a `Timeline` to note what they did when, and a `stop`
event, so one thread can run a scenario while the workload runs on another. Each scenario
heals what it broke before it returns: the workload's drain after it sees a whole cluster.

Broker 2 (index 2) keeps its data on a small tmpfs, so that the disk-full fault can fill it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from streams.dev.cluster import NODES, LocalCluster
from tests.faults.network import Network, NetworkError

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]

SMALL_DISK_NODE = 2
SMALL_DISK_BYTES = 384 * 1024 * 1024
CGROUP_CPU = Path("/sys/fs/cgroup/cpu")

# the cluster's settings for these tests: replicas fall out of the ISR quickly (a cut broker
# must stop holding up acks=all writes), and a single log dir that fails stops its broker
CLUSTER_PROPERTIES = {
    "replica.lag.time.max.ms": "6000",
    "log.segment.bytes": str(16 * 1024 * 1024),
    "log.index.size.max.bytes": str(1024 * 1024),
}


@dataclass
class Timeline:
    """What a scenario did, when (wall-clock seconds): `inject` breaks, `heal` mends."""

    events: list[tuple[float, str, str]] = field(default_factory=list)

    def note(self, kind: str, what: str) -> None:
        now = time.time()
        self.events.append((now, kind, what))
        clock = time.strftime("%H:%M:%S", time.gmtime(now))  # as the workers' logs say it
        log.warning("fault timeline %s UTC: %s %s", clock, kind, what)

    def recoveries(self, progress: dict[int, list[float]], busy: float = 5.0) -> list[float | None]:
        """For each event, how long the slowest busy partition made no progress after it:
        the longest wait from the event to a partition's next history record, over the
        partitions that wrote history in the `busy` seconds before the fault began (the
        latest inject at or before the event: a partition stalled by a cut is busy in this
        sense when the cut heals). `progress` holds each partition's record times (see
        `history_progress`). An event that stalls nothing scores the usual gap between
        records, milliseconds; one after which no busy partition wrote again, None."""
        out: list[float | None] = []
        began = None
        for t, kind, _ in self.events:
            if kind == "inject" or began is None:
                began = t
            waits = []
            for times in progress.values():
                if not any(began - busy <= x < began for x in times):
                    continue  # idle then: a late record says nothing about the fault
                after = [x for x in times if x >= t]
                if after:
                    waits.append(after[0] - t)
            out.append(max(waits) if waits else None)
        return out


def history_progress(bootstrap: str, topic: str) -> dict[int, list[float]]:
    """The times (wall clock, s) of every committed record of `topic`, by partition."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"progress-{os.getpid()}",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        pending = set(partitions)
        out: dict[int, list[float]] = {p: [] for p in partitions}
        deadline = time.monotonic() + 120
        while pending and time.monotonic() < deadline:
            for msg in consumer.consume(5000, 0.5):
                partition = msg.partition() or 0
                if msg.error() is not None:
                    pending.discard(partition)
                    continue
                out[partition].append(msg.timestamp()[1] / 1000)
        return out
    finally:
        consumer.close()


def wait_quiet(
    bootstrap: str, group: str, topic: str, still: float = 5.0, timeout: float = 90.0
) -> float:
    """Waits until neither `topic`'s end offsets nor `group`'s committed offsets on it have
    moved for `still` seconds: the workers have consumed what there is to consume (late
    activity results included) and may stop. Returns the seconds waited; at `timeout` it
    returns anyway, and the checker names what was left unconsumed."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    began = time.monotonic()
    try:
        partitions = sorted(admin.list_topics(topic, timeout=30).topics[topic].partitions)
        owned = [TopicPartition(topic, p) for p in partitions]
        last: tuple[list[int], list[int]] | None = None
        since = began
        while time.monotonic() - began < timeout:
            try:
                ends = [consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in owned]
                committed = [tp.offset for tp in consumer.committed(owned, timeout=10)]
            except Exception:  # a broker still coming back: ask again
                last = None
            else:
                if (ends, committed) != last:
                    last, since = (ends, committed), time.monotonic()
                elif time.monotonic() - since >= still:
                    break
            time.sleep(0.5)
        return time.monotonic() - began
    finally:
        consumer.close()


class FaultLab:
    """The network, the cluster and the workers; `start()` builds, `close()` removes all."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.network = Network()
        self.cluster: LocalCluster | None = None
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self._worker_logs: dict[str, Path] = {}
        self._small_disk = base_dir / f"node{SMALL_DISK_NODE}" / "data"
        self._cgroups: list[Path] = []

    # -- set-up ---------------------------------------------------------------------------

    def start(self) -> FaultLab:
        self.network.up()
        try:
            self._mount_small_disk()
            net = self.network
            self.cluster = LocalCluster(
                self.base_dir,
                hosts=net.broker_addresses(),
                command_prefixes=[net.exec_prefix(ns) for ns in net.brokers],
                properties=CLUSTER_PROPERTIES,
            )
            self.cluster.start(timeout=120)
        except BaseException:
            self.close()
            raise
        return self

    def _mount_small_disk(self) -> None:
        self._small_disk.mkdir(parents=True, exist_ok=True)
        size = f"size={SMALL_DISK_BYTES}"
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", size, "tmpfs", str(self._small_disk)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise NetworkError(f"cannot mount a tmpfs for broker data: {result.stderr.strip()}")

    def close(self) -> None:
        for name in list(self.workers):
            self.stop_worker(name)
        for group in self._cgroups:
            _remove_cgroup(group)
        if self.cluster is not None:
            self.cluster.close()
        subprocess.run(["umount", "-l", str(self._small_disk)], capture_output=True, check=False)
        self.network.down()

    @property
    def bootstrap(self) -> str:
        assert self.cluster is not None, "start() the lab first"
        return self.cluster.bootstrap

    # -- workers --------------------------------------------------------------------------

    def start_worker(self, name: str, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
        """`everflow worker <args>` in the workers' namespace; its output to `<name>.log`."""
        path = self.base_dir / f"worker-{name}.log"
        with open(path, "ab") as out:
            proc = subprocess.Popen(
                [
                    *self.network.exec_prefix(self.network.workers),
                    sys.executable,
                    "-m",
                    "streams.cli",
                    "worker",
                    *args,
                    "--instance-id",
                    name,
                ],
                cwd=ROOT,
                env={**env, "PYTHONPATH": str(ROOT)},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.workers[name] = proc
        self._worker_logs[name] = path
        return proc

    def wait_ready(self, name: str, timeout: float = 90) -> None:
        """Waits until worker `name` says it runs; raises with its log if it exits first."""
        deadline = time.monotonic() + timeout
        while " running task queue " not in self.worker_log(name):
            if self.workers[name].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker {name} did not start:\n{self.worker_log(name)[-4000:]}")
            time.sleep(0.2)

    def stop_worker(self, name: str) -> None:
        proc = self.workers.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGCONT)  # a paused one must be able to stop
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def dump_stacks(self) -> None:
        """Every live worker prints its threads' stacks to its log (`everflow worker` and
        SIGUSR1), for a round whose runs did not all close."""
        for proc in self.workers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGUSR1)
        time.sleep(1)

    def kill_worker(self, name: str) -> None:
        proc = self.workers[name]
        proc.kill()
        proc.wait(10)

    def worker_log(self, name: str) -> str:
        return self._worker_logs[name].read_text(errors="replace")

    def worker_logs(self) -> str:
        return "\n".join(
            f"== {name} ==\n{path.read_text(errors='replace')[-4000:]}"
            for name, path in self._worker_logs.items()
        )

    # -- the cluster ----------------------------------------------------------------------

    def leader_of(self, topic: str, partition: int = 0) -> int:
        """The index (0..2) of the node leading `topic`'s partition."""
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        meta = admin.list_topics(topic, timeout=10).topics[topic].partitions[partition]
        if meta.leader < 1:
            raise RuntimeError(f"{topic}[{partition}] has no leader right now")
        return int(meta.leader) - 1

    def wait_healthy(self, timeout: float = 120) -> None:
        """Starts any node that is down, then waits until all three are in the metadata and
        the transaction and offsets topics are fully replicated: a round starts on a whole
        cluster. Raises RuntimeError with `health()` if that does not happen in time."""
        assert self.cluster is not None
        for i in range(NODES):
            if not self.node_running(i):
                log.warning("node %d is down before the round: starting it", i)
                self.cluster.start_node(i, timeout=timeout)
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                meta = admin.list_topics(timeout=5)
            except Exception:  # a node still waking up: ask again
                time.sleep(1)
                continue
            internal = [t for name, t in meta.topics.items() if name.startswith("__")]
            whole = all(
                p.leader >= 0 and len(p.isrs) == NODES
                for t in internal
                for p in t.partitions.values()
            )
            if len(meta.brokers) == NODES and whole:
                return
            time.sleep(1)
        raise RuntimeError(f"the cluster did not become whole in {timeout:g} s\n{self.health()}")

    def health(self) -> str:
        """Each node's process, the brokers in the metadata, and each node's last log lines."""
        assert self.cluster is not None
        lines = []
        try:
            brokers = AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=5)
            lines.append(f"brokers in the metadata: {sorted(brokers.brokers)}")
        except Exception as e:
            lines.append(f"metadata: {e}")
        for i in range(NODES):
            lines.append(f"-- node {i}: pid {self.cluster.pid(i)}")
            tail = self.cluster.log_path(i).read_text(errors="replace").splitlines()[-12:]
            lines.extend(line[:300] for line in tail)
        return "\n".join(lines)

    def node_running(self, i: int) -> bool:
        assert self.cluster is not None
        return self.cluster.pid(i) is not None

    def fill_disk(self) -> Path:
        """Fills the small disk of node SMALL_DISK_NODE up to the last byte."""
        filler = self._small_disk / "filler"
        with open(filler, "wb") as f:
            chunk = b"\0" * (1 << 20)
            with contextlib.suppress(OSError):  # ENOSPC is the point
                while True:
                    f.write(chunk)
                    f.flush()
        return filler

    # -- processes: pause, starve ---------------------------------------------------------

    @contextlib.contextmanager
    def cpu_quota(self, pid: int, percent: int) -> Iterator[None]:
        """Holds process `pid` (all its threads) to `percent` of one CPU (cgroup v1 cpu)."""
        group = CGROUP_CPU / f"everflow-{os.getpid()}-{pid}"
        group.mkdir(exist_ok=True)
        self._cgroups.append(group)
        period = int((group / "cpu.cfs_period_us").read_text())
        (group / "cpu.cfs_quota_us").write_text(str(period * percent // 100))
        (group / "cgroup.procs").write_text(str(pid))
        try:
            yield
        finally:
            with contextlib.suppress(OSError):  # the process may be gone
                (CGROUP_CPU / "cgroup.procs").write_text(str(pid))
            _remove_cgroup(group)
            self._cgroups.remove(group)

    def __enter__(self) -> FaultLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _remove_cgroup(group: Path) -> None:
    if not group.exists():
        return
    for pid in (group / "cgroup.procs").read_text().split():
        with contextlib.suppress(OSError):
            (CGROUP_CPU / "cgroup.procs").write_text(pid)
    with contextlib.suppress(OSError):
        group.rmdir()


# -- scenarios -------------------------------------------------------------------------------

Scenario = Callable[["FaultLab", Timeline, threading.Event, "ScenarioContext"], None]


@dataclass
class ScenarioContext:
    """What a scenario needs beyond the lab: the topic to aim at and how to restart workers."""

    commands_topic: str
    restart_worker: Callable[[str], None]
    worker_names: list[str]
    hold: float = 20.0  # how long a fault lasts (s)
    every: float = 8.0  # the pause between repeated faults (s)


def _wait(stop: threading.Event, seconds: float) -> bool:
    """Sleeps unless the workload is done; whether to go on."""
    return not stop.wait(seconds)


def leader_kill(
    lab: FaultLab, timeline: Timeline, stop: threading.Event, ctx: ScenarioContext
) -> None:
    """SIGKILL the leader of the commands topic's partition 0, restart it after a while."""
    assert lab.cluster is not None
    _wait(stop, 3)
    victim = lab.leader_of(ctx.commands_topic)
    timeline.note("inject", f"SIGKILL node {victim} (leader of {ctx.commands_topic}[0])")
    lab.cluster.kill_node(victim)
    _wait(stop, ctx.hold / 2)
    lab.cluster.start_node(victim, timeout=90)
    timeline.note("heal", f"node {victim} restarted")


def bounce_loop(
    lab: FaultLab, timeline: Timeline, stop: threading.Event, ctx: ScenarioContext
) -> None:
    """SIGKILL and restart each broker in turn, until the workload ends (three at most)."""
    assert lab.cluster is not None
    _wait(stop, 3)
    for victim in range(NODES):
        timeline.note("inject", f"SIGKILL node {victim}")
        lab.cluster.kill_node(victim)
        time.sleep(2)
        lab.cluster.start_node(victim, timeout=90)
        timeline.note("heal", f"node {victim} restarted")
        if not _wait(stop, ctx.every):
            return


def broker_cut(
    lab: FaultLab, timeline: Timeline, stop: threading.Event, ctx: ScenarioContext
) -> None:
    """Cut the leader of the commands topic's partition 0 off the network (iptables)."""
    _wait(stop, 3)
    victim = lab.leader_of(ctx.commands_topic)
    ns = lab.network.brokers[victim]
    lab.network.cut(ns)
    timeline.note("inject", f"node {victim} cut off by iptables")
    time.sleep(ctx.hold)
    lab.network.heal(ns)
    timeline.note("heal", f"node {victim} reachable again")


def workers_cut(
    lab: FaultLab, timeline: Timeline, stop: threading.Event, ctx: ScenarioContext
) -> None:
    """Cut every worker off the cluster for `hold` seconds (20 s)."""
    _wait(stop, 3)
    lab.network.cut(lab.network.workers)
    timeline.note("inject", f"workers cut off from the cluster for {ctx.hold:g} s")
    time.sleep(ctx.hold)
    lab.network.heal(lab.network.workers)
    timeline.note("heal", "workers reachable again")


def worker_pause(
    lab: FaultLab, timeline: Timeline, stop: threading.Event, ctx: ScenarioContext
) -> None:
    """SIGSTOP a worker past its group session timeout (10 s), then SIGCONT it."""
    _wait(stop, 3)
    name = ctx.worker_names[0]
    proc = lab.workers[name]
    proc.send_signal(signal.SIGSTOP)
    timeline.note("inject", f"SIGSTOP worker {name} for {ctx.hold:g} s")
    time.sleep(ctx.hold)
    proc.send_signal(signal.SIGCONT)
    timeline.note("heal", f"SIGCONT worker {name}")


def cpu_starve(
    lab: FaultLab, timeline: Timeline, stop: threading.Event, ctx: ScenarioContext
) -> None:
    """Hold a worker to 5 % of one CPU (cgroup quota) for `hold` seconds."""
    _wait(stop, 3)
    name = ctx.worker_names[0]
    with lab.cpu_quota(lab.workers[name].pid, 5):
        timeline.note("inject", f"worker {name} held to 5 % of a CPU for {ctx.hold:g} s")
        time.sleep(ctx.hold)
    timeline.note("heal", f"worker {name} has its CPU back")


def disk_full(
    lab: FaultLab, timeline: Timeline, stop: threading.Event, ctx: ScenarioContext
) -> None:
    """Fill node 2's log dir to the last byte; the broker stops; free it and restart."""
    assert lab.cluster is not None
    _wait(stop, 3)
    filler = lab.fill_disk()
    timeline.note("inject", f"node {SMALL_DISK_NODE}'s log dir full")
    deadline = time.monotonic() + ctx.hold
    while time.monotonic() < deadline and lab.node_running(SMALL_DISK_NODE):
        time.sleep(0.5)
    filler.unlink()
    lab.cluster.stop_node(SMALL_DISK_NODE, grace=10)
    lab.cluster.start_node(SMALL_DISK_NODE, timeout=90)
    timeline.note("heal", f"node {SMALL_DISK_NODE}'s disk freed, node restarted")


def worker_kill_loop(
    lab: FaultLab, timeline: Timeline, stop: threading.Event, ctx: ScenarioContext
) -> None:
    """SIGKILL a worker and start it again, in turn, until the workload ends (six at most)."""
    for n in range(6):
        if not _wait(stop, ctx.every / 2):
            return
        name = ctx.worker_names[n % len(ctx.worker_names)]
        lab.kill_worker(name)
        timeline.note("inject", f"SIGKILL worker {name}")
        ctx.restart_worker(name)
        timeline.note("heal", f"worker {name} restarted")


def mixed(lab: FaultLab, timeline: Timeline, stop: threading.Event, ctx: ScenarioContext) -> None:
    """A leader kill, a worker kill and a workers' cut, one after the other."""
    short = ScenarioContext(
        ctx.commands_topic, ctx.restart_worker, ctx.worker_names, hold=ctx.hold / 2, every=4
    )
    leader_kill(lab, timeline, stop, short)
    name = ctx.worker_names[-1]
    lab.kill_worker(name)
    timeline.note("inject", f"SIGKILL worker {name}")
    ctx.restart_worker(name)
    timeline.note("heal", f"worker {name} restarted")
    workers_cut(lab, timeline, stop, short)


SCENARIOS: dict[str, Scenario] = {
    "leader-kill": leader_kill,
    "broker-bounce-loop": bounce_loop,
    "broker-cut": broker_cut,
    "workers-cut-20s": workers_cut,
    "worker-sigstop": worker_pause,
    "worker-cpu-starved": cpu_starve,
    "broker-disk-full": disk_full,
    "worker-kill-loop": worker_kill_loop,
    # the same loop with the workers as static group members (EVERFLOW_STATIC_MEMBERSHIP):
    # a restarted worker takes its partitions back with no rebalance
    "worker-kill-loop-static": worker_kill_loop,
    "mixed": mixed,
}
# the workers' settings a scenario needs beyond the lab's (see `tests.faults.test_faults`)
WORKER_ENV: dict[str, dict[str, str]] = {
    "worker-kill-loop-static": {"EVERFLOW_STATIC_MEMBERSHIP": "on"},
}
