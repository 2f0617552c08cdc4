"""The files generated from the code (scripts/generate-docs) are committed as generated:
the configuration reference, the sample, both man pages, the completions. Every key is
documented, the sample is valid as it is, and the man pages render without warnings."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tlspolicy.cli.generated import generated_files
from tlspolicy.cli.main import main
from tlspolicy.config import load_config
from tlspolicy.config.reference import SECTIONS, undocumented

ROOT = Path(__file__).parents[2]
GENERATED = generated_files()
INTERNAL = {"Override": {"domain", "source", "created_at"}}  # values, not keys of the file


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generated_file_is_committed_as_generated(name: str) -> None:
    path = ROOT / name
    assert path.exists(), f"{name} is missing: run scripts/generate-docs"
    assert path.read_text() == GENERATED[name], f"{name} is stale: run scripts/generate-docs"


@pytest.mark.parametrize("section", SECTIONS, ids=[s.name for s in SECTIONS])
def test_every_configuration_key_has_a_description(section: object) -> None:
    schema = section.schema  # type: ignore[attr-defined]
    missing = set(undocumented(schema)) - INTERNAL.get(schema.__name__, set())
    assert not missing, f"give {sorted(missing)} a description: key(default, 'what it does')"


def test_sample_is_valid_as_it_is_and_listens_where_postfix_is_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = ROOT / "contrib" / "tlspolicy.yml"
    config = load_config(str(sample))
    assert [str(a) for a in config.server.listen] == ["127.0.0.1:8642"]
    assert config.dns.nameservers == (("127.0.0.1", 53),)
    assert config.server.metrics_listen == "127.0.0.1:8643"
    monkeypatch.setenv("PATH", str(tmp_path))  # no postconf: the file alone is checked
    assert main(["check-config", "-c", str(sample)]) == 0
    assert capsys.readouterr().out == f"{sample}: OK\n"


@pytest.mark.parametrize("name", ["man/tlspolicy.8", "man/tlspolicy.yml.5"])
def test_man_page_renders_without_warnings(name: str) -> None:
    groff = shutil.which("groff")
    assert groff is not None, "groff is missing (Debian package groff-base)"
    done = subprocess.run(
        [groff, "-man", "-ww", "-z", str(ROOT / name)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (0, "")


def test_man_page_lists_every_command_and_option() -> None:
    page = GENERATED["man/tlspolicy.8"]
    for command in ("serve", "query", "cache show", "override add", "tlsrpt status", "check"):
        assert f'.SS "tlspolicy {command}"' in page
    for option in ("\\-\\-json", "\\-\\-from\\-maillog", "\\-\\-until", "\\-\\-monitoring"):
        assert option in page
