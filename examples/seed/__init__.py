"""The seed article's two listings, as a Temporal Python user writes them.

A money transfer (withdraw, then deposit, on a bank API that fails now and then, retried
per a RetryPolicy) and its saga variant (a deposit that fails for good is compensated by a
refund, in plain try/except), with the worker and the client that starts them:

    everflow dev broker &                      # a local Kafka on localhost:9092
    export EVERFLOW_BOOTSTRAP=localhost:9092   # or any Kafka cluster
    python -m examples.seed.run_worker &
    python -m examples.seed.starter

`activities.py`, `workflows.py`, `run_worker.py` and `starter.py` are temporalio code: only
the import lines differ (`from temporalio import activity, workflow` is `from streams
import activity, workflow`; `temporalio.client.Client`, `temporalio.worker.Worker`,
`temporalio.common.RetryPolicy` and `temporalio.exceptions.*` are all importable from
`streams`), and `Client.connect()` names a Kafka cluster (EVERFLOW_BOOTSTRAP) where
temporalio names its server (`"localhost:7233"`). `banking.py` is the bank they call, not
part of the listings. docs/from-temporal.md lists what else differs, and why.
"""
