"""The sans-IO boundary: pure modules import no I/O library, no logging, no clock.

Parsers and decisions take facts and return values; only the adapters (dnsstub/client,
mtasts/fetch, cache/backends/, db/, server/, cli/) do I/O. The packages are layered
(``LAYERS``): a package imports only packages of lower layers, so the folders read top-down
and no cycle can come back (docs/architecture.md draws them).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "tlspolicy"
PURE_MODULES = [
    "socketmap/connection.py",
    "socketmap/keys.py",
    "socketmap/answer.py",
    "decision/verdict.py",
    "config/defaults.py",
    "config/keydoc.py",
    "config/reference.py",
    "decision/plan.py",
    "service/memo.py",
    "decision/outcome.py",
    "dnsstub/data.py",
    "dnsstub/codec.py",
    "dnsstub/trace.py",
    "mtasts/record.py",
    "mtasts/policy.py",
    "mtasts/state.py",
    "mtasts/addresses.py",
    "mtasts/response.py",
    "dane/tlsa.py",
    "dane/decision.py",
    "dane/result.py",
    "cache/entry.py",
    "cache/hot.py",
    "cache/usage.py",
    "tlsrpt/datagram.py",
    "tlsrpt/aggregate.py",
    "tlsrpt/record.py",
    "tlsrpt/report.py",
    "tlsrpt/mail.py",
    "tlsrpt/schedule.py",
    "tlsrpt/inbound.py",
    "tlsrpt/inbound_mail.py",
    "tlsrpt/inbound_rate.py",
    "tlsrpt/inbound_explain.py",
    "check/findings.py",
    "check/session.py",
    "check/stsrecord.py",
    "check/stspolicy.py",
    "check/mxhosts.py",
    "check/certs.py",
    "check/smtp.py",
    "check/danematch.py",
    "check/tlsrptrecord.py",
    "check/senders.py",
    "check/received.py",
    "check/render.py",
    "config/overrides.py",
    "control/book.py",
    "control/drift.py",
    "postfix/maillog.py",
]
FORBIDDEN = {
    "asyncio", "aiohttp", "dns", "socket", "ssl", "sqlite3", "redis", "asyncpg",
    "logging", "time", "prometheus_client", "subprocess", "urllib", "http",
}  # fmt: skip


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("module", PURE_MODULES)
def test_boundaries_pure_module_imports_no_io(module: str) -> None:
    assert not imported_roots(SRC / module) & FORBIDDEN


@pytest.mark.parametrize("module", PURE_MODULES)
def test_boundaries_pure_module_has_no_await(module: str) -> None:
    tree = ast.parse((SRC / module).read_text())
    assert not any(isinstance(node, ast.Await) for node in ast.walk(tree))


def _module_imports(path: Path) -> set[str]:
    """The ``tlspolicy`` modules a module imports, lazily inside functions too (a lazy
    import hides a cycle from Python, not from the reader); ``if TYPE_CHECKING:`` blocks
    do not count."""
    tree = ast.parse(path.read_text())
    skipped = {
        id(child)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for child in ast.walk(node)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tlspolicy"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("tlspolicy"))
    return found


def test_boundaries_no_import_cycle() -> None:
    modules = {
        ".".join(("tlspolicy", *p.relative_to(SRC).with_suffix("").parts)).removesuffix(
            ".__init__"
        ): p
        for p in SRC.rglob("*.py")
    }
    graph = {name: _module_imports(path) & modules.keys() for name, path in modules.items()}
    for name, deps in graph.items():  # a package's __init__ is not an edge of its modules
        deps.discard(name.rpartition(".")[0])
    done: set[str] = set()

    def visit(name: str, stack: list[str]) -> None:
        if name in stack:
            raise AssertionError(
                "import cycle: " + " -> ".join([*stack[stack.index(name) :], name])
            )
        if name in done:
            return
        for dep in sorted(graph[name]):
            visit(dep, [*stack, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


# The packages, bottom up: a module may import its own package and packages of lower
# layers only (flat modules count as packages of their own). Packages of one layer do not
# import each other.
LAYERS: list[set[str]] = [
    {"_version", "errors", "names", "files"},
    {"config", "metrics", "db"},
    {"dnsstub", "postfix"},
    {"dane", "mtasts"},
    {"cache"},
    {"decision"},
    {"socketmap", "control"},
    {"service", "tlsrpt"},
    {"check", "server"},
    {"cli"},
    {"__main__"},
]


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_boundaries_layers_cover_every_package() -> None:
    found = {p.relative_to(SRC).parts[0].removesuffix(".py") for p in SRC.glob("*")}
    found -= {"__init__", "__pycache__", "py.typed"}
    listed = set().union(*LAYERS)
    assert found == listed


def test_boundaries_packages_import_only_lower_layers() -> None:
    layer_of = {name: index for index, layer in enumerate(LAYERS) for name in layer}
    wrong = []
    for path in SRC.rglob("*.py"):
        module = ".".join(("tlspolicy", *path.relative_to(SRC).with_suffix("").parts))
        own = _package(module)
        if own not in layer_of:  # the package's own __init__
            continue
        for imported in _module_imports(path):
            other = _package(imported)
            if other in ("", own) or other not in layer_of:
                continue
            if layer_of[other] >= layer_of[own]:
                wrong.append(f"{module} imports {imported}")
    assert wrong == [], "\n".join(sorted(wrong))
