"""The ``tlspolicy`` command line."""
