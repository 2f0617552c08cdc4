"""Shared pytest configuration. Lab fixtures live in tests/lab/ and are registered here."""

from __future__ import annotations

pytest_plugins = ["tests.lab.services", "tests.integration.server"]
