"""The policy cache: per-domain entries with a DANE branch and an MTA-STS branch."""
