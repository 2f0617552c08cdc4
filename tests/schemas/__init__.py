"""JSON Schemas the tests validate output against."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

HERE = Path(__file__).resolve().parent
RFC8460 = json.loads((HERE / "rfc8460-report.schema.json").read_text())


def validate_report(report: Any) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``report`` is a valid RFC 8460 report."""
    jsonschema.Draft202012Validator(RFC8460).validate(report)
