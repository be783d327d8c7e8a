"""The run index, read side: what a listed run looks like (`records`).

May import `streams.wire`, `streams.errors`, `streams.options` and the standard library;
never Kafka, never the engine.
"""
