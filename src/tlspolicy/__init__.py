"""postfix-tlspolicy: a Postfix TLS policy socketmap server (DANE first, then MTA-STS)."""

from __future__ import annotations

from tlspolicy._version import __version__

__all__ = ["__version__"]
