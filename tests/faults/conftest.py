"""Fixtures of the fault tests run outside the lab (worker processes)."""

from tests.integration.workers import worker_env, workers

__all__ = ["worker_env", "workers"]
