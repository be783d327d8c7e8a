"""What the worker and the starter agree on."""

TASK_QUEUE = "money-transfer"
