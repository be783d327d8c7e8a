"""The S3 payload store against a real S3 API over HTTP: moto's server, started as its own
process (it needs no broker)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams import DataConverter, PayloadChecksumError, PayloadNotFoundError
from streams.payload_settings import PayloadStoreSettings
from streams.payload_store import ClaimCheck, S3Store, claim_check, collect
from tests.helpers import wait_until

pytestmark = pytest.mark.integration
BUCKET = "everflow-payloads"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1).close()
    except urllib.error.HTTPError:
        return True  # an HTTP answer, whatever it says
    except OSError:
        return False
    return True


@pytest.fixture
def s3_endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "moto.log", "wb")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    # boto3 reads its credentials from the environment, as it would in production
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    try:
        wait_until(lambda: _answers(endpoint), 30, message="moto_server did not start")
        yield endpoint
    finally:
        server.terminate()
        server.wait(10)
        log.close()


def test_the_s3_store_keeps_payloads_and_checks_them_on_read(s3_endpoint: str) -> None:
    settings = PayloadStoreSettings(
        url=f"s3://{BUCKET}/prod", threshold=1024, endpoint=s3_endpoint, region="us-east-1"
    )
    check = claim_check(settings)
    assert isinstance(check, ClaimCheck) and isinstance(check.store, S3Store)
    s3: S3Store = check.store
    s3._client.create_bucket(Bucket=BUCKET)  # noqa: SLF001 (the test sets up its bucket)
    conv = DataConverter(store=check)
    value = {"blob": os.urandom(600_000).hex()}
    ref = conv.to_payload(value)
    assert ref.metadata["store"] == f"s3://{BUCKET}/prod/".encode()
    assert conv.to_payload(value) == ref  # the same payload, the same object
    (obj,) = list(s3.objects())
    assert obj.key == ref.metadata["key"].decode() and obj.size == int(ref.metadata["size"])
    assert DataConverter(store=claim_check(settings)).from_payload(ref) == value

    name = f"prod/{obj.key}"
    original = s3.get(obj.key)
    tampered = original[:-1] + bytes([original[-1] ^ 1])
    s3._client.put_object(Bucket=BUCKET, Key=name, Body=tampered)  # noqa: SLF001
    with pytest.raises(PayloadChecksumError, match="corrupt or was replaced"):
        conv.from_payload(ref)
    s3.delete(obj.key)
    with pytest.raises(PayloadNotFoundError, match=f"not in the payload store s3://{BUCKET}"):
        conv.from_payload(ref)

    kept = conv.to_payload("k" * 5000)
    gone = conv.to_payload("g" * 5000)
    later = int(time.time() * 1000) + 3_600_000  # an hour on: both are old
    done = collect(s3, {kept.metadata["key"].decode()}, 60_000, now_ms=later)
    assert done.removed == [gone.metadata["key"].decode()]
    assert [o.key for o in s3.objects()] == [kept.metadata["key"].decode()]
