"""RetryPolicy: how failed activity attempts are retried."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from streams.errors import ConfigError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries with exponential backoff, as Temporal's users know it.

    The n-th retry waits `initial_interval * backoff_coefficient ** (n - 1)`, capped at
    `maximum_interval` (default 100 times initial_interval). `maximum_attempts=0` retries without
    limit. An error whose type name is in `non_retryable_error_types`, or an
    `ApplicationError(non_retryable=True)`, is not retried.
    """

    initial_interval: timedelta = timedelta(seconds=1)
    backoff_coefficient: float = 2.0
    maximum_interval: timedelta | None = None
    maximum_attempts: int = 0
    non_retryable_error_types: Sequence[str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.initial_interval <= timedelta(0):
            raise ConfigError("RetryPolicy.initial_interval must be positive")
        if self.backoff_coefficient < 1:
            raise ConfigError("RetryPolicy.backoff_coefficient must be >= 1")
        if self.maximum_attempts < 0:
            raise ConfigError("RetryPolicy.maximum_attempts must be >= 0 (0 = unlimited)")
        if self.maximum_interval is not None and self.maximum_interval < self.initial_interval:
            raise ConfigError("RetryPolicy.maximum_interval must be >= initial_interval")

    def backoff(self, attempt: int) -> timedelta:
        """The wait before the attempt after `attempt` (attempts count from 1)."""
        cap = self.maximum_interval or self.initial_interval * 100
        delay = self.initial_interval * (self.backoff_coefficient ** (attempt - 1))
        return min(delay, cap)

    def allows_retry(self, attempt: int, error_type: str, non_retryable: bool) -> bool:
        """Whether a failure of `attempt` with this error type gets another attempt."""
        if non_retryable or error_type in self.non_retryable_error_types:
            return False
        return self.maximum_attempts == 0 or attempt < self.maximum_attempts
