"""The version, in one place: ``pyproject.toml`` reads it from here (setuptools ``attr``).

A plain constant, because ``importlib.metadata.version`` costs about 50 ms of start-up
(it imports the email parser to read the installed metadata).
"""

from __future__ import annotations

__version__ = "0.1.0"
