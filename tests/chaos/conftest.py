"""Fixtures of the chaos tests (worker processes)."""

from tests.integration.workers import worker_env, workers

__all__ = ["worker_env", "workers"]
