"""The wire contract: Avro schemas (.avsc) of every message on every Everflow topic.

`SCHEMA_DIR` is where they are; `streams.wire.avro` loads them. Files are named
`<namespace>.<Name>.avsc` so named types resolve across files. `archive/` keeps the writer
schemas of earlier versions so old messages stay readable, each self-contained and named
`<full name>.<fingerprint>.avsc`. A record is renamed by giving it its old full name in
`aliases` and archiving the writer schema from before the rename.
"""

from pathlib import Path

SCHEMA_DIR = Path(__file__).resolve().parent
ARCHIVE_DIR = SCHEMA_DIR / "archive"
