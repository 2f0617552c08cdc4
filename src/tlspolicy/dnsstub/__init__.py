"""The DNS stub resolver: wire codec, UDP/TCP transport, the client that asks a validating
resolver and trusts its AD bit, answers as plain values, coalescing of equal questions,
per-lookup traces, and the resolver self-check."""
