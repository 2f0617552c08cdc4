"""The documentation's configuration examples, as tests read them (the docs are tested text).

The TLSRPT section moved from README.md to docs/tlsrpt.md; its ``## TLSRPT`` heading and
bold labels stayed."""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parents[2] / "docs" / "tlsrpt.md"


def readme_block(section: str, label: str) -> str:
    """The first fenced block after ``**label**`` in docs/tlsrpt.md's ``## section``."""
    text = README.read_text().split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    block = text.split(f"**{label}**", 1)[1].split("```", 2)[1]
    return block.split("\n", 1)[1]
