"""The fault network itself: namespaces reach each other over the bridge, a cut drops the
traffic of one namespace both ways, and healing restores it. No broker needed."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.faults.network import Network

pytestmark = [pytest.mark.faults]

# listens on the given address, answers one line per connection
SERVER = """
import socket, sys
s = socket.create_server((sys.argv[1], 7000))
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.sendall(b"pong\\n")
    c.close()
"""

CLIENT = """
import socket, sys
try:
    with socket.create_connection((sys.argv[1], 7000), timeout=1.5) as c:
        print(c.recv(10).decode().strip())
except OSError as e:
    print(type(e).__name__)
"""


@pytest.fixture(scope="module")
def network() -> Iterator[Network]:
    with Network() as net:
        yield net


@pytest.fixture(scope="module")
def server(network: Network) -> Iterator[str]:
    address = network.broker_address(0)
    proc = subprocess.Popen(
        [*network.exec_prefix(network.brokers[0]), sys.executable, "-c", SERVER, address],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    yield address
    proc.kill()
    proc.wait(5)
    proc.stdout.close()


def ask(network: Network, namespace: str | None, address: str) -> str:
    prefix = network.exec_prefix(namespace) if namespace else []
    command = [*prefix, sys.executable, "-c", CLIENT, address]
    return subprocess.run(command, capture_output=True, text=True, timeout=20).stdout.strip()


def test_the_workers_and_this_process_reach_a_broker_namespace(
    network: Network, server: str
) -> None:
    assert ask(network, network.workers, server) == "pong"
    assert ask(network, None, server) == "pong"


def test_a_cut_drops_traffic_both_ways_until_healed(network: Network, server: str) -> None:
    network.cut(network.workers)
    try:
        assert "DROP" in network.rules(network.workers)
        assert ask(network, network.workers, server) in ("TimeoutError", "timeout")
        assert ask(network, None, server) == "pong", "only the cut namespace loses the broker"
    finally:
        network.heal(network.workers)

    assert "DROP" not in network.rules(network.workers)
    assert ask(network, network.workers, server) == "pong"


def test_a_cut_from_named_peers_leaves_the_others_connected(network: Network, server: str) -> None:
    broker = network.brokers[0]
    network.cut(broker, [network.workers_address])
    try:
        assert ask(network, network.workers, server) in ("TimeoutError", "timeout")
        assert ask(network, None, server) == "pong"
    finally:
        network.heal(broker)
    assert ask(network, network.workers, server) == "pong"
