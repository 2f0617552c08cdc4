from __future__ import annotations

from tlspolicy.cli.main import run

run()
