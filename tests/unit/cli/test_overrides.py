"""``tlspolicy override add|list|remove`` on a sqlite cache file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tlspolicy.cli.main import main


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = tmp_path / "tlspolicy.yml"
    data = {
        "cache": {"backend": "sqlite", "path": str(tmp_path / "cache.sqlite3")},
        "overrides": {"conf.example": {"level": "encrypt", "reason": "from git"}},
        "postfix": {"postconf": ""},
    }
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_override_add_list_remove(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["override", "-c", config]
    assert main([*args, "add", "Partner.Example", "secure", "--match", "mx.partner.example",
                 "--until", "2h", "--reason", "new MX", "--subdomains"]) == 0  # fmt: skip
    assert "partner.example and below: secure match=mx.partner.example until" in (
        capsys.readouterr().out
    )
    assert main([*args, "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(o["domain"], o["answer"], o["source"], o["state"]) for o in listed] == [
        ("conf.example", "OK encrypt", "config", "active"),
        ("partner.example", "OK secure match=mx.partner.example", "cache", "active"),
    ]
    assert main([*args, "remove", "partner.example"]) == 0
    assert main([*args, "remove", "partner.example"]) == 1
    assert main([*args, "remove", "conf.example"]) == 1
    assert "configuration file still applies" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["verify", "--until", "1h", "--reason", "x"], "level 'verify'"),
        (["may", "--until", "2000-01-01", "--reason", "x"], "lies in the past"),
        (["may", "--until", "1h", "--reason", " "], "--reason must say why"),
    ],
)
def test_override_add_refuses_bad_input(config: str, extra: list[str], message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        main(["override", "-c", config, "add", "a.example", *extra])


def test_override_needs_a_persistent_backend(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "memory.yml"
    path.write_text(yaml.safe_dump({"cache": {"backend": "memory"}}))
    argv = [
        "override",
        "-c",
        str(path),
        "add",
        "a.example",
        "may",
        "--until",
        "1h",
        "--reason",
        "x",
    ]
    assert main(argv) == 2
    assert "memory cache is private" in capsys.readouterr().err
