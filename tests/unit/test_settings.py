"""Worker settings from arguments and EVERFLOW_* variables: defaults, good values, and bad
ones refused with a message naming the variable; and only the composition root reads the
environment."""

from __future__ import annotations

import ast
import socket
from pathlib import Path

import pytest
from confluent_kafka import KafkaError

from processors.activity_runner.runner import RunnerConfig
from streams import kafka
from streams.errors import ConfigError
from streams.settings import (
    DEFAULT_GC_THRESHOLD,
    CacheSettings,
    FaultSettings,
    RunLimits,
    VisibilitySettings,
    WorkerSettings,
    create_topics_from_env,
    data_dir,
    visibility_url,
)

ROOT = Path(__file__).resolve().parents[2]


def test_cache_settings_defaults() -> None:
    cache = CacheSettings.from_env({})
    assert cache == CacheSettings()
    assert (cache.max_cached_runs, cache.checkpoint_records, cache.checkpoint_interval) == (
        10_000,
        5_000,
        2.0,
    )
    assert (cache.defer_events, cache.defer_seconds) == (32, 30.0)
    assert cache.closed_retention_ms == 24 * 3600 * 1000


def test_cache_settings_from_the_environment() -> None:
    cache = CacheSettings.from_env(
        {
            "EVERFLOW_RUN_CACHE_SIZE": "4",
            "EVERFLOW_CHECKPOINT_RECORDS": "100",
            "EVERFLOW_CHECKPOINT_INTERVAL": "0.05",
            "EVERFLOW_SNAPSHOT_DEFER_EVENTS": "1",
            "EVERFLOW_SNAPSHOT_DEFER_SECONDS": "0.5",
            "EVERFLOW_CLOSED_RUN_RETENTION": "4",
        }
    )
    assert cache == CacheSettings(4, 100, 0.05, 1, 0.5, 4000)


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("EVERFLOW_RUN_CACHE_SIZE", "lots", "EVERFLOW_RUN_CACHE_SIZE must be a whole number"),
        ("EVERFLOW_RUN_CACHE_SIZE", "0", r"max_cached_runs must be >= 1 \(EVERFLOW_RUN_CACHE"),
        ("EVERFLOW_CHECKPOINT_RECORDS", "1.5", "EVERFLOW_CHECKPOINT_RECORDS must be a whole"),
        ("EVERFLOW_CHECKPOINT_INTERVAL", "2s", "EVERFLOW_CHECKPOINT_INTERVAL must be a number"),
        ("EVERFLOW_CHECKPOINT_INTERVAL", "-1", "EVERFLOW_CHECKPOINT_INTERVAL"),
        ("EVERFLOW_SNAPSHOT_DEFER_EVENTS", "0", "EVERFLOW_SNAPSHOT_DEFER_EVENTS"),
        ("EVERFLOW_SNAPSHOT_DEFER_SECONDS", "nan", "EVERFLOW_SNAPSHOT_DEFER_SECONDS"),
        ("EVERFLOW_CLOSED_RUN_RETENTION", "a day", "EVERFLOW_CLOSED_RUN_RETENTION must be"),
    ],
)
def test_bad_cache_settings_name_the_variable(name: str, raw: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CacheSettings.from_env({name: raw})


def test_fault_hooks_are_off_by_default_and_read_from_the_environment() -> None:
    assert FaultSettings.from_env({}) == FaultSettings(0, 0, 0)
    faults = FaultSettings.from_env(
        {
            "EVERFLOW_FAULT_KILL_BEFORE_COMMIT": "2",
            "EVERFLOW_FAULT_STOP_BEFORE_COMMIT": "3",
            "EVERFLOW_FAULT_STOP_AFTER_COMMIT": "4",
        }
    )
    assert (faults.kill_before_commit, faults.stop_before_commit) == (2, 3)
    assert faults.stop_after_commit == 4
    with pytest.raises(ConfigError, match="EVERFLOW_FAULT_KILL_BEFORE_COMMIT must be a whole"):
        FaultSettings.from_env({"EVERFLOW_FAULT_KILL_BEFORE_COMMIT": "yes"})
    with pytest.raises(ConfigError, match="EVERFLOW_FAULT_STOP_BEFORE_COMMIT"):
        FaultSettings.from_env({"EVERFLOW_FAULT_STOP_BEFORE_COMMIT": "-1"})


def test_unknown_commit_hooks_are_read_from_the_environment() -> None:
    faults = FaultSettings.from_env(
        {
            "EVERFLOW_FAULT_UNKNOWN_AFTER_COMMIT": "3",
            "EVERFLOW_FAULT_UNKNOWN_BEFORE_COMMIT": "5",
        }
    )
    assert (faults.unknown_after_commit, faults.unknown_before_commit) == (3, 5)
    assert FaultSettings().unknown_after_commit == FaultSettings().unknown_before_commit == 0
    with pytest.raises(ConfigError, match="EVERFLOW_FAULT_UNKNOWN_AFTER_COMMIT must be a whole"):
        FaultSettings.from_env({"EVERFLOW_FAULT_UNKNOWN_AFTER_COMMIT": "soon"})
    with pytest.raises(ConfigError, match="EVERFLOW_FAULT_UNKNOWN_BEFORE_COMMIT"):
        FaultSettings.from_env({"EVERFLOW_FAULT_UNKNOWN_BEFORE_COMMIT": "-2"})
    assert FaultSettings.from_env({}).stall_after_commit == 0
    stall = FaultSettings.from_env({"EVERFLOW_FAULT_STALL_AFTER_COMMIT": "7"})
    assert stall.stall_after_commit == 7
    with pytest.raises(ConfigError, match="EVERFLOW_FAULT_STALL_AFTER_COMMIT"):
        FaultSettings.from_env({"EVERFLOW_FAULT_STALL_AFTER_COMMIT": "-1"})


def test_the_stall_check_is_on_by_default_and_set_or_turned_off_from_the_environment() -> None:
    assert WorkerSettings.from_env({}).stall_seconds == 60.0
    assert WorkerSettings.from_env({"EVERFLOW_STALL_SECONDS": "12.5"}).stall_seconds == 12.5
    assert WorkerSettings.from_env({"EVERFLOW_STALL_SECONDS": "0"}).stall_seconds == 0
    with pytest.raises(ConfigError, match="EVERFLOW_STALL_SECONDS"):
        WorkerSettings.from_env({"EVERFLOW_STALL_SECONDS": "-3"})


def test_worker_settings_defaults() -> None:
    settings = WorkerSettings.from_env({})
    assert settings.instance_id == socket.gethostname()
    assert (settings.max_history_events, settings.max_history_bytes) == (50_000, 50 << 20)
    assert settings.profile_dir is None and settings.switch_interval == 0.0005
    assert settings.cache == CacheSettings() and settings.faults == FaultSettings()


def test_worker_settings_from_the_environment_gather_every_component() -> None:
    settings = WorkerSettings.from_env(
        {
            "EVERFLOW_INSTANCE_ID": "w7",
            "EVERFLOW_MAX_HISTORY_EVENTS": "20",
            "EVERFLOW_MAX_HISTORY_BYTES": "4096",
            "EVERFLOW_PROFILE": "/tmp/prof",
            "EVERFLOW_SWITCH_INTERVAL": "0.001",
            "EVERFLOW_RUN_CACHE_SIZE": "4",
            "EVERFLOW_FAULT_KILL_BEFORE_COMMIT": "2",
        }
    )
    assert settings.instance_id == "w7" and settings.profile_dir == "/tmp/prof"
    assert (settings.max_history_events, settings.max_history_bytes) == (20, 4096)
    assert settings.switch_interval == 0.001
    assert settings.cache.max_cached_runs == 4 and settings.faults.kill_before_commit == 2


def test_keyword_arguments_win_over_the_environment_and_none_leaves_it() -> None:
    env = {"EVERFLOW_INSTANCE_ID": "env", "EVERFLOW_MAX_HISTORY_EVENTS": "20"}
    settings = WorkerSettings.from_env(env, instance_id="arg", max_history_events=None)
    assert (settings.instance_id, settings.max_history_events) == ("arg", 20)
    assert settings.with_overrides(max_history_bytes=99, instance_id=None) == WorkerSettings(
        "arg", 20, 99
    )


def test_an_empty_instance_id_falls_back_to_the_host_name() -> None:
    assert WorkerSettings.from_env({"EVERFLOW_INSTANCE_ID": ""}).instance_id == (
        socket.gethostname()
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"EVERFLOW_MAX_HISTORY_EVENTS": "50k"}, "EVERFLOW_MAX_HISTORY_EVENTS must be a whole"),
        ({"EVERFLOW_MAX_HISTORY_EVENTS": "0"}, r">= 1 \(EVERFLOW_MAX_HISTORY_EVENTS\), got 0"),
        ({"EVERFLOW_MAX_HISTORY_BYTES": "50MiB"}, "EVERFLOW_MAX_HISTORY_BYTES must be a whole"),
        ({"EVERFLOW_SWITCH_INTERVAL": "fast"}, "EVERFLOW_SWITCH_INTERVAL must be a number"),
        ({"EVERFLOW_SWITCH_INTERVAL": "0"}, r"switch_interval must be > 0 .*SWITCH_INTERVAL"),
        ({"EVERFLOW_RUN_CACHE_SIZE": "x"}, "EVERFLOW_RUN_CACHE_SIZE"),
    ],
)
def test_bad_worker_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        WorkerSettings.from_env(env)


def test_settings_are_frozen() -> None:
    settings = WorkerSettings.from_env({})
    with pytest.raises(AttributeError):
        settings.instance_id = "other"  # type: ignore[misc]


_ENV_NAMES = ("environ", "environb", "getenv")


def _environment_reads(source: str) -> list[tuple[int, str]]:
    """Where code reads the environment: os.environ, os.getenv, or those names imported."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in _ENV_NAMES:
            found.append((node.lineno, node.attr))
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            found += [(node.lineno, a.name) for a in node.names if a.name in _ENV_NAMES]
    return sorted(found)


def _reads_under(folder: str, allowed: frozenset[str] = frozenset()) -> list[str]:
    return [
        f"{path.relative_to(ROOT)}:{line} {name}"
        for path in sorted((ROOT / folder).rglob("*.py"))
        if str(path.relative_to(ROOT)) not in allowed
        for line, name in _environment_reads(path.read_text())
    ]


def test_the_environment_check_finds_every_way_of_reading_it() -> None:
    source = "import os\nfrom os import getenv\nx = os.environ.get('A')\ny = os.getenv('B')\n"
    assert _environment_reads(source) == [(2, "getenv"), (3, "environ"), (4, "getenv")]


def test_the_engine_never_reads_the_environment() -> None:
    # its settings come from streams.settings, built by the composition root (streams.worker)
    assert _reads_under("processors") == []


def test_only_the_settings_modules_read_the_environment_in_streams() -> None:
    allowed = frozenset(
        {
            "streams/settings.py",  # a worker's settings
            "streams/payload_settings.py",  # encryption keys and the payload store
            "streams/kafka/config.py",  # connection settings
            "streams/dev/broker.py",  # provisioning of the local development broker
        }
    )
    assert _reads_under("streams", allowed) == []


def test_run_limits_defaults_and_the_registry_reads_them() -> None:
    from processors.workflow_code.registry import Registry

    assert Registry().limits == RunLimits()
    limits = RunLimits(False, 2048, 7, 20, 4096)
    registry = Registry(limits=limits)
    assert (registry.determinism_guard, registry.max_payload_bytes) == (False, 2048)
    assert registry.suggest_continue_as_new_after == 7
    assert (registry.max_history_events, registry.max_history_bytes) == (20, 4096)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_payload_bytes": 10}, r"max_payload_bytes must be >= 1024 \(EVERFLOW_MAX_PAYLOAD"),
        ({"suggest_continue_as_new_after": 0}, "suggest_continue_as_new_after must be >= 1"),
        ({"max_history_events": 0}, "EVERFLOW_MAX_HISTORY_EVENTS"),
        ({"max_history_bytes": -1}, "EVERFLOW_MAX_HISTORY_BYTES"),
    ],
)
def test_bad_run_limits_name_the_setting(changes: dict[str, int], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RunLimits(**changes)  # type: ignore[arg-type]


class _Client:
    """What a Worker takes from its client at construction."""

    def __init__(self) -> None:
        from streams.kafka.config import KafkaConfig
        from streams.payload import DataConverter

        self.config = KafkaConfig("k:9092", max_payload_bytes=4096)
        self.converter = DataConverter()


def test_the_worker_builds_its_settings_from_the_environment_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from streams.worker import Worker

    monkeypatch.setenv("EVERFLOW_INSTANCE_ID", "w9")
    monkeypatch.setenv("EVERFLOW_MAX_HISTORY_EVENTS", "20")
    monkeypatch.setenv("EVERFLOW_RUN_CACHE_SIZE", "4")
    monkeypatch.setenv("EVERFLOW_PROFILE", "/tmp/prof")
    worker = Worker(_Client(), task_queue="q", max_history_bytes=8192)  # type: ignore[arg-type]
    assert worker.instance_id == "w9" and worker.settings.cache.max_cached_runs == 4
    limits = worker.registry.limits
    assert (limits.max_history_events, limits.max_history_bytes) == (20, 8192)
    assert limits.max_payload_bytes == 4096
    assert limits.determinism_guard is False  # off under the profiler


def test_a_worker_with_a_bad_setting_does_not_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.worker import Worker

    monkeypatch.setenv("EVERFLOW_MAX_HISTORY_EVENTS", "lots")
    with pytest.raises(ConfigError, match="EVERFLOW_MAX_HISTORY_EVENTS must be a whole number"):
        Worker(_Client(), task_queue="q")  # type: ignore[arg-type]


def test_explicit_settings_are_used_as_given_and_arguments_win(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from streams.worker import Worker

    monkeypatch.setenv("EVERFLOW_INSTANCE_ID", "from-env")
    given = WorkerSettings("given", max_history_events=30)
    worker = Worker(_Client(), task_queue="q", settings=given)  # type: ignore[arg-type]
    assert worker.instance_id == "given" and worker.registry.max_history_events == 30
    worker = Worker(_Client(), task_queue="q", settings=given, instance_id="arg")  # type: ignore[arg-type]
    assert worker.instance_id == "arg"


def test_runner_settings_refuse_what_cannot_run() -> None:
    assert RunnerConfig("q").max_concurrent == 64
    with pytest.raises(ConfigError, match="max_concurrent must be >= 1, got 0"):
        RunnerConfig("q", max_concurrent=0)
    with pytest.raises(ConfigError, match="task_queue is empty"):
        RunnerConfig("")


def test_the_run_index_lives_in_the_data_directory_unless_a_url_is_given() -> None:
    env = {"EVERFLOW_DATA_DIR": "/var/lib/everflow"}
    assert visibility_url("prod.", env=env) == "sqlite:///var/lib/everflow/visibility/prod.sqlite"
    assert visibility_url("", env=env) == "sqlite:///var/lib/everflow/visibility/everflow.sqlite"
    chosen = {**env, "EVERFLOW_VISIBILITY": "postgresql://ix@db/ix"}
    assert visibility_url("prod.", env=chosen) == "postgresql://ix@db/ix"
    assert visibility_url("prod.", "sqlite:///x.sqlite", env=chosen) == "sqlite:///x.sqlite"
    assert str(data_dir({})).endswith(".cache/everflow")


def test_visibility_settings_from_the_environment() -> None:
    assert VisibilitySettings.from_env({}) == VisibilitySettings()
    settings = VisibilitySettings.from_env(
        {
            "EVERFLOW_VISIBILITY_PROJECTOR": "off",
            "EVERFLOW_VISIBILITY": "/tmp/i.sqlite",
            "EVERFLOW_VISIBILITY_BATCH_RECORDS": "50",
            "EVERFLOW_FAULT_KILL_INDEX_BEFORE_COMMIT": "3",
        }
    )
    assert (settings.enabled, settings.url, settings.batch_records) == (False, "/tmp/i.sqlite", 50)
    assert settings.kill_before_commit == 3
    assert (
        WorkerSettings.from_env({"EVERFLOW_VISIBILITY_PROJECTOR": "0"}).visibility.enabled is False
    )
    with pytest.raises(ConfigError, match="EVERFLOW_VISIBILITY_PROJECTOR must be on or off"):
        VisibilitySettings.from_env({"EVERFLOW_VISIBILITY_PROJECTOR": "maybe"})
    with pytest.raises(ConfigError, match="EVERFLOW_VISIBILITY_BATCH_RECORDS"):
        VisibilitySettings.from_env({"EVERFLOW_VISIBILITY_BATCH_RECORDS": "0"})


def test_gc_tuning_is_on_by_default_and_read_from_the_environment() -> None:
    settings = WorkerSettings.from_env({})
    assert settings.gc_tuning and settings.gc_threshold == DEFAULT_GC_THRESHOLD
    assert settings.kafka_statistics is None  # counting requests is off by default
    settings = WorkerSettings.from_env(
        {
            "EVERFLOW_GC": "off",
            "EVERFLOW_GC_THRESHOLD": "1000, 5,7",
            "EVERFLOW_REQUEST_STATS": "/tmp/requests.json",
        }
    )
    assert not settings.gc_tuning and settings.gc_threshold == (1000, 5, 7)
    assert settings.kafka_statistics == "/tmp/requests.json"
    assert WorkerSettings.from_env({"EVERFLOW_GC": "on"}).gc_tuning


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"EVERFLOW_GC": "maybe"}, "EVERFLOW_GC must be on or off"),
        ({"EVERFLOW_GC_THRESHOLD": "1000,5"}, "EVERFLOW_GC_THRESHOLD must be three whole"),
        ({"EVERFLOW_GC_THRESHOLD": "a,b,c"}, "EVERFLOW_GC_THRESHOLD must be three whole"),
        ({"EVERFLOW_GC_THRESHOLD": "1000,0,10"}, r"gc_threshold must be .* >= 1"),
    ],
)
def test_bad_gc_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        WorkerSettings.from_env(env)


def test_eager_dispatch_is_on_by_default_and_turned_off_from_the_environment() -> None:
    assert WorkerSettings.from_env({}).eager_activities is True
    assert WorkerSettings.from_env({"EVERFLOW_EAGER_ACTIVITIES": "off"}).eager_activities is False
    with pytest.raises(ConfigError, match="EVERFLOW_EAGER_ACTIVITIES must be on or off"):
        WorkerSettings.from_env({"EVERFLOW_EAGER_ACTIVITIES": "sometimes"})


def test_static_membership_is_off_by_default_and_names_the_member_by_the_instance_id() -> None:
    assert WorkerSettings.from_env({}).static_membership is False
    on = WorkerSettings.from_env({"EVERFLOW_STATIC_MEMBERSHIP": "on", "EVERFLOW_INSTANCE_ID": "w7"})
    assert on.static_membership is True
    assert kafka.static_member(on.static_membership, on.instance_id) == {"group.instance.id": "w7"}
    assert kafka.static_member(False, "w7") == {}
    with pytest.raises(ConfigError, match="EVERFLOW_STATIC_MEMBERSHIP must be on or off"):
        WorkerSettings.from_env({"EVERFLOW_STATIC_MEMBERSHIP": "static"})


def test_a_fenced_static_member_is_told_that_instance_ids_must_be_unique() -> None:
    fenced = KafkaError(
        KafkaError.FENCED_INSTANCE_ID,
        "Fatal consumer error: Broker: Static consumer fenced by other consumer with same "
        "group.instance.id",
        fatal=True,
    )
    error = kafka.fenced_member(fenced, "w7")
    assert error.fatal() and error.code() == KafkaError.FENCED_INSTANCE_ID
    assert "instance ID 'w7'" in error.str() and "must be unique" in error.str()
    other = KafkaError(KafkaError.CLUSTER_AUTHORIZATION_FAILED, "not allowed", fatal=True)
    assert kafka.fenced_member(other, "w7") is other


def test_a_client_creates_missing_topics_unless_the_environment_says_no() -> None:
    assert create_topics_from_env({}) is True
    assert create_topics_from_env({"EVERFLOW_CREATE_TOPICS": "yes"}) is True
    assert create_topics_from_env({"EVERFLOW_CREATE_TOPICS": "0"}) is False
    assert create_topics_from_env({"EVERFLOW_CREATE_TOPICS": " False "}) is False
    with pytest.raises(ConfigError, match="EVERFLOW_CREATE_TOPICS must be 1/true/yes or 0"):
        create_topics_from_env({"EVERFLOW_CREATE_TOPICS": "maybe"})
