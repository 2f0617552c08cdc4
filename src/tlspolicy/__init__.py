"""postfix-tlspolicy: a Postfix TLS policy socketmap server (DANE first, then MTA-STS)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("postfix-tlspolicy")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

__all__ = ["__version__"]
