"""TLSRPT (RFC 8460): collect Postfix 3.10's libtlsrpt datagrams and send the daily reports.

Pure modules: ``datagram`` (parse one datagram), ``aggregate`` (count sessions), ``record``
(the ``_smtp._tls`` TXT record), ``report`` (the JSON report), ``mail`` (the MIME message),
``schedule`` (when and how often to send), ``settings`` (the ``tlsrpt:`` configuration).
Adapters: ``collector`` (the unix datagram socket), ``store`` (the store protocol and the
batching writer) with ``sqlite_backend``/``postgres_backend`` (``backend.open_store``),
``deliver`` (SMTP, HTTPS), ``reporter`` (the daily loop) and ``runtime`` (all of them
started together, in ``tlspolicy serve`` or ``tlspolicy tlsrpt collect``).
"""

from __future__ import annotations
