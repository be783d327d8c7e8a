"""A small network of Linux network namespaces for the fault tests: one per broker, one for the
workers, joined by a bridge that this process's own namespace also reaches.

```
  root ns (pytest, the driver) ── veth ──┐
  <tag>b1  broker node 0   10.X.Y.11 ────┤
  <tag>b2  broker node 1   10.X.Y.12 ────┼── bridge in <tag>sw
  <tag>b3  broker node 2   10.X.Y.13 ────┤
  <tag>w   the workers     10.X.Y.9  ────┘
```

Faults are iptables rules inside one namespace (a cut: every packet to and from the bridge
is dropped, silently, as a pulled cable would) and `heal` flushes them. Everything here needs
root (CI runs as root); `require_root_tools` says what is missing instead of letting a fault
test pass without faults.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from collections.abc import Sequence

log = logging.getLogger(__name__)

BROKERS = 3


class NetworkError(RuntimeError):
    """A namespace, link or rule could not be made; says which command failed and why."""


def require_root_tools() -> None:
    """Raises NetworkError naming what is missing (root, `ip`, `iptables`)."""
    missing = [tool for tool in ("ip", "iptables") if shutil.which(tool) is None]
    if missing:
        raise NetworkError(
            f"the fault tests need {', '.join(missing)} (Debian packages iproute2, iptables; "
            "`make system` installs them)"
        )
    if os.geteuid() != 0:
        raise NetworkError(
            "the fault tests make network namespaces and iptables rules: run them as root"
        )


def _run(*command: str, check: bool = True) -> str:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise NetworkError(f"`{' '.join(command)}` failed: {result.stderr.strip()}")
    return result.stdout


def remove_abandoned() -> None:
    """Removes the namespaces of fault networks that a killed session left behind: those of
    a tag none of whose namespaces holds a process any more (a live lab's hold brokers)."""
    names = [line.split()[0] for line in _run("ip", "netns", "list").splitlines() if line]
    tags: dict[str, list[str]] = {}
    for name in names:
        match = re.fullmatch(r"(ef\d+)(sw|b\d|w)", name)
        if match:
            tags.setdefault(match.group(1), []).append(name)
    for tag, members in tags.items():
        if any(_run("ip", "netns", "pids", ns, check=False).strip() for ns in members):
            continue
        log.warning("removing the fault network %s a killed session left behind", tag)
        for ns in members:
            _run("ip", "netns", "del", ns, check=False)


class Network:
    """The namespaces, the bridge and the addresses; `up()` makes them, `down()` removes all."""

    def __init__(self, tag: str | None = None) -> None:
        # names are global and short (interface names: 15 bytes at most)
        n = os.getpid() % 200 + 20
        self.tag = tag or f"ef{n}"
        self.subnet = f"10.231.{n}"
        self.switch = f"{self.tag}sw"
        self.brokers = [f"{self.tag}b{i + 1}" for i in range(BROKERS)]
        self.workers = f"{self.tag}w"
        self.host_address = f"{self.subnet}.1"
        self._made: list[str] = []
        self._host_link = f"{self.tag}h"

    def broker_address(self, i: int) -> str:
        return f"{self.subnet}.{11 + i}"

    @property
    def workers_address(self) -> str:
        return f"{self.subnet}.9"

    def exec_prefix(self, namespace: str) -> list[str]:
        """The command prefix that runs a program inside `namespace`."""
        return ["ip", "netns", "exec", namespace]

    def up(self) -> Network:
        require_root_tools()
        self.down()  # leftovers of a crashed session with the same tag
        remove_abandoned()
        try:
            _run("ip", "netns", "add", self.switch)
            self._made.append(self.switch)
            _run("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
            _run("ip", "-n", self.switch, "link", "set", "br0", "up")
            members = [
                *((ns, self.broker_address(i)) for i, ns in enumerate(self.brokers)),
                (self.workers, self.workers_address),
            ]
            for ns, address in members:
                _run("ip", "netns", "add", ns)
                self._made.append(ns)
                self._attach(ns, address)
            self._attach_host()
        except BaseException:
            self.down()
            raise
        log.info("fault network %s up: brokers %s", self.tag, self.broker_addresses())
        return self

    def broker_addresses(self) -> list[str]:
        return [self.broker_address(i) for i in range(BROKERS)]

    def _attach(self, ns: str, address: str) -> None:
        inner, outer = f"{ns}i", f"{ns}o"
        _run("ip", "link", "add", inner, "type", "veth", "peer", "name", outer)
        _run("ip", "link", "set", inner, "netns", ns)
        _run("ip", "link", "set", outer, "netns", self.switch)
        _run("ip", "-n", self.switch, "link", "set", outer, "master", "br0")
        _run("ip", "-n", self.switch, "link", "set", outer, "up")
        _run("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", inner)
        _run("ip", "-n", ns, "link", "set", inner, "up")
        _run("ip", "-n", ns, "link", "set", "lo", "up")

    def _attach_host(self) -> None:
        outer = f"{self._host_link}o"
        _run("ip", "link", "add", self._host_link, "type", "veth", "peer", "name", outer)
        _run("ip", "link", "set", outer, "netns", self.switch)
        _run("ip", "-n", self.switch, "link", "set", outer, "master", "br0")
        _run("ip", "-n", self.switch, "link", "set", outer, "up")
        _run("ip", "addr", "add", f"{self.host_address}/24", "dev", self._host_link)
        _run("ip", "link", "set", self._host_link, "up")

    def down(self) -> None:
        """Removes every namespace of this tag (their veths go with them) and the host link."""
        _run("ip", "link", "del", self._host_link, check=False)
        existing = _run("ip", "netns", "list", check=False)
        for ns in [self.switch, *self.brokers, self.workers]:
            if any(line.split()[0] == ns for line in existing.splitlines() if line.strip()):
                _run("ip", "netns", "del", ns, check=False)
        self._made.clear()

    # -- faults ---------------------------------------------------------------------------

    def cut(self, namespace: str, peers: Sequence[str] = ()) -> None:
        """Drops every packet between `namespace` and `peers` (addresses; all of the bridge
        when empty), both ways. Silent: connections hang until their timeouts, as with a
        pulled cable, rather than fail fast."""
        targets = list(peers) or [f"{self.subnet}.0/24"]
        for target in targets:
            self.iptables(namespace, "-A", "INPUT", "-s", target, "-j", "DROP")
            self.iptables(namespace, "-A", "OUTPUT", "-d", target, "-j", "DROP")
        log.warning("fault: %s cut off from %s", namespace, ", ".join(targets))

    def heal(self, namespace: str) -> None:
        self.iptables(namespace, "-F", "INPUT")
        self.iptables(namespace, "-F", "OUTPUT")
        log.warning("fault healed: %s reachable again", namespace)

    def heal_all(self) -> None:
        for ns in [*self.brokers, self.workers]:
            self.heal(ns)

    def iptables(self, namespace: str, *rule: str) -> None:
        _run(*self.exec_prefix(namespace), "iptables", "-w", *rule)

    def rules(self, namespace: str) -> str:
        """The namespace's filter rules (`iptables -S`), for assertions and logs."""
        return _run(*self.exec_prefix(namespace), "iptables", "-S")

    def __enter__(self) -> Network:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()
