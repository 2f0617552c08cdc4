"""One line of documentation per configuration key, on the dataclass field that holds it.

The field is the one source of a key: its type, its default and what it means. The
configuration reference (docs/configuration.md), the commented sample
(contrib/tlspolicy.yml) and the man page tlspolicy.yml(5) are generated from these fields
by ``config/reference.py``; a unit test fails when a key has no description or a generated
file differs. A new key is one line::

    retry_max: float = key(7200.0, "longest wait between two delivery attempts (seconds)")

Pure: no imports beyond the standard library.
"""

from __future__ import annotations

from dataclasses import Field, field
from typing import Any, TypeVar

T = TypeVar("T")

DOC = "doc"  # metadata: the one-line description
NAME = "name"  # metadata: the YAML key when it differs from the field (``store.backend``)
YAML = "yaml"  # metadata: the default as YAML text when the value's own dump misleads
SAMPLE = "sample"  # metadata: YAML text the sample sets instead of the default
EXAMPLE = "example"  # metadata: YAML text the sample shows commented out (default: not set)
UNSET = "not set"  # ``yaml=UNSET``: an empty default that means "not set" (an empty list)


def key(
    default: T,
    doc: str,
    *,
    name: str | None = None,
    yaml: str | None = None,
    sample: str | None = None,
    example: str | None = None,
) -> T:
    """A configuration key: a dataclass field with ``default`` and its description.

    ``yaml`` is how the reference and sample write the default when dumping the value
    would mislead (a file mode as 438, a default computed at load); ``sample`` is a value
    the sample file sets instead (a loopback address for an optional listener);
    ``example`` shows a key that is unset by default as a comment in the sample.
    """
    metadata = {DOC: doc, NAME: name, YAML: yaml, SAMPLE: sample, EXAMPLE: example}
    return field(default=default, metadata=metadata)


def described(doc: str, *, example: str | None = None) -> Any:
    """A documented field without a default (``overrides:`` entries must name a level)."""
    return field(metadata={DOC: doc, NAME: None, YAML: None, SAMPLE: None, EXAMPLE: example})


def doc_of(item: Field[Any]) -> str | None:
    """The description of a field, or None for a field that is not a configuration key."""
    text = item.metadata.get(DOC)
    return text if isinstance(text, str) else None
