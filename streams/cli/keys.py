"""`everflow keys new`: make a payload encryption key (and add it to a key file).

everflow keys new                           # prints <key ID>=<base64 key>
everflow keys new --file payload-keys.json  # adds one to the file, made if missing (mode 600)
"""

from __future__ import annotations

import argparse
import base64
import json
import os
from pathlib import Path

from streams.cli.common import SubParsers, add_group, add_subparser
from streams.encryption import generate_key, new_key_id
from streams.errors import ConfigError
from streams.payload_settings import read_key_file

DESCRIPTION = """\
Make a random 256-bit AES key for payload encryption. Without --file it prints one line,
<key ID>=<base64 key>, the line format of a key file. With --file it adds the key to that
file (a JSON object of key ID to base64 key, or lines), made with mode 600 if it is missing.

To rotate: add the new key to the key file of every worker, client, CLI, UI and codec server
and restart them (they can now read what it will encrypt); then name it in
EVERFLOW_PAYLOAD_KEY_ID everywhere and restart again. Keep the old keys: payloads they
encrypted stay in the topics."""


def add_parser(subparsers: SubParsers) -> None:
    """Register `keys new`."""
    key_commands = add_group(subparsers, "keys", "make payload encryption keys")
    new = add_subparser(key_commands, "new", "make a payload key", description=DESCRIPTION)
    new.add_argument("--id", dest="key_id", help="the key's ID (default: k<UTC time>)")
    new.add_argument("--file", help="add the key to this key file (EVERFLOW_PAYLOAD_KEYS)")
    new.set_defaults(run=keys_new)


def keys_new(args: argparse.Namespace) -> int:
    """`everflow keys new`: a new key, printed or added to a key file."""
    key_id = args.key_id or new_key_id()
    if not key_id or any(c.isspace() or c == "=" for c in key_id):
        raise ConfigError(f"--id {key_id!r}: a key ID is non-empty, without spaces or '='")
    encoded = base64.b64encode(generate_key()).decode()
    if not args.file:
        print(f"{key_id}={encoded}")
        return 0
    path = Path(args.file).expanduser()
    existing = path.exists()
    text = path.read_text() if existing else ""
    if existing and key_id in read_key_file(path):
        raise ConfigError(f"{str(path)!r} already holds a key {key_id!r}: pick another --id")
    if text.lstrip().startswith("{") or (not text.strip() and path.suffix == ".json"):
        keys = json.loads(text) if text.strip() else {}
        keys[key_id] = encoded
        text = json.dumps(keys, indent=2) + "\n"
    else:
        text = text + ("" if not text or text.endswith("\n") else "\n") + f"{key_id}={encoded}\n"
    fd = os.open(path.with_name(path.name + ".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(path.with_name(path.name + ".tmp"), path)
    print(f"added key {key_id} to {path}")
    print(f"encrypt with it (once every process holds it): EVERFLOW_PAYLOAD_KEY_ID={key_id}")
    return 0
