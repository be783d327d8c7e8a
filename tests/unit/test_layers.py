"""The layers' import rules, read from every module's imports (ast), so a wrong import fails here.

- The user API, the wire format and Kafka I/O never import the engine (`processors`): only the
  composition roots (`streams.worker`, `streams.replayer`, `streams.cli`, and `streams.testing`,
  which runs the engine in a test's process) cross, at module top.
- The pure run core and the workflow code never import Kafka (`confluent_kafka`,
  `streams.kafka`), and the workflow code never imports the run core that drives it.
- The engine never imports a composition root, and no module imports another inside a
  function to dodge a cycle: the module graph has no cycles.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("streams", "processors", "schemas")
# streams.testing builds the engine too: the time-skipping environment runs the run core and
# the workflow code in the test's process (no broker), as a worker runs them on Kafka
COMPOSITION_ROOTS = ("streams.worker", "streams.replayer", "streams.cli", "streams.testing")
KAFKA = ("confluent_kafka", "streams.kafka", "streams.dev")


@dataclass(frozen=True, slots=True)
class Import:
    module: str  # the importing module
    target: str  # the imported module, resolved (`from a import b` is `a.b` when b is one)
    line: int
    top: bool  # at module top (not in a function, not under `if TYPE_CHECKING:`)


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def read_imports(module: str, source: str, known: set[str]) -> list[Import]:
    """Every import statement in `source`, resolved against the `known` module names."""
    found: list[Import] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                visit(child, top=False)
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                visit(ast.Module(body=child.body, type_ignores=[]), top=False)
                visit(ast.Module(body=child.orelse, type_ignores=[]), top=top)
            elif isinstance(child, ast.Import):
                found.extend(Import(module, a.name, child.lineno, top) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = _absolute(module, child)
                for alias in child.names:
                    sub = f"{base}.{alias.name}"
                    target = sub if sub in known else base
                    found.append(Import(module, target, child.lineno, top))
            else:
                visit(child, top)

    visit(ast.parse(source), top=True)
    return found


def _absolute(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".")[: -node.level] if node.level else []
    return ".".join([*package, *([node.module] if node.module else [])])


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def project_imports(root: Path = ROOT) -> list[Import]:
    files = {module_name(p, root): p for pkg in PACKAGES for p in (root / pkg).rglob("*.py")}
    known = set(files)
    return [i for m, p in sorted(files.items()) for i in read_imports(m, p.read_text(), known)]


def within(name: str, prefixes: tuple[str, ...] | str) -> bool:
    prefixes = (prefixes,) if isinstance(prefixes, str) else prefixes
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def violations(imports: list[Import]) -> list[str]:
    """Each broken rule as `module:line imports target — why`."""
    out = []
    for i in imports:
        why = _broken_rule(i)
        if why:
            out.append(f"{i.module}:{i.line} imports {i.target} — {why}")
    return out


def _broken_rule(i: Import) -> str | None:
    root = within(i.module, COMPOSITION_ROOTS)
    if within(i.module, "streams") and within(i.target, "processors"):
        if not root:
            return "only the composition roots (worker, replayer, cli, testing) import the engine"
        if not i.top:
            return "a composition root imports the engine at module top, not in a function"
    if within(i.module, ("processors.run", "processors.workflow_code")) and within(i.target, KAFKA):
        return "the run core and the workflow code stay free of Kafka"
    if within(i.module, "processors.workflow_code") and within(i.target, "processors.run"):
        return "the run core drives the workflow code, never the reverse"
    if within(i.module, "processors") and within(i.target, COMPOSITION_ROOTS):
        return "the engine never imports a composition root"
    if within(i.module, ("streams.wire", "streams.kafka")) and within(
        i.target, ("streams.client", "streams.workflow", "streams.activity", "streams.cli")
    ):
        return "the wire format and Kafka I/O sit below the user API"
    if within(i.module, ("streams.wire", "streams.kafka", "streams.dev")) and within(
        i.target, ("streams.worker", "streams.replayer")
    ):
        return "the wire format and Kafka I/O sit below the composition roots"
    return None


def cycles(imports: list[Import]) -> list[list[str]]:
    """Strongly connected components (size > 1) of the module-top import graph (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for i in imports:
        if i.top and i.target != i.module and within(i.target, PACKAGES):
            graph.setdefault(i.module, set()).add(i.target)
            # importing a.b.c first runs a/__init__ and a/b/__init__, unless the importer
            # lives inside them (then they are being initialised already)
            parts = i.target.split(".")
            for n in range(1, len(parts)):
                parent = ".".join(parts[:n])
                if not within(i.module, parent):
                    graph[i.module].add(parent)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_every_module_imports_only_what_its_layer_allows() -> None:
    broken = violations(project_imports())
    assert not broken, "layer rules broken:\n" + "\n".join(broken)


def test_the_module_graph_has_no_import_cycle() -> None:
    found = cycles(project_imports())
    assert not found, "import cycles: " + "; ".join(" -> ".join(c) for c in found)


def test_the_engine_is_imported_by_the_composition_roots() -> None:
    crossing = {
        i.module.split(".")[1]
        for i in project_imports()
        if within(i.module, "streams") and within(i.target, "processors")
    }
    assert crossing == {"worker", "replayer", "cli", "testing"}


@pytest.mark.parametrize(
    ("module", "source", "rule"),
    [
        ("streams.client", "from processors.run.state import Run", "only the composition"),
        ("streams.worker", "def f():\n    import processors.audit", "at module top"),
        ("processors.run.state", "from streams import kafka", "free of Kafka"),
        ("processors.workflow_code.replay", "import confluent_kafka", "free of Kafka"),
        ("processors.workflow_code.instance", "from processors.run import state", "never the"),
        ("processors.audit", "from streams.worker import Worker", "composition root"),
        ("streams.wire.events", "from streams.client import Client", "below the user API"),
    ],
)
def test_a_wrong_import_is_reported_with_its_rule(module: str, source: str, rule: str) -> None:
    known = {"streams.kafka", "processors.run.state", "processors.run", "streams.worker"}
    broken = violations(read_imports(module, source, known))
    assert len(broken) == 1 and rule in broken[0], broken


def test_type_checking_imports_and_allowed_crossings_pass() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "from processors.workflow_code.registry import Registry\n"
        "if TYPE_CHECKING:\n    from streams.worker import Worker\n"
    )
    assert violations(read_imports("streams.replayer", source, set())) == []
    imports = read_imports("processors.audit", source, set())
    assert [i.top for i in imports if i.target == "streams.worker"] == [False]


def test_a_cycle_through_a_package_init_is_found() -> None:
    # the cycle `streams` loading the worker eagerly would make: an engine module imports the
    # wire format, which first runs streams/__init__, which would import the engine
    imports = [
        Import("processors.run.state", "streams.wire.events", 1, True),
        Import("streams", "streams.worker", 1, True),
        Import("streams.worker", "processors.run.state", 1, True),
        Import("streams.wire.events", "streams.errors", 1, True),  # inside streams: no edge
    ]
    assert cycles(imports) == [["processors.run.state", "streams", "streams.worker"]]


def test_a_cycle_is_found() -> None:
    imports = [
        Import("streams.a", "streams.b", 1, True),
        Import("streams.b", "streams.c", 1, True),
        Import("streams.c", "streams.a", 1, True),
        Import("streams.c", "streams.d", 1, True),
        Import("streams.d", "streams.a", 1, False),  # in a function: not an edge
    ]
    assert cycles(imports) == [["streams.a", "streams.b", "streams.c"]]


def test_importing_streams_loads_no_engine_until_a_worker_is_asked_for() -> None:
    probe = (
        "import sys, streams\n"
        "engine = lambda: sorted(m for m in sys.modules if m.split('.')[0] == 'processors')\n"
        "before = engine()\n"
        "streams.Worker\n"
        "print(before, bool(engine()))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["[]", "True"], out.stdout + out.stderr


def test_the_readme_layout_names_every_package_and_top_module_and_nothing_else() -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Layout", 1)[1].split("```", 2)[1]
    words = set(block.replace(",", " ").split())
    for top in ("streams", "processors"):
        for path in (ROOT / top).iterdir():
            if (path / "__init__.py").exists():
                assert f"{path.name}/" in words, f"README layout lacks {top}/{path.name}/"
            elif path.suffix == ".py" and path.name != "__init__.py":
                assert path.name in words, f"README layout lacks {top}/{path.name}"
    for word in words:
        if word.endswith(".py"):
            found = [*(ROOT / "streams").rglob(word), *(ROOT / "processors").rglob(word)]
            assert found, f"README layout names {word}, which is not in the tree"
