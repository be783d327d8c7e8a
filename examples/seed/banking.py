"""The bank the seed's activities call: a flaky API over a ledger file.

Not part of the listings (it stands for the outside world). Every call's first try fails
with a ConnectionError, as a flaky network would, so each step is seen to retry; a call
carries an idempotency key and the bank applies each key once, so a retried or repeated
call never moves money twice. The ledger is a file (EVERFLOW_BANK_LEDGER) shared by
processes: tests read what was applied from it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from examples.money_transfer import Bank

ACCOUNTS = ("alice", "bob")


class InvalidAccountError(Exception):
    """The account does not exist: retrying cannot help."""


class BankingService:
    """Withdraw, deposit and refund, each once per idempotency key."""

    def __init__(self, ledger: Path | None = None) -> None:
        self.ledger = Bank(ledger)

    def withdraw(self, account: str, amount: int, key: str) -> str:
        return self._apply("withdraw", account, -amount, key)

    def deposit(self, account: str, amount: int, key: str) -> str:
        return self._apply("deposit", account, amount, key)

    def refund(self, account: str, amount: int, key: str) -> str:
        return self._apply("refund", account, amount, key)

    def _apply(self, operation: str, account: str, delta: int, key: str) -> str:
        if self._first_call(key):
            raise ConnectionError(f"bank API unreachable during {operation} ({key})")
        if account not in ACCOUNTS:
            raise InvalidAccountError(f"account {account!r} does not exist")
        self.ledger.apply(key, account, delta)  # a repeated key applies nothing
        return f"{operation}-{key}"

    def _first_call(self, key: str) -> bool:
        """Records a call of `key`; True if it is the first (the one the network drops)."""
        calls = self.ledger.path.with_suffix(".calls")
        calls.parent.mkdir(parents=True, exist_ok=True)
        with open(calls, "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.seek(0)
            seen = key in f.read().split()
            f.write(key + "\n")
            f.flush()
            os.fsync(f.fileno())
            return not seen

    def calls(self) -> list[str]:
        """The key of every call made, in order (retries included)."""
        path = self.ledger.path.with_suffix(".calls")
        return path.read_text().split() if path.exists() else []
