"""Operator control: per-domain overrides (matching, storage, the gate in front of
the decision) and drift between what was cached and what was fetched."""
