"""The README's ``tlsrpt:`` example, as written, gives RFC 8460 §3 and §5.3 conformant mail.

The Submitter is the domain of contact-info (in the header, the subject, the file name and
the JSON), the DKIM signature verifies in dkimpy's TLSRPT mode, and the attachment has a
plain ``filename``. Only ``dkim_key`` (a path on the operator's machine) is replaced.
"""

from __future__ import annotations

import email
import gzip
import json
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import dkim
import yaml

from tests.fakes import FakeDns
from tests.lab.dkimkey import DkimTestKey
from tests.lab.readme import readme_block
from tests.unit.tlsrpt.helpers import NO_POLICY_OK, datagram
from tests.unit.tlsrpt.test_reporter import Clock, Sinks
from tlspolicy.config import parse_config
from tlspolicy.dnsstub.data import TxtRecord
from tlspolicy.tlsrpt.aggregate import Batch
from tlspolicy.tlsrpt.datagram import parse_datagram
from tlspolicy.tlsrpt.reporter import Reporter
from tlspolicy.tlsrpt.sqlite_backend import SqliteReportStore

NEXT_DAY = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)


async def test_readme_tlsrpt_example_sends_conformant_signed_mail(tmp_path: Path) -> None:
    section = yaml.safe_load(readme_block("TLSRPT", "tlspolicy.yml"))["tlsrpt"]
    contact_domain = section["contact_info"].rpartition("@")[2]
    key = DkimTestKey(section["dkim_selector"], contact_domain)
    section["dkim_key"] = str(key.write_pem(tmp_path))
    section["store"] = {"path": str(tmp_path / "tlsrpt.sqlite3")}
    config = parse_config({"tlsrpt": section}).tlsrpt
    assert config.unsigned_mail is None
    store = SqliteReportStore(config.store_path)
    await store.open()
    batch = Batch()
    batch.add(parse_datagram(datagram(NO_POLICY_OK)), datetime(2026, 12, 1, 12, tzinfo=UTC))
    await store.add(batch)
    dns = FakeDns()
    dns.set("_smtp._tls.example.com", "TXT", [TxtRecord((b"v=TLSRPTv1;rua=mailto:r@example.com",))])
    sinks = Sinks()
    try:
        await Reporter(config, store, dns, clock=Clock(NEXT_DAY), send_mail=sinks.send_mail,
                       post_https=sinks.post_https).run_once(force=True)  # fmt: skip
    finally:
        await store.aclose()
    ((_, raw),) = sinks.mail
    msg = email.message_from_bytes(raw, policy=default)
    assert isinstance(msg, EmailMessage)
    assert msg["TLS-Report-Submitter"] == contact_domain
    assert f"Submitter: {contact_domain} " in str(msg["Subject"])
    assert dkim.verify(raw, dnsfunc=key.dnsfunc, tlsrpt="strict")
    _, attachment = msg.iter_parts()
    name = attachment.get_filename() or ""
    assert name.startswith(f"{contact_domain}!example.com!")
    assert f'filename="{name}"'.encode() in raw and b"filename*" not in raw
    report = json.loads(gzip.decompress(attachment.get_payload(decode=True)))
    assert report["contact-info"] == section["contact_info"]
    assert report["report-id"].endswith(f"@{contact_domain}")
