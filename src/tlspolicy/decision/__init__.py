"""What to answer, decided without I/O: the verdict (DANE first, then MTA-STS), the
outcome handed to the socketmap edge, and the cache plan (what an entry answers, what to
look up)."""
