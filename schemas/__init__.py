"""The wire contract: Avro schemas (.avsc) of every message on every Everflow topic.

`SCHEMA_DIR` is where they are; `streams.wire.avro` loads them. Files are named
`<namespace>.<Name>.avsc` so named types resolve across files. `archive/` keeps the writer
schemas of earlier versions so old messages stay readable.
"""

from pathlib import Path

SCHEMA_DIR = Path(__file__).resolve().parent
ARCHIVE_DIR = SCHEMA_DIR / "archive"
