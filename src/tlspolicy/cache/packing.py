"""Cache entries packed for the in-process hot layer: compact JSON, deflated with a preset
dictionary.

A decoded entry (its branches, host results, policy and their strings and floats) costs
about 1.4 KB of Python objects; the same entry packed is a bytes object of one to two
hundred octets. Most of an entry's JSON is the same in every entry (key names, status
words, the policy's field names), so a preset dictionary of that vocabulary (RFC 1951
back-references into it, ``zlib``'s ``zdict``) leaves little more than the host names,
ids and times. The usage counters and the domain stay outside the packed form: they are
the slot's own fields, and the counters change without the rest.

The packed form never leaves the process, so ``VOCABULARY`` may change in any release.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from tlspolicy.cache.entry import FORMAT_VERSION, CacheEntry

# Raw deflate (no header or checksum: the bytes never leave memory) with a 4 KiB window,
# and a small compressor state: entries are short, so a larger one buys nothing.
WINDOW_BITS = -12
MEM_LEVEL = 3
LEVEL = 6

# What every entry's JSON repeats, most frequent last (nearer back-references are
# shorter). Not one domain's data: only key names and the words the code itself writes.
VOCABULARY = (
    b'"error_kind":"fetch","error_kind":"no-record","error_kind":"temp"'
    b'"level":"temp","level":"dane","reason":"usable TLSA at all '
    b'"detail":"no usable TLSA record","tlsa_status":"none","address_status":"none",'
    b'"mx_secure":null,"mx_secure":false,"address_status":"insecure","tlsa_status":"",'
    b'"detail":"in the MX owner\'s unsigned zone: no address or TLSA lookup"},'
    b'"level":"none","reason":"no MX host in a signed zone; MX RRset not signed",'
    b'"error":"no v=STSv1 record","error_kind":"no-record","error_id":null,'
    b'"policy":"version: STSv1\\r\\nmode: testing\\r\\nmode: none\\r\\n'
    b'mode: enforce\\r\\nmx: *.","max_age: 604800\\r\\n","max_age: 86400\\r\\n",'
    b'"policy_id":"20'
    b'{"dane":{"result":{"level":"dane-only","reason":"usable TLSA at all 2 MX hosts",'
    b'"ttl":3600,"mx_secure":true,"hosts":[{"host":"mx.","address_status":"secure",'
    b'"tlsa_name":"_25._tcp.mx.","tlsa_status":"secure","usable":1,"unusable":0,'
    b'"detail":"1 usable TLSA records"}]},"checked_at":17,"expires_at":17},'
    b'"policy_mode":"testing","policy_mode":"none","policy_mx":["*.",'
    b'"policy_mode":"enforce","policy_max_age":604800,"policy_max_age":86400,'
    b'"sts":{"policy":null,"policy_mode":null,"policy_max_age":null,"policy_mx":null,'
    b'"policy_id":null,"fetched_at":0.0,"record_id":null,'
    b'"checked_at":17,"negative_until":0.0,"error":null,"error_kind":null,'
    b'"error_at":0.0,"error_id":null,"fetch_failed_at":0.0}}'
)

_COMPRESSOR = zlib.compressobj(LEVEL, zlib.DEFLATED, WINDOW_BITS, MEM_LEVEL, zdict=VOCABULARY)
# Fields the slot holds itself (``unpack`` puts them back).
_OUTSIDE = ("v", "domain", "used_at", "hits")


def pack(entry: CacheEntry) -> bytes:
    """``entry`` without its domain and usage counters, compact."""
    data = entry.to_json()
    for name in _OUTSIDE:
        del data[name]
    compressor = _COMPRESSOR.copy()  # the dictionary is loaded once, not per entry
    raw = json.dumps(data, separators=(",", ":")).encode()  # as the backends store it
    return compressor.compress(raw) + compressor.flush()


def unpack(packed: bytes, domain: str, used_at: float, hits: int) -> CacheEntry:
    """The entry ``pack`` was given, with these usage counters."""
    decompressor = zlib.decompressobj(WINDOW_BITS, zdict=VOCABULARY)
    data: dict[str, Any] = json.loads(decompressor.decompress(packed) + decompressor.flush())
    data.update(v=FORMAT_VERSION, domain=domain, used_at=used_at, hits=hits)
    return CacheEntry.from_json(data)
