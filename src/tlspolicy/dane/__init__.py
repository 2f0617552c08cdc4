"""DANE for SMTP (RFC 7672): decide whether a domain gets ``dane-only``, ``dane`` or nothing."""
