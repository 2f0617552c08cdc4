"""The README's configuration examples, as tests read them (the README is tested text)."""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_block(section: str, label: str) -> str:
    """The first fenced block after ``**label**`` in the README's ``## section``."""
    text = README.read_text().split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    block = text.split(f"**{label}**", 1)[1].split("```", 2)[1]
    return block.split("\n", 1)[1]
