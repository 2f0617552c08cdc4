"""The asynchronous orchestration of one lookup: the policy service, its DANE and
MTA-STS branches, refresh-ahead, the answer memo, and DNS instrumentation."""
