"""The read side of the run index: find runs by what they are, not by their IDs.

A projector (`processors/visibility/`) folds the history topic into SQL tables; this package
reads them for `Client.list_workflows` / `count_workflows` and `everflow workflow list`:
`syntax` parses the filter language (Temporal's List Filter subset), `query` compiles it to
parameterised SQL, `schema` holds the tables' DDL for SQLite and PostgreSQL, `store` opens a
store by URL and reads and writes it, `records` are the rows and what the client returns.

May import: the standard library (sqlite3 included), `streams.wire`, `streams.errors`,
`streams.options`, and psycopg lazily, only for a `postgresql://` store. Never Kafka
(`confluent_kafka`, `streams.kafka`) and never the engine (`processors`).
"""
