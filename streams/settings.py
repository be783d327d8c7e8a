"""A worker's settings: built from keyword arguments or `EVERFLOW_*` environment variables.

The one place the engine reads its environment: `WorkerSettings.from_env()` reads every
variable a worker and its components follow and validates them, and the composition root
(`streams.worker`) hands the pieces down; nothing under `processors/` reads the environment.
Connection settings are `streams.kafka.config.KafkaConfig`.

Every setting is checked when it is built; a bad one raises ConfigError naming the setting,
its variable, and what it accepts.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from streams.errors import ConfigError
from streams.kafka.stall import DEFAULT_STALL_SECONDS
from streams.payload import DEFAULT_MAX_PAYLOAD_BYTES

T = TypeVar("T", int, float)

DEFAULT_MAX_HISTORY_EVENTS = 50_000
DEFAULT_MAX_HISTORY_BYTES = 50 * 1024 * 1024
DEFAULT_DEADLOCK_TIMEOUT = 2.0  # seconds an activation may run without yielding (Temporal's)
DEFAULT_MAX_SIGNALS = 10_000  # signals one run may receive (Temporal's per-execution limit)
DEFAULT_MAX_PENDING = 2_000  # activities, and children, one run may have open (Temporal's)
# the cyclic GC's thresholds in a worker: a young collection per 50,000 net allocations
# (not 700) and a full one per 100 middle ones (not 10), so the thousands of cached runs are
# walked far less often (issue 14: full collections paused runs for 40-70 ms)
DEFAULT_GC_THRESHOLD = (50_000, 20, 100)


@dataclass(frozen=True, slots=True)
class RunLimits:
    """What the engine holds every run's code and history to."""

    determinism_guard: bool = True  # stop time.time(), random, open... in workflow code
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES  # of one argument list or result
    # history length at which info().is_continue_as_new_suggested() turns true
    suggest_continue_as_new_after: int = 10_000
    # a run that reaches either limit fails (warned at 80%): continue_as_new before it
    max_history_events: int = DEFAULT_MAX_HISTORY_EVENTS
    max_history_bytes: int = DEFAULT_MAX_HISTORY_BYTES
    # seconds one activation of the code may run without yielding before the run is blocked
    # with DeadlockError (0: never; a debugger's breakpoint needs that)
    deadlock_timeout: float = DEFAULT_DEADLOCK_TIMEOUT
    # signals one run may receive; the next is refused with SignalLimitError
    max_signals: int = DEFAULT_MAX_SIGNALS
    # activities (and, apart, child workflows) one run may have open at once; the code's
    # next one raises PendingLimitError
    max_pending: int = DEFAULT_MAX_PENDING

    def __post_init__(self) -> None:
        _at_least(1024, "max_payload_bytes", "EVERFLOW_MAX_PAYLOAD_BYTES", self.max_payload_bytes)
        _at_least(0.0, "deadlock_timeout", "EVERFLOW_DEADLOCK_TIMEOUT", self.deadlock_timeout)
        _at_least(1, "max_signals", "EVERFLOW_MAX_SIGNALS", self.max_signals)
        _at_least(1, "max_pending", "EVERFLOW_MAX_PENDING", self.max_pending)
        if not self.suggest_continue_as_new_after >= 1:
            raise ConfigError(
                "suggest_continue_as_new_after must be >= 1, "
                f"got {self.suggest_continue_as_new_after}"
            )
        _at_least(1, "max_history_events", "EVERFLOW_MAX_HISTORY_EVENTS", self.max_history_events)
        _at_least(1, "max_history_bytes", "EVERFLOW_MAX_HISTORY_BYTES", self.max_history_bytes)


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """Bounds of a workflow processor's memory and of the history a restore replays."""

    max_cached_runs: int = 10_000  # loaded runs per processor, split over its partitions
    checkpoint_records: int = 5_000  # history records per partition between checkpoints
    checkpoint_interval: float = 2.0  # seconds between checkpoints of a busy partition
    # an open run is snapshotted once it has this many events not in a snapshot, or once
    # the oldest of them is `defer_seconds` old (closed runs at once): a run's head snapshot
    # is rewritten per `defer_events` events at most, and a restore reads at most the
    # history of the last `defer_seconds` (plus one interval)
    defer_events: int = 32
    defer_seconds: float = 30.0
    closed_retention_ms: int = 24 * 3600 * 1000  # closed runs answer this long

    def __post_init__(self) -> None:
        _at_least(1, "max_cached_runs", "EVERFLOW_RUN_CACHE_SIZE", self.max_cached_runs)
        _at_least(1, "checkpoint_records", "EVERFLOW_CHECKPOINT_RECORDS", self.checkpoint_records)
        _at_least(
            0.0, "checkpoint_interval", "EVERFLOW_CHECKPOINT_INTERVAL", self.checkpoint_interval
        )
        _at_least(1, "defer_events", "EVERFLOW_SNAPSHOT_DEFER_EVENTS", self.defer_events)
        _at_least(0.0, "defer_seconds", "EVERFLOW_SNAPSHOT_DEFER_SECONDS", self.defer_seconds)
        _at_least(
            0, "closed_retention_ms", "EVERFLOW_CLOSED_RUN_RETENTION", self.closed_retention_ms
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CacheSettings:
        """Defaults, overridden by EVERFLOW_RUN_CACHE_SIZE, EVERFLOW_CHECKPOINT_RECORDS,
        EVERFLOW_CHECKPOINT_INTERVAL (seconds), EVERFLOW_SNAPSHOT_DEFER_EVENTS,
        EVERFLOW_SNAPSHOT_DEFER_SECONDS and EVERFLOW_CLOSED_RUN_RETENTION (seconds)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {
            "max_cached_runs": _whole(env, "EVERFLOW_RUN_CACHE_SIZE"),
            "checkpoint_records": _whole(env, "EVERFLOW_CHECKPOINT_RECORDS"),
            "checkpoint_interval": _seconds(env, "EVERFLOW_CHECKPOINT_INTERVAL"),
            "defer_events": _whole(env, "EVERFLOW_SNAPSHOT_DEFER_EVENTS"),
            "defer_seconds": _seconds(env, "EVERFLOW_SNAPSHOT_DEFER_SECONDS"),
        }
        retention = _seconds(env, "EVERFLOW_CLOSED_RUN_RETENTION")
        if retention is not None:
            values["closed_retention_ms"] = int(retention * 1000)
        return cls(**{k: v for k, v in values.items() if v is not None})


@dataclass(frozen=True, slots=True)
class FaultSettings:
    """Testing hooks of the workflow processor: after the N-th transaction produced its
    records and before it commits, SIGKILL (`kill_before_commit`) or SIGSTOP
    (`stop_before_commit`) the process; right after the N-th transaction committed, SIGSTOP
    it (`stop_after_commit`: a pause between transactions). The N-th transaction to end (every
    one counts, failed ones too) reports a commit timeout, librdkafka's `_TIMED_OUT`, so its
    outcome is unknown to the processor: `unknown_after_commit` after it really committed,
    `unknown_before_commit` without committing it. Right after the N-th transaction
    committed, `stall_after_commit` makes the processor's consumer stop fetching one of its
    commands partitions without an error, as a stuck fetcher does; `stall_tasks_after` makes
    the activity runner's consumer stop fetching the partition of the N-th task it takes;
    `hang_send_offsets` makes the N-th transaction's send_offsets_to_transaction never
    return, as librdkafka's can when the group coordinator goes away. 0 is off."""

    kill_before_commit: int = 0
    stop_before_commit: int = 0
    stop_after_commit: int = 0
    unknown_after_commit: int = 0
    unknown_before_commit: int = 0
    stall_after_commit: int = 0
    stall_tasks_after: int = 0
    hang_send_offsets: int = 0

    def __post_init__(self) -> None:
        _at_least(
            0, "kill_before_commit", "EVERFLOW_FAULT_KILL_BEFORE_COMMIT", self.kill_before_commit
        )
        _at_least(
            0, "stop_before_commit", "EVERFLOW_FAULT_STOP_BEFORE_COMMIT", self.stop_before_commit
        )
        _at_least(
            0, "stop_after_commit", "EVERFLOW_FAULT_STOP_AFTER_COMMIT", self.stop_after_commit
        )
        _at_least(
            0,
            "unknown_after_commit",
            "EVERFLOW_FAULT_UNKNOWN_AFTER_COMMIT",
            self.unknown_after_commit,
        )
        _at_least(
            0,
            "unknown_before_commit",
            "EVERFLOW_FAULT_UNKNOWN_BEFORE_COMMIT",
            self.unknown_before_commit,
        )
        _at_least(
            0, "stall_after_commit", "EVERFLOW_FAULT_STALL_AFTER_COMMIT", self.stall_after_commit
        )
        _at_least(
            0, "stall_tasks_after", "EVERFLOW_FAULT_STALL_TASKS_AFTER", self.stall_tasks_after
        )
        _at_least(
            0, "hang_send_offsets", "EVERFLOW_FAULT_HANG_SEND_OFFSETS", self.hang_send_offsets
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> FaultSettings:
        """Off, unless EVERFLOW_FAULT_KILL_BEFORE_COMMIT, _STOP_BEFORE_COMMIT,
        _STOP_AFTER_COMMIT, _UNKNOWN_AFTER_COMMIT, _UNKNOWN_BEFORE_COMMIT or
        _STALL_AFTER_COMMIT, _STALL_TASKS_AFTER or _HANG_SEND_OFFSETS is set."""
        env = os.environ if env is None else env
        values = {
            "kill_before_commit": _whole(env, "EVERFLOW_FAULT_KILL_BEFORE_COMMIT"),
            "stop_before_commit": _whole(env, "EVERFLOW_FAULT_STOP_BEFORE_COMMIT"),
            "stop_after_commit": _whole(env, "EVERFLOW_FAULT_STOP_AFTER_COMMIT"),
            "unknown_after_commit": _whole(env, "EVERFLOW_FAULT_UNKNOWN_AFTER_COMMIT"),
            "unknown_before_commit": _whole(env, "EVERFLOW_FAULT_UNKNOWN_BEFORE_COMMIT"),
            "stall_after_commit": _whole(env, "EVERFLOW_FAULT_STALL_AFTER_COMMIT"),
            "stall_tasks_after": _whole(env, "EVERFLOW_FAULT_STALL_TASKS_AFTER"),
            "hang_send_offsets": _whole(env, "EVERFLOW_FAULT_HANG_SEND_OFFSETS"),
        }
        return cls(**{k: v for k, v in values.items() if v is not None})


def data_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where Everflow keeps local files: EVERFLOW_DATA_DIR, else ~/.cache/everflow."""
    env = os.environ if env is None else env
    raw = env.get("EVERFLOW_DATA_DIR")
    return Path(raw).expanduser() if raw else Path.home() / ".cache" / "everflow"


def inflight_path(
    topic_prefix: str, instance_id: str, env: Mapping[str, str] | None = None
) -> Path:
    """Where a workflow processor notes what it is processing, for its crash-loop breaker:
    `<data dir>/processors/<topic prefix without its trailing dot>-<instance ID>.inflight`."""
    name = topic_prefix.rstrip(".") or "everflow"
    return data_dir(env) / "processors" / f"{name}-{instance_id}.inflight"


def visibility_url(
    topic_prefix: str, url: str | None = None, env: Mapping[str, str] | None = None
) -> str:
    """The run index's store: `url` if given, else EVERFLOW_VISIBILITY, else the SQLite file
    `<data dir>/visibility/<topic prefix without its trailing dot>.sqlite`."""
    env = os.environ if env is None else env
    chosen = url or env.get("EVERFLOW_VISIBILITY")
    if chosen:
        return chosen
    name = topic_prefix.rstrip(".") or "everflow"
    return f"sqlite://{(data_dir(env) / 'visibility' / name).resolve()}.sqlite"


@dataclass(frozen=True, slots=True)
class VisibilitySettings:
    """The run index's projector: whether a worker runs one, its store, its batches.

    `url` None means `visibility_url()` for the worker's topic prefix. A batch is up to
    `batch_records` history records or `batch_seconds` of waiting, written in one SQL
    transaction. `kill_before_commit` (a test hook, 0 = off) SIGKILLs the process after the
    N-th batch's rows are written and before its transaction commits.
    """

    enabled: bool = True
    url: str | None = None
    batch_records: int = 500
    batch_seconds: float = 0.2
    kill_before_commit: int = 0

    def __post_init__(self) -> None:
        _at_least(1, "batch_records", "EVERFLOW_VISIBILITY_BATCH_RECORDS", self.batch_records)
        _at_least(0.0, "batch_seconds", "EVERFLOW_VISIBILITY_BATCH_SECONDS", self.batch_seconds)
        _at_least(
            0,
            "kill_before_commit",
            "EVERFLOW_FAULT_KILL_INDEX_BEFORE_COMMIT",
            self.kill_before_commit,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> VisibilitySettings:
        """Defaults, overridden by EVERFLOW_VISIBILITY_PROJECTOR (on/off: whether a worker
        runs the projector), EVERFLOW_VISIBILITY (the store URL),
        EVERFLOW_VISIBILITY_BATCH_RECORDS, EVERFLOW_VISIBILITY_BATCH_SECONDS and
        EVERFLOW_FAULT_KILL_INDEX_BEFORE_COMMIT; then keyword overrides (None leaves one)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {
            "enabled": _switch(env, "EVERFLOW_VISIBILITY_PROJECTOR"),
            "url": env.get("EVERFLOW_VISIBILITY") or None,
            "batch_records": _whole(env, "EVERFLOW_VISIBILITY_BATCH_RECORDS"),
            "batch_seconds": _seconds(env, "EVERFLOW_VISIBILITY_BATCH_SECONDS"),
            "kill_before_commit": _whole(env, "EVERFLOW_FAULT_KILL_INDEX_BEFORE_COMMIT"),
            **overrides,
        }
        return cls(**{k: v for k, v in values.items() if v is not None})


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """Settings of one worker process and its components.

    `instance_id` must be stable across restarts of the same worker and unique among
    running workers (it names the Kafka transactional ID). A run fails when its history
    reaches `max_history_events` or `max_history_bytes`; a run whose code runs
    `deadlock_timeout` seconds without yielding is blocked with DeadlockError (0: never); a
    run refuses signals past `max_signals`; its code may have `max_pending` activities (and
    as many children) open. `profile_dir`, when set, gets a
    cProfile dump of each component's thread (and turns the determinism guard off).
    `switch_interval` is the interpreter's thread switch interval the `everflow worker`
    command sets (seconds). With `gc_tuning` the `everflow worker` command freezes the
    objects of its start-up (modules, registry) out of the cyclic GC's reach and sets the
    GC's thresholds to `gc_threshold` (gen0, gen1, gen2). `kafka_statistics`, when set, is a
    file the worker keeps rewriting with the requests its Kafka clients sent so far (from
    librdkafka statistics; a benchmark aid, off by default). `metrics_port`, when set,
    serves Prometheus metrics on http://`metrics_host`:`metrics_port`/metrics (0 picks a
    free port). A commands partition with records waiting that the workflow processor has
    not read for `stall_seconds` gets it a new consumer (0: never; see
    `processors.workflow_processor.reader`).
    """

    instance_id: str = field(default_factory=socket.gethostname)
    max_history_events: int = DEFAULT_MAX_HISTORY_EVENTS
    max_history_bytes: int = DEFAULT_MAX_HISTORY_BYTES
    deadlock_timeout: float = DEFAULT_DEADLOCK_TIMEOUT
    max_signals: int = DEFAULT_MAX_SIGNALS
    max_pending: int = DEFAULT_MAX_PENDING
    profile_dir: str | None = None
    switch_interval: float = 0.0005
    gc_tuning: bool = True
    gc_threshold: tuple[int, int, int] = DEFAULT_GC_THRESHOLD
    kafka_statistics: str | None = None
    cache: CacheSettings = field(default_factory=CacheSettings)
    faults: FaultSettings = field(default_factory=FaultSettings)
    visibility: VisibilitySettings = field(default_factory=VisibilitySettings)
    tracing: bool = False  # OpenTelemetry spans (the otel extra; see streams.tracing)
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    # how long a processor batch waits for quick local activities' outcomes (seconds)
    local_activity_wait: float = 0.005
    # a worker running both halves hands the activity tasks it schedules on its own queue
    # straight to its runner once their transaction commits (see `processors.workflow_
    # processor.eager`)
    eager_activities: bool = True
    stall_seconds: float = DEFAULT_STALL_SECONDS
    # the processor and the runner join their groups as static members named by
    # `instance_id`: a worker restarted within the group session gets its partitions back
    # with no rebalance, and the other workers never stop (see `streams.worker.Worker`)
    static_membership: bool = False

    def __post_init__(self) -> None:
        if not self.local_activity_wait >= 0:
            raise ConfigError(
                "local_activity_wait must be >= 0 seconds (EVERFLOW_LOCAL_ACTIVITY_WAIT), "
                f"got {self.local_activity_wait}"
            )
        if not self.instance_id:
            raise ConfigError(
                "instance_id is empty: set EVERFLOW_INSTANCE_ID or pass instance_id= "
                "(a stable name, unique among running workers)"
            )
        _at_least(1, "max_history_events", "EVERFLOW_MAX_HISTORY_EVENTS", self.max_history_events)
        _at_least(1, "max_history_bytes", "EVERFLOW_MAX_HISTORY_BYTES", self.max_history_bytes)
        _at_least(0.0, "deadlock_timeout", "EVERFLOW_DEADLOCK_TIMEOUT", self.deadlock_timeout)
        _at_least(1, "max_signals", "EVERFLOW_MAX_SIGNALS", self.max_signals)
        _at_least(1, "max_pending", "EVERFLOW_MAX_PENDING", self.max_pending)
        _at_least(0.0, "stall_seconds", "EVERFLOW_STALL_SECONDS", self.stall_seconds)
        if not self.switch_interval > 0:
            raise ConfigError(
                "switch_interval must be > 0 seconds (EVERFLOW_SWITCH_INTERVAL), "
                f"got {self.switch_interval}"
            )
        if len(self.gc_threshold) != 3 or not all(
            isinstance(n, int) and n >= 1 for n in self.gc_threshold
        ):
            raise ConfigError(
                "gc_threshold must be three whole numbers >= 1, gen0,gen1,gen2 "
                f"(EVERFLOW_GC_THRESHOLD), got {self.gc_threshold}"
            )
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ConfigError(
                "metrics_port must be a TCP port, 0 to 65535 (EVERFLOW_METRICS_PORT; 0 picks a "
                f"free one), got {self.metrics_port}"
            )
        if not self.metrics_host:
            raise ConfigError("metrics_host is empty (EVERFLOW_METRICS_HOST): name an address")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> WorkerSettings:
        """Settings from EVERFLOW_INSTANCE_ID (default: the host name),
        EVERFLOW_MAX_HISTORY_EVENTS / _BYTES, EVERFLOW_DEADLOCK_TIMEOUT (seconds an activation
        may run without yielding; 0 turns the deadlock detector off), EVERFLOW_MAX_SIGNALS
        (per run), EVERFLOW_MAX_PENDING (open activities, and children, per run),
        EVERFLOW_PROFILE (a directory),
        EVERFLOW_SWITCH_INTERVAL, EVERFLOW_GC (on/off: gc_tuning), EVERFLOW_GC_THRESHOLD
        (gen0,gen1,gen2), EVERFLOW_REQUEST_STATS (a file), EVERFLOW_TRACING,
        EVERFLOW_METRICS_PORT / _HOST, EVERFLOW_LOCAL_ACTIVITY_WAIT (seconds a batch waits for
        quick local activities), EVERFLOW_EAGER_ACTIVITIES (on/off: eager_activities),
        EVERFLOW_STALL_SECONDS (a commands partition not read this long while records wait
        gets a new consumer; 0: never), EVERFLOW_STATIC_MEMBERSHIP (on/off), the
        cache's and the fault hooks' variables; then keyword overrides (None leaves a setting
        as it is)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {
            "instance_id": env.get("EVERFLOW_INSTANCE_ID") or None,
            "max_history_events": _whole(env, "EVERFLOW_MAX_HISTORY_EVENTS"),
            "max_history_bytes": _whole(env, "EVERFLOW_MAX_HISTORY_BYTES"),
            "deadlock_timeout": _seconds(env, "EVERFLOW_DEADLOCK_TIMEOUT"),
            "max_signals": _whole(env, "EVERFLOW_MAX_SIGNALS"),
            "max_pending": _whole(env, "EVERFLOW_MAX_PENDING"),
            "profile_dir": env.get("EVERFLOW_PROFILE") or None,
            "switch_interval": _seconds(env, "EVERFLOW_SWITCH_INTERVAL"),
            "gc_tuning": _switch(env, "EVERFLOW_GC"),
            "gc_threshold": _thresholds(env, "EVERFLOW_GC_THRESHOLD"),
            "kafka_statistics": env.get("EVERFLOW_REQUEST_STATS") or None,
            "cache": CacheSettings.from_env(env),
            "faults": FaultSettings.from_env(env),
            "visibility": VisibilitySettings.from_env(env),
            "tracing": tracing_from_env(env),
            "metrics_port": _whole(env, "EVERFLOW_METRICS_PORT"),
            "metrics_host": env.get("EVERFLOW_METRICS_HOST") or None,
            "local_activity_wait": _seconds(env, "EVERFLOW_LOCAL_ACTIVITY_WAIT"),
            "eager_activities": _switch(env, "EVERFLOW_EAGER_ACTIVITIES"),
            "static_membership": _switch(env, "EVERFLOW_STATIC_MEMBERSHIP"),
            "stall_seconds": _seconds(env, "EVERFLOW_STALL_SECONDS"),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**{k: v for k, v in values.items() if v is not None})

    def with_overrides(self, **overrides: Any) -> WorkerSettings:
        """These settings with the given ones replaced (None leaves a setting as it is)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


UI_PORT = 8233
"""The Web UI's default port (the one Temporal's UI uses, so habits carry over)."""

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


@dataclass(frozen=True, slots=True)
class UiSettings:
    """The Web UI server (`everflow ui`): where it listens and who may use it.

    It listens on loopback by default. Anywhere else it needs `token` (sent as
    `Authorization: Bearer <token>`, or typed once into the sign-in page, which keeps it
    in a cookie) or `basic_auth` ("user:password", HTTP basic authentication); without
    one of them the server refuses to start. `visibility` is the run index's store URL
    (None: the default for the topic prefix).
    """

    host: str = "127.0.0.1"
    port: int = UI_PORT
    token: str | None = None
    basic_auth: str | None = None
    visibility: str | None = None

    def __post_init__(self) -> None:
        _at_least(0, "port", "EVERFLOW_UI_LISTEN", self.port)
        if self.basic_auth is not None and ":" not in self.basic_auth:
            raise ConfigError(
                "EVERFLOW_UI_BASIC_AUTH must be user:password, got a value without ':'"
            )
        if not self.loopback and not (self.token or self.basic_auth):
            raise ConfigError(
                f"the UI would listen on {self.host}, beyond this machine, with no sign-in:"
                " set EVERFLOW_UI_TOKEN (or --token) or EVERFLOW_UI_BASIC_AUTH"
                " (or --basic-auth user:password), or listen on 127.0.0.1"
            )

    @property
    def loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> UiSettings:
        """Defaults, overridden by EVERFLOW_UI_LISTEN (host:port), EVERFLOW_UI_TOKEN,
        EVERFLOW_UI_BASIC_AUTH and EVERFLOW_VISIBILITY; then keyword overrides (None
        leaves one)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {
            "token": env.get("EVERFLOW_UI_TOKEN") or None,
            "basic_auth": env.get("EVERFLOW_UI_BASIC_AUTH") or None,
            "visibility": env.get("EVERFLOW_VISIBILITY") or None,
        }
        listen = env.get("EVERFLOW_UI_LISTEN")
        if listen:
            values["host"], values["port"] = parse_listen(listen, "EVERFLOW_UI_LISTEN")
        values.update(overrides)
        return cls(**{k: v for k, v in values.items() if v is not None})


def parse_listen(text: str, source: str = "--listen") -> tuple[str, int]:
    """`host:port`, `[v6]:port`, `:port` (loopback) or `port` as (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        raise ConfigError(f"{source} must be host:port, got {text!r}") from None
    if not 0 <= number <= 65535:
        raise ConfigError(f"{source}: port must be 0-65535, got {number}")
    return host, number


def tracing_from_env(env: Mapping[str, str] | None = None) -> bool:
    """Whether EVERFLOW_TRACING turns OpenTelemetry spans on (1/true/yes, 0/false/no;
    unset is off)."""
    env = os.environ if env is None else env
    raw = env.get("EVERFLOW_TRACING", "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"EVERFLOW_TRACING must be 1/true/yes or 0/false/no, got {raw!r}")


def create_topics_from_env(env: Mapping[str, str] | None = None) -> bool:
    """Whether a Client makes the topics a cluster lacks (EVERFLOW_CREATE_TOPICS: 1/true/yes,
    0/false/no; unset is on)."""
    env = os.environ if env is None else env
    raw = env.get("EVERFLOW_CREATE_TOPICS", "").strip().lower()
    if raw in ("", "1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"EVERFLOW_CREATE_TOPICS must be 1/true/yes or 0/false/no, got {raw!r}")


def _parsed(env: Mapping[str, str], name: str, parse: Callable[[str], T], accepts: str) -> T | None:
    raw = env.get(name)
    if raw is None:
        return None
    try:
        return parse(raw)
    except ValueError:
        raise ConfigError(f"{name} must be {accepts}, got {raw!r}") from None


def _whole(env: Mapping[str, str], name: str) -> int | None:
    return _parsed(env, name, int, "a whole number")


def _seconds(env: Mapping[str, str], name: str) -> float | None:
    return _parsed(env, name, float, "a number of seconds")


def _thresholds(env: Mapping[str, str], name: str) -> tuple[int, int, int] | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return None
    parts = raw.replace(" ", "").split(",")
    try:
        gen0, gen1, gen2 = (int(part) for part in parts)
    except ValueError:
        raise ConfigError(
            f"{name} must be three whole numbers gen0,gen1,gen2 (e.g. 50000,20,100), got {raw!r}"
        ) from None
    return gen0, gen1, gen2


def _at_least(minimum: T, setting: str, variable: str, value: T) -> None:
    if not value >= minimum:  # also refuses NaN
        raise ConfigError(f"{setting} must be >= {minimum} ({variable}), got {value}")


def _switch(env: Mapping[str, str], name: str) -> bool | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return None
    if raw.lower() in ("1", "on", "true", "yes"):
        return True
    if raw.lower() in ("0", "off", "false", "no"):
        return False
    raise ConfigError(f"{name} must be on or off, got {raw!r}")
