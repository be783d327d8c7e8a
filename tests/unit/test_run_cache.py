"""The shell's run cache keeps each loaded run's storage bookkeeping in a `StoredRun`, apart
from the core `Run`."""

from __future__ import annotations

import pytest

from processors.run.state import Run
from processors.workflow_code.registry import Registry
from processors.workflow_processor.batch import Batch
from processors.workflow_processor.run_cache import CacheSettings, PartitionRuns, StoredRun

REG = Registry([], [])


def cache() -> PartitionRuns:
    return PartitionRuns(3, CacheSettings(), 10, lambda partition, where: None)


def test_each_run_of_a_workflow_gets_its_own_storage_record() -> None:
    runs = cache()
    first = Run("wf", "r1", 3, REG)
    runs["wf"] = first
    stored = runs.stored(first)
    stored.encoded.append(b"event-1")
    stored.first_offset = 17
    assert runs.history(first) == ([b"event-1"], 17)
    runs["wf"] = first  # the same run again: its record stays
    assert runs.stored(first) is stored
    second = Run("wf", "r2", 3, REG)
    runs["wf"] = second
    assert runs.history(second) == ([], -1)
    assert runs.get("wf") is second
    with pytest.raises(AssertionError, match="not current"):
        runs.stored(first)


def test_a_batch_writes_the_storage_record_of_every_run_it_touched() -> None:
    runs = cache()
    old, new = Run("wf", "r1", 3, REG), Run("wf", "r2", 3, REG)
    runs["wf"] = old
    batch = Batch({3: runs})
    fx = batch.effects(old)
    runs["wf"] = new  # continued as new within the batch
    assert batch.effects(new) is fx
    assert batch.effects(old) is fx  # still written, though no longer current
    touched = batch.dirty[3]
    assert [s.run for s in touched.values()] == [old, new]
    assert all(isinstance(s, StoredRun) for s in touched.values())
