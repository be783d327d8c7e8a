"""The seed's activities: one call each to the bank's API."""

from examples.seed.banking import BankingService
from streams import activity

bank = BankingService()


def _reference() -> str:
    # the same for every attempt of this activity: the bank applies it once
    info = activity.info()
    return f"{info.workflow_run_id}-{info.activity_id}"


@activity.defn
async def withdraw(account: str, amount: int) -> str:
    activity.logger.info("withdrawing %d from %s", amount, account)
    return bank.withdraw(account, amount, _reference())


@activity.defn
async def deposit(account: str, amount: int) -> str:
    activity.logger.info("depositing %d into %s", amount, account)
    return bank.deposit(account, amount, _reference())


@activity.defn
async def refund(account: str, amount: int) -> str:
    activity.logger.info("refunding %d to %s", amount, account)
    return bank.refund(account, amount, _reference())
