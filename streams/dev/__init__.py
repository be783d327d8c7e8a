"""Real Apache Kafka on this machine, for development, tests, `make demo` and `everflow dev`.

- `node`: one KRaft node as a child JVM (config, launch, readiness, stop);
- `broker`: `LocalKafka` (one node), the jars from Maven Central, and `provision_broker()`,
  which picks `EVERFLOW_BOOTSTRAP`, else Docker, else a `LocalKafka`;
- `cluster`: `LocalCluster`, three nodes for fault tests.

May import: `streams.errors` and the standard library. Nothing of the engine.
"""
