"""The JSON Schema of ``tlspolicy check --json`` (its stable keys, version 1)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

SCHEMA = json.loads((Path(__file__).resolve().parent / "check-report.schema.json").read_text())


def validate_check_report(report: Any) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``report`` is valid ``check --json`` output."""
    jsonschema.Draft202012Validator(SCHEMA).validate(report)
