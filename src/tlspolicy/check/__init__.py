"""``tlspolicy check DOMAIN``: audit a domain's inbound MTA-STS, DANE and TLSRPT setup.

Pure modules turn facts (DNS answers, the fetched policy, TLS sessions) into ``Finding``s;
``probe`` is the only adapter (SMTP STARTTLS), ``run`` gathers the facts with the server's
own DNS client, fetcher and decision code, so what ``check`` calls good is what the server
and Postfix accept.
"""
