"""The sans-IO boundary: pure modules import no I/O library, no logging, no clock.

Parsers and decisions take facts and return values (style.md A2); only the adapters
(dnsclient, mtasts/fetch, cache/*_backend, server/, cli/) do I/O.
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
    "decision.py",
    "dnsdata.py",
    "trace.py",
    "mtasts/record.py",
    "mtasts/policy.py",
    "mtasts/state.py",
    "dane/tlsa.py",
    "dane/decision.py",
    "dane/result.py",
    "cache/entry.py",
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
