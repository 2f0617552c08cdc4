"""Network adapters: the socketmap listeners (and, later, the metrics/health listener)."""
