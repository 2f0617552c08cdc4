"""The Postfix socketmap protocol (socketmap_table(5)): netstring framing, requests, replies."""
