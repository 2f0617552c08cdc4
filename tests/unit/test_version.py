"""One version: the package's constant is what the installed metadata says."""

from __future__ import annotations

from importlib.metadata import version

from tlspolicy import __version__


def test_version_constant_is_the_installed_distribution_version() -> None:
    assert version("postfix-tlspolicy") == __version__
